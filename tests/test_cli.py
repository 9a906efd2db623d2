"""Tests for the `digitvae` command line (digitvae.cli), driven in-process with click's CliRunner."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import Result
from helpers import (
    GAP,
    STEP,
    D,
    assert_clean_failure,
    cell,
    copy_shipped_model,
    grid_size,
    invoke,
    listing,
    ok,
    read_grid,
    write_png,
)
from mnist_files import TRAIN_IMAGES, VALID_IMAGES
from PIL import Image
from train_extra import EXPORTED_FILES, needs_torch

from digitvae.runtime import __version__


def test_generate_png_grid(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    result = ok(invoke("generate", "-n", 60, "-o", out))
    assert "wrote 60 digits" in result.stdout
    assert result.stderr == ""
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.mode == "L"
        assert image.size == grid_size(10, 6) == (2 * (10 * 30 - 2), 2 * (6 * 30 - 2))  # --scale 2 by default
    assert listing(tmp_path) == ["x.png"]


def test_generate_npy(tmp_path: Path) -> None:
    out = tmp_path / "x.npy"
    ok(invoke("generate", "-n", 7, "-o", out))
    digits = np.load(out, allow_pickle=False)
    assert digits.dtype == np.float32
    assert digits.shape == (7, 28, 28)
    assert digits.min() >= 0.0 and digits.max() <= 1.0
    assert digits.std() > 0.1  # real digits, not a blank or constant array
    assert listing(tmp_path) == ["x.npy"]


def test_generate_png_matches_npy(tmp_path: Path) -> None:
    ok(invoke("generate", "-n", 13, "--seed", 3, "-o", tmp_path / "g.png"))
    ok(invoke("generate", "-n", 13, "--seed", 3, "-o", tmp_path / "g.npy"))
    digits = np.load(tmp_path / "g.npy")
    grid = read_grid(tmp_path / "g.png")
    assert grid.shape == (2 * STEP - GAP, 10 * STEP - GAP)
    pixels = np.rint(digits * 255).astype(np.uint8)
    for i in (0, 9, 10, 12):
        np.testing.assert_array_equal(cell(grid, *divmod(i, 10)), pixels[i])
    # The gaps between digits are drawn, not left black.
    assert (grid[:, 28:30] == 48).all()


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_generate_seed_is_reproducible(tmp_path: Path, suffix: str) -> None:
    a, b, c = (tmp_path / f"{name}{suffix}" for name in "abc")
    ok(invoke("generate", "-n", 20, "--seed", 7, "-o", a))
    ok(invoke("generate", "-n", 20, "--seed", 7, "-o", b))
    ok(invoke("generate", "-n", 20, "--seed", 8, "-o", c))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_generate_without_seed_varies(tmp_path: Path) -> None:
    ok(invoke("generate", "-n", 5, "-o", tmp_path / "a.npy"))
    ok(invoke("generate", "-n", 5, "-o", tmp_path / "b.npy"))
    assert not np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_generate_scale(tmp_path: Path) -> None:
    ok(invoke("generate", "-n", 60, "--seed", 1, "--scale", 1, "-o", tmp_path / "one.png"))
    ok(invoke("generate", "-n", 60, "--seed", 1, "-o", tmp_path / "two.png"))
    ok(invoke("generate", "-n", 60, "--seed", 1, "--scale", 3, "-o", tmp_path / "three.png"))
    one, two = read_grid(tmp_path / "one.png", scale=1), read_grid(tmp_path / "two.png", scale=1)
    three = read_grid(tmp_path / "three.png", scale=1)
    assert one.shape == (178, 298)
    assert two.shape == (2 * 178, 2 * 298)  # the default
    np.testing.assert_array_equal(two, np.repeat(np.repeat(one, 2, axis=0), 2, axis=1))
    np.testing.assert_array_equal(three, np.repeat(np.repeat(one, 3, axis=0), 3, axis=1))


@pytest.mark.parametrize(
    ("n", "cols", "size"),
    [
        (12, 4, grid_size(4, 3)),
        (11, 4, grid_size(4, 3)),
        (5, 50, grid_size(5, 1)),
        (3, 1, grid_size(1, 3)),
        (7, None, grid_size(7, 1)),
    ],
)
def test_generate_cols(tmp_path: Path, n: int, cols: int | None, size: tuple[int, int]) -> None:
    out = tmp_path / "x.png"
    ok(invoke("generate", "-n", n, "-o", out, *(["--cols", cols] if cols else [])))
    with Image.open(out) as image:
        assert image.size == size


def test_generate_uppercase_suffix(tmp_path: Path) -> None:
    out = tmp_path / "X.PNG"
    ok(invoke("generate", "-n", 2, "-o", out))
    assert read_grid(out).shape == (28, 58)  # at scale 1, once read_grid checked the default scale 2


def test_generate_unavailable_provider_warns_and_falls_back(tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    out = tmp_path / "x.npy"
    result = ok(invoke("generate", "-n", 3, "-o", out, "--provider", "cuda"))
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:"), result.stderr
    assert "CUDAExecutionProvider" in lines[0]
    assert "wrote 3 digits" in result.stdout
    assert np.load(out).shape == (3, 28, 28)


# ---------------------------------------------------------------------------------------------------------------
# reconstruct


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_reconstruct_one_png(tmp_path: Path, digits: np.ndarray) -> None:
    src = write_png(digits[0], tmp_path / "d0.png")
    result = ok(invoke("reconstruct", src, "-o", tmp_path / "r.png"))
    assert "wrote 1 reconstruction to" in result.stdout
    grid = read_grid(tmp_path / "r.png")
    assert grid.shape == (2 * STEP - GAP, 28)  # original above its reconstruction
    np.testing.assert_array_equal(cell(grid, 0, 0), digits[0])
    assert _mean_abs(cell(grid, 1, 0) / 255, digits[0] / 255) < 0.1

    ok(invoke("reconstruct", src, "-o", tmp_path / "r.npy"))
    rebuilt = np.load(tmp_path / "r.npy")
    assert rebuilt.dtype == np.float32 and rebuilt.shape == (1, 28, 28)
    assert _mean_abs(rebuilt[0], digits[0] / 255) < 0.1


def test_reconstruct_several_pngs_keeps_order(tmp_path: Path, digits: np.ndarray) -> None:
    picks = [3, 0, 7, 5]
    files = [write_png(digits[i], tmp_path / f"d{i}.png") for i in picks]
    ok(invoke("reconstruct", *files, "-o", tmp_path / "r.npy"))
    rebuilt = np.load(tmp_path / "r.npy")
    assert rebuilt.shape == (4, 28, 28)
    originals = digits[picks].astype(np.float32) / 255
    errors = np.abs(rebuilt[:, None] - originals[None]).mean(axis=(2, 3))
    np.testing.assert_array_equal(errors.argmin(axis=1), np.arange(4))


@pytest.mark.parametrize("layout", ["uint8", "float32", "float64-flat"])
def test_reconstruct_npy(tmp_path: Path, digits: np.ndarray, layout: str) -> None:
    batch = digits[:6]
    if layout == "uint8":
        array = batch
    elif layout == "float32":
        array = batch.astype(np.float32) / 255
    else:
        array = (batch.astype(np.float64) / 255).reshape(6, 784)
    np.save(tmp_path / "in.npy", array)
    ok(invoke("reconstruct", tmp_path / "in.npy", "-o", tmp_path / "r.npy"))
    rebuilt = np.load(tmp_path / "r.npy")
    assert rebuilt.shape == (6, 28, 28) and rebuilt.dtype == np.float32
    assert 0 <= rebuilt.min() and rebuilt.max() <= 1
    assert _mean_abs(rebuilt, batch / 255) < 0.1


def test_reconstruct_npy_dtypes_agree(tmp_path: Path, digits: np.ndarray) -> None:
    np.save(tmp_path / "u8.npy", digits[:4])
    np.save(tmp_path / "f32.npy", digits[:4].astype(np.float32) / 255)
    ok(invoke("reconstruct", tmp_path / "u8.npy", "-o", tmp_path / "a.npy"))
    ok(invoke("reconstruct", tmp_path / "f32.npy", "-o", tmp_path / "b.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), atol=1e-5)


def test_reconstruct_idx_with_limit(tmp_path: Path, digits: np.ndarray) -> None:
    result = ok(invoke("reconstruct", VALID_IMAGES, "--limit", 20, "-o", tmp_path / "r.png"))
    assert "wrote 20 reconstructions" in result.stdout
    grid = read_grid(tmp_path / "r.png")
    # 20 digits in 10 columns: 2 rows of digits, each shown as originals above reconstructions = 4 grid rows.
    assert grid.shape[::-1] == grid_size(10, 4, scale=1)  # read_grid checked the default scale 2
    for i in (0, 9, 10, 19):
        row, col = divmod(i, 10)
        np.testing.assert_array_equal(cell(grid, 2 * row, col), digits[i])
        assert _mean_abs(cell(grid, 2 * row + 1, col) / 255, digits[i] / 255) < 0.1

    ok(invoke("reconstruct", VALID_IMAGES, "--limit", 20, "-o", tmp_path / "r.npy"))
    assert np.load(tmp_path / "r.npy").shape == (20, 28, 28)
    ok(invoke("reconstruct", VALID_IMAGES, "-o", tmp_path / "all.npy"))
    assert np.load(tmp_path / "all.npy").shape == (len(digits), 28, 28)


def test_reconstruct_mixed_inputs_and_partial_last_row(tmp_path: Path, digits: np.ndarray) -> None:
    png = write_png(digits[0], tmp_path / "d.png")
    np.save(tmp_path / "b.npy", digits[1:5])
    ok(
        invoke(
            "reconstruct", png, tmp_path / "b.npy", VALID_IMAGES, "--limit", 7, "--cols", 3, "-o", tmp_path / "r.png"
        )
    )
    grid = read_grid(tmp_path / "r.png")
    assert grid.shape[::-1] == grid_size(3, 6, scale=1)  # ceil(7/3) = 3 rows of digits, doubled
    order = [digits[0], *digits[1:5], digits[0], digits[1]]
    for i, original in enumerate(order):
        row, col = divmod(i, 3)
        np.testing.assert_array_equal(cell(grid, 2 * row, col), original)
    # The unused cells of the last (partial) row are blank.
    assert (cell(grid, 4, 1) == 0).all() and (cell(grid, 5, 2) == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# info, version, help


def test_info_text() -> None:
    result = ok(invoke("info"))
    out = result.stdout
    assert "mnist-vae" in out
    assert any(line.split() == ["latent", "size", str(D)] for line in out.splitlines()), out
    assert "CPUExecutionProvider" in out
    active = [line for line in out.splitlines() if line.startswith("active")]
    assert active and "CPUExecutionProvider" in active[0]


def test_info_json() -> None:
    report = json.loads(ok(invoke("info", "--json")).stdout)
    assert {"model", "manifest", "available_providers", "active_providers"} <= set(report)
    assert report["model"] == "mnist-vae"
    assert report["manifest"]["latent_dim"] == D
    assert report["manifest"]["format"] == "digitvae-model"
    assert report["active_providers"] == ["CPUExecutionProvider"]
    assert report["available_providers"] == ort.get_available_providers()
    assert "mnist-vae" in report["shipped_models"]


def test_info_with_model_folder(tmp_path: Path) -> None:
    folder = copy_shipped_model(tmp_path / "copy")
    report = json.loads(ok(invoke("info", "--json", "--model", folder)).stdout)
    assert Path(report["directory"]) == folder
    assert report["manifest"]["latent_dim"] == D


def test_verbose_logs_to_stderr(tmp_path: Path) -> None:
    result = ok(invoke("-v", "generate", "-n", 2, "-o", tmp_path / "x.npy"))
    assert any(line.startswith("info: loaded mnist-vae") for line in result.stderr.splitlines()), result.stderr
    assert result.stdout.startswith("wrote 2 digits")
    assert ok(invoke("generate", "-n", 2, "-o", tmp_path / "y.npy")).stderr == ""


def test_version() -> None:
    result = ok(invoke("--version"))
    assert result.stdout.strip() == f"digitvae, version {__version__}"


def test_console_script_version() -> None:
    script = Path(sys.executable).parent / "digitvae"
    if not script.is_file():
        pytest.skip("console script not installed next to this interpreter")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout


def test_help_lists_commands() -> None:
    out = ok(invoke("--help")).stdout
    for command in ("generate", "reconstruct", "info", "train", "export", "data"):
        assert command in out


def test_data_download_help(tmp_path: Path) -> None:
    result = ok(invoke("data", "download", "--help"))
    assert "--dir" in result.stdout
    assert "MD5" in result.stdout
    assert "Usage:" in result.stdout


# ---------------------------------------------------------------------------------------------------------------
# errors: one clean line, non-zero exit, nothing written

Case = Callable[[Path, Path, np.ndarray], tuple[list[object], str]]


def _no_cuda() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")


def _tampered(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    folder = copy_shipped_model(inp / "tampered")
    decoder = folder / "decoder.onnx"
    data = bytearray(decoder.read_bytes())
    data[len(data) // 2] ^= 0xFF
    decoder.write_bytes(bytes(data))
    return ["generate", "-n", 4, "--model", folder, "-o", out / "x.png"], "sha256"


def _bad_json(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    folder = copy_shipped_model(inp / "badjson")
    (folder / "model.json").write_text('{"format": "digitvae-model", ', encoding="utf-8")
    return ["generate", "-n", 4, "--model", folder, "-o", out / "x.png"], "not valid JSON"


def _missing_onnx(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    folder = copy_shipped_model(inp / "nodecoder")
    (folder / "decoder.onnx").unlink()
    return ["generate", "-n", 4, "--model", folder, "-o", out / "x.npy"], "missing"


def _text_png(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    (inp / "fake.png").write_text("this is not a picture\n")
    return ["reconstruct", inp / "fake.png", "-o", out / "r.png"], "not an image"


def _big_png(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    write_png(np.zeros((32, 32), np.uint8), inp / "big.png")
    return ["reconstruct", inp / "big.png", "-o", out / "r.png"], "28x28"


def _truncated_png(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    write_png(digits[0], inp / "whole.png")
    data = (inp / "whole.png").read_bytes()
    (inp / "cut.png").write_bytes(data[: len(data) // 2])
    return ["reconstruct", inp / "cut.png", "-o", out / "r.png"], "truncated"


def _png16(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    Image.fromarray(digits[0].astype(np.uint16) * 257).save(inp / "deep.png")
    return ["reconstruct", inp / "deep.png", "-o", out / "r.png"], "not supported"


def _npy(array: np.ndarray, fragment: str) -> Case:
    def case(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
        np.save(inp / "in.npy", array)
        return ["reconstruct", inp / "in.npy", "-o", out / "r.npy"], fragment

    return case


def _nan_npy() -> np.ndarray:
    array = np.full((3, 28, 28), 0.5, np.float32)
    array[1, 5, 5] = np.nan
    return array


def _truncated_gz(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    data = TRAIN_IMAGES.read_bytes()
    (inp / "cut-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    return ["reconstruct", inp / "cut-images-idx3-ubyte.gz", "-o", out / "r.png"], "truncated"


def _truncated_raw(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    data = gzip.decompress(VALID_IMAGES.read_bytes())
    (inp / "cut-images-idx3-ubyte").write_bytes(data[:-1000])
    return ["reconstruct", inp / "cut-images-idx3-ubyte", "-o", out / "r.npy"], "truncated"


def _labels_idx(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    return ["reconstruct", VALID_IMAGES.with_name("t10k-labels-idx1-ubyte.gz"), "-o", out / "r.npy"], "not MNIST images"


def _unknown_file(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
    (inp / "notes.txt").write_text("hello")
    return ["reconstruct", inp / "notes.txt", "-o", out / "r.npy"], "not a digit file"


def _args(*args: object, fragment: str, needs: Callable[[], None] | None = None) -> Case:
    def case(inp: Path, out: Path, digits: np.ndarray) -> tuple[list[object], str]:
        if needs is not None:
            needs()
        return [a(inp, out) if callable(a) else a for a in args], fragment

    return case


def _out(name: str) -> Callable[[Path, Path], Path]:
    return lambda inp, out: out / name


def _png_input(inp: Path, out: Path) -> Path:
    path = inp / "d.png"
    write_png(np.zeros((28, 28), np.uint8), path)
    return path


ERROR_CASES = [
    pytest.param(
        _args("generate", "-n", 0, "-o", _out("x.png"), fragment="not in the range 1<=x<=1000000"), id="gen-n-0"
    ),
    pytest.param(
        _args("generate", "-n", -5, "-o", _out("x.png"), fragment="not in the range 1<=x<=1000000"), id="gen-n-negative"
    ),
    pytest.param(
        _args("generate", "-n", 2_000_000, "-o", _out("x.npy"), fragment="not in the range 1<=x<=1000000"),
        id="gen-n-huge",
    ),
    pytest.param(_args("generate", "-n", 4, "-o", _out("x.jpg"), fragment=".png"), id="gen-jpg"),
    pytest.param(_args("generate", "-n", 4, "-o", _out("x"), fragment=".npy"), id="gen-no-suffix"),
    pytest.param(
        _args("generate", "-n", 4, "-o", _out("missing/x.png"), fragment="does not exist"), id="gen-missing-dir"
    ),
    pytest.param(
        _args("generate", "-n", 4, "-o", _out("missing/x.npy"), fragment="does not exist"), id="gen-missing-dir-npy"
    ),
    pytest.param(
        _args("generate", "--model", "nonexistent", "-o", _out("x.png"), fragment="nonexistent"), id="gen-model-missing"
    ),
    pytest.param(
        _args("generate", "--provider", "bogus", "-o", _out("x.png"), fragment="bogus"), id="gen-provider-bogus"
    ),
    pytest.param(
        _args(
            "generate",
            "--provider",
            "cuda",
            "--strict",
            "-o",
            _out("x.png"),
            fragment="CUDAExecutionProvider",
            needs=_no_cuda,
        ),
        id="gen-cuda-strict",
    ),
    pytest.param(_tampered, id="gen-tampered-model"),
    pytest.param(_bad_json, id="gen-malformed-model-json"),
    pytest.param(_missing_onnx, id="gen-missing-onnx"),
    pytest.param(_args("info", "--model", "nonexistent", fragment="nonexistent"), id="info-model-missing"),
    pytest.param(_args("info", "--provider", "bogus", fragment="bogus"), id="info-provider-bogus"),
    pytest.param(_args("reconstruct", _png_input, "-o", _out("r.jpg"), fragment=".png"), id="rec-jpg"),
    pytest.param(
        _args("reconstruct", _png_input, "-o", _out("missing/r.png"), fragment="does not exist"), id="rec-missing-dir"
    ),
    pytest.param(
        _args("reconstruct", _png_input, "--model", "nonexistent", "-o", _out("r.png"), fragment="no model"),
        id="rec-model-missing",
    ),
    pytest.param(
        _args("reconstruct", lambda i, o: i / "nope.png", "-o", _out("r.png"), fragment="no such file"),
        id="rec-missing-input",
    ),
    pytest.param(_text_png, id="rec-text-as-png"),
    pytest.param(_big_png, id="rec-32x32-png"),
    pytest.param(_truncated_png, id="rec-truncated-png"),
    pytest.param(_png16, id="rec-16bit-png"),
    pytest.param(_npy(np.zeros((2, 32, 32), np.uint8), "must be shaped"), id="rec-npy-shape"),
    pytest.param(_npy(np.zeros((28, 28), np.uint8), "must be shaped"), id="rec-npy-single-digit"),
    pytest.param(_npy(np.zeros((0, 28, 28), np.uint8), "empty"), id="rec-npy-empty"),
    pytest.param(_npy(_nan_npy(), "NaN"), id="rec-npy-nan"),
    pytest.param(_npy(np.full((2, 28, 28), 2.0, np.float32), "[0, 1]"), id="rec-npy-out-of-range"),
    pytest.param(_npy(np.zeros((2, 28, 28), np.int64), "dtype"), id="rec-npy-int64"),
    pytest.param(_truncated_gz, id="rec-truncated-idx-gz"),
    pytest.param(_truncated_raw, id="rec-truncated-idx-raw"),
    pytest.param(_labels_idx, id="rec-labels-idx"),
    pytest.param(_unknown_file, id="rec-unknown-file"),
]


@pytest.mark.heavy
@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_are_clean_and_write_nothing(tmp_path: Path, digits: np.ndarray, case: Case) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    args, fragment = case(inp, out, digits)
    before = listing(inp)
    result = invoke(*args)
    assert_clean_failure(result, fragment)
    assert listing(out) == [], "a failed command left files behind"
    assert listing(inp) == before
    assert result.stdout == "" or not result.stdout.startswith("wrote")


def test_error_when_output_is_a_directory_name(tmp_path: Path) -> None:
    # "x.png" is an existing folder: click refuses it before any work (usage error, exit 2).
    (tmp_path / "x.png").mkdir()
    result = invoke("generate", "-n", 2, "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert listing(tmp_path) == ["x.png"]


def test_failed_generate_keeps_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    ok(invoke("generate", "-n", 4, "--seed", 0, "-o", out))
    before = out.read_bytes()
    assert_clean_failure(invoke("generate", "-n", 4, "--provider", "bogus", "-o", out))
    assert out.read_bytes() == before
    assert listing(tmp_path) == ["x.png"]


# ---------------------------------------------------------------------------------------------------------------
# missing [train] extra


@pytest.mark.parametrize(
    ("hidden", "args"),
    [
        (["torch"], ["train", "--train", TRAIN_IMAGES, "--valid", VALID_IMAGES, "--epochs", 1, "-o", "run"]),
        (["torch"], ["export", "run", "-o", "model"]),
        (["onnxscript"], ["export", "run", "-o", "model"]),
        (["onnx", "onnxscript"], ["export", "run", "-o", "model"]),
    ],
    ids=["train-no-torch", "export-no-torch", "export-no-onnxscript", "export-no-onnx"],
)
def test_missing_train_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hidden: list[str], args: list[object]
) -> None:
    monkeypatch.chdir(tmp_path)
    for module in hidden:
        # importlib.util.find_spec returns None for a module whose sys.modules entry is None.
        monkeypatch.setitem(sys.modules, module, None)
    result = invoke(*args)
    line = assert_clean_failure(result, "[train]")
    for module in hidden:
        assert module in line
    # Without torch, the hint installs PyTorch's CPU build first: plain pip would take CUDA's gigabytes.
    torch_missing = "torch" in hidden or importlib.util.find_spec("torch") is None
    assert ("download.pytorch.org/whl/cpu" in line) == torch_missing
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# train and export (need torch, onnx, onnxscript)

DATA_ARGS = ["--train", TRAIN_IMAGES, "--valid", VALID_IMAGES]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """Train one epoch through the CLI; return the run folder and the command's result."""
    out = tmp_path_factory.mktemp("cli-run") / "run"
    return out, invoke("train", *DATA_ARGS, "--epochs", 1, "-o", out)


