"""Turn a picture of a handwritten digit (photo, scan, drawing) into a 28x28 MNIST-style digit.

The steps follow how MNIST itself was made, with what real pictures need on top:

1. grey: ITU-R 601-2 luma (299/587/114 per mille); RGBA is composited over white;
2. polarity: inverted when the median is above the middle of the range (dark ink, light paper);
3. locate, on a copy max-pooled to at most 256 pixels a side: subtract the paper level
   interpolated between blocks (their lower quartiles, opened; uneven light), pick the ink level (above both Otsu's
   and the triangle threshold), stretch ink to 1 and paper to 0,
   keep the connected ink that is not a speck, and take its bounding box;
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

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

#: Largest side of the copy the digit is located on.
LOCATE_SIDE = 256
#: Largest side of the crop whose strokes are measured and thickened.
SHAPE_SIDE = 64
#: Background blocks along the longer side of the located copy.
BACKGROUND_BLOCKS = 8
#: MNIST's box for the digit, inside its 28x28 field.
BOX_SIDE = 20
FIELD_SIDE = 28
#: Stroke width of MNIST digits, in pixels at 28x28 (2 * area / boundary of pixels >= 0.5: 2.64 on valid5k).
STROKE_WIDTH = 2.6
#: Where MNIST's centre of mass lies on average (row, column), in pixel indices.
CENTRE = (14.0, 14.0)
#: Less contrast than this between ink and paper (on a 0-1 scale) is no ink at all.
MIN_CONTRAST = 0.1
#: Ink components smaller than this share of the largest are specks, not strokes.
SPECK_SHARE = 0.1
_LUMA = (299.0, 587.0, 114.0)


def prepare_digit(image: np.ndarray) -> np.ndarray:
    """Turn a picture of one digit into an MNIST-style float32 [28,28] digit in [0,1].

    `image` is [H,W] grey, [H,W,3] RGB or [H,W,4] RGBA (composited over white), uint8 or
    float in [0,1]; dark ink on light paper and light ink on dark both work.
    """
    ink = _Ink(to_grey(image))
    return _fit(_shape(ink, _locate(ink)))


def to_grey(image: np.ndarray) -> np.ndarray:
    """Return the picture as float32 [H,W] grey in [0,1] (601 luma; RGBA over white), or raise InputError."""
    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"a picture must be [H,W] grey, [H,W,3] RGB or [H,W,4] RGBA, got shape {list(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"the picture is empty (shape {list(array.shape)})")
    if array.dtype == np.uint8:
        scale = 255.0
    elif array.dtype.kind == "f":
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise InputError("the picture holds NaN or infinite values")
        if values.min() < 0.0 or values.max() > 1.0:
            raise InputError(f"float pictures must hold values in [0, 1], got [{values.min():.4g}, {values.max():.4g}]")
        scale = 1.0
    else:
        raise InputError(f"a picture must be uint8 (0-255) or float (0-1), got dtype {array.dtype}")
    if array.ndim == 2:
        grey = array.astype(np.float64) / scale
    elif array.dtype == np.uint8 and array.shape[2] == 3:
        # Integer luma is exact, and so the same as the float formula below, at a fraction of the cost.
        luma = array[..., 0] * np.int32(299) + array[..., 1] * np.int32(587) + array[..., 2] * np.int32(114)
        grey = luma / (1000.0 * scale)
    else:
        values = array.astype(np.float64)
        rgb = values[..., :3]
        if array.shape[2] == 4:
            alpha = values[..., 3:4]
            rgb = (rgb * alpha + scale * (scale - alpha)) / scale
        grey = (_LUMA[0] * rgb[..., 0] + _LUMA[1] * rgb[..., 1] + _LUMA[2] * rgb[..., 2]) / (1000.0 * scale)
    return grey.astype(np.float32)


def _quantise(values: np.ndarray) -> np.ndarray:
    """Map [0,1] values to histogram bins 0-255, as floor(v * 255 + 0.5)."""
    return np.clip(np.floor(values * 255.0 + 0.5), 0, 255).astype(np.int64)


def _median_bin(bins: np.ndarray) -> int:
    """Return the lower median of integer bins 0-255, from their histogram."""
    counts = np.cumsum(np.bincount(bins.ravel(), minlength=256))
    return int(np.searchsorted(counts, (counts[-1] + 1) // 2))


class _Ink:
    """The picture with its ink bright: grey, inverted when the paper is the lighter side.

    Kept as float32 grey and a flag: only the pooled copy and the digit's crop are ever made
    float64 ink (1 - grey is exact in float64, and the most of 1 - grey is 1 - the least of grey).
    """

    def __init__(self, grey: np.ndarray) -> None:
        low, high = float(grey.min()), float(grey.max())
        if high - low < MIN_CONTRAST:
            raise InputError(f"no ink found: the picture is nearly uniform (values from {low:.3f} to {high:.3f})")
        bins = grey.astype(np.float64)
        bins *= 255.0
        bins += 0.5
        np.floor(bins, out=bins)  # floor(v * 255 + 0.5), within 0-255 for v in [0, 1]
        median = _median_bin(bins.astype(np.intp)) / 255.0
        self.grey = grey
        self.invert = median > (low + high) / 2.0
        self.shape: tuple[int, int] = grey.shape

    def pooled(self, factor: int) -> np.ndarray:
        """Return the ink max-pooled by `factor` (last partial blocks included), float64."""
        if factor == 1:
            return self.crop(0, self.shape[0], 0, self.shape[1])
        h, w = self.shape
        ph, pw = -(-h // factor) * factor, -(-w // factor) * factor
        padded = np.full((ph, pw), 1.0 if self.invert else 0.0, np.float32)
        padded[:h, :w] = self.grey
        pick = np.min if self.invert else np.max
        rows = pick(padded.reshape(ph, pw // factor, factor), axis=2)
        pooled = pick(rows.reshape(ph // factor, factor, pw // factor), axis=1).astype(np.float64)
        return 1.0 - pooled if self.invert else pooled

    def crop(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Return the ink of rows top:bottom, columns left:right, float64."""
        values = self.grey[top:bottom, left:right].astype(np.float64)
        return 1.0 - values if self.invert else values


