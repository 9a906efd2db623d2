"""Reliability: run-time shape surprises, broken outputs of a model, odd files and usage errors.

Each test holds one class of failure found by feeding the runtime and the CLI adversarial
inputs: the result is right, or the error is ours (one `error:` line on the command line).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_clean_failure, invoke, ok
from mnist_files import VALID_IMAGES

from digitvae.runtime import DigitVAE, InputError, ModelError, OutlierDetector, OutputError
from digitvae.runtime.digits.files import write_npy, write_png
from digitvae.runtime.folders.locate import shipped_models_dir


class _Sliced:
    """A session whose outputs keep at most `rows` rows (or fail) whatever the batch: a graph that
    passed the trial run on 2 rows and surprises on others."""

    def __init__(self, session: Any, rows: int = 2, outputs: tuple[str, ...] = (), fail: bool = False) -> None:
        self._session = session
        self._rows = rows
        self._outputs = outputs
        self._fail = fail

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._fail:
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Reshape node failed")  # a foreign exception type
        found = self._session.run(names, feeds)
        return [a[: self._rows] if not self._outputs or n in self._outputs else a for n, a in zip(names, found)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _broken(part: str, **kwargs: Any) -> DigitVAE:
    """Load the default model and replace one of its sessions by a _Sliced one (small-batch path off)."""
    vae = DigitVAE.load()
    if part in ("encoder", "decoder"):
        setattr(vae, f"_{part}", _Sliced(getattr(vae, f"_{part}"), **kwargs))
        vae._small[part].enabled = False
    else:
        prior: Any = vae.prior
        setattr(prior, f"_{part}", _Sliced(getattr(prior, f"_{part}"), **kwargs))
        prior._small.enabled = False
    return vae


@pytest.mark.parametrize("n", [3, 17, 5000])
def test_a_decoder_returning_too_few_rows_is_a_model_error(digits: np.ndarray, n: int) -> None:
    vae = _broken("decoder")
    with pytest.raises(ModelError, match=r"decoder returned 'image' of shape \[2, 1, 28, 28\]"):
        vae.generate(n, seed=0)
    with pytest.raises(ModelError, match="decoder returned"):
        vae.reconstruct(digits[:3])
    assert vae.generate(2, seed=0).shape == (2, 28, 28)  # the batch it was tried on still works


def test_short_logits_are_a_model_error_not_a_silent_likelihood(digits: np.ndarray) -> None:
    # Before, the missing rows of the logits buffer were left uninitialised and summed into the result.
    vae = _broken("decoder", outputs=("logits",))
    for call in (
        lambda: vae.iw_nll(digits[:3], k=2),
        lambda: vae.iw_nll(digits[:1], k=3),
        lambda: vae.elbo(digits[:3]),
    ):
        with pytest.raises(ModelError, match="'logits' of shape"):
            call()


def test_an_encoder_returning_too_few_rows_is_a_model_error(digits: np.ndarray) -> None:
    vae = _broken("encoder")
    for call in (lambda: vae.encode(digits[:3]), lambda: vae.iw_nll(digits[:3], k=2)):
        with pytest.raises(ModelError, match=r"encoder returned 'mean' of shape \[2, 32\]"):
            call()


@pytest.mark.parametrize("n", [3, 17, 5000])
def test_a_prior_sampler_returning_too_few_rows_is_a_model_error(n: int) -> None:
    vae = _broken("sampler")
    with pytest.raises(ModelError, match=r"prior sampler returned 'z' of shape \[2, 32\]"):
        vae.generate(n, seed=0)
    with pytest.raises(ModelError, match="prior sampler"):
        vae.sample_latents(n, seed=0)


def test_a_prior_density_of_another_shape_is_a_model_error(digits: np.ndarray) -> None:
    vae = _broken("density")
    with pytest.raises(ModelError, match=r"prior density returned 'log_prob' of shape \[2\]"):
        vae.iw_nll(digits[:3], k=2)


@pytest.mark.parametrize("part", ["sampler", "density", "encoder", "decoder"])
def test_an_onnxruntime_failure_at_run_time_is_a_model_error(digits: np.ndarray, part: str) -> None:
    vae = _broken(part, fail=True)
    with pytest.raises(ModelError, match="failed on a batch"):
        if part == "sampler":
            vae.generate(20, seed=0)
        else:
            vae.iw_nll(digits[:3], k=2)


class _Poisoned(_Sliced):
    """A session that returns NaN in its first output."""

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        found = [a.copy() for a in self._session.run(names, feeds)]
        found[0][...] = np.nan
        return found


def test_nan_from_the_encoder_or_the_logits_is_a_model_error(digits: np.ndarray) -> None:
    vae = DigitVAE.load()
    vae._encoder = _Poisoned(vae._encoder)
    vae._small["encoder"].enabled = False
    with pytest.raises(ModelError, match="encoder returned NaN"):
        vae.encode(digits[:2])
    vae = DigitVAE.load()
    vae._decoder = _Poisoned(vae._decoder)
    vae._small["decoder"].enabled = False
    with pytest.raises(ModelError, match="NaN or infinite logits"):
        vae.iw_nll(digits[:2], k=2)


def _crafted_decoder(tmp_path: Path) -> Path:
    """A real ONNX decoder that keeps its first 2 rows: it passes the trial run on a batch of 2."""
    from test_inputs import _with_decoder

    def slice_two(decoder: Any) -> None:
        from onnx import helper, numpy_helper

        graph = decoder.graph
        for out in graph.output:
            raw = out.name + "_raw"
            for node in graph.node:
                node.output[:] = [raw if o == out.name else o for o in node.output]
                node.input[:] = [raw if i == out.name else i for i in node.input]
            ends = out.name + "_ends"
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array([0], np.int64), out.name + "_starts"),
                    numpy_helper.from_array(np.array([2], np.int64), ends),
                ]
            )
            graph.node.append(helper.make_node("Slice", [raw, out.name + "_starts", ends], [out.name]))

    return _with_decoder(tmp_path, slice_two)  # type: ignore[no-any-return]


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process: onnxruntime's own log lines go to the real stderr."""
    env = {k: v for k, v in os.environ.items() if k != "DIGITVAE_DEBUG"}
    code = "from digitvae.cli.main import main; main()"
    command = [sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_a_real_graph_slicing_its_batch_fails_with_one_error_line(tmp_path: Path) -> None:
    model = _crafted_decoder(tmp_path)
    vae = DigitVAE.load(model)  # the trial run on 2 rows passes
    with pytest.raises(ModelError, match=r"for a batch of 3"):
        vae.generate(3, seed=0)
    # Before, onnxruntime printed its own [E:onnxruntime...] line beside ours.
    result = _cli("generate", "-n", 5, "--seed", 0, "-o", tmp_path / "x.png", "--model", model)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the decoder returned 'image' of shape [2, 1, 28, 28] for a batch of 5, expected [5, 1, 28, 28] "
        "(the ONNX contract)"
    ]
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------------------------------------------
# outputs, model files and manifests


