"""Turn a picture of a handwritten digit (photo, scan, drawing) into a 28x28 MNIST-style digit.

The steps follow how MNIST itself was made, with what real pictures need on top:

1. grey: ITU-R 601-2 luma (299/587/114 per mille); RGBA is composited over white;
2. polarity: inverted when the median is above the middle of the range (dark ink, light paper);
3. locate (inkfind.py), on a copy max-pooled to at most 256 pixels a side: subtract the paper
   level interpolated between blocks (their lower quartiles, opened; uneven light), take as ink
   what lies above both Otsu's and the triangle threshold, refuse ink scattered like noise
   rather than clumped like strokes, stretch ink to 1 and paper to 0, keep the connected ink
   that is not a speck, and take its bounding box;
4. shape, on the full-resolution crop max-pooled to at most 64 pixels a side: normalise the
   stroke width (estimated as 2 * ink area / boundary pixels) by dilating thin strokes to
   MNIST's 2.6 pixels at 28x28;
5. fit: area-average into a 20x20 box, keeping the aspect ratio, and place the box in 28x28 so
   that the centre of mass lands on MNIST's mean centre.

web/src/prepare.js is the same algorithm, step for step and operation for operation, so a
browser gets the same 28x28 array (within float rounding) as Python. Every threshold is taken on
values both compute identically: integer histograms, sorts, and element-wise float64 arithmetic.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .inkfind import Ink, Located, locate, pool, stretch

#: Largest side of the crop whose strokes are measured and thickened.
SHAPE_SIDE = 64
#: MNIST's box for the digit, inside its 28x28 field.
BOX_SIDE = 20
FIELD_SIDE = 28
#: Stroke width of MNIST digits, in pixels at 28x28 (2 * area / boundary of pixels >= 0.5: 2.64 on valid5k).
STROKE_WIDTH = 2.6
#: Where MNIST's centre of mass lies on average (row, column), in pixel indices.
CENTRE = (14.0, 14.0)
_LUMA = (299.0, 587.0, 114.0)


def prepare_digit(image: np.ndarray) -> np.ndarray:
    """Turn a picture of one digit into an MNIST-style float32 [28,28] digit in [0,1].

    `image` is [H,W] grey, [H,W,3] RGB or [H,W,4] RGBA (composited over white), uint8 or
    float in [0,1]; dark ink on light paper and light ink on dark both work.
    """
    ink = Ink(to_grey(image))
    return _fit(_shape(ink, locate(ink)))


def to_grey(image: np.ndarray) -> np.ndarray:
    """Return the picture as float32 [H,W] grey in [0,1] (601 luma; RGBA over white), or raise InputError."""
    try:
        array = np.asarray(image)
    except (ValueError, TypeError) as exc:  # ragged nested lists, objects numpy cannot make an array of
        raise InputError(f"a picture must be a rectangular array of numbers: {exc}") from None
    if array.dtype != np.uint8 and array.dtype.kind != "f":
        raise InputError(f"a picture must be uint8 (0-255) or float (0-1), got dtype {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"a picture must be [H,W] grey, [H,W,3] RGB or [H,W,4] RGBA, got shape {list(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"the picture is empty (shape {list(array.shape)})")
    if array.dtype == np.uint8:
        scale = 255.0
    else:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise InputError("the picture holds NaN or infinite values")
        if values.min() < 0.0 or values.max() > 1.0:
            raise InputError(f"float pictures must hold values in [0, 1], got [{values.min():.4g}, {values.max():.4g}]")
        scale = 1.0
    if array.ndim == 2:
        grey = array.astype(np.float64) / scale
    elif array.dtype == np.uint8 and array.shape[2] == 3:
        # Integer luma is exact, and so the same as the float formula below, at a fraction of the cost.
        # Widen first: numpy 1 keeps uint8 * np.int32(299) in uint16, which overflows.
        wide = array.astype(np.int32)
        luma = wide[..., 0] * 299 + wide[..., 1] * 587 + wide[..., 2] * 114
        grey = luma / (1000.0 * scale)
    else:
        values = array.astype(np.float64)
        rgb = values[..., :3]
        if array.shape[2] == 4:
            alpha = values[..., 3:4]
            rgb = (rgb * alpha + scale * (scale - alpha)) / scale
        grey = (_LUMA[0] * rgb[..., 0] + _LUMA[1] * rgb[..., 1] + _LUMA[2] * rgb[..., 2]) / (1000.0 * scale)
    return grey.astype(np.float32)


def _max_pool(values: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool values by `factor`, the last partial blocks included."""
    return values if factor == 1 else pool(values, factor, np.maximum)


