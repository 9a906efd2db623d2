"""Check that an execution provider computes what the CPU provider computes, on the same model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .model import DigitVAE


@dataclass(frozen=True)
class Tolerances:
    """The largest differences allowed between two providers' outputs of one model."""

    #: A pixel's intensity, in [0, 1].
    image: float
    #: A latent code's mean or log-variance.
    code: float
    #: -log p(x), nats.
    nats: float


#: float32 arithmetic: the fp32 files, and the int8 ones (their integer products are exact).
FLOAT32 = Tolerances(image=1e-4, code=1e-4, nats=1e-3)
#: The fp16 files compute in float16, where a provider may round each layer's sums differently
#: (float16 keeps 11 significant bits: a unit roundoff of 4.9e-4). CUDA against the CPU, on an
#: H200: at most 1.5e-3 on pixels, 2.3e-3 on codes and 0.026 nats over the four shipped models.
FLOAT16 = Tolerances(image=1e-2, code=1e-2, nats=0.1)

IMAGE_TOLERANCE = FLOAT32.image
CODE_TOLERANCE = FLOAT32.code
NATS_TOLERANCE = FLOAT32.nats


def tolerances(variant: str) -> Tolerances:
    """Return the tolerances that fit a variant's arithmetic ("fp16": float16's, else float32's)."""
    return FLOAT16 if variant == "fp16" else FLOAT32


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


def compare(
    candidate: DigitVAE,
    reference: DigitVAE,
    n: int = 64,
    k: int = 50,
    seed: int = 0,
    allowed: Tolerances = FLOAT32,
) -> list[Difference]:
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
        diff("decode: image", candidate.decode(z, labels), reference.decode(z, labels), allowed.image),
        diff("encode: mean", mean_a, mean_b, allowed.code),
        diff("encode: logvar", logvar_a, logvar_b, allowed.code),
        diff(
            "reconstruct: image",
            candidate.reconstruct(images, labels),
            reference.reconstruct(images, labels),
            allowed.image,
        ),
        diff("generate: image", candidate.generate(n, seed=seed), images, allowed.image),
        diff(
            "iw_nll: nats",
            candidate.iw_nll(images, k, labels, seed=seed),
            reference.iw_nll(images, k, labels, seed=seed),
            allowed.nats,
        ),
    ]
