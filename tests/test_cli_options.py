"""The command line's options: the same everywhere, inputs as arguments, a printed seed, file names in scores, usage errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pytest
from helpers import assert_clean_failure, copy_shipped_model, invoke, ok
from mnist_files import VALID_IMAGES

from digitvae.cli.main import cli
from digitvae.runtime import DigitVAE

#: Every command that loads a model takes these.
MODEL_OPTIONS = ("--model", "--variant", "--provider", "--strict", "--threads")


@pytest.mark.parametrize("command", ["generate", "reconstruct", "info", "interpolate", "manifold", "evaluate", "score"])
def test_every_model_loading_command_takes_the_same_options(command: str) -> None:
    text = ok(invoke(command, "--help")).stdout
    for option in MODEL_OPTIONS:
        assert option in text, f"{command} lacks {option}"


def test_generate_prints_the_seed_it_drew_and_the_seed_repeats_the_run(tmp_path: Path) -> None:
    line = ok(invoke("generate", "-n", 3, "-o", tmp_path / "a.npy")).stdout
    seed = int(re.search(r"\(seed (\d+)\)", line).group(1))  # type: ignore[union-attr]
    ok(invoke("generate", "-n", 3, "--seed", seed, "-o", tmp_path / "b.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_evaluate_reads_its_digits_as_arguments_and_with_data(tmp_path: Path) -> None:
    new = ok(invoke("evaluate", VALID_IMAGES, "--limit", 10, "-k", 5, "--json")).stdout
    old = ok(invoke("evaluate", "--data", VALID_IMAGES, "--limit", 10, "--k", 5, "--json")).stdout
    assert new == old
    result = invoke("evaluate", "--limit", 10)
    assert result.exit_code != 0 and "give the digits to read" in result.output


def test_model_options_reach_the_model(tmp_path: Path, digits: np.ndarray) -> None:
    from digitvae.runtime.inference.latent import MODES
    from digitvae.runtime.inference.latent import interpolate as path

    for variant in ("fp32", "int8"):
        ok(
            invoke(
                "interpolate",
                f"{VALID_IMAGES}:0",
                f"{VALID_IMAGES}:1",
                "--variant",
                variant,
                "--threads",
                1,
                "-o",
                tmp_path / f"{variant}.npy",
            )
        )
    int8 = DigitVAE.load(variant="int8", threads=1)
    means = int8.encode(digits[:2])[0]
    expected = int8.decode(np.concatenate([path(means[0], means[1], 10, m) for m in MODES]))
    np.testing.assert_allclose(np.load(tmp_path / "int8.npy"), expected, atol=1e-5)
    assert not np.allclose(np.load(tmp_path / "fp32.npy"), expected, atol=1e-5)
    assert_clean_failure(invoke("manifold", "--variant", "int4", "-o", tmp_path / "m.png"), "no variant 'int4'")
    assert not (tmp_path / "m.png").exists()


def test_reconstruct_takes_labels_for_a_conditional_model(tmp_path: Path) -> None:
    ok(invoke("reconstruct", VALID_IMAGES, "--limit", 4, "--model", "mnist-cvae", "-o", tmp_path / "r.npy"))
    assert np.load(tmp_path / "r.npy").shape == (4, 28, 28)
    digits = np.load(tmp_path / "r.npy")
    np.save(tmp_path / "d.npy", (digits * 255).astype(np.uint8))
    assert_clean_failure(
        invoke("reconstruct", tmp_path / "d.npy", "--model", "mnist-cvae", "-o", tmp_path / "x.npy"), "--labels"
    )
    assert not (tmp_path / "x.npy").exists()
    labels = VALID_IMAGES.with_name("t10k-labels-idx1-ubyte.gz")
    ok(invoke("reconstruct", tmp_path / "d.npy", "--model", "mnist-cvae", "--labels", labels, "-o", tmp_path / "y.npy"))


def test_score_names_each_image_by_file(tmp_path: Path, digits: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(digits[0]).save(tmp_path / "seven.png")
    np.save(tmp_path / "pair.npy", digits[1:3])
    text = ok(invoke("score", tmp_path / "seven.png", tmp_path / "pair.npy")).stdout
    rows = [line.split()[0] for line in text.splitlines() if not line.startswith("#")]
    assert rows == ["seven.png", "pair.npy:0", "pair.npy:1"]


def test_models_lists_shipped_and_given_models(tmp_path: Path) -> None:
    import json
    import shutil

    from digitvae.runtime.folders.locate import shipped_models_dir

    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", tmp_path / "mine")
    rows = json.loads(ok(invoke("models", tmp_path / "mine", "--json")).stdout)
    names = [r["model"] for r in rows]
    assert names == ["mnist-cvae", "mnist-vae", "mnist-vae-2d", "mnist-vae-geron", str(tmp_path / "mine")]
    default = rows[1]
    assert default["variants"] == ["fp32", "int8", "fp16"] and default["latent_dim"] == 32
    assert default["iw_nll"] == DigitVAE.load().manifest.metrics["likelihood"]["fp32"]["iw_nll"]
    text = ok(invoke("models")).stdout
    assert "mnist-vae-geron" in text and "gaussian_mixture, 10 classes" in text
    assert_clean_failure(invoke("models", tmp_path / "nothing"), "no model")


def test_progress_bars_stay_off_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from digitvae.cli.options import progress_bar

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress_bar(10, "x") as progress:
        assert progress is None

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    with progress_bar(10, "scoring") as progress:
        assert progress is not None
        progress(4)
        progress(10)
    assert "scoring" in shown.getvalue()


def test_verbose_works_before_and_after_the_command(tmp_path: Path) -> None:
    before = invoke("-v", "generate", "-n", 2, "--seed", 1, "-o", tmp_path / "a.npy")
    after = invoke("generate", "-n", 2, "--seed", 1, "-o", tmp_path / "b.npy", "-v")
    for result in (before, after):
        ok(result)
        assert "info: loaded mnist-vae" in result.stderr
    assert "info:" not in ok(invoke("generate", "-n", 2, "--seed", 1, "-o", tmp_path / "c.npy")).stderr


@pytest.mark.heavy
def test_score_takes_k_where_the_ranges_allow_it(tmp_path: Path) -> None:
    import json

    calibrated = json.loads(ok(invoke("score", VALID_IMAGES, "--limit", 3, "-k", 50, "--json")).stdout)
    assert calibrated["k"] == 50
    assert_clean_failure(invoke("score", VALID_IMAGES, "--limit", 3, "-k", 10), "calibrated with k=50")
    plain = copy_shipped_model(tmp_path / "m")
    data = json.loads((plain / "model.json").read_text())
    del data["metrics"]["score"]
    (plain / "model.json").write_text(json.dumps(data))
    report = json.loads(
        ok(invoke("score", VALID_IMAGES, "--limit", 3, "-k", 10, "--range", 0, 200, "--model", plain, "--json")).stdout
    )
    assert report["k"] == 10
    expected = DigitVAE.load(plain).iw_nll(_valid(3), 10)
    np.testing.assert_allclose([s["score"] for s in report["scores"]], expected, rtol=1e-5)


def _valid(n: int) -> np.ndarray:
    from digitvae.runtime.digits.idx import read_mnist_images

    return read_mnist_images(VALID_IMAGES)[:n]


def test_calibrate_reads_its_digits_as_arguments(tmp_path: Path) -> None:
    import json

    model = copy_shipped_model(tmp_path / "m")
    ok(invoke("calibrate", model, VALID_IMAGES, "-k", 5, "--no-reference"))
    score = json.loads((model / "model.json").read_text())["metrics"]["score"]
    assert score["k"] == 5 and score["digits"] == 100
    result = invoke("calibrate", model, "--no-reference")
    assert result.exit_code != 0 and "give the digits to read" in result.output


def test_quality_takes_the_model_options() -> None:
    text = ok(invoke("quality", "--help")).stdout
    for option in ("--model", "--variant", "--provider", "--strict", "--threads"):
        assert option in text


@pytest.mark.parametrize("command", [["calibrate"], ["prior", "fit"]])
def test_commands_that_rewrite_a_model_folder_take_provider_and_threads(command: list[str]) -> None:
    text = ok(invoke(*command, "--help")).stdout
    assert "MODEL_DIR" in text and "--provider" in text and "--threads" in text


def test_thread_counts_beyond_the_limit_are_refused_by_the_cli(tmp_path: Path) -> None:
    result = invoke("generate", "-n", 2, "--threads", 2**31, "-o", tmp_path / "x.png")
    assert result.exit_code != 0 and "--threads" in result.output
    assert not (tmp_path / "x.png").exists()


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path: Path) -> None:
    import time

    start = time.perf_counter()
    too_long = tmp_path / ("x" * 250 + ".npy")
    assert_clean_failure(invoke("generate", "-n", 1_000_000, "-o", too_long), "file name is longer")
    assert_clean_failure(invoke("generate", "-n", 1_000_000, "-o", tmp_path / "no" / "x.npy"), "does not exist")
    assert time.perf_counter() - start < 20  # a million digits were not generated first
    assert list(tmp_path.iterdir()) == []


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command below a group, with the words that name it."""
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def _bad_values(param: click.Parameter) -> list[str]:
    """Values out of a numeric option's static range, or outside its choices."""
    kind = param.type
    if isinstance(kind, click.Choice):
        return ["bogus"]
    if isinstance(kind, click.types._NumberRangeBase):
        bad = []
        if kind.min is not None:
            bad.append(str(kind.min if kind.min_open else kind.min - 1))
        if kind.max is not None:
            bad.append(str(kind.max if kind.max_open else kind.max + 1))
        return bad + ["many"]
    if isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)):
        return ["many"]
    return []