def _dilate(values: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation by a (2 radius + 1) square, after padding by `radius` zeros on every side."""
    h, w = values.shape
    wide = np.zeros((h + 4 * radius, w + 4 * radius))
    wide[2 * radius : 2 * radius + h, 2 * radius : 2 * radius + w] = values
    rows = wide[: h + 2 * radius]
    for shift in range(1, 2 * radius + 1):
        rows = np.maximum(rows, wide[shift : shift + h + 2 * radius])
    out = rows[:, : w + 2 * radius]
    for shift in range(1, 2 * radius + 1):
        out = np.maximum(out, rows[:, shift : shift + w + 2 * radius])
    return out


def _stroke_width(mask: np.ndarray) -> float:
    """Estimate stroke width as 2 * area / boundary pixels (ink with a 4-neighbour that is not ink)."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    boundary = int((mask & ~inner).sum())
    return 2.0 * area / boundary


def _shape(ink: Ink, where: Located) -> np.ndarray:
    """Cut the digit out at full resolution, clean it, pool it to at most SHAPE_SIDE and normalise its strokes."""
    top, bottom, left, right = where.box
    ys, xs = np.arange(top, bottom), np.arange(left, right)
    flat = np.clip(ink.crop(top, bottom, left, right) - where.background_at(ys, xs), 0.0, 1.0)
    crop = stretch(flat, where.levels)
    # Specks dropped while locating stay dropped: only ink within one located pixel of kept ink survives.
    near = _dilate(where.keep.astype(np.float64), 1)[1:-1, 1:-1] > 0.0
    crop = np.where(near[(ys // where.factor)[:, None], (xs // where.factor)[None, :]], crop, 0.0)
    pool = max(1, -(-max(crop.shape) // SHAPE_SIDE))
    crop = _trim(_max_pool(crop, pool))
    target = STROKE_WIDTH * max(crop.shape) / BOX_SIDE
    width = _stroke_width(crop >= 0.5)
    radius = int(np.floor((target - width) / 2.0 + 0.5))
    if radius > 0:
        crop = _trim(_dilate(crop, radius))
    return crop


def _trim(values: np.ndarray) -> np.ndarray:
    """Crop to the bounding box of the non-zero pixels."""
    rows = np.nonzero(values.max(axis=1) > 0.0)[0]
    cols = np.nonzero(values.max(axis=0) > 0.0)[0]
    if len(rows) == 0:
        raise InputError("no ink found: the picture has no strokes that stand out from the paper")
    return values[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _area_weights(source: int, target: int) -> np.ndarray:
    """Return the [target, source] matrix that area-averages `source` pixels into `target` pixels."""
    weights = np.zeros((target, source))
    step = source / target
    for i in range(target):
        start, end = i * step, (i + 1) * step
        for j in range(int(np.floor(start)), min(source, int(np.ceil(end)))):
            overlap = min(end, j + 1.0) - max(start, float(j))
            if overlap > 0.0:
                weights[i, j] = overlap / step
    return weights


def _fit(crop: np.ndarray) -> np.ndarray:
    """Area-average the digit into the 20x20 box (aspect kept) and centre its mass in 28x28."""
    h, w = crop.shape
    side = max(h, w)
    th = max(1, int(np.floor(BOX_SIDE * h / side + 0.5)))
    tw = max(1, int(np.floor(BOX_SIDE * w / side + 0.5)))
    box = _area_weights(h, th) @ crop @ _area_weights(w, tw).T
    mass = box.sum()
    row = float((box.sum(axis=1) * np.arange(th)).sum() / mass)
    col = float((box.sum(axis=0) * np.arange(tw)).sum() / mass)
    top = int(np.clip(np.floor(CENTRE[0] - row + 0.5), 0, FIELD_SIDE - th))
    left = int(np.clip(np.floor(CENTRE[1] - col + 0.5), 0, FIELD_SIDE - tw))
    field = np.zeros((FIELD_SIDE, FIELD_SIDE), np.float32)
    field[top : top + th, left : left + tw] = np.clip(box, 0.0, 1.0)
    return field


__all__ = ["prepare_digit", "to_grey"]
