"""Sample-quality metrics for a VAE, measured with the digit classifier.

- `fid`: the Fréchet distance between Gaussians fitted to the classifier's 128 penultimate
  features of the samples and of real validation digits (the FID recipe, with a digit
  classifier in place of Inception). Lower is better; two sets of real digits give the floor.
- `mean_confidence`: the mean of the classifier's top softmax probability on the samples;
  recognisable digits score near 1.
- `class_balance`: the fraction of samples the classifier assigns to each class 0-9, and
  `class_balance_entropy`, the entropy of those fractions divided by ln 10: 1 when every class
  is equally frequent, 0 when all samples look like one digit.
- `conditional_accuracy` (conditional models, and models whose prior was fit per class): the
  fraction of samples asked for digit c that the classifier reads as c, per class and overall.
- `memorisation`: the median Euclidean pixel distance from each sample to its nearest training
  digit, beside the same for reconstructions of validation digits, and their ratio. A model
  that copies its training digits brings its samples closer to them than its reconstructions of
  unseen digits are: a ratio well below 1.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitvae.runtime.arrays import as_images
from digitvae.runtime.errors import InputError
from digitvae.runtime.folders.writing import update_metrics

from .config import DIGIT_CLASSES

if TYPE_CHECKING:
    from digitvae.runtime.inference.model import DigitVAE

    from .classifier import DigitClassifier

logger = logging.getLogger(__name__)

__all__ = [
    "FeatureStats",
    "feature_stats",
    "features",
    "frechet_distance",
    "memorisation",
    "nearest_distances",
    "real_quality",
    "sample_quality",
    "sqrt_psd",
    "write_sample_quality",
]

NUM_CLASSES = DIGIT_CLASSES
#: Fewest samples that give every class one and a covariance estimate.
MIN_SAMPLES = 10
#: Samples and validation digits compared with the training digits in the memorisation check.
MEMORISATION_DIGITS = 2000


@dataclass(frozen=True)
class FeatureStats:
    """Mean [D] and covariance [D, D] of a feature set, and how many rows they came from."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def feature_stats(feats: np.ndarray) -> FeatureStats:
    """Fit the mean and the (unbiased) covariance of features [N, D], N >= 2."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise InputError(f"features must be shaped [N, D] with N >= 2, got {list(feats.shape)}")
    return FeatureStats(feats.mean(axis=0), np.cov(feats, rowvar=False), len(feats))


def features(classifier: DigitClassifier, images: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return penultimate features float64 [N, 128] and class probabilities float64 [N, 10]."""
    return classifier.features(images)


def sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Return the symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    # Rounding leaves eigenvalues of a singular covariance at about -1e-15: they are zeros.
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: FeatureStats | np.ndarray, b: FeatureStats | np.ndarray) -> float:
    """Return the squared Fréchet distance between Gaussians fitted to two feature sets.

    d^2 = |m1 - m2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)), where tr((C1 C2)^(1/2)) is
    computed exactly as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    C1^(1/2) C2 C1^(1/2), which has the same eigenvalues as C1 C2; no scipy needed.
    """
    a = a if isinstance(a, FeatureStats) else feature_stats(a)
    b = b if isinstance(b, FeatureStats) else feature_stats(b)
    if a.mean.shape != b.mean.shape:
        raise InputError(f"feature sizes differ: {a.mean.shape[0]} and {b.mean.shape[0]}")
    root = sqrt_psd(a.cov)
    product = root @ b.cov @ root
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0.0, None)).sum()
    distance = float(np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov) - 2.0 * cross)
    # The exact value is non-negative; rounding can push identical sets a hair below zero.
    return max(distance, 0.0)


def _class_scores(probs: np.ndarray) -> dict[str, Any]:
    """Return the mean top probability and the share of digits predicted as each class."""
    shares = np.bincount(probs.argmax(axis=1), minlength=NUM_CLASSES) / len(probs)
    nonzero = shares[shares > 0]
    return {
        "mean_confidence": float(probs.max(axis=1).mean()),
        "class_balance": [float(s) for s in shares],
        "class_balance_entropy": float(-(nonzero * np.log(nonzero)).sum() / math.log(NUM_CLASSES)),
    }


def nearest_distances(images: Any, references: Any, batch: int = 1000) -> np.ndarray:
    """Return each image's Euclidean pixel distance (pixels in [0, 1]) to its nearest reference, float64 [N]."""
    a = as_images(images).reshape(-1, 784).astype(np.float64)
    b = as_images(references).reshape(-1, 784).astype(np.float64)
    b_sq = np.square(b).sum(axis=1)
    out = np.empty(len(a))
    for i in range(0, len(a), batch):
        part = a[i : i + batch]
        d2 = np.square(part).sum(axis=1)[:, None] + b_sq[None] - 2 * part @ b.T
        out[i : i + batch] = np.sqrt(np.clip(d2.min(axis=1), 0.0, None))
    return out


