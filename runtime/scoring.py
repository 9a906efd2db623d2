"""Likelihood as an anomaly score: a typical-set interval calibrated on real digits.

A score is a digit's IW-NLL in nats. Unusually *low* scores are as suspicious as high ones:
a blank page is more likely under a pixel model than any real digit, so a one-sided
threshold would pass it. Following the typicality test of Nalisnick et al. (2019), an image is
flagged when its score falls outside the [low, high] quantiles of validation-digit scores.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .errors import InputError, ModelError

#: Quantiles of validation scores that bound the typical range: 1% of real digits are flagged.
QUANTILES = (0.005, 0.995)
DEFAULT_K = 50


def calibrate(scores: np.ndarray, k: int, data: str, quantiles: tuple[float, float] = QUANTILES) -> dict[str, Any]:
    """Return the score interval of a model from the scores of validation digits."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) < 100:
        raise InputError(f"calibration needs at least 100 validation digits, got {scores.size}")
    low, high = np.quantile(scores, quantiles)
    return {
        "k": int(k),
        "low": round(float(low), 3),
        "high": round(float(high), 3),
        "quantiles": list(quantiles),
        "digits": int(len(scores)),
        "data": data,
    }


def interval(metrics: Mapping[str, Any], override: tuple[float, float] | None = None) -> tuple[float, float, int]:
    """Return (low, high, k) from an explicit override or a model's calibration."""
    stored = metrics.get("score")
    if override is not None:
        low, high = override
        k = int(stored["k"]) if isinstance(stored, Mapping) and "k" in stored else DEFAULT_K
    elif isinstance(stored, Mapping) and {"low", "high", "k"} <= stored.keys():
        low, high, k = float(stored["low"]), float(stored["high"]), int(stored["k"])
    else:
        raise ModelError(
            "this model has no calibrated score range; run `digitvae calibrate MODEL --data VALID_IDX` "
            "or pass --range LOW HIGH"
        )
    if not low < high:
        raise InputError(f"the score range must have low < high, got {low:g} and {high:g}")
    return low, high, k


def flags(scores: np.ndarray, low: float, high: float) -> list[str]:
    """Return "low", "high" or "" for each score against a typical range."""
    return ["low" if s < low else "high" if s > high else "" for s in np.asarray(scores, dtype=np.float64)]
