"""Pictures of digits (photos, scans, drawings) read from files and made MNIST-style with prepare_digit.

Pillow reads PNG and JPEG files of any size; .npy files hold one picture or a stack of grey
ones; IDX files hold digits, each prepared like a picture.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError, InputError
from ..logs import get_logger
from .prepare import prepare_digit

logger = get_logger(__name__)

#: Largest picture read, in pixels (a 48-megapixel photo is 8000x6000).
MAX_PICTURE_PIXELS = 50_000_000
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I;16B", "I;16L")


@contextmanager
def open_image(path: Path, too_large: str) -> Iterator[Any]:
    """Open an image file with Pillow for the `with` body; any failure there is a DataFormatError.

    Pillow's decompression-bomb warning is silenced: callers check the declared size before
    anything is decoded. Its other warnings while the file is read (corrupt EXIF data, a
    truncated chunk) become one logged line naming the file, not raw lines on stderr.
    `too_large` ends the message for a file declaring more pixels than Pillow will open at all.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except UnidentifiedImageError:
        raise DataFormatError(f"{path}: not an image file PIL can read") from None
    except Image.DecompressionBombError:
        raise DataFormatError(f"{path}: declares {too_large}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot read image: {exc}") from None
    notes = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    if notes:
        logger.warning("%s: read despite: %s", path, "; ".join(notes))


def npy_shape(path: Path) -> tuple[int, ...]:
    """Return the shape an .npy file declares, reading its header only (an .npz archive is refused)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) == b"PK":
                raise DataFormatError(f"{path}: an .npz archive, not an .npy array; save one array with np.save")
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = header(fh)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise DataFormatError(f"{path}: not a readable .npy array: {exc}") from None
    return tuple(shape)


def read_picture(path: Path) -> np.ndarray:
    """Read a PNG or JPEG picture as uint8 [H,W] grey, [H,W,3] RGB or [H,W,4] RGBA, upright by its EXIF orientation."""
    from PIL import ImageOps

    with open_image(path, "more pixels than a picture may have") as image:
        if image.format not in ("PNG", "JPEG", "MPO"):
            raise DataFormatError(f"{path}: not a PNG or JPEG file (found {image.format})")
        width, height = image.size
        if width * height > MAX_PICTURE_PIXELS:
            raise DataFormatError(
                f"{path}: {width}x{height} pixels is more than the {MAX_PICTURE_PIXELS:,} a picture may have"
            )
        if image.mode not in _MODES:
            raise DataFormatError(f"{path}: image mode {image.mode} is not supported; use grey, RGB or RGBA")
        return _pixels(ImageOps.exif_transpose(image))


def _pixels(image: object) -> np.ndarray:
    """Return a Pillow image's pixels as uint8 grey, RGB or RGBA (16-bit grey scaled down)."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    mode = image.mode
    if mode.startswith("I;16"):
        return np.rint(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8)
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode in ("LA", "RGBA") or (mode == "P" and "transparency" in image.info):
        return np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _prepared(pictures: list[np.ndarray], where: str, single: bool) -> np.ndarray:
    """Prepare each picture, naming the file (and the index within a set) of one that fails."""
    digits = np.empty((len(pictures), 28, 28), np.float32)
    for i, picture in enumerate(pictures):
        try:
            digits[i] = prepare_digit(picture)
        except InputError as exc:
            name = where if single else f"{where}:{i}"
            raise InputError(f"{name}: {exc}") from None
    return digits


def read_prepared(path: Path, limit: int | None = None) -> np.ndarray:
    """Read a file of pictures and make each (the first `limit` only) an MNIST-style digit: float32 [n,28,28].

    PNG and JPEG files hold one picture; an .npy array holds one ([H,W], [H,W,3], [H,W,4]) or a
    stack of grey ones ([N,H,W]); an IDX file holds digits.
    """
    from .idx import looks_like_idx, read_mnist_images

    suffix = path.suffix.lower()
    if suffix in PICTURE_SUFFIXES:
        pictures = [read_picture(path)]
    elif suffix == ".npy":
        pictures = _npy_pictures(path)
    elif looks_like_idx(path):
        pictures = list(read_mnist_images(path))
    else:
        raise DataFormatError(f"{path}: not a picture file; give PNG, JPEG, .npy or IDX (idx3-ubyte[.gz]) files")
    return _prepared(pictures[:limit], str(path), single=len(pictures) == 1)


def _npy_pictures(path: Path) -> list[np.ndarray]:
    """Read an .npy file as a list of pictures."""
    shape = npy_shape(path)
    if int(np.prod(shape, dtype=np.float64)) > 4 * MAX_PICTURE_PIXELS:
        raise DataFormatError(f"{path}: holds an array of shape {list(shape)}, too large for pictures")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise DataFormatError(f"{path}: not a readable .npy array: {exc}") from None
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return [array]
    if array.ndim == 3:
        if len(array) == 0:
            raise DataFormatError(f"{path}: holds an empty stack of pictures (shape {list(array.shape)})")
        return list(array)
    raise DataFormatError(
        f"{path}: holds an array of shape {list(array.shape)}; pictures are [H,W], [H,W,3], [H,W,4] or a stack [N,H,W]"
    )


__all__ = ["MAX_PICTURE_PIXELS", "npy_shape", "open_image", "read_picture", "read_prepared"]
