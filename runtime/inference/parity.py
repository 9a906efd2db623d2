"""Check that an execution provider computes what the CPU provider computes, on the same model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .model import DigitVAE

#: Largest difference allowed in a pixel's intensity, in [0, 1].
IMAGE_TOLERANCE = 1e-4
#: Largest difference allowed in a latent code's mean or log-variance.
CODE_TOLERANCE = 1e-4
#: Largest difference allowed in -log p(x), nats.
NATS_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Difference:
    """The largest absolute difference of one output between two providers."""

    output: str
    max_abs: float
    tolerance: float

    @property
    def ok(self) -> bool:
        """Return whether the difference is within its tolerance (NaN never is)."""
        return bool(self.max_abs <= self.tolerance)


def compare(candidate: DigitVAE, reference: DigitVAE, n: int = 64, k: int = 50, seed: int = 0) -> list[Difference]:
    """Feed both models the same inputs; return the largest difference of each method's outputs.

    The inputs are n codes from N(0, I) and the reference's own digits drawn with `seed`
    (so no data file is needed); `iw_nll` uses k samples per digit and the same seed on both.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, reference.latent_dim), dtype=np.float32)
    labels = np.arange(n) % reference.num_classes if reference.num_classes else None
    images = reference.generate(n, seed=seed)

    def diff(output: str, a: np.ndarray, b: np.ndarray, tolerance: float) -> Difference:
        return Difference(output, float(np.max(np.abs(a.astype(np.float64) - b))), tolerance)

    mean_a, logvar_a = candidate.encode(images, labels)
    mean_b, logvar_b = reference.encode(images, labels)
    return [
        diff("decode: image", candidate.decode(z, labels), reference.decode(z, labels), IMAGE_TOLERANCE),
        diff("encode: mean", mean_a, mean_b, CODE_TOLERANCE),
        diff("encode: logvar", logvar_a, logvar_b, CODE_TOLERANCE),
        diff(
            "reconstruct: image",
            candidate.reconstruct(images, labels),
            reference.reconstruct(images, labels),
            IMAGE_TOLERANCE,
        ),
        diff("generate: image", candidate.generate(n, seed=seed), images, IMAGE_TOLERANCE),
        diff(
            "iw_nll: nats",
            candidate.iw_nll(images, k, labels, seed=seed),
            reference.iw_nll(images, k, labels, seed=seed),
            NATS_TOLERANCE,
        ),
    ]
