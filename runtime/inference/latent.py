"""Paths and grids in latent space: interpolation between codes and latent-manifold grids."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import InputError

MODES = ("linear", "spherical")


def lerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """Return `steps` codes [steps, D] on the straight line from a to b, both ends included."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float64)[:, None]
    return ((1 - t) * a[None].astype(np.float64) + t * b[None].astype(np.float64)).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """Return `steps` codes [steps, D] on the great-circle arc from a to b, both ends included.

    The norm changes linearly along the arc, so codes stay in the shell where N(0, I) puts its
    mass instead of cutting through the low-density centre as a straight line does.
    """
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na < 1e-12 or nb < 1e-12:
        return lerp(a, b, steps)
    ua, ub = a64 / na, b64 / nb
    omega = math.acos(float(np.clip(ua @ ub, -1.0, 1.0)))
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if omega < 1e-6:  # nearly parallel: the arc is the line
        return lerp(a, b, steps)
    direction = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / math.sin(omega)
    return (direction * ((1 - t) * na + t * nb)).astype(np.float32)


def interpolate(a: np.ndarray, b: np.ndarray, steps: int, mode: str) -> np.ndarray:
    """Return the codes of one interpolation mode ("linear" or "spherical")."""
    if mode not in MODES:
        raise InputError(f"interpolation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 2 <= steps <= 1000:
        raise InputError(f"steps must be between 2 and 1000, got {steps}")
    return lerp(a, b, steps) if mode == "linear" else slerp(a, b, steps)


def normal_grid(size: int) -> np.ndarray:
    """Return `size` standard-normal quantiles spread evenly in probability (5% to 95%)."""
    if not 2 <= size <= 100:
        raise InputError(f"grid size must be between 2 and 100, got {size}")
    dist = NormalDist()
    return np.array([dist.inv_cdf(p) for p in np.linspace(0.05, 0.95, size)], dtype=np.float64)


def principal_plane(means: np.ndarray) -> dict[str, list[float] | list[list[float]]]:
    """Return the centre, two leading principal directions and their spreads of encoded means."""
    if means.ndim != 2 or len(means) < 3 or means.shape[1] < 2:
        raise InputError(f"need at least 3 encoded codes of size >= 2 for a principal plane, got {list(means.shape)}")
    x = means.astype(np.float64)
    centre = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - centre, full_matrices=False)
    spread = s[:2] / math.sqrt(len(x) - 1)
    return {"centre": centre.tolist(), "directions": vt[:2].tolist(), "spread": spread.tolist()}


def manifold_codes(latent_dim: int, size: int, plane: dict[str, Any] | None = None) -> np.ndarray:
    """Return size*size codes [size*size, D] laid out row by row over a 2-D latent grid.

    A 2-D latent is walked directly at prior quantiles (Kingma & Welling's figure); a larger
    latent is walked in the plane of its two leading principal directions, at the same
    quantiles scaled by the spread of the encoded data along each direction.
    """
    q = normal_grid(size)
    # Rows go down the screen, so the second coordinate runs from high to low.
    u, v = np.meshgrid(q, q[::-1])
    if latent_dim == 2 and plane is None:
        return np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float32)
    if plane is None:
        raise InputError(
            f"a {latent_dim}-D latent needs its principal plane: pass validation digits (--data) "
            "or calibrate the model first"
        )
    try:
        centre = np.asarray(plane["centre"], dtype=np.float64)
        directions = np.asarray(plane["directions"], dtype=np.float64)
        spread = np.asarray(plane["spread"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"the principal plane (metrics.latent_plane) is malformed ({exc!r}); recalibrate or pass --data"
        ) from None
    if centre.shape != (latent_dim,) or directions.shape != (2, latent_dim) or spread.shape != (2,):
        raise InputError(f"the principal plane does not match this model's {latent_dim}-D latent")
    with np.errstate(over="ignore", invalid="ignore"):
        codes = (
            centre + (u.ravel()[:, None] * spread[0]) * directions[0] + (v.ravel()[:, None] * spread[1]) * directions[1]
        )
        codes = codes.astype(np.float32)
    if not np.isfinite(codes).all():
        raise InputError(
            "the principal plane (metrics.latent_plane) gives non-finite codes; recalibrate or pass --data"
        )
    return codes
