"""Log-densities of the VAE's generative model and posterior, and the bounds built from them.

The pixel model is Bernoulli on intensities in [0, 1] (the training loss), the prior is N(0, I)
and the approximate posterior is the encoder's diagonal Gaussian. All values are in nats.
"""

from __future__ import annotations

import math

import numpy as np

_LOG_2PI = math.log(2 * math.pi)


def bernoulli_log_prob(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return log p(x | logits) summed over the trailing pixel axis.

    Computed as x*l - softplus(l), which stays finite for any logit.
    """
    softplus = np.logaddexp(np.float32(0), logits)
    return np.einsum("...p,...p->...", x, logits, dtype=np.float64) - softplus.sum(axis=-1, dtype=np.float64)


def standard_normal_log_prob(z: np.ndarray) -> np.ndarray:
    """Return log N(z; 0, I) summed over the last axis."""
    d = z.shape[-1]
    return -0.5 * (np.square(z, dtype=np.float64).sum(axis=-1) + d * _LOG_2PI)


def gaussian_log_prob_of_noise(eps: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Return log N(mean + sigma*eps; mean, sigma^2) summed over the last axis, from eps."""
    d = eps.shape[-1]
    return -0.5 * (np.square(eps, dtype=np.float64).sum(axis=-1) + logvar.sum(axis=-1, dtype=np.float64) + d * _LOG_2PI)


def kl_to_standard_normal(mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Return KL(N(mean, exp(logvar)) || N(0, I)) per row, the training loss's latent term."""
    m = mean.astype(np.float64)
    lv = logvar.astype(np.float64)
    return 0.5 * (np.exp(lv) + m * m - 1.0 - lv).sum(axis=-1)


def log_mean_exp(log_w: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return log(mean(exp(log_w))) along an axis without overflow."""
    top = log_w.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(log_w - top).mean(axis=axis, keepdims=True))).squeeze(axis)
