"""Outlier checks on likelihood scores, each with a typical range calibrated on real digits.

Every check gives each image a number in nats; calibration stores, per check, the central
range that validation digits fall into, and an image outside any range is an outlier.

- ``nll``: the image's IW-NLL. Unusually *low* scores are as suspicious as high ones: a blank
  page is more likely under a pixel model than any real digit, so a one-sided threshold would
  pass it (the typicality test of Nalisnick et al., 2019).
- ``complexity``: IW-NLL minus the image's zlib code length. A likelihood largely measures how
  simple an image is; subtracting a generic compressor's length leaves how much better the
  model explains the image than a model of nothing in particular (Serrà et al., 2020).
- ``ratio``: IW-NLL minus the IW-NLL under a reference model trained differently, when the
  calibration names one. Both models explain strokes and background alike, so those cancel;
  what is left is whatever only one of them learnt (the likelihood ratio of Ren et al., 2019).

All ranges share one quantile level, chosen so that together they flag `false_alarm` (1% by
default) of the calibration digits.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, ModelError

CHECKS = ("nll", "complexity", "ratio")
FALSE_ALARM = 0.01
DEFAULT_K = 50
MIN_DIGITS = 100
_LEVEL_STEPS = 60


def code_length(images: np.ndarray) -> np.ndarray:
    """Return each image's zlib code length in nats, float64 [N], from its 8-bit pixels (images in [0, 1])."""
    images = np.asarray(images)
    pixels = np.rint(images.reshape(len(images), -1).astype(np.float32) * 255).astype(np.uint8)
    return np.array([len(zlib.compress(row.tobytes(), 9)) for row in pixels], dtype=np.float64) * 8 * math.log(2)