def test_output_names_too_long_are_output_errors_in_python(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        write_npy(np.zeros((1, 28, 28), np.float32), tmp_path / ("a" * 300 + ".npy"))
    with pytest.raises(OutputError, match="cannot write"):
        write_png(np.zeros((28, 28), np.uint8), tmp_path / ("b" * 300) / "x.png")
    with pytest.raises(OutputError, match="cannot write"):
        write_png(np.zeros((28, 28), np.uint8), tmp_path / "nul\0.png")
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_a_symlink_is_replaced_and_its_target_kept(tmp_path: Path) -> None:
    # The documented behaviour (README, docs/reliability.md): the link itself is replaced.
    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    target.chmod(0o400)  # a read-only target does not matter: it is not written
    (tmp_path / "link.png").symlink_to(target)
    ok(invoke("generate", "-n", 2, "--seed", 0, "-o", tmp_path / "link.png"))
    assert target.read_bytes() == b"old"
    assert (tmp_path / "link.png").is_file() and not (tmp_path / "link.png").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "real.png"]


def _model_copy(tmp_path: Path, edit: Callable[[Path], None]) -> Path:
    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", model)
    edit(model)
    return model


def test_a_directory_in_place_of_an_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    def to_directory(model: Path) -> None:
        (model / "encoder.onnx").unlink()
        (model / "encoder.onnx").mkdir()

    with pytest.raises(ModelError, match="not a regular file"):
        DigitVAE.load(_model_copy(tmp_path, to_directory))


