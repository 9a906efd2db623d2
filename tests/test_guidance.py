"""Errors and warnings that say what to do next: where MNIST comes from, --prepare, accepted formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_clean_failure, copy_shipped_model, invoke

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
