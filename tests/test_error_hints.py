"""Errors and warnings that say what to do next: where MNIST comes from, --prepare, accepted formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_clean_failure, copy_shipped_model, invoke, ok, write_png
from mnist_files import VALID_IMAGES
from PIL import Image

from digitvae.runtime.errors import DataFormatError

DOWNLOAD = "digitvae data download"


@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte"])
def test_a_missing_mnist_file_points_to_data_download(tmp_path: Path, name: str) -> None:
    line = assert_clean_failure(invoke("reconstruct", tmp_path / name, "-o", tmp_path / "out.png"), "no such file")
    assert DOWNLOAD in line


def test_a_missing_file_in_the_data_folder_points_to_data_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITVAE_DATA", str(tmp_path / "mnist"))
    line = assert_clean_failure(invoke("evaluate", tmp_path / "mnist" / "digits.idx"), "no such file")
    assert DOWNLOAD in line and str(tmp_path / "mnist") in line


def test_another_missing_file_gets_no_download_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITVAE_DATA", str(tmp_path / "mnist"))
    line = assert_clean_failure(invoke("reconstruct", tmp_path / "seven.png", "-o", tmp_path / "out.png"))
    assert "no such file" in line and DOWNLOAD not in line


def test_a_missing_mnist_file_for_prior_fit_points_to_data_download(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "model")
    result = invoke("prior", "fit", model, "--data", tmp_path / "train-images-idx3-ubyte.gz")
    if "not installed" in result.stderr:
        pytest.skip("prior fit needs the prior extra")
    assert DOWNLOAD in assert_clean_failure(result, "no such file")


@pytest.mark.heavy
@pytest.mark.parametrize("existed", [False, True])
def test_an_offline_download_leaves_no_folder_it_created(tmp_path: Path, existed: bool) -> None:
    target = tmp_path / "new" / "mnist"
    if existed:
        target.mkdir(parents=True)
    result = invoke("data", "download", "--dir", target, "--mirror", "http://127.0.0.1:9/")
    assert_clean_failure(result, "could not download")
    if existed:
        assert target.is_dir() and not any(target.iterdir())
    else:
        assert not (tmp_path / "new").exists()


def _picture(path: Path, size: tuple[int, int], ink: int = 0, paper: int = 255) -> Path:
    """Save a picture of a stroke (dark ink on light paper by default) as PNG or JPEG, by the suffix."""
    pixels = np.full((size[1], size[0]), paper, np.uint8)
    pixels[size[1] // 4 : 3 * size[1] // 4, size[0] // 2 - size[0] // 10 : size[0] // 2 + size[0] // 10] = ink
    Image.fromarray(pixels).save(path)
    return path


def _reading(command: str, picture: Path, tmp_path: Path) -> list[object]:
    """A command line of a command that reads digit files and has --prepare, reading `picture`."""
    out = tmp_path / "out.png"
    if command == "calibrate":
        model = tmp_path / "model"
        return ["calibrate", model if model.is_dir() else copy_shipped_model(model), picture, "--no-reference"]
    return {
        "reconstruct": ["reconstruct", picture, "-o", out],
        "evaluate": ["evaluate", picture],
        "score": ["score", picture],
        "interpolate": ["interpolate", picture, picture, "-o", out],
        "manifold": ["manifold", "-o", out, *["--data", picture] * 3],  # a plane needs three codes
    }[command]


COMMANDS = ["reconstruct", "evaluate", "score", "calibrate", "interpolate", "manifold"]


@pytest.mark.heavy
@pytest.mark.parametrize("command", COMMANDS)
def test_a_large_png_is_pointed_to_prepare(tmp_path: Path, command: str) -> None:
    picture = _picture(tmp_path / "three.png", (400, 500))
    line = assert_clean_failure(invoke(*_reading(command, picture, tmp_path)), "must be 28x28")
    assert "--prepare" in line
    prepared = invoke(*_reading(command, picture, tmp_path), "--prepare")
    if command == "calibrate":  # one digit is read, and is too few to calibrate on
        assert_clean_failure(prepared, "at least 100 validation digits")
    else:
        ok(prepared)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_jpeg_is_pointed_to_prepare(tmp_path: Path, command: str) -> None:
    picture = _picture(tmp_path / "three.jpg", (120, 90))
    line = assert_clean_failure(invoke(*_reading(command, picture, tmp_path)), "not a digit file")
    assert "--prepare" in line


def test_a_picture_in_an_npy_file_is_pointed_to_prepare(tmp_path: Path) -> None:
    np.save(tmp_path / "photo.npy", np.zeros((60, 40, 3), np.uint8))
    assert "--prepare" in assert_clean_failure(invoke("evaluate", tmp_path / "photo.npy"))


def test_other_unreadable_files_are_not_pointed_to_prepare(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("seven")
    assert "--prepare" not in assert_clean_failure(invoke("evaluate", tmp_path / "notes.txt"))


@pytest.mark.heavy
@pytest.mark.parametrize("command", COMMANDS)
def test_dark_ink_on_light_paper_is_read_with_a_warning(tmp_path: Path, command: str, digits: np.ndarray) -> None:
    picture = _picture(tmp_path / "three.png", (28, 28))
    if command == "calibrate":  # which needs 100 digits
        picture = tmp_path / "inverted.npy"
        np.save(picture, 255 - digits[:100])
    result = ok(invoke(*_reading(command, picture, tmp_path)))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "light paper" in warnings[0] and "--prepare" in warnings[0]


def test_light_ink_on_black_gets_no_warning(tmp_path: Path, digits: np.ndarray) -> None:
    picture = _picture(tmp_path / "three.png", (28, 28), ink=255, paper=0)
    write_png(digits[0], tmp_path / "mnist.png")
    for path in (picture, tmp_path / "mnist.png", VALID_IMAGES):
        result = ok(invoke("reconstruct", path, "-o", tmp_path / "out.png"))
        assert "warning:" not in result.stderr, result.stderr


def test_inverted_mnist_is_warned_of_once_for_many_files(tmp_path: Path, digits: np.ndarray) -> None:
    paths = [write_png(255 - digits[i], tmp_path / f"{i}.png") for i in range(3)]
    result = ok(invoke("evaluate", *paths))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "2 more files" in warnings[0], result.stderr


def test_prior_fit_on_a_png_names_the_accepted_formats(tmp_path: Path, digits: np.ndarray) -> None:
    model = copy_shipped_model(tmp_path / "model")
    three = write_png(digits[0], tmp_path / "three.png")
    result = invoke("prior", "fit", model, "--data", three, "--no-labels")
    if "not installed" in result.stderr:
        pytest.skip("prior fit needs the prior extra")
    line = assert_clean_failure(result, "not an IDX file")
    assert "IDX files, optionally gzip-compressed (.gz)" in line


def test_the_idx_reader_names_the_accepted_formats(tmp_path: Path, digits: np.ndarray) -> None:
    from digitvae.runtime.digits.idx import read_mnist_images

    with pytest.raises(DataFormatError, match=r"not an IDX file \(give IDX files, optionally gzip-compressed"):
        read_mnist_images(write_png(digits[0], tmp_path / "three.png"))


def test_train_help_points_to_the_presets_in_docs() -> None:
    text = " ".join(ok(invoke("train", "--help")).stdout.split())
    assert "(see docs/training.md)" in text and "README" not in text
    assert "## Presets" in (Path(__file__).parents[1] / "docs" / "training.md").read_text(encoding="utf-8")


def test_a_grid_too_large_at_the_default_scale_is_refused_before_any_work(tmp_path: Path) -> None:
    # 30,000 digits in 10 columns: 596 x 179,996 pixels at scale 2, more than a PNG may have.
    line = assert_clean_failure(invoke("generate", "-n", 30_000, "-o", tmp_path / "x.png"), "at scale 2")
    assert "a smaller scale" in line
    assert list(tmp_path.iterdir()) == []