def test_a_manifest_with_a_key_given_twice_is_a_model_error(tmp_path: Path) -> None:
    def twice(model: Path) -> None:
        text = (model / "model.json").read_text()
        (model / "model.json").write_text(text.replace('"latent_dim": 2', '"latent_dim": 2, "latent_dim": 3', 1))

    with pytest.raises(ModelError, match="'latent_dim' appears twice"):
        DigitVAE.load(_model_copy(tmp_path, twice))


def test_a_manifest_with_an_integer_of_thousands_of_digits_is_a_model_error(tmp_path: Path) -> None:
    def huge(model: Path) -> None:
        text = (model / "model.json").read_text()
        (model / "model.json").write_text(text.replace('"latent_dim": 2', '"latent_dim": ' + "9" * 5000, 1))

    # json.loads raises a plain ValueError beyond Python's 4,300-digit conversion limit.
    with pytest.raises(ModelError, match="not a usable manifest"):
        DigitVAE.load(_model_copy(tmp_path, huge))


def test_a_manifest_with_a_byte_order_mark_is_read_and_updated(tmp_path: Path) -> None:
    def bom(model: Path) -> None:
        (model / "model.json").write_bytes(b"\xef\xbb\xbf" + (model / "model.json").read_bytes())

    model = _model_copy(tmp_path, bom)
    assert DigitVAE.load(model).latent_dim == 2
    ok(invoke("evaluate", VALID_IMAGES, "--limit", 3, "-k", 2, "--write", "--model", model))
    data = json.loads((model / "model.json").read_text(encoding="utf-8"))
    assert data["metrics"]["likelihood"]["fp32"]["digits"] == 3


@pytest.mark.parametrize(
    "plane",
    [
        {"centre": [float("nan")] * 32, "directions": [[1.0] * 32] * 2, "spread": [1.0, 1.0]},
        {"centre": [1e300] * 32, "directions": [[1.0] * 32] * 2, "spread": [1.0, 1.0]},
    ],
)
def test_manifold_refuses_a_plane_of_non_finite_codes_in_one_line(tmp_path: Path, plane: dict[str, Any]) -> None:
    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    data = json.loads((model / "model.json").read_text())
    data["metrics"]["latent_plane"] = plane
    (model / "model.json").write_text(json.dumps(data))
    # A child process: numpy's overflow warning went to the real stderr, beside the error line.
    result = _cli("manifold", "--size", 2, "-o", tmp_path / "m.png", "--model", model)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the principal plane (metrics.latent_plane) gives non-finite codes; recalibrate or pass --data"
    ]


# ---------------------------------------------------------------------------------------------------------------
# arguments of the wrong kind


def test_detector_flags_refuse_scores_of_the_wrong_form() -> None:
    detector = OutlierDetector.load()
    good = {name: np.zeros(3) for name in detector.checks}
    assert detector.flags(good) == [detector.flags(good)[0]] * 3
    for bad in (
        {},
        {**good, "nll": np.zeros(2)},
        {**good, "nll": "abc"},
        {**good, "nll": np.zeros((3, 2))},
        [np.zeros(3)],
    ):
        with pytest.raises(InputError, match="scores"):
            detector.flags(bad)  # type: ignore[arg-type]


def test_numpy_integer_thread_counts_work() -> None:
    assert DigitVAE.load("mnist-vae-2d", threads=np.int64(1)).generate(1, seed=0).shape == (1, 28, 28)


