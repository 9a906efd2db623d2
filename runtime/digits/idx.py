"""Strict reader and writer for IDX files (the MNIST format), raw or gzip-compressed."""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np

from ..atomic import atomic_write
from ..errors import DataFormatError, InputError
from ..logs import get_logger
from .datadir import download_hint

logger = get_logger(__name__)

__all__ = [
    "looks_like_idx",
    "read_idx",
    "read_mnist_images",
    "read_mnist_labels",
    "read_mnist_pair",
    "write_idx",
]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_MAX_NDIM = 4
_MNIST_SIDE = 28

# IDX dtype code -> big-endian numpy dtype, as defined by the MNIST page.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_ALLOWED_CODES = ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in _CODE_TO_DTYPE.items())
_MAGIC_FORM = "00 00 <dtype code> <ndim>"
#: What an IDX reader accepts, in words, for the error on any other file.
_ACCEPTED = "give IDX files, optionally gzip-compressed (.gz), such as MNIST's idx3-ubyte images and idx1-ubyte labels"


def _hex(data: bytes | bytearray) -> str:
    """Render bytes as space-separated hex for error messages."""
    return " ".join(f"{b:02x}" for b in data)


@contextlib.contextmanager
def _converted_errors(where: str) -> Iterator[None]:
    """Turn low-level read failures into DataFormatError naming the file."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        # gzip reports a cut-off stream as EOFError, bad deflate data as zlib.error, a bad CRC as BadGzipFile.
        raise DataFormatError(f"{where}: corrupt or truncated gzip stream ({exc})") from exc
    except OSError as exc:
        raise DataFormatError(f"{where}: cannot read file: {exc.strerror or exc}") from exc


def _read_up_to(stream: BinaryIO, n: int) -> bytearray:
    """Read at most n bytes in bounded chunks, stopping early at end of stream."""
    # Growing by chunks (instead of preallocating n) means a file that lies about its
    # size costs only as much memory as the bytes it really holds.
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _open_binary(path: str | os.PathLike[str], where: str) -> BinaryIO:
    """Open a file for reading, converting the usual failures to DataFormatError."""
    if os.path.isdir(path):
        raise DataFormatError(f"{where}: is a directory, not an IDX file")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as exc:
        raise DataFormatError(f"{where}: no such file{download_hint(path)}") from exc
    except OSError as exc:
        raise DataFormatError(f"{where}: cannot open file: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataFormatError(f"{where}: not a regular file (a FIFO, device or socket)")
    return os.fdopen(fd, "rb")


def _parse_header(stream: BinaryIO, where: str) -> tuple[np.dtype, tuple[int, ...]]:
    """Read and validate the magic and dimensions; return the big-endian dtype and shape."""
    magic = _read_up_to(stream, 4)
    if not magic:
        raise DataFormatError(f"{where}: file is empty; an IDX file starts with the 4-byte magic {_MAGIC_FORM}")
    if len(magic) < 4:
        raise DataFormatError(
            f"{where}: file is shorter than the header: found {len(magic)} bytes, "
            f"an IDX header needs at least 4 (magic {_MAGIC_FORM}) plus 4 per dimension"
        )
    if magic[0] != 0 or magic[1] != 0:
        raise DataFormatError(
            f"{where}: not an IDX file ({_ACCEPTED}): bad magic bytes {_hex(magic)}; expected {_MAGIC_FORM} "
            f"with a dtype code among {_ALLOWED_CODES} and ndim 1..{_MAX_NDIM}"
        )
    code, ndim = magic[2], magic[3]
    if code not in _CODE_TO_DTYPE:
        raise DataFormatError(f"{where}: unknown dtype code 0x{code:02X}; allowed codes are {_ALLOWED_CODES}")
    if not 1 <= ndim <= _MAX_NDIM:
        raise DataFormatError(f"{where}: ndim {ndim} is not allowed; ndim must be 1..{_MAX_NDIM}")
    raw_dims = _read_up_to(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataFormatError(
            f"{where}: file is shorter than the header: ndim {ndim} needs {4 + 4 * ndim} header bytes, "
            f"found {4 + len(raw_dims)}"
        )
    return _CODE_TO_DTYPE[code], struct.unpack(f">{ndim}I", bytes(raw_dims))


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = 1 << 30) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array, validating every field."""
    where = os.fspath(path)
    with _open_binary(path, where) as raw:
        with _converted_errors(where):
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
        if compressed:
            where = f"{where} (gzip)"
        stream: BinaryIO = cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb")) if compressed else raw
        with stream, _converted_errors(where):
            dtype, shape = _parse_header(stream, where)
            expected = math.prod(shape) * dtype.itemsize
            shape_text = "x".join(map(str, shape))
            if expected > max_bytes:
                raise DataFormatError(
                    f"{where}: declared data size {expected} bytes (shape {shape_text}, {dtype.name}) "
                    f"exceeds max_bytes={max_bytes}; refusing to read it"
                )
            if not compressed:
                # The size on disk is known, so report truncation before reading anything.
                available = os.fstat(raw.fileno()).st_size - raw.tell()
                if available < expected:
                    raise DataFormatError(
                        f"{where}: data truncated: expected {expected} bytes of data "
                        f"(shape {shape_text}, {dtype.name}), found {available}"
                    )
            data = _read_up_to(stream, expected)
            if len(data) < expected:
                raise DataFormatError(
                    f"{where}: data truncated: expected {expected} bytes of data "
                    f"(shape {shape_text}, {dtype.name}), found {len(data)}"
                )
            extra = _read_up_to(stream, 1)
            if extra:
                if not compressed:
                    count = os.fstat(raw.fileno()).st_size - raw.tell() + 1
                    detail = f"{count} trailing bytes"
                else:
                    detail = "trailing bytes"
                raise DataFormatError(
                    f"{where}: {detail} after the data; shape {shape_text} of {dtype.name} "
                    f"accounts for exactly {expected} data bytes"
                )
    try:
        array = np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError:
        # An empty array may still declare dimensions whose product numpy cannot index, e.g. 0x2**31x2**31x2.
        raise DataFormatError(f"{where}: shape {shape_text} is too large to represent, even with no data") from None
    # astype copies into native byte order; for 1-byte types it already owns a writable buffer.
    return array.astype(dtype.newbyteorder("="), copy=dtype.itemsize > 1)


