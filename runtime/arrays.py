"""Validation of the arrays callers hand the runtime: image batches, latent batches, counts."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .errors import InputError

IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
#: Largest number of digits one call may produce: 1e6 digits is 3.1 GB of float32.
MAX_COUNT = 1_000_000

_SHAPES = "[N,28,28], [N,1,28,28] or [N,784]"
#: Arrays of this many values or more are checked for finiteness by their extremes (see all_finite).
_REDUCED = 1 << 16


def _as_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, np.ma.MaskedArray):
        if np.ma.getmaskarray(value).any():
            raise InputError(
                f"{what} is a masked array with masked values; fill them (array.filled(...)) or pass a plain array"
            )
        return np.asarray(value.data)
    if type(value) is np.ndarray:
        return value
    if isinstance(value, np.ndarray):
        # np.matrix and other subclasses reshape and index differently: use the plain array they hold.
        return np.asarray(value).view(np.ndarray)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a numpy array, got {type(value).__name__} ({exc})") from None
    if array.dtype == object:
        raise InputError(f"{what} must be a numeric numpy array, got {type(value).__name__}")
    return array


def all_finite(array: np.ndarray) -> bool:
    """Return whether every value of a float array is finite (no NaN, no infinity)."""
    if array.size >= _REDUCED and array.dtype.kind == "f":
        # Large batches: the largest and the smallest value, which are NaN if any value is and
        # infinite if any is: two passes that allocate nothing, where isfinite fills a fresh array
        # with a flag per value. Not a BLAS row sum: OpenBLAS's threads spin after it, beside
        # onnxruntime's (fp32 decodes of 1,024 codes ran at half speed on two cores).
        flat = array.reshape(-1)
        return bool(np.isfinite(np.maximum.reduce(flat)) and np.isfinite(np.minimum.reduce(flat)))
    # isfinite, not a sum: a sum of huge or opposite infinite values warns (RuntimeWarning) on
    # exactly the arrays this reports; count_nonzero costs a third of ndarray.all at batch 1.
    return int(np.count_nonzero(np.isfinite(array))) == array.size


def _float32(array: np.ndarray) -> np.ndarray:
    """Return a contiguous float32 copy or view; values beyond float32's range become inf."""
    if array.dtype == np.float32:
        # Nothing can overflow, and errstate costs more than a one-digit batch's other checks.
        return np.ascontiguousarray(array)
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(array, dtype=np.float32)


def as_images(images: Any) -> np.ndarray:
    """Return a batch of digits as a contiguous float32 [N,1,28,28] array in [0,1].

    Accepts uint8 (0-255) or floating-point (0-1) arrays shaped [N,28,28], [N,1,28,28]
    or [N,784]; anything else raises InputError.
    """
    array = _as_array(images, "images")
    shape = array.shape
    if array.ndim == 2 and shape[1:] == (IMAGE_PIXELS,):
        n = shape[0]
    elif array.ndim == 3 and shape[1:] == (IMAGE_SIDE, IMAGE_SIDE):
        n = shape[0]
    elif array.ndim == 4 and shape[1:] == (1, IMAGE_SIDE, IMAGE_SIDE):
        n = shape[0]
    else:
        hint = " (for one digit, pass images[None])" if shape == (IMAGE_SIDE, IMAGE_SIDE) else ""
        raise InputError(f"images must be shaped {_SHAPES}, got {list(shape)}{hint}")
    if n == 0:
        raise InputError("images is an empty batch; pass at least one digit")
    if n > MAX_COUNT:
        # Checked before any conversion: a broadcast view of 10^8 digits costs nothing until copied.
        raise InputError(f"images holds {n:,} digits; one call takes at most {MAX_COUNT:,}: pass them in parts")
    if array.dtype == np.uint8:
        out = array.reshape(n, 1, IMAGE_SIDE, IMAGE_SIDE).astype(np.float32)
        out *= np.float32(1 / 255)
        return out
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"images must be uint8 (0-255) or float (0-1), got dtype {array.dtype}")
    out = _float32(array.reshape(n, 1, IMAGE_SIDE, IMAGE_SIDE))
    if not all_finite(out):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise InputError(
            f"images contain {bad} NaN or infinite value(s) (after conversion to float32); pixel values must be in [0, 1]"
        )
    lo, hi = float(out.min()), float(out.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(
            f"float images must be in [0, 1], got values in [{lo:g}, {hi:g}] (pass uint8 for 0-255 pixels)"
        )
    return out


def as_latents(z: Any, latent_dim: int) -> np.ndarray:
    """Return latent codes as a contiguous float32 [N,latent_dim] array of finite values."""
    array = _as_array(z, "z")
    if array.ndim != 2 or array.shape[1] != latent_dim:
        hint = " (for one code, pass z[None])" if array.shape == (latent_dim,) else ""
        raise InputError(f"z must be shaped [N,{latent_dim}] for this model, got {list(array.shape)}{hint}")
    if array.shape[0] == 0:
        raise InputError("z is an empty batch; pass at least one latent code")
    if array.shape[0] > MAX_COUNT:
        raise InputError(f"z holds {array.shape[0]:,} codes; one call takes at most {MAX_COUNT:,}: pass them in parts")
    # dtype kinds, not issubdtype: numpy files timedelta64 under np.integer.
    if array.dtype.kind not in "fiu":
        raise InputError(f"z must be a float array, got dtype {array.dtype}")
    out = _float32(array)
    if not all_finite(out):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise InputError(f"z contains {bad} NaN or infinite value(s) (after conversion to float32)")
    return out


def as_seed(seed: Any) -> int | None:
    """Return a seed for numpy's default_rng: None, or an integer in [0, 2**128)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be a non-negative integer or None, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**128:
        raise InputError(f"seed must be in [0, 2**128), got {seed}")
    return int(seed)


def as_count(n: Any, what: str = "n") -> int:
    """Return n as an int in [1, MAX_COUNT], or raise InputError."""
    if isinstance(n, bool):
        raise InputError(f"{what} must be an integer, got {n!r}")
    try:
        value = operator.index(n)
    except TypeError:
        raise InputError(f"{what} must be an integer, got {type(n).__name__} {n!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise InputError(f"{what} must be between 1 and {MAX_COUNT:,}, got {value:,}")
    return value


def as_labels(labels: Any, n: int, num_classes: int, what: str = "labels") -> np.ndarray:
    """Return class labels as an int64 [n] array of values in [0, num_classes).

    A single integer is repeated n times, so `digit=7` asks for n sevens.
    """
    array = _as_array(labels, what)
    if array.ndim == 0:
        array = np.full(n, array)
    if array.ndim != 1 or len(array) != n:
        raise InputError(f"{what} must be one integer or a [N] array with N = {n}, got shape {list(array.shape)}")
    if array.dtype.kind not in "iu":
        if not (
            np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and (array == np.round(array)).all()
        ):
            raise InputError(f"{what} must be integers in [0, {num_classes - 1}], got dtype {array.dtype}")
    if len(array) and (array.min() < 0 or array.max() >= num_classes):
        raise InputError(f"{what} must be in [0, {num_classes - 1}], got values in [{array.min():g}, {array.max():g}]")
    return np.ascontiguousarray(array, dtype=np.int64)
