"""Writing outputs: names too long, links, directories, a full disk, read-only files and PNG grids too large to view."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_clean_failure, invoke, ok

from digitvae.runtime import DigitVAE, OutputError
from digitvae.runtime.digits.files import write_npy, write_png


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


def test_an_output_that_is_a_directory_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    assert_clean_failure(invoke("generate", "-n", 2, "-o", tmp_path / "x.png"), "is a directory")


def test_a_write_failure_of_the_disk_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert_clean_failure(invoke("generate", "-n", 3, "-o", tmp_path / "x.npy"), "no space left")
    assert list(tmp_path.iterdir()) == []


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


def test_a_full_disk_is_an_output_error_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import errno

    from digitvae.runtime import OutputError, atomic
    from digitvae.runtime.digits.files import write_npy

    target = tmp_path / "digits.npy"
    target.write_bytes(b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_npy(np.zeros((2, 28, 28), np.float32), target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["digits.npy"]


def test_a_read_only_output_is_refused_not_replaced(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from helpers import assert_clean_failure, invoke

    target = tmp_path / "keep.png"
    target.write_bytes(b"mine")
    target.chmod(0o400)
    assert_clean_failure(invoke("generate", "-n", 2, "-o", target), "read-only")
    assert target.read_bytes() == b"mine" and oct(target.stat().st_mode & 0o777) == "0o400"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]