def memorisation(samples: Any, reconstructions: Any, train_images: Any) -> dict[str, float]:
    """Return median nearest-training-digit distances of samples and of reconstructions, and their ratio."""
    to_samples = float(np.median(nearest_distances(samples, train_images)))
    to_reconstructions = float(np.median(nearest_distances(reconstructions, train_images)))
    return {"samples": to_samples, "reconstructions": to_reconstructions, "ratio": to_samples / to_reconstructions}


def real_quality(
    classifier: DigitClassifier, valid_images: np.ndarray, valid_labels: np.ndarray, train_images: np.ndarray
) -> tuple[dict[str, Any], FeatureStats]:
    """Score real digits with the keys of `sample_quality`: the figures a model is compared to.

    `fid` is training digits against validation digits (real against real, the floor);
    the confidence and class balance are the classifier's on validation digits, alongside its
    accuracy there. Also returns the validation feature statistics, the reference that
    `sample_quality` scores samples against.
    """
    valid_feats, probs = features(classifier, valid_images)
    labels = np.asarray(valid_labels)
    if labels.shape != (len(probs),):
        raise InputError(f"validation labels must be shaped [{len(probs)}], got {list(labels.shape)}")
    reference = feature_stats(valid_feats)
    metrics = {
        "fid": frechet_distance(feature_stats(features(classifier, train_images)[0]), reference),
        **_class_scores(probs),
        "classifier_valid_accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
        "train_digits": len(train_images),
        "valid_digits": len(labels),
    }
    return metrics, reference


def sample_quality(
    vae: DigitVAE,
    classifier: DigitClassifier,
    reference: FeatureStats | np.ndarray,
    n: int = 5000,
    seed: int = 0,
    *,
    train_images: np.ndarray | None = None,
    valid_images: np.ndarray | None = None,
    valid_labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Generate n digits with a seed and score them (see the module docstring for each key).

    `reference` is real digits (images) or their feature statistics, for the FID. A conditional
    model is asked for each class in turn (0, 1, ..., 9, 0, ...), n/10 digits per class; an
    unconditional model whose prior has classes draws from its whole prior, and then n/10
    digits of each class for the per-class accuracy. With `train_images` and `valid_images`
    (the first 2,000 are reconstructed; a conditional model needs `valid_labels`), also the
    memorisation check, on the first 2,000 samples.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_SAMPLES:
        raise InputError(f"n must be an integer of at least {MIN_SAMPLES}, got {n!r}")
    if not isinstance(reference, FeatureStats):
        reference = feature_stats(features(classifier, reference)[0])
    classes = vae.num_classes or vae.prior.num_classes
    if classes and classes != NUM_CLASSES:
        raise InputError(f"model {vae.name!r} has {classes} classes; the digit classifier knows {NUM_CLASSES}")
    requested = np.arange(n) % NUM_CLASSES if vae.num_classes else None
    samples = vae.generate(n, seed=seed, digit=requested)
    feats, probs = features(classifier, samples)
    result: dict[str, Any] = {
        "model": vae.name,
        "prior": vae.prior.kind,
        "n": n,
        "seed": seed,
        "fid": frechet_distance(feature_stats(feats), reference),
        **_class_scores(probs),
    }
    if classes:
        if requested is None:
            requested = np.repeat(np.arange(NUM_CLASSES), n // NUM_CLASSES)
            probs = features(classifier, vae.generate(len(requested), seed=seed + 1, digit=requested))[1]
        hits = probs.argmax(axis=1) == requested
        result["conditional_accuracy"] = {
            "per_class": [float(hits[requested == c].mean()) for c in range(NUM_CLASSES)],
            "overall": float(hits.mean()),
        }
    if train_images is not None and valid_images is not None:
        labels = valid_labels[:MEMORISATION_DIGITS] if vae.num_classes and valid_labels is not None else None
        rebuilt = vae.reconstruct(valid_images[:MEMORISATION_DIGITS], labels)
        result["memorisation"] = memorisation(samples[:MEMORISATION_DIGITS], rebuilt, train_images)
    logger.info("%s: fid %.3f, mean confidence %.4f", vae.name, result["fid"], result["mean_confidence"])
    return result


def write_sample_quality(model_dir: Path, key: str, record: dict[str, Any]) -> None:
    """Store a record under metrics.<key> (sample_quality, ...) in a model folder's model.json, atomically."""
    update_metrics(Path(model_dir), {key: record})