def check_scores(nll: np.ndarray, images: np.ndarray, reference_nll: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Return every check's score per image, from the IW-NLL under the model (and the reference)."""
    nll = np.asarray(nll, dtype=np.float64)
    scores = {"nll": nll, "complexity": nll - code_length(images)}
    if reference_nll is not None:
        scores["ratio"] = nll - np.asarray(reference_nll, dtype=np.float64)
    return scores


def _outside(scores: Mapping[str, np.ndarray], level: float) -> np.ndarray:
    flagged = np.zeros(len(next(iter(scores.values()))), dtype=bool)
    for values in scores.values():
        low, high = np.quantile(values, (level, 1 - level))
        flagged |= (values < low) | (values > high)
    return flagged


def calibrate(
    scores: Mapping[str, np.ndarray],
    k: int,
    data: str,
    false_alarm: float = FALSE_ALARM,
    reference: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the typical range of every check from the check scores of validation digits.

    The common quantile level is the largest that flags at most `false_alarm` of these digits.
    """
    scores = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    if not scores or set(scores) - set(CHECKS):
        raise InputError(f"checks must be among {', '.join(CHECKS)}, got {', '.join(scores) or 'none'}")
    sizes = {values.size for values in scores.values()}
    if len(sizes) != 1 or any(values.ndim != 1 for values in scores.values()):
        raise InputError("every check needs one score per calibration digit")
    if sizes.pop() < MIN_DIGITS:
        raise InputError(f"calibration needs at least {MIN_DIGITS} validation digits, got {len(scores['nll'])}")
    if not all(np.isfinite(values).all() for values in scores.values()):
        raise InputError("calibration scores must be finite")
    if not 0 < false_alarm < 0.5:
        raise InputError(f"false_alarm must be between 0 and 0.5, got {false_alarm!r}")
    # The flagged fraction only grows with the level, so bisection finds the largest that fits.
    lo, hi = 0.0, false_alarm / 2
    for _ in range(_LEVEL_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _outside(scores, mid).mean() <= false_alarm else (lo, mid)
    ranges = {}
    for name in CHECKS:
        if name in scores:
            low, high = np.quantile(scores[name], (lo, 1 - lo))
            ranges[name] = {"low": float(low), "high": float(high)}
    result: dict[str, Any] = {
        "k": int(k),
        "checks": ranges,
        "quantiles": [lo, 1 - lo],
        "false_alarm": false_alarm,
        "flagged": round(float(_outside(scores, lo).mean()), 5),
        "digits": int(len(scores["nll"])),
        "data": data,
    }
    if reference is not None:
        result["reference"] = dict(reference)
    return result


@dataclass(frozen=True)
class Calibration:
    """The typical ranges of a model's checks and how its scores were made."""

    k: int
    ranges: Mapping[str, tuple[float, float]]
    #: {"model": name or folder, "sha256": {"encoder": ..., "decoder": ...}} for the ratio check.
    reference: Mapping[str, Any] | None = None

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], nll_range: tuple[float, float] | None = None) -> Calibration:
        """Read a model's calibration (metrics.score); `nll_range` replaces its IW-NLL range."""
        stored = metrics.get("score")
        if not isinstance(stored, Mapping):
            if nll_range is None:
                raise ModelError(
                    "this model has no calibrated score range; run `digitvae calibrate MODEL_DIR VALID_IDX` "
                    "or pass --range LOW HIGH"
                )
            stored = {}
        try:
            k = int(stored.get("k", DEFAULT_K))
            if "checks" in stored:
                ranges = {name: (float(r["low"]), float(r["high"])) for name, r in stored["checks"].items()}
            elif {"low", "high"} <= stored.keys():  # written before the other checks existed
                ranges = {"nll": (float(stored["low"]), float(stored["high"]))}
            else:
                ranges = {}
            reference = stored.get("reference")
            if reference is not None and not (
                isinstance(reference, Mapping) and isinstance(reference.get("model"), str)
            ):
                raise TypeError("reference must name a model")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"model.json metrics.score is malformed ({exc}); run `digitvae calibrate` again") from None
        if set(ranges) - set(CHECKS) or k < 1:
            raise ModelError(f"model.json metrics.score has unknown checks or k; known checks: {', '.join(CHECKS)}")
        if ("ratio" in ranges) != (reference is not None):
            raise ModelError("model.json metrics.score: the ratio check and its reference model come together")
        if nll_range is not None:
            ranges = {**ranges, "nll": _as_range(nll_range)}
        if "nll" not in ranges:
            raise ModelError("model.json metrics.score has no IW-NLL range; run `digitvae calibrate` again")
        for name, (low, high) in ranges.items():
            if not low < high:
                raise InputError(f"the {name} range must have low < high, got {low:g} and {high:g}")
        return cls(k, ranges, reference)

    def flags(self, scores: Mapping[str, Any]) -> list[str]:
        """Return, per image, "" or the checks it fails, as in "ratio low" or "nll high, complexity high"."""
        values = _score_arrays(scores, [name for name in CHECKS if name in self.ranges])
        marks: list[list[str]] = [[] for _ in range(len(next(iter(values.values()), ())))]
        for name, column in values.items():
            low, high = self.ranges[name]
            for i, value in enumerate(column):
                if value < low:
                    marks[i].append(f"{name} low")
                elif value > high:
                    marks[i].append(f"{name} high")
        return [", ".join(m) for m in marks]


def _score_arrays(scores: Any, names: list[str]) -> dict[str, np.ndarray]:
    """Return the named checks' scores as float64 [N] arrays of one length, or raise InputError."""
    if not isinstance(scores, Mapping):
        raise InputError(f"scores must be a mapping of check names to arrays, got {type(scores).__name__}")
    out = {}
    for name in names:
        if name not in scores:
            raise InputError(
                f"scores lack the calibrated {name!r} check (it has: {', '.join(map(str, scores)) or 'none'})"
            )
        try:
            column = np.asarray(scores[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"scores[{name!r}] must be an array of numbers") from None
        if column.ndim != 1:
            raise InputError(f"scores[{name!r}] must be one score per image, shaped [N], got {list(column.shape)}")
        out[name] = column
    if len({len(column) for column in out.values()}) > 1:
        raise InputError(f"the checks' scores differ in length: {', '.join(f'{k} {len(v)}' for k, v in out.items())}")
    return out


def _as_range(value: Any) -> tuple[float, float]:
    """Return a (low, high) pair of finite numbers, or raise InputError."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"a range must be two numbers (low, high), got {value!r}") from None
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(f"a range must be finite, got ({low:g}, {high:g})")
    return low, high