#: Each numeric or choice option of every command, with a value it must refuse.
BAD_OPTION_VALUES = [
    pytest.param(path, param.opts[0], value, id=f"{' '.join(path)} {param.opts[0]} {value}")
    for path, command in _commands(cli)
    for param in command.params
    if isinstance(param, click.Option) and param.nargs == 1
    for value in _bad_values(param)
]


def test_every_unranged_number_option_is_listed() -> None:
    """A plain int or float option has no static range: each one here must have its reason to be unranged."""
    plain = [
        (" ".join(path), param.opts[0])
        for path, command in _commands(cli)
        for param in command.params
        if type(param.type) in (click.types.IntParamType, click.types.FloatParamType)
    ]
    assert plain == []
    assert len(BAD_OPTION_VALUES) > 60


@pytest.mark.parametrize(("path", "option", "value"), BAD_OPTION_VALUES)
def test_a_bad_option_value_is_a_usage_error(path: tuple[str, ...], option: str, value: str) -> None:
    result = invoke(*path, option, value)
    assert result.exit_code == 2, result.output
    line = assert_clean_failure(result)
    assert option in line and value in line and "--help" in line, line


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "-n", 3, "--digit", 1, "--each-digit", "-o", "out.png"],
        ["prior", "fit", ".", "--data", "x", "--labels", "y", "--no-labels"],
    ],
    ids=["generate", "prior fit"],
)
def test_options_that_exclude_each_other_are_a_usage_error(args: list[object]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and "exclude each other" in assert_clean_failure(result)


@pytest.mark.parametrize("n", [0, -5, 10**18])
def test_generate_n_out_of_range_is_a_usage_error_that_writes_nothing(tmp_path: Path, n: int) -> None:
    result = invoke("generate", "-n", n, "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    assert f"{n} is not in the range 1<=x<=1000000" in assert_clean_failure(result)
    assert list(tmp_path.iterdir()) == []
