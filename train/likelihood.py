"""The likelihood bounds computed in torch, to check the runtime's numpy/onnxruntime ones.

Noise comes from numpy's Generator in the runtime's order, so for the same model and seed the
two computations see identical posterior samples and differ only by float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .model import VAE


def _posterior(
    model: VAE, images: np.ndarray, labels: np.ndarray | None, samples: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return float64 (x, y, mean, logvar, eps [samples, N, D]) with the runtime's noise."""
    raw = np.asarray(images)
    scale = 255.0 if raw.dtype == np.uint8 else 1.0
    x = torch.from_numpy(raw.reshape(len(raw), -1).astype(np.float32) / np.float32(scale)).double()
    y = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))
    mean, logvar = model.encode(x, y)
    noise = np.random.default_rng(seed).standard_normal((len(x), samples, mean.shape[1]), dtype=np.float32)
    return x, y, mean, logvar, torch.from_numpy(noise).double().transpose(0, 1)


@torch.no_grad()
def iw_nll(
    model: VAE,
    images: np.ndarray,
    k: int = 200,
    seed: int = 0,
    labels: np.ndarray | None = None,
    log_prior: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Return each digit's k-sample importance-weighted -log p(x) in nats, float64 [N].

    The prior is N(0, I), or `log_prior`: codes float64 [M, D] -> log p(z) float64 [M].
    """
    model.eval()
    model = model.double()
    try:
        x, y, mean, logvar, eps = _posterior(model, images, labels, k, seed)
        z = mean + torch.exp(0.5 * logvar) * eps
        log_px = -F.binary_cross_entropy_with_logits(model.decode(z, y), x.expand(k, -1, -1), reduction="none").sum(-1)
        if log_prior is None:
            log_ratio = -0.5 * (z.square().sum(-1) - eps.square().sum(-1) - logvar.sum(-1))
        else:
            log_pz = torch.from_numpy(log_prior(z.reshape(-1, z.shape[-1]).numpy())).reshape(z.shape[:-1])
            log_ratio = log_pz + 0.5 * (eps.square() + logvar + math.log(2 * math.pi)).sum(-1)
        return -(torch.logsumexp(log_px + log_ratio, dim=0) - math.log(k)).numpy()
    finally:
        model.float()


@torch.no_grad()
def neg_elbo(model: VAE, images: np.ndarray, seed: int = 0, labels: np.ndarray | None = None) -> np.ndarray:
    """Return each digit's one-sample -ELBO with the exact KL, in nats, float64 [N]."""
    model.eval()
    model = model.double()
    try:
        x, y, mean, logvar, eps = _posterior(model, images, labels, 1, seed)
        z = mean + torch.exp(0.5 * logvar) * eps[0]
        rec = F.binary_cross_entropy_with_logits(model.decode(z, y), x, reduction="none").sum(-1)
        kl = 0.5 * (torch.exp(logvar) + mean.square() - 1.0 - logvar).sum(-1)
        return (rec + kl).numpy()
    finally:
        model.float()
