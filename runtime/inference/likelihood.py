"""Log-densities of the VAE's generative model and posterior, and the bounds built from them.

The pixel model is Bernoulli on intensities in [0, 1] (the training loss), the prior is N(0, I)
or the model's learned prior, and the approximate posterior is the encoder's diagonal Gaussian.
All values are in nats. The estimators at the end (`elbo`, `iw_nll`) run a loaded model's two
halves through `Halves`, a chunk at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..arrays import as_seed
from ..errors import ModelError
from .sessions import CHUNK

if TYPE_CHECKING:
    from .prior import Prior

_LOG_2PI = math.log(2 * math.pi)
#: A callback told how many digits are done, for long likelihood computations.
Progress = Callable[[int], None] | None


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


class Halves(Protocol):
    """What the estimators need of a loaded model: its prior and one chunk through each half."""

    prior: Prior

    @property
    def latent_dim(self) -> int: ...

    def encoder_chunk(self, x: np.ndarray, labels: np.ndarray | None) -> list[np.ndarray]:
        """Return [mean, logvar] for at most CHUNK checked images."""
        ...

    def logits_chunk(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """Return the decoder's logits [m, 1, 28, 28] for at most CHUNK checked codes."""
        ...


def elbo(
    model: Halves, x: np.ndarray, labels: np.ndarray | None, samples: int, seed: int | None, progress: Progress = None
) -> np.ndarray:
    """Return each digit's evidence lower bound on log p(x) in nats, float64 [N], from checked inputs.

    The reconstruction term averages `samples` posterior draws; the KL term is exact for N(0, I)
    and estimated from the same draws for a learned prior (no closed form against a mixture).
    """
    out, total = [], None
    closed_form = model.prior.kind == "standard_normal"
    for log_px, mean, logvar, noise, z, y, last in posterior_samples(model, x, labels, samples, seed, progress):
        if closed_form:
            part = log_px.sum(axis=1)
        else:
            log_ratio = model.prior.log_prob(z, y) - gaussian_log_prob_of_noise(noise, logvar[:, None, :])
            part = (log_px + log_ratio).sum(axis=1)
        total = part if total is None else total + part
        if last:
            out.append(total / samples - kl_to_standard_normal(mean, logvar) if closed_form else total / samples)
            total = None
    return np.concatenate(out)


def iw_nll(
    model: Halves, x: np.ndarray, labels: np.ndarray | None, k: int, seed: int | None, progress: Progress = None
) -> np.ndarray:
    """Return each digit's importance-weighted estimate of -log p(x) in nats, float64 [N], from checked inputs.

    Burda et al. (2015) with k posterior samples: a log-sum-exp over the samples, kept up to
    date chunk by chunk, so memory does not grow with k.
    """
    out = []
    top: np.ndarray | None = None
    scaled = np.zeros(0)
    for log_px, _, logvar, noise, z, y, last in posterior_samples(model, x, labels, k, seed, progress):
        log_w = log_px + model.prior.log_prob(z, y) - gaussian_log_prob_of_noise(noise, logvar[:, None, :])
        chunk_top = log_w.max(axis=1)
        if top is None:
            top, scaled = chunk_top, np.exp(log_w - chunk_top[:, None]).sum(axis=1)
        else:
            new_top = np.maximum(top, chunk_top)
            scaled = scaled * np.exp(top - new_top) + np.exp(log_w - new_top[:, None]).sum(axis=1)
            top = new_top
        if last:
            out.append(-(top + np.log(scaled) - math.log(k)))
            top = None
    return np.concatenate(out)


def posterior_samples(
    model: Halves, x: np.ndarray, labels: np.ndarray | None, samples: int, seed: int | None, progress: Progress = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, bool]]:
    """Yield (log p(x|z) [m, s], mean, logvar, noise, z [m, s, D], labels, last) for posterior samples.

    At most CHUNK samples go through the decoder at once: several digits with all their
    samples, or one digit's samples CHUNK at a time (`last` marks a digit block's final
    chunk). The noise is drawn digit by digit in order, so the values do not depend on the
    chunking, and memory does not grow with the number of digits or of samples.
    """
    rng = np.random.default_rng(as_seed(seed))
    rows = max(1, CHUNK // samples)
    per = min(samples, CHUNK)
    for i in range(0, len(x), rows):
        xb, yb = x[i : i + rows], _rows(labels, i, rows)
        mean, logvar = model.encoder_chunk(xb, yb)
        sigma = np.exp(0.5 * logvar)[:, None, :]
        for j in range(0, samples, per):
            noise = rng.standard_normal((len(xb), min(per, samples - j), model.latent_dim), dtype=np.float32)
            z = mean[:, None, :] + sigma * noise
            yield _log_px_given_z(model, xb, yb, z), mean, logvar, noise, z, yb, j + per >= samples
        if progress is not None:
            progress(i + len(xb))


def _log_px_given_z(model: Halves, x: np.ndarray, labels: np.ndarray | None, z: np.ndarray) -> np.ndarray:
    """Return log p(x | z) [m, s] for codes z of shape [m, s, D]."""
    m, s, d = z.shape
    flat_y = None if labels is None else np.repeat(labels, s)
    logits = np.empty((m * s, x[0].size), dtype=np.float32)
    flat_z = np.ascontiguousarray(z.reshape(m * s, d), dtype=np.float32)
    for j in range(0, m * s, CHUNK):
        part = model.logits_chunk(flat_z[j : j + CHUNK], _rows(flat_y, j, CHUNK))
        logits[j : j + len(part)] = part.reshape(len(part), -1)
    with np.errstate(invalid="ignore", over="ignore"):
        log_px = bernoulli_log_prob(logits.reshape(m, s, -1), x.reshape(m, 1, -1))
    if not np.isfinite(log_px).all():
        raise ModelError("the decoder returned NaN or infinite logits; the likelihood is undefined")
    return log_px


def _rows(labels: np.ndarray | None, start: int, count: int) -> np.ndarray | None:
    return None if labels is None else labels[start : start + count]