@pytest.mark.heavy
@needs_torch
def test_train_one_epoch(cli_run: tuple[Path, Result]) -> None:
    out, result = cli_run
    ok(result)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training iwae-mix on 300 digits")  # the default preset
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch   1/1"), result.stdout
    assert "*best" in epoch_lines[0]
    assert lines[-1].startswith("done in") and "at epoch 1" in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.heavy
@needs_torch
def test_train_again_without_resume_fails(cli_run: tuple[Path, Result]) -> None:
    out, _ = cli_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = invoke("train", *DATA_ARGS, "--epochs", 1, "-o", out)
    assert_clean_failure(result, "--resume")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.heavy
@needs_torch
def test_train_resume(cli_run: tuple[Path, Result], tmp_path: Path) -> None:
    from digitvae.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(cli_run[0], run)
    result = ok(invoke("train", *DATA_ARGS, "--epochs", 2, "-o", run, "--resume"))
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch   2/2"), result.stdout
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.epoch == 2
    assert [h["epoch"] for h in ckpt.history] == [1, 2]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt"]


@needs_torch
def test_train_resume_without_run_fails(tmp_path: Path) -> None:
    result = invoke("train", *DATA_ARGS, "--epochs", 1, "-o", tmp_path / "none", "--resume")
    assert_clean_failure(result, "last.pt")
    assert listing(tmp_path) == []


