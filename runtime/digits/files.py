"""Digit files in and out: PNG, npy and IDX readers; PNG grid and npy writers (atomic).

Pillow reads PNG files; PNG output is encoded here with zlib, so writing needs no pillow.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..arrays import IMAGE_SIDE, as_images
from ..atomic import atomic_write
from ..errors import DataFormatError, InputError, OutputError, PictureError
from .datadir import download_hint

OUTPUT_KINDS = (".png", ".npy")
_GAP = 2  # pixels between digits in a grid
_GAP_VALUE = 48  # dark grey, so black digit borders stay visible
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def output_kind(path: str | os.PathLike[str]) -> str:
    """Return ".png" or ".npy" for an output path, or raise OutputError if it cannot be written there.

    Checked before any work: the suffix, the folder, and a name short enough for the file system
    together with the temporary name it is first written under.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in OUTPUT_KINDS:
        raise OutputError(f"{path}: output must end in .png (image grid) or .npy (float32 [N,28,28] array)")
    folder = target.parent
    if "\0" in str(target):
        raise OutputError(f"cannot write {str(target)!r}: a file name cannot hold a NUL byte")
    try:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"cannot write {path}: {folder} is not a directory")
        if not folder.is_dir():
            raise OutputError(f"cannot write {path}: folder {folder} does not exist")
    except OSError as exc:  # a folder name too long for the file system
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        name_max = 255
    if len(os.fsencode(target.name)) + _TEMP_NAME_EXTRA > name_max:
        raise OutputError(f"cannot write {path}: the file name is longer than this file system allows")
    return suffix


#: What a temporary name adds to the output's name: "." before, ".<12 hex digits>.tmp" after.
_TEMP_NAME_EXTRA = 18