# ---------------------------------------------------------------------------------------------------------------
# the command line: a bad option value is one error line


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "-n", "1.5", "-o", "x.png"),
        ("generate", "-n", "2", "-o", "x.png", "--cols", "0"),
        ("generate", "-n", "2", "-o", "x.png", "--scale", "100000"),
        ("generate", "-n", "2", "-o", "x.png", "--threads", "-1"),
        ("generate", "-n", "2", "-o", "x.png", "--threads", "99999999999"),
        ("generate", "-n", "2", "-o", "x.png", "--seed", "-1"),
        ("generate", "-n", "2", "-o", "x.png", "--digit", "10"),
        ("generate", "-n", "2", "-o", "x.png", "--bogus"),
        ("generate", "-n", "2"),
        ("reconstruct", str(VALID_IMAGES), "-o", "x.png", "--limit", "0"),
        ("interpolate", f"{VALID_IMAGES}:0", f"{VALID_IMAGES}:1", "-o", "x.png", "--mode", "curvy"),
        ("manifold", "-o", "x.png", "--size", "1"),
        ("evaluate", str(VALID_IMAGES), "-k", "0"),
        ("score", str(VALID_IMAGES), "--range", "a", "b"),
        ("info", "--threads", "-1"),
        ("nonsense-command",),
        ("--bogus",),
    ],
)
def test_a_usage_error_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2
    line = assert_clean_failure(result)
    assert "--help" in line and "Usage:" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_a_directory_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    assert_clean_failure(invoke("generate", "-n", 2, "-o", tmp_path / "x.png"), "is a directory")


def test_a_group_without_a_command_still_shows_its_help() -> None:
    for args in ((), ("prior",)):
        result = invoke(*args)
        assert "Usage:" in result.output and "error:" not in result.output


def test_a_write_failure_of_the_disk_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert_clean_failure(invoke("generate", "-n", 3, "-o", tmp_path / "x.npy"), "no space left")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# memory: generate's random inputs are drawn block by block, with the numbers of one draw for all


@pytest.mark.parametrize("block", [7, 4096])
def test_blockwise_draws_give_the_digits_of_one_draw(vae: DigitVAE, block: int) -> None:
    # sample_latents draws all noise, then all uniforms, at once: the reference for every block size.
    n = 5000 if block == 4096 else 30
    z = vae.sample_latents(n, seed=11)
    got = np.concatenate(list(vae.iter_generate(n, seed=11, block=block)))
    np.testing.assert_allclose(got, vae.decode(z), atol=1e-6)
    sevens = np.concatenate(list(vae.iter_generate(n, seed=3, digit=7, block=block)))
    np.testing.assert_allclose(sevens, vae.decode(vae.sample_latents(n, seed=3, digit=7)), atol=1e-6)


def test_a_conditional_model_cycles_the_classes_across_blocks() -> None:
    cvae = DigitVAE.load("mnist-cvae")
    whole = cvae.generate(23, seed=5)
    blocks = np.concatenate(list(cvae.iter_generate(23, seed=5, block=4)))
    np.testing.assert_allclose(blocks, whole, atol=1e-6)
    z = cvae.sample_latents(23, seed=5, digit=np.arange(23) % 10)
    np.testing.assert_allclose(whole, cvae.decode(z, np.arange(23) % 10), atol=1e-6)
    with pytest.raises(InputError, match="digit"):
        next(cvae.iter_generate(23, seed=5, digit=np.arange(22) % 10, block=4))


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "-n", "1000000"),
        ("generate", "-n", "100000", "--scale", "2"),
        ("manifold", "--size", "100", "--scale", "16"),
    ],
)
def test_a_png_grid_too_large_to_view_is_refused_before_any_work(tmp_path: Path, args: tuple[str, ...]) -> None:
    # Before, `generate -n 1000000 -o x.png` built 3.1 GB of digits and a 900-megapixel grid.
    from unittest import mock

    with mock.patch.object(DigitVAE, "load", side_effect=AssertionError("loaded a model")):
        result = invoke(*args, "-o", tmp_path / "x.png")
    assert_clean_failure(result, "more than the 89,478,485 a png may have")
    assert list(tmp_path.iterdir()) == []


def test_a_png_grid_within_the_limit_is_written(tmp_path: Path) -> None:
    from digitvae.runtime.digits.files import MAX_PNG_PIXELS, check_grid_size

    check_grid_size(100_000, 10, 1, "x.png")  # 298 x 299,998 pixels: just within
    with pytest.raises(OutputError, match="a PNG may have"):
        check_grid_size(100_000, 10, 1, "x.png", pairs=True)
    with pytest.raises(OutputError, match="a PNG may have"):
        write_png(np.zeros((10_000, 10_000), np.uint8), tmp_path / "x.png")
    assert 10_000 * 10_000 > MAX_PNG_PIXELS and list(tmp_path.iterdir()) == []
