"""Finding the ink on a picture of a digit: polarity, paper level, ink level, noise, specks, the digit's box.

Part of prepare_digit (see prepare.py); web/src/prepare.js does the same, operation for
operation: every threshold is taken on values both compute identically (integer histograms,
sorts, element-wise float64 arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

#: Largest side of the copy the digit is located on.
LOCATE_SIDE = 256
#: Background blocks along the longer side of the located copy.
BACKGROUND_BLOCKS = 8
#: Least side of a background block, in pixels: a lower quartile of fewer pixels is not the paper's.
MIN_BLOCK = 8
#: Less contrast than this between ink and paper (on a 0-1 scale) is no ink at all.
MIN_CONTRAST = 0.1
#: Ink components smaller than this share of the largest are specks, not strokes.
SPECK_SHARE = 0.1
#: Least clumping of ink that strokes show (a one-pixel line: 2 of 8 neighbours inked, 1/4); noise shows 0.
MIN_CLUMPING = 0.125
#: Or: clumping this many standard errors above noise's 0 (strokes among heavy noise).
MIN_CLUMPING_Z = 8.0


def _quantise(values: np.ndarray) -> np.ndarray:
    """Map [0,1] values to histogram bins 0-255, as floor(v * 255 + 0.5)."""
    return np.clip(np.floor(values * 255.0 + 0.5), 0, 255).astype(np.int64)


def _median_bin(bins: np.ndarray) -> int:
    """Return the lower median of integer bins 0-255, from their histogram."""
    counts = np.cumsum(np.bincount(bins.ravel(), minlength=256))
    return int(np.searchsorted(counts, (counts[-1] + 1) // 2))


def pool(values: np.ndarray, factor: int, pick: np.ufunc) -> np.ndarray:
    """Reduce `factor` x `factor` blocks by `pick` (np.maximum or np.minimum), the last partial blocks included.

    Each block is reduced over its own pixels: no padding, so the cost is linear in the pixels
    even for a picture far longer than it is wide (padding a 1x1,000,000 strip to whole blocks of
    3,907 rows would take 15.6 GB).
    """
    h, w = values.shape
    rows = pick.reduceat(values, np.arange(0, w, factor), axis=1)
    return pick.reduceat(rows, np.arange(0, h, factor), axis=0)


class Ink:
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
        pooled = pool(self.grey, factor, np.minimum if self.invert else np.maximum).astype(np.float64)
        return 1.0 - pooled if self.invert else pooled

    def crop(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Return the ink of rows top:bottom, columns left:right, float64."""
        values = self.grey[top:bottom, left:right].astype(np.float64)
        return 1.0 - values if self.invert else values


def _background(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Estimate the paper's level per block: the block's lower quartile, then a 3x3 opening of the blocks.

    Ink is bright here, so the lower quartile is paper unless ink covers three quarters of the
    block. The opening (the least over 3x3 neighbours, then the most) drops the blocks a thick
    stroke fills, even along an edge, and keeps a gradient of light as it is.
    """
    h, w = ink.shape
    size = max(MIN_BLOCK, -(-max(h, w) // BACKGROUND_BLOCKS))
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


def _neighbours(mask: np.ndarray) -> tuple[int, int]:
    """Count, over the ink pixels of `mask`, their 8-neighbours that are ink and those inside the picture."""
    h, w = mask.shape
    ink = np.pad(mask, 1)
    inside = np.pad(np.ones_like(mask), 1)
    inked = present = 0
    for dr in range(3):
        for dc in range(3):
            if dr != 1 or dc != 1:
                inked += int((mask & ink[dr : dr + h, dc : dc + w]).sum())
                present += int((mask & inside[dr : dr + h, dc : dc + w]).sum())
    return inked, present


def _check_clumped(mask: np.ndarray) -> None:
    """Raise InputError when the ink is scattered like noise: its pixels no likelier than any to neighbour ink.

    The clumping is (c - p) / (1 - p), where c is the share of ink pixels' neighbours that are
    ink and p the share of all pixels that are ink: 0 for noise of any kind and density (each
    pixel independent), 1/4 or more for strokes. Ink is strokes when the clumping is at least
    MIN_CLUMPING, or when it stands MIN_CLUMPING_Z standard errors (about 1 / (2 sqrt(pixels
    that are not ink)) for noise) above 0: strokes drowned in many noise pixels. Decided on
    integers and then float64 in the same order as web/src/prepare.js, so both decide alike.
    """
    inked, present = _neighbours(mask)
    count, total = int(mask.sum()), mask.size
    excess = inked * total - count * present  # (c - p) * present * total
    if 8 * inked * total - 7 * count * present >= present * total:
        return
    if excess > 0 and 4.0 * float(excess) * float(excess) >= MIN_CLUMPING_Z**2 * present * present * (total - count):
        return
    c, p = inked / max(present, 1), count / total
    raise InputError(
        f"no ink found: the marks are scattered like noise, not drawn as strokes (clumping "
        f"{(c - p) / (1.0 - p):.3f}; strokes show at least {MIN_CLUMPING}, noise 0)"
    )


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


def stretch(values: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    low, high = levels
    return np.clip((values - low) / (high - low), 0.0, 1.0)


@dataclass(frozen=True)
class Located:
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


def locate(ink: Ink) -> Located:
    """Find the digit on a max-pooled copy: flatten the background, stretch the levels, drop specks."""
    h, w = ink.shape
    factor = max(1, -(-max(h, w) // LOCATE_SIDE))
    small = ink.pooled(factor)
    background, block = _background(small)
    sh, sw = small.shape
    flat = np.clip(small - _paper(background, block, np.arange(sh), np.arange(sw)), 0.0, 1.0)
    levels = _levels(flat)
    mask = stretch(flat, levels) > 0.0
    _check_clumped(mask)
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
    return Located(box, factor, block, background, levels, keep)


__all__ = ["Ink", "Located", "locate", "pool", "stretch"]