def read_png(path: Path) -> np.ndarray:
    """Read one 28x28 digit PNG (8-bit grey, palette or RGB/RGBA) as uint8 [28,28]."""
    from .pictures import open_image

    with open_image(path, "a huge image; digit PNGs must be 28x28 pixels") as image:
        if image.format != "PNG":
            raise PictureError(f"{path}: not a PNG file (found {image.format})")
        if image.size != (IMAGE_SIDE, IMAGE_SIDE):
            raise PictureError(f"{path}: digit PNGs must be 28x28 pixels, got {image.size[0]}x{image.size[1]}")
        if image.mode not in ("L", "P", "RGB", "RGBA", "LA", "1"):
            raise DataFormatError(
                f"{path}: PNG mode {image.mode} is not supported; use 8-bit greyscale (L), palette or RGB"
            )
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def read_npy(path: Path) -> np.ndarray:
    """Read an .npy array of digits (uint8 0-255 or float 0-1) as float32 [N,28,28]."""
    _check_npy_header(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFormatError(f"{path}: not a readable .npy array: {exc}") from None
    try:
        return as_images(array).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    except InputError as exc:
        # One picture: grey [H,W] (not [N,784]) or colour [H,W,3|4].
        picture = (array.ndim == 2 and array.shape[1] != IMAGE_SIDE * IMAGE_SIDE) or (
            array.ndim == 3 and array.shape[2] in (3, 4)
        )
        raise (PictureError if picture else DataFormatError)(f"{path}: {exc}") from None


def _check_npy_header(path: Path) -> None:
    """Refuse .npz archives and arrays too large to be digits, before any data is allocated."""
    from ..arrays import IMAGE_PIXELS, MAX_COUNT
    from .pictures import npy_shape

    shape = npy_shape(path)
    if int(np.prod(shape, dtype=np.float64)) > MAX_COUNT * IMAGE_PIXELS:
        raise DataFormatError(f"{path}: holds an array of shape {list(shape)}, more than {MAX_COUNT:,} digits")


def read_digits(paths: Sequence[str | os.PathLike[str]], limit: int | None = None, prepare: bool = False) -> np.ndarray:
    """Read digits from PNG files, .npy arrays and IDX files as one float32 [N,28,28] batch.

    With `prepare`, each file holds pictures of digits (any size; JPEG too), each made
    MNIST-style by prepare_digit (see read_digit_files).
    """
    batches = read_digit_files(paths, prepare, limit)
    if not batches:
        raise InputError("no input files given")
    digits = np.concatenate(batches).astype(np.float32, copy=False)
    return digits[:limit] if limit is not None else digits


def read_digit_files(
    paths: Sequence[str | os.PathLike[str]], prepare: bool = False, limit: int | None = None
) -> list[np.ndarray]:
    """Read each PNG, .npy or IDX file as its own float32 [n,28,28] batch.

    With `prepare`, PNG and JPEG files of any size hold one picture each, .npy files one picture
    or a stack of grey ones, IDX files digits; each goes through prepare_digit, the first `limit`
    of them only (the batches past the limit are empty).
    """
    from .idx import looks_like_idx, read_mnist_images

    batches: list[np.ndarray] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise DataFormatError(f"{path}: no such file{download_hint(path)}")
        if prepare:
            from .pictures import read_prepared

            left = None if limit is None else max(0, limit - sum(len(b) for b in batches))
            batches.append(read_prepared(path, left))
            continue
        suffix = path.suffix.lower()
        if suffix == ".png":
            batches.append(read_png(path)[None].astype(np.float32) / 255.0)
        elif suffix == ".npy":
            batches.append(read_npy(path))
        elif looks_like_idx(path):
            batches.append(read_mnist_images(path).astype(np.float32) / 255.0)
        else:
            error = PictureError if suffix in (".jpg", ".jpeg") else DataFormatError
            raise error(f"{path}: not a digit file; give PNG (28x28), .npy or IDX (idx3-ubyte[.gz]) files")
    return batches


def looks_inverted(digits: np.ndarray) -> bool:
    """Tell whether float digits [N,28,28] look like dark ink on light paper (MNIST is light ink on black).

    Their border (the outer two pixels, blank in MNIST) is mostly bright, or so is their mean pixel.
    """
    if not len(digits):
        return False
    ring = np.ones((IMAGE_SIDE, IMAGE_SIDE), bool)
    ring[2:-2, 2:-2] = False
    border = digits[:, ring]
    return bool(np.mean(border > 0.5) > 0.5 or np.mean(digits) > 0.5)


#: Largest PNG written, in pixels: what Pillow still opens without a decompression-bomb warning.
MAX_PNG_PIXELS = 89_478_485


def check_grid_size(count: int, cols: int, scale: int, path: str | os.PathLike[str], pairs: bool = False) -> None:
    """Refuse, before any work, a PNG grid of `count` digits too large to write or view (OutputError).

    `pairs` counts a row of reconstructions under each row of digits.
    """
    cols = max(1, min(cols, count))
    rows = math.ceil(count / cols) * (2 if pairs else 1)
    step = IMAGE_SIDE + _GAP
    height, width = (rows * step - _GAP) * scale, (cols * step - _GAP) * scale
    if height * width > MAX_PNG_PIXELS:
        raise OutputError(
            f"{path}: a grid of {count:,} digits at scale {scale} would be {width:,} x {height:,} pixels, more than "
            f"the {MAX_PNG_PIXELS:,} a PNG may have here; write fewer digits, a smaller scale, or an .npy file"
        )


def tile(images: np.ndarray, cols: int) -> np.ndarray:
    """Lay out float digits [N,28,28] in [0,1] as one uint8 greyscale grid."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    step = IMAGE_SIDE + _GAP
    grid = np.full((rows * step - _GAP, cols * step - _GAP), _GAP_VALUE, dtype=np.uint8)
    pixels = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    for i, digit in enumerate(pixels):
        r, c = divmod(i, cols)
        grid[r * step : r * step + IMAGE_SIDE, c * step : c * step + IMAGE_SIDE] = digit
    return grid


def pair_rows(originals: np.ndarray, reconstructions: np.ndarray, cols: int) -> np.ndarray:
    """Interleave rows so that each row of originals sits above its reconstructions."""
    rows: list[np.ndarray] = []
    blank = np.zeros((cols, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    for start in range(0, len(originals), cols):
        for source in (originals, reconstructions):
            row = source[start : start + cols]
            rows.append(np.concatenate([row, blank[: cols - len(row)]]) if len(row) < cols else row)
    return np.concatenate(rows)


def default_cols(n: int) -> int:
    """Return a pleasant column count for n digits: 10 for 10 or more, else n."""
    return min(n, 10)


def encode_png(grid: np.ndarray) -> bytes:
    """Encode a uint8 greyscale array [H, W] as PNG bytes (8-bit, colour type 0)."""
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    if grid.ndim != 2 or 0 in grid.shape:
        raise InputError(f"a PNG grid must be a non-empty 2-D uint8 array, got shape {list(grid.shape)}")
    height, width = grid.shape
    # Filter "Up" (2) on every row: digit grids repeat rows (scaling, blank gaps), which it turns
    # into runs of zeros that deflate compresses well; the row above the first counts as zeros.
    up = np.diff(grid, axis=0, prepend=np.zeros((1, width), np.uint8))
    rows = np.empty((height, width + 1), np.uint8)
    rows[:, 0] = 2
    rows[:, 1:] = up
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(grid: np.ndarray, path: str | os.PathLike[str], scale: int = 1) -> None:
    """Write a uint8 greyscale grid as a PNG, enlarged `scale` times, atomically."""
    # Written without pillow: importing it costs more start-up time than the whole generation.
    if grid.size * scale * scale > MAX_PNG_PIXELS:
        raise OutputError(
            f"{path}: a {grid.shape[1]:,} x {grid.shape[0]:,} grid at scale {scale} is more than the "
            f"{MAX_PNG_PIXELS:,} pixels a PNG may have here; write fewer digits, a smaller scale, or an .npy file"
        )
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    data = encode_png(grid)
    with atomic_write(path) as fh:
        fh.write(data)


def write_npy(images: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write float32 digits [N,28,28] as an .npy file, atomically."""
    with atomic_write(path) as fh:
        np.save(fh, np.asarray(images, dtype=np.float32), allow_pickle=False)


def write_npy_blocks(blocks: Iterable[np.ndarray], count: int, path: str | os.PathLike[str]) -> None:
    """Write `count` float32 digits that arrive in blocks [n,28,28] as one .npy file, atomically.

    Only one block is in memory at a time; the file is the same as write_npy's of them all.
    """
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
        "fortran_order": False,
        "shape": (count, IMAGE_SIDE, IMAGE_SIDE),
    }
    written = 0
    with atomic_write(path) as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for block in blocks:
            data = np.ascontiguousarray(block, dtype=np.float32)
            fh.write(data.data)
            written += len(data)
        if written != count:
            raise OutputError(f"cannot write {path}: {written} digits arrived, {count} were announced")