def _max_pool(values: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool non-negative values by `factor`, the last partial blocks included (padded with zeros)."""
    if factor == 1:
        return values
    h, w = values.shape
    ph, pw = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.zeros((ph, pw), values.dtype)
    padded[:h, :w] = values
    return padded.reshape(ph // factor, factor, pw // factor, factor).max(axis=(1, 3))


def _background(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Estimate the paper's level per block: the block's lower quartile, then a 3x3 opening of the blocks.

    Ink is bright here, so the lower quartile is paper unless ink covers three quarters of the
    block. The opening (the least over 3x3 neighbours, then the most) drops the blocks a thick
    stroke fills, even along an edge, and keeps a gradient of light as it is.
    """
    h, w = ink.shape
    size = max(1, -(-max(h, w) // BACKGROUND_BLOCKS))
    rows, cols = -(-h // size), -(-w // size)
    medians = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            block = np.sort(ink[r * size : (r + 1) * size, c * size : (c + 1) * size], axis=None)
            medians[r, c] = block[(len(block) - 1) // 4]
    return _around(_around(medians, np.min), np.max), size


def _around(grid: np.ndarray, pick: Any) -> np.ndarray:
    """Apply `pick` (np.min or np.max) over each cell's 3x3 neighbours, the grid extended linearly beyond its edges."""
    rows, cols = grid.shape
    tall = np.concatenate([_beyond(grid[:1], grid[1:2]), grid, _beyond(grid[-1:], grid[-2:-1])])
    padded = np.concatenate([_beyond(tall[:, :1], tall[:, 1:2]), tall, _beyond(tall[:, -1:], tall[:, -2:-1])], axis=1)
    return pick(np.stack([padded[dr : dr + rows, dc : dc + cols] for dr in range(3) for dc in range(3)]), axis=0)


def _beyond(edge: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Extend a grid by one row or column past `edge`: 2 edge - inner, or the edge itself for a one-cell grid."""
    # Linear, not repeated: a gradient of light then survives the opening up to the grid's edges.
    return 2.0 * edge - inner if inner.size else edge


def _axis_weights(pixels: np.ndarray, size: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the two blocks around each pixel along one axis and the weight of the second (linear interpolation)."""
    u = np.clip((pixels + 0.5) / size - 0.5, 0.0, count - 1.0)
    first = np.floor(u).astype(np.int64)
    return first, np.minimum(first + 1, count - 1), u - first


def _paper(blocks: np.ndarray, size: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Interpolate the paper level between block centres at rows `ys` x columns `xs` (pixel indices)."""
    r0, r1, a = _axis_weights(ys, size, blocks.shape[0])
    c0, c1, b = _axis_weights(xs, size, blocks.shape[1])
    a, b = a[:, None], b[None, :]
    top = blocks[r0[:, None], c0[None, :]] + (blocks[r0[:, None], c1[None, :]] - blocks[r0[:, None], c0[None, :]]) * b
    bottom = (
        blocks[r1[:, None], c0[None, :]] + (blocks[r1[:, None], c1[None, :]] - blocks[r1[:, None], c0[None, :]]) * b
    )
    return top + (bottom - top) * a


def _otsu(histogram: np.ndarray) -> int:
    """Return Otsu's threshold bin from a 256-bin histogram: ink is above it."""
    counts = histogram.astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(counts)
    s0 = np.cumsum(counts * levels)
    total, total_sum = w0[-1], s0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        m0 = s0 / w0
        m1 = (total_sum - s0) / w1
        between = w0 * w1 * (m0 - m1) * (m0 - m1)
    between[(w0 == 0) | (w1 == 0)] = -1.0
    return int(np.argmax(between))


def _components(mask: np.ndarray) -> np.ndarray:
    """Label 8-connected components: each pixel of `mask` gets the smallest flat index in its component, others -1."""
    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        least = labels
        for dr in range(3):
            for dc in range(3):
                least = np.minimum(least, padded[dr : dr + h, dc : dc + w])
        least = np.where(mask, least, big)
        flat = least.ravel()
        # Pointer jumping: follow each label to its own label, so long strokes settle in few rounds.
        jumped = np.where(flat < big, np.append(flat, big)[np.minimum(flat, big)], big).reshape(h, w)
        if np.array_equal(jumped, labels):
            return np.where(mask, labels, -1)
        labels = jumped


def _triangle(counts: np.ndarray) -> int:
    """Return the triangle threshold bin: the knee where the paper's peak falls off towards the brightest bin.

    Otsu's threshold falls inside the paper's noise when the ink is a tiny share of the pixels
    (a thin digit on a large page); the knee does not.
    """
    peak = int(np.argmax(counts))
    last = int(np.nonzero(counts)[0][-1])
    if last <= peak:
        return peak
    bins = np.arange(peak, last + 1)
    # Distance below the line from (peak, counts[peak]) to (last, 0), up to a constant factor; exact in integers.
    distance = counts[peak] * (last - bins) - (last - peak) * counts[peak : last + 1]
    return peak + int(np.argmax(distance))


def _levels(values: np.ndarray) -> tuple[float, float]:
    """Return (low, high) stretch levels of background-subtracted values, or raise InputError when there is no ink.

    Ink is what lies above both Otsu's and the triangle threshold; `low` is that threshold and
    `high` the median ink.
    """
    bins = _quantise(values)
    counts = np.bincount(bins.ravel(), minlength=256)
    threshold = max(_otsu(counts), _triangle(counts))
    above = bins > threshold
    if not above.any() or above.all():
        raise InputError("no ink found: the picture has no strokes that stand out from the paper")
    paper = _median_bin(bins[~above]) / 255.0
    ink_values = np.sort(values[above], axis=None)
    ink = float(ink_values[(len(ink_values) - 1) // 2])
    if ink - paper < MIN_CONTRAST:
        raise InputError(
            f"no ink found: strokes differ from the paper by {ink - paper:.3f}, less than {MIN_CONTRAST} (on a 0-1 scale)"
        )
    return (threshold + 0.5) / 255.0, ink


def _stretch(values: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    low, high = levels
    return np.clip((values - low) / (high - low), 0.0, 1.0)


@dataclass(frozen=True)
class _Located:
    """Where the digit is, and what shaping it at full resolution reuses from the located copy."""

    box: tuple[int, int, int, int]  # top, bottom, left, right at full resolution; ends excluded
    factor: int  # pooling factor of the located copy
    block: int  # background block side, in pixels of the copy
    background: np.ndarray  # paper level at each block's centre
    levels: tuple[float, float]  # (low, high) stretch levels after background subtraction
    keep: np.ndarray  # kept ink on the copy

    def background_at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Return the paper level of full-resolution rows `ys` x columns `xs`: that of the copy's pixel."""
        return _paper(self.background, self.block, ys // self.factor, xs // self.factor)


def _locate(ink: _Ink) -> _Located:
    """Find the digit on a max-pooled copy: flatten the background, stretch the levels, drop specks."""
    h, w = ink.shape
    factor = max(1, -(-max(h, w) // LOCATE_SIDE))
    small = ink.pooled(factor)
    background, block = _background(small)
    sh, sw = small.shape
    flat = np.clip(small - _paper(background, block, np.arange(sh), np.arange(sw)), 0.0, 1.0)
    levels = _levels(flat)
    mask = _stretch(flat, levels) > 0.0
    labels = _components(mask)
    sizes = np.bincount(labels[mask])
    keep = mask & (sizes[np.maximum(labels, 0)] >= SPECK_SHARE * sizes.max())
    ys, xs = np.nonzero(keep)
    box = (
        int(ys.min()) * factor,
        min(h, (int(ys.max()) + 1) * factor),
        int(xs.min()) * factor,
        min(w, (int(xs.max()) + 1) * factor),
    )
    return _Located(box, factor, block, background, levels, keep)


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


def _shape(ink: _Ink, where: _Located) -> np.ndarray:
    """Cut the digit out at full resolution, clean it, pool it to at most SHAPE_SIDE and normalise its strokes."""
    top, bottom, left, right = where.box
    ys, xs = np.arange(top, bottom), np.arange(left, right)
    flat = np.clip(ink.crop(top, bottom, left, right) - where.background_at(ys, xs), 0.0, 1.0)
    crop = _stretch(flat, where.levels)
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
