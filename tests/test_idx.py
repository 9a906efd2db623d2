"""Tests for digitvae.runtime.digits.idx and digitvae.runtime.atomic."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from digitvae.runtime.atomic import atomic_write
from digitvae.runtime.digits.idx import (
    looks_like_idx,
    read_idx,
    read_mnist_images,
    read_mnist_labels,
    read_mnist_pair,
    write_idx,
)
from digitvae.runtime.errors import DataFormatError, InputError, OutputError

DTYPES = ["uint8", "int8", ">i2", "<i2", ">i4", "<i4", ">f4", "<f4", ">f8", "<f8"]


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _write(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5), (2, 1, 3, 2)])
def test_roundtrip_every_dtype(tmp_path: Path, dtype: str, shape: tuple[int, ...], gz: bool) -> None:
    array = _sample(dtype, shape)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(array, path)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    back = read_idx(path)
    assert back.shape == shape
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    assert back.dtype.isnative
    assert back.flags.writeable
    np.testing.assert_array_equal(back, array)
    assert looks_like_idx(path)
    assert _files(tmp_path) == [path.name]


def test_compress_flag_overrides_suffix(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.uint8)
    write_idx(array, tmp_path / "plain.gz", compress=False)
    write_idx(array, tmp_path / "packed.idx", compress=True)
    assert (tmp_path / "plain.gz").read_bytes()[:4] == b"\0\0\x08\x01"
    assert (tmp_path / "packed.idx").read_bytes()[:2] == b"\x1f\x8b"
    # Detection is by magic bytes, not by name.
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed.idx"), array)


def test_known_bytes_layout(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    write_idx(np.array([[1, -2]], dtype=np.int16), path)
    assert path.read_bytes() == _header(0x0B, (1, 2)) + b"\x00\x01\xff\xfe"


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    array = _sample("uint8", (4, 28, 28))
    write_idx(array, tmp_path / "a.gz")
    write_idx(array, tmp_path / "b.gz")
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_mnist_readers_accept_good_data(tmp_path: Path) -> None:
    images = _sample("uint8", (5, 28, 28))
    labels = np.array([0, 9, 3, 3, 7], dtype=np.uint8)
    write_idx(images, tmp_path / "img.gz")
    write_idx(labels, tmp_path / "lab.gz")
    got_images, got_labels = read_mnist_pair(tmp_path / "img.gz", tmp_path / "lab.gz")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert read_mnist_images(tmp_path / "img.gz").shape == (5, 28, 28)
    assert read_mnist_labels(tmp_path / "lab.gz").dtype == np.uint8


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "file is empty"),
        (b"\x00\x00\x08", "shorter than the header"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "shorter than the header"),
        (b"\x89PNG\r\n\x1a\n", "bad magic bytes 89 50 4e 47"),
        (_header(0x07, (2,)) + b"\0\0", "unknown dtype code 0x07"),
        (b"\x00\x00\x08\x00", "ndim 0 is not allowed"),
        (b"\x00\x00\x08\x05" + b"\0" * 20, "ndim 5 is not allowed"),
        (_header(0x0C, (2, 3)) + b"\0" * 23, "expected 24 bytes of data (shape 2x3, int32), found 23"),
        (_header(0x08, (2, 3)) + b"\0" * 6 + b"xyz", "trailing bytes"),
    ],
    ids=["empty", "short-magic", "short-dims", "magic", "dtype", "ndim0", "ndim5", "truncated", "trailing"],
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_malformed_files_are_rejected(tmp_path: Path, content: bytes, phrase: str, gz: bool) -> None:
    path = _write(tmp_path / "bad.idx", content, gz=gz)
    with pytest.raises(DataFormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert phrase in message
    assert str(path) in message


def test_messages_say_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"expected 00 00 <dtype code> <ndim>"):
        read_idx(_write(tmp_path / "m", b"PK\x03\x04"))
    with pytest.raises(DataFormatError, match=r"0x08 \(uint8\).*0x0E \(float64\)"):
        read_idx(_write(tmp_path / "d", _header(0x0A, (1,)) + b"\0"))
    with pytest.raises(DataFormatError, match=r"must be 1\.\.4"):
        read_idx(_write(tmp_path / "n", b"\0\0\x08\x09"))


def test_trailing_byte_count_is_reported_for_raw_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.idx", _header(0x08, (4,)) + b"\0" * 4 + b"\1" * 5)
    with pytest.raises(DataFormatError, match="5 trailing bytes"):
        read_idx(path)


def test_declared_size_over_limit_fails_before_reading(tmp_path: Path) -> None:
    # A 2**31-byte declaration in a tiny file: must fail on size, not on truncation.
    path = _write(tmp_path / "huge.idx", _header(0x08, (2**15, 2**16)) + b"\0" * 10)
    with pytest.raises(DataFormatError, match="exceeds max_bytes") as info:
        read_idx(path, max_bytes=1024)
    assert "truncated" not in str(info.value)
    assert "2147483648" in str(info.value)
    # Same with the default limit (1 GiB).
    with pytest.raises(DataFormatError, match="exceeds max_bytes"):
        read_idx(path)


def test_gzip_bomb_is_refused_without_decompressing(tmp_path: Path) -> None:
    # 16 MiB of zeros compresses to a few KB; a 1 KiB limit must stop at the header.
    payload = _header(0x08, (16, 1024, 1024)) + bytes(16 << 20)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(payload, compresslevel=1))
    with pytest.raises(DataFormatError, match="exceeds max_bytes"):
        read_idx(path, max_bytes=1024)


def test_gzip_trailing_flood_stops_after_one_extra_byte(tmp_path: Path) -> None:
    path = tmp_path / "flood.gz"
    path.write_bytes(gzip.compress(_header(0x08, (2,)) + b"\1\2" + bytes(32 << 20), compresslevel=1))
    with pytest.raises(DataFormatError, match="trailing bytes"):
        read_idx(path)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage-after"])
def test_corrupt_gzip_is_rejected(tmp_path: Path, damage: str) -> None:
    blob = bytearray(gzip.compress(_header(0x08, (64,)) + bytes(range(64))))
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[-6] ^= 0xFF  # inside the CRC32 trailer
    else:
        blob += b"not gzip"
    path = _write(tmp_path / "c.gz", bytes(blob))
    with pytest.raises(DataFormatError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no such file"):
        read_idx(tmp_path / "absent.idx")
    with pytest.raises(DataFormatError, match="is a directory"):
        read_idx(tmp_path)


def test_looks_like_idx(tmp_path: Path) -> None:
    write_idx(np.zeros((2, 2), np.float32), tmp_path / "ok.gz")
    assert looks_like_idx(tmp_path / "ok.gz")
    assert not looks_like_idx(tmp_path / "absent")
    assert not looks_like_idx(tmp_path)
    assert not looks_like_idx(_write(tmp_path / "empty", b""))
    assert not looks_like_idx(_write(tmp_path / "text", b"hello world"))
    assert not looks_like_idx(_write(tmp_path / "dtype", b"\0\0\x07\x01"))
    assert not looks_like_idx(_write(tmp_path / "ndim", b"\0\0\x08\x05"))
    assert not looks_like_idx(_write(tmp_path / "badgz", b"\x1f\x8b\x08\x00garbage"))


def test_empty_dimension_roundtrips(tmp_path: Path) -> None:
    write_idx(np.zeros((0, 3), np.int32), tmp_path / "e.idx")
    assert read_idx(tmp_path / "e.idx").shape == (0, 3)


def test_images_and_labels_count_mismatch(tmp_path: Path) -> None:
    write_idx(np.zeros((3, 28, 28), np.uint8), tmp_path / "img")
    write_idx(np.zeros(4, np.uint8), tmp_path / "lab")
    with pytest.raises(DataFormatError, match="count mismatch") as info:
        read_mnist_pair(tmp_path / "img", tmp_path / "lab")
    message = str(info.value)
    assert "3 images" in message and "4 labels" in message
    assert str(tmp_path / "img") in message and str(tmp_path / "lab") in message


def test_label_value_out_of_range(tmp_path: Path) -> None:
    write_idx(np.array([1, 2, 10, 255], np.uint8), tmp_path / "lab")
    with pytest.raises(DataFormatError, match=r"label value 10 at index 2 \(2 bad labels"):
        read_mnist_labels(tmp_path / "lab")


@pytest.mark.parametrize(
    ("array", "phrase"),
    [
        (np.zeros((2, 27, 28), np.uint8), "shape [2, 27, 28]"),
        (np.zeros((2, 28, 28), np.float32), "dtype float32"),
        (np.zeros((28, 28), np.uint8), "shape [28, 28]"),
        (np.zeros((0, 28, 28), np.uint8), "N >= 1"),
    ],
)
def test_wrong_image_shape_or_dtype(tmp_path: Path, array: np.ndarray, phrase: str) -> None:
    write_idx(array, tmp_path / "img")
    with pytest.raises(DataFormatError, match="not MNIST images") as info:
        read_mnist_images(tmp_path / "img")
    assert phrase in str(info.value)
    assert "expected dtype uint8 and shape [N, 28, 28]" in str(info.value)


def test_labels_must_be_uint8_vector(tmp_path: Path) -> None:
    write_idx(np.zeros((2, 2), np.uint8), tmp_path / "lab")
    with pytest.raises(DataFormatError, match=r"not MNIST labels: found dtype uint8, shape \[2, 2\]"):
        read_mnist_labels(tmp_path / "lab")


def test_write_into_missing_directory_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist") as info:
        write_idx(np.zeros(3, np.uint8), tmp_path / "nope" / "x.idx")
    assert str(tmp_path / "nope") in str(info.value)
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "array", [np.zeros(3, np.int64), np.zeros(3, np.bool_), np.zeros(3, np.uint16), np.zeros((1,) * 5, np.uint8)]
)
def test_write_rejects_unstorable_arrays(tmp_path: Path, array: np.ndarray) -> None:
    with pytest.raises(InputError):
        write_idx(array, tmp_path / "x.idx")
    assert _files(tmp_path) == []


def test_failed_write_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write(b"new partial")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert _files(tmp_path) == ["keep.bin"]


def test_atomic_write_replaces_and_respects_umask(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    with atomic_write(target, "w") as handle:
        handle.write("héllo")
    assert target.read_text(encoding="utf-8") == "héllo"
    assert _files(tmp_path) == ["t.txt"]
    old = os.umask(0o022)
    os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o666 & ~old


def test_atomic_write_errors(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="existing directory"):
        with atomic_write(tmp_path):
            pass
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="not a directory"):
        with atomic_write(tmp_path / "file" / "child"):
            pass
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "x", "ab"):
            pass
    assert _files(tmp_path) == ["file"]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_a_labels_fifo_is_refused_not_waited_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from digitvae.runtime import DataFormatError
    from digitvae.runtime.digits.idx import read_mnist_labels

    os.mkfifo(tmp_path / "labels-idx1-ubyte")
    with pytest.raises(DataFormatError, match="not a regular file"):
        read_mnist_labels(tmp_path / "labels-idx1-ubyte")