@needs_torch
def test_train_bad_data_fails(tmp_path: Path) -> None:
    result = invoke(
        "train", "--train", tmp_path / "nope-images-idx3-ubyte.gz", "--valid", VALID_IMAGES, "-o", tmp_path / "run"
    )
    assert_clean_failure(result, "no such file")
    assert listing(tmp_path) == []


@pytest.mark.heavy
@needs_torch
def test_export_then_generate(cli_run: tuple[Path, Result], tmp_path: Path) -> None:
    model = tmp_path / "models" / "cli-vae"
    result = ok(invoke("export", cli_run[0], "-o", model))
    assert result.stdout.startswith("exported cli-vae to")
    assert "tolerance" in result.stdout
    files = EXPORTED_FILES
    assert sorted(p.name for p in model.iterdir()) == files
    assert listing(tmp_path / "models") == ["cli-vae", *(f"cli-vae/{name}" for name in files)]

    ok(invoke("generate", "--model", model, "-n", 12, "--seed", 0, "-o", tmp_path / "g.png"))
    with Image.open(tmp_path / "g.png") as image:
        assert image.size == grid_size(10, 2)
    ok(invoke("generate", "--model", model, "-n", 3, "--seed", 0, "-o", tmp_path / "g.npy"))
    ok(invoke("generate", "-n", 3, "--seed", 0, "-o", tmp_path / "shipped.npy"))
    mine = np.load(tmp_path / "g.npy")
    assert mine.shape == (3, 28, 28) and 0 <= mine.min() and mine.max() <= 1
    assert not np.allclose(mine, np.load(tmp_path / "shipped.npy"))  # really the exported weights

    report = json.loads(ok(invoke("info", "--json", "--model", model)).stdout)
    assert report["model"] == "cli-vae"
    assert report["manifest"]["training"]["epochs"] == 1


