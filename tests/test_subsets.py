"""The train5k and valid5k subsets: made from the official MNIST files, checked by content, written whole or not at all."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from digitvae.runtime.digits.idx import idx_bytes, read_idx, write_idx
from digitvae.runtime.errors import DataFormatError
from digitvae.train import subsets
from digitvae.train.subsets import fingerprints, make_subsets, select_train5k, stored_train5k

FIXTURE = Path(__file__).parent / "data" / "mnist"


def test_the_stored_subset_is_500_digits_of_each_class_all_different() -> None:
    keys, labels = stored_train5k()
    assert keys.shape == labels.shape == (5000,)
    assert np.bincount(labels, minlength=10).tolist() == [500] * 10
    assert len(set(keys.tolist())) == 5000


def test_the_stored_fingerprints_are_those_of_real_mnist_digits() -> None:
    # The fixture holds the first 300 digits of train5k, read from the files the models were trained on.
    images = read_idx(FIXTURE / "train-images-idx3-ubyte.gz")
    labels = read_idx(FIXTURE / "train-labels-idx1-ubyte.gz")
    keys, stored_labels = stored_train5k()
    assert fingerprints(images).tolist() == keys[:300].tolist()
    assert labels.tolist() == stored_labels[:300].tolist()


def _official_like(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int = 40
) -> tuple[Path, np.ndarray, np.ndarray]:
    """Make a folder of 'official' files that hold a small subset among other digits, and record that subset."""
    images = read_idx(FIXTURE / "train-images-idx3-ubyte.gz")
    labels = read_idx(FIXTURE / "train-labels-idx1-ubyte.gz")
    order = np.random.default_rng(0).permutation(len(images))
    wanted = order[:count]
    monkeypatch.setattr(subsets, "stored_train5k", lambda: (fingerprints(images[wanted]), labels[wanted]))
    tests = read_idx(FIXTURE / "t10k-images-idx3-ubyte.gz"), read_idx(FIXTURE / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setattr(subsets, "SUBSET_SIZE", count)
    monkeypatch.setattr(
        subsets,
        "CONTENTS",
        {
            "train5k": tuple(hashlib.sha256(idx_bytes(a)).hexdigest() for a in (images[wanted], labels[wanted])),
            "valid5k": tuple(hashlib.sha256(idx_bytes(a[:count])).hexdigest() for a in tests),
        },
    )
    source = tmp_path / "official"
    source.mkdir()
    write_idx(images, source / "train-images-idx3-ubyte.gz")
    write_idx(labels, source / "train-labels-idx1-ubyte.gz")
    write_idx(tests[0], source / "t10k-images-idx3-ubyte.gz")
    write_idx(tests[1], source / "t10k-labels-idx1-ubyte.gz")
    return source, images[wanted], labels[wanted]


def test_the_subset_is_found_in_order_among_other_digits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, images, labels = _official_like(tmp_path, monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    paths = make_subsets(source, out)
    assert (
        sorted(p.name for p in out.iterdir())
        == sorted(p.name for p in paths)
        == [
            "train5k-images-idx3-ubyte.gz",
            "train5k-labels-idx1-ubyte.gz",
            "valid5k-images-idx3-ubyte.gz",
            "valid5k-labels-idx1-ubyte.gz",
        ]
    )
    np.testing.assert_array_equal(read_idx(out / "train5k-images-idx3-ubyte.gz"), images)
    np.testing.assert_array_equal(read_idx(out / "train5k-labels-idx1-ubyte.gz"), labels)
    assert len(read_idx(out / "valid5k-images-idx3-ubyte.gz")) == 40


def test_files_that_lack_a_digit_are_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, images, _ = _official_like(tmp_path, monkeypatch)
    all_images = read_idx(source / "train-images-idx3-ubyte.gz")
    missing = np.flatnonzero((all_images == images[5]).all(axis=(1, 2)))
    write_idx(np.delete(all_images, missing, axis=0), source / "train-images-idx3-ubyte.gz")
    all_labels = read_idx(source / "train-labels-idx1-ubyte.gz")
    write_idx(np.delete(all_labels, missing), source / "train-labels-idx1-ubyte.gz")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataFormatError, match="5 of 40 train5k digits found.*digitvae data download"):
        make_subsets(source, out)
    assert list(out.iterdir()) == []


def test_digits_with_other_labels_are_not_the_subset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, _, _ = _official_like(tmp_path, monkeypatch)
    labels = read_idx(source / "train-labels-idx1-ubyte.gz")
    write_idx((labels + 1) % 10, source / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataFormatError, match="0 of 40"):
        select_train5k(read_idx(source / "train-images-idx3-ubyte.gz"), read_idx(source / "train-labels-idx1-ubyte.gz"))


def test_changed_contents_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, _, _ = _official_like(tmp_path, monkeypatch)
    tests = read_idx(source / "t10k-images-idx3-ubyte.gz")
    tests[0, 14, 14] ^= 1
    write_idx(tests, source / "t10k-images-idx3-ubyte.gz")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataFormatError, match="valid5k made from these files differs"):
        make_subsets(source, out)
    assert list(out.iterdir()) == []


def test_the_files_are_gzipped_as_first_published(tmp_path: Path) -> None:
    """Level 9, the inner name, no time: the bytes whose sha256 model.json records, given the same digits."""
    labels = read_idx(FIXTURE / "train-labels-idx1-ubyte.gz")
    write_idx(labels, tmp_path / "x-labels-idx1-ubyte.gz", level=9, inner_name="x-labels-idx1-ubyte")
    data = (tmp_path / "x-labels-idx1-ubyte.gz").read_bytes()
    assert data[3] == 0x08 and data[4:8] == b"\0\0\0\0" and data[8] == 2  # FNAME set, mtime 0, best compression
    assert data[10:30] == b"x-labels-idx1-ubyte\0"


def test_the_command_writes_the_subsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from digitvae.cli.main import cli

    source, images, _ = _official_like(tmp_path, monkeypatch)
    out = tmp_path / "five-k"
    result = CliRunner().invoke(cli, ["data", "subset", "--from", str(source), "--dir", str(out)])
    assert result.exit_code == 0, result.output
    assert f"train5k and valid5k are in {out} (4 files" in result.output
    np.testing.assert_array_equal(read_idx(out / "train5k-images-idx3-ubyte.gz"), images)


def test_the_command_without_the_official_files_points_to_download_and_makes_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from digitvae.cli.main import cli

    out = tmp_path / "five-k"
    result = CliRunner().invoke(cli, ["data", "subset", "--from", str(tmp_path / "none"), "--dir", str(out)])
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte.gz: no such file" in result.output and "digitvae data download" in result.output
    assert not out.exists()


@pytest.mark.parametrize("model", ["mnist-vae", "mnist-vae-geron", "mnist-cvae", "mnist-vae-2d"])
def test_info_says_what_the_shipped_models_were_trained_on_without_naming_our_folders(model: str) -> None:
    from click.testing import CliRunner

    from digitvae.cli.main import cli

    result = CliRunner().invoke(cli, ["info", "--model", model])
    assert result.exit_code == 0, result.output
    assert "trained on   train5k-images-idx3-ubyte.gz, 5000 digits" in result.output
    assert "`digitvae data subset` makes it" in result.output
    assert "--data DIR" in result.output and "shared" not in result.output