def _code_for(dtype: np.dtype) -> int:
    """Return the IDX dtype code for a numpy dtype, or raise InputError."""
    for code, idx_dtype in _CODE_TO_DTYPE.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    allowed = ", ".join(dt.newbyteorder("=").name for dt in _CODE_TO_DTYPE.values())
    raise InputError(f"IDX cannot store dtype {dtype}; allowed dtypes are {allowed}")


def idx_bytes(array: np.ndarray) -> bytes:
    """Return an array's IDX encoding, header and big-endian data, uncompressed."""
    array = np.asarray(array)
    code = _code_for(array.dtype)
    if not 1 <= array.ndim <= _MAX_NDIM:
        raise InputError(f"IDX stores arrays of 1..{_MAX_NDIM} dimensions, got shape {array.shape}")
    if any(dim >= 1 << 32 for dim in array.shape):
        raise InputError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()


def write_idx(
    array: np.ndarray,
    path: str | os.PathLike[str],
    *,
    compress: bool | None = None,
    level: int = 6,
    inner_name: str = "",
) -> None:
    """Write an array as an IDX file atomically, gzip-compressed if asked or if path ends in .gz.

    A gzip member records `inner_name` (none by default) and no time: the same array gives the
    same bytes. Level 6 is zlib's default trade-off; 9 is several times slower for a few percent.
    """
    data = idx_bytes(array)
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    with atomic_write(path, "wb") as handle:
        if compress:
            with gzip.GzipFile(filename=inner_name, mode="wb", fileobj=handle, compresslevel=level, mtime=0) as gz:
                gz.write(data)
        else:
            handle.write(data)
    logger.debug(
        "wrote IDX %s: shape %s, dtype %s, compressed=%s", path, np.shape(array), np.asarray(array).dtype, compress
    )


def looks_like_idx(path: str | os.PathLike[str]) -> bool:
    """Return True if the file starts (after gunzipping) with an IDX magic of a known dtype."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(4)
            if head[:2] == _GZIP_MAGIC:
                raw.seek(0)
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    head = gz.read(4)
    except (OSError, EOFError, zlib.error, ValueError):
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in _CODE_TO_DTYPE and 1 <= head[3] <= _MAX_NDIM


def read_mnist_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Read MNIST images: a uint8 IDX array of shape [N, 28, 28] with N >= 1."""
    images = read_idx(path)
    side = _MNIST_SIDE
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (side, side) or images.shape[0] < 1:
        raise DataFormatError(
            f"{os.fspath(path)}: not MNIST images: found dtype {images.dtype}, shape {list(images.shape)}; "
            f"expected dtype uint8 and shape [N, {side}, {side}] with N >= 1"
        )
    return images


def read_mnist_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read MNIST labels: a uint8 IDX vector of N >= 1 values in 0..9."""
    labels = read_idx(path)
    if labels.dtype != np.uint8 or labels.ndim != 1 or labels.shape[0] < 1:
        raise DataFormatError(
            f"{os.fspath(path)}: not MNIST labels: found dtype {labels.dtype}, shape {list(labels.shape)}; "
            "expected dtype uint8 and shape [N] with N >= 1"
        )
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        first = int(bad[0])
        raise DataFormatError(
            f"{os.fspath(path)}: label value {int(labels[first])} at index {first} "
            f"({bad.size} bad labels in all); labels must be 0..9"
        )
    return labels


def read_mnist_pair(
    images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST images and labels and check that they hold the same number of examples."""
    images = read_mnist_images(images_path)
    labels = read_mnist_labels(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"image/label count mismatch: {os.fspath(images_path)} holds {images.shape[0]} images "
            f"but {os.fspath(labels_path)} holds {labels.shape[0]} labels; the counts must be equal"
        )
    return images, labels


def labels_beside(images_path: Path) -> Path | None:
    """Return the IDX labels file that pairs with an IDX images file, if there is one."""
    name = images_path.name
    for old, new in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1")):
        if old in name:
            stem = name.replace(old, new)
            for candidate in (stem, stem.removesuffix(".gz"), stem + ".gz"):
                path = images_path.with_name(candidate)
                if path.is_file():
                    return path
    return None