@pytest.mark.heavy
@needs_torch
def test_export_into_nonempty_folder_fails(cli_run: tuple[Path, Result], tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    result = invoke("export", cli_run[0], "-o", target)
    assert_clean_failure(result, "--force")
    assert listing(tmp_path) == ["taken", "taken/keep.txt"]
    assert (target / "keep.txt").read_text() == "precious"


@needs_torch
def test_export_missing_checkpoint_fails(tmp_path: Path) -> None:
    (tmp_path / "empty-run").mkdir()
    result = invoke("export", tmp_path / "empty-run", "-o", tmp_path / "model")
    assert_clean_failure(result, "best.pt")
    assert listing(tmp_path) == ["empty-run"]


@pytest.mark.heavy
@needs_torch
@pytest.mark.parametrize(
    "option", [["--lr", "0.5"], ["--latent-dim", "5"], ["--batch-size", "7"], ["--seed", "3"], ["--preset", "geron"]]
)
def test_train_resume_refuses_changed_settings(cli_run: tuple[Path, Result], tmp_path: Path, option: list[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(cli_run[0], run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = invoke("train", *DATA_ARGS, "--epochs", 2, "-o", run, "--resume", *option)
    assert_clean_failure(result, f"{option[0]} cannot change when resuming")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_reconstruct_cols_wider_than_input_matches_generate(digits: np.ndarray, tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    Image.fromarray(digits[0], mode="L").save(png)
    ok(invoke("reconstruct", png, png, png, "--cols", 5, "-o", tmp_path / "r.png"))
    ok(invoke("generate", "-n", 3, "--cols", 5, "-o", tmp_path / "g.png"))
    with Image.open(tmp_path / "r.png") as r, Image.open(tmp_path / "g.png") as g:
        assert r.size == grid_size(3, 2)
        assert g.size == grid_size(3, 1)


def test_reconstruct_npz_is_refused_clearly(digits: np.ndarray, tmp_path: Path) -> None:
    npz = tmp_path / "digits.npy"
    with open(npz, "wb") as fh:
        np.savez(fh, digits=digits[:2])
    result = invoke("reconstruct", npz, "-o", tmp_path / "out.png")
    assert_clean_failure(result, ".npz archive")
    assert listing(tmp_path) == ["digits.npy"]


def test_download_from_bad_mirror_fails_cleanly(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(b"not the real file")
    target = tmp_path / "data"
    result = invoke("data", "download", "--dir", target, "--mirror", mirror.as_uri() + "/")
    assert_clean_failure(result, "md5 mismatch")
    assert listing(target) == []
