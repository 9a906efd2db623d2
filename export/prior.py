"""Fit a model's latent prior to its encoded training digits and add it to the model folder.

The prior is a Gaussian mixture fit (scikit-learn's GaussianMixture, EM) to codes drawn from
the encoder's posterior q(z|x) of every training digit: the aggregate posterior, which is
where the decoder learned to draw digits, and the prior that maximises the ELBO for a fixed
encoder and decoder. With labels it is fit class by class, p(z) = sum_c pi_c p(z | c), so an
unconditional model can be asked for a digit, and pi_c are the classes' shares of the data.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from digitvae.runtime.errors import InputError, MissingDependencyError, ModelError
from digitvae.runtime.extras import install_command
from digitvae.runtime.folders.manifest import MANIFEST_NAME, Manifest, ModelFile, check_prior_classes
from digitvae.runtime.folders.reading import read_manifest, sha256_file, verified_bytes
from digitvae.runtime.folders.writing import model_folder_lock

from .folder import folder_files, write_model_folder
from .opset import BUILD_OPSET, stamp_lowest
from .prior_graph import Mixture, density_graph, generator_graph, sampler_graph

logger = logging.getLogger(__name__)

COVARIANCES = ("full", "diag")
#: Fewest digits of a class that a per-class fit accepts.
MIN_CLASS_DIGITS = 2


@dataclass(frozen=True)
class PriorConfig:
    """How a prior is fit; recorded in model.json."""

    #: Mixture components per class (fit per class) or in all (fit without labels).
    components: int = 5
    #: Codes drawn from each training digit's posterior.
    samples: int = 10
    covariance: str = "full"
    #: Scale of the posterior's standard deviation when drawing the codes: 1 fits the aggregate
    #: posterior itself; below 1 fits a sharper one, trading likelihood for clearer digits.
    spread: float = 1.0
    #: Added to every covariance's diagonal (GaussianMixture's reg_covar), in latent units squared.
    reg_covar: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.components <= 1000:
            raise InputError(f"components must be between 1 and 1000, got {self.components}")
        if not 1 <= self.samples <= 1000:
            raise InputError(f"samples must be between 1 and 1000, got {self.samples}")
        if self.covariance not in COVARIANCES:
            raise InputError(f"covariance must be one of {', '.join(COVARIANCES)}, got {self.covariance!r}")
        if not 0 < self.spread <= 1:
            raise InputError(f"spread must be in (0, 1], got {self.spread}")
        if not self.reg_covar > 0:
            raise InputError(f"reg_covar must be positive, got {self.reg_covar}")


def posterior_codes(
    vae: Any, images: np.ndarray, labels: np.ndarray | None, samples: int, seed: int, spread: float = 1.0
) -> np.ndarray:
    """Return codes drawn from q(z|x), sigma scaled by `spread`, for every digit: float64 [N * samples, D]."""
    mean, logvar = vae.encode(images, labels if vae.num_classes else None)
    noise = np.random.default_rng(seed).standard_normal((len(mean), samples, mean.shape[1]))
    sigma = spread * np.exp(0.5 * logvar.astype(np.float64))
    return (mean[:, None, :] + sigma[:, None, :] * noise).reshape(-1, mean.shape[1])


def fit_mixture(codes: np.ndarray, classes: np.ndarray | None, config: PriorConfig) -> Mixture:
    """Fit a Gaussian mixture to codes [M, D]; with classes [M] (0..C-1), one mixture per class."""
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        raise MissingDependencyError(f"fitting a prior needs scikit-learn: {install_command('prior')}") from None

    def fit(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = min(config.components, len(points))
        gmm = GaussianMixture(
            k, covariance_type=config.covariance, reg_covar=config.reg_covar, random_state=config.seed, max_iter=500
        ).fit(points)
        cov = gmm.covariances_ if config.covariance == "full" else np.stack([np.diag(c) for c in gmm.covariances_])
        return gmm.weights_, gmm.means_, cov

    if classes is None:
        weights, means, covs = fit(codes)
        return Mixture(weights[None], means, covs)
    num_classes = int(classes.max()) + 1
    counts = np.bincount(classes, minlength=num_classes)
    parts = [fit(codes[classes == c]) for c in range(num_classes)]
    sizes = [len(p[0]) for p in parts]
    table = np.zeros((num_classes + 1, sum(sizes)))
    start = 0
    for c, (w, _, _) in enumerate(parts):
        table[c + 1, start : start + len(w)] = w
        table[0, start : start + len(w)] = w * counts[c] / counts.sum()
        start += len(w)
    table /= table.sum(axis=1, keepdims=True)  # exact sums of 1 despite rounding
    return Mixture(table, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))


@dataclass(frozen=True)
class PriorFiles:
    """The prior's ONNX files (name -> bytes) and their entries, the same in every variant of model.json."""

    files: dict[str, bytes]
    entries: dict[str, ModelFile]


def prior_files(mixture: Mixture) -> PriorFiles:
    """Build the prior's sampler and density graphs, shared by every variant."""
    # Built in one opset whatever the decoder declares, so the same mixture always gives the same nodes.
    ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", BUILD_OPSET)])
    sampler = _checked(sampler_graph(mixture, opset=BUILD_OPSET, ir_version=ir_version))
    density = _checked(density_graph(mixture, opset=BUILD_OPSET, ir_version=ir_version))
    return shared_prior_files(sampler, density)


def shared_prior_files(sampler: bytes, density: bytes) -> PriorFiles:
    """Return the sampler and density as the prior's files and their manifest entries."""
    files = {"prior.onnx": sampler, "prior_density.onnx": density}
    entries = {
        role: ModelFile(f"{role}.onnx", hashlib.sha256(files[f"{role}.onnx"]).hexdigest())
        for role in ("prior", "prior_density")
    }
    return PriorFiles(files, entries)


def generator_bytes(model_dir: Path, variant: str = "fp32") -> bytes:
    """Return one graph that draws digits: the folder's prior sampler feeding its decoder of `variant`.

    Built from the folder's own files (each checked against its sha256), for apps and servers
    that want generation in one run; the runtime itself never needs it.
    """
    manifest = read_manifest(model_dir)
    files = manifest.files(variant)
    if not manifest.prior:
        raise InputError(
            f"model {manifest.name!r} has no learned prior: its codes come from N(0, I), so its decoder "
            "alone generates digits (fit a prior with `digitvae prior fit`)"
        )
    sampler = onnx.load_from_string(verified_bytes(model_dir, files["prior"]))
    decoder = onnx.load_from_string(verified_bytes(model_dir, files["decoder"]))
    return _checked(generator_graph(sampler, decoder))


def _checked(model: onnx.ModelProto) -> bytes:
    stamp_lowest(model)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def with_prior(manifest: Manifest, prior: PriorFiles, description: Mapping[str, Any]) -> Manifest:
    """Return the manifest with the prior's files in every variant and its description."""
    variants = {v: {**files, **prior.entries} for v, files in manifest.variants.items()}
    return replace(manifest, variants=variants, prior=dict(description))


def describe(mixture: Mixture, config: PriorConfig, data: Mapping[str, Any]) -> dict[str, Any]:
    """Return model.json's `prior`: its kind, size, classes and what it was fit on."""
    return {
        "kind": "gaussian_mixture",
        "classes": mixture.num_classes,
        "components": int(mixture.means.shape[0]),
        "fit": {**asdict(config), **data, "method": "scikit-learn GaussianMixture (EM) on posterior draws"},
    }


def fit_prior(vae: Any, images: np.ndarray, labels: np.ndarray | None, config: PriorConfig) -> Mixture:
    """Fit a prior to a loaded model's posterior codes of these digits (per class with labels)."""
    if vae.num_classes and labels is None:
        raise InputError(f"model {vae.name!r} is conditional: fitting its prior needs the digits' labels")
    if labels is not None:
        labels = np.asarray(labels, np.int64)
        labelled = int(labels.max()) + 1
        if vae.num_classes and labelled != vae.num_classes:
            raise InputError(f"labels hold {labelled} classes; model {vae.name!r} has {vae.num_classes}")
        try:
            # The rule model.json's readers hold a prior to: checked before the fit, not after it.
            check_prior_classes(labelled, 0)
        except ModelError as exc:
            held = "only class 0" if labelled == 1 else f"classes 0-{labelled - 1}"
            raise InputError(
                f"the labels hold {held}, and a prior fit per class cannot be read back ({exc}); "
                "fit with --no-labels for one mixture of all digits"
            ) from None
        counts = np.bincount(labels, minlength=labelled)
        if counts.min() < MIN_CLASS_DIGITS:
            few = [c for c, count in enumerate(counts) if count < MIN_CLASS_DIGITS]
            raise InputError(
                f"a per-class prior needs at least {MIN_CLASS_DIGITS} digits of every class 0-{len(counts) - 1}; "
                f"too few of class {', '.join(map(str, few))} (or fit without labels)"
            )
    codes = posterior_codes(vae, images, labels, config.samples, config.seed, config.spread)
    classes = None if labels is None else np.repeat(np.asarray(labels, np.int64), config.samples)
    mixture = fit_mixture(codes, classes, config)
    if vae.num_classes and mixture.num_classes != vae.num_classes:
        raise InputError(f"labels hold {mixture.num_classes} classes; model {vae.name!r} has {vae.num_classes}")
    return mixture


def fit_model_prior(
    model_dir: Path,
    images_path: Path,
    labels_path: Path | None,
    config: PriorConfig,
    *,
    providers: Any = None,
    threads: int | None = None,
) -> Manifest:
    """Fit (or refit) a model folder's prior on IDX digits and write it in, atomically.

    `providers` and `threads` choose how the encoder runs (see DigitVAE.load). The folder is
    locked against other writers from reading it to writing it back.
    """
    model_dir = Path(model_dir)
    with model_folder_lock(model_dir):
        return _fit_model_prior(model_dir, images_path, labels_path, config, providers, threads)


def _fit_model_prior(
    model_dir: Path,
    images_path: Path,
    labels_path: Path | None,
    config: PriorConfig,
    providers: Any,
    threads: int | None,
) -> Manifest:
    from digitvae.runtime.digits.idx import read_mnist_images, read_mnist_labels
    from digitvae.runtime.inference.model import DigitVAE

    manifest = read_manifest(model_dir)
    images = read_mnist_images(images_path)
    labels = None
    data: dict[str, Any] = {
        "data": {"file": images_path.name, "sha256": sha256_file(images_path), "digits": len(images)}
    }
    if labels_path is not None:
        labels = read_mnist_labels(labels_path)
        if len(labels) != len(images):
            raise InputError(f"{labels_path}: {len(labels)} labels for {len(images)} digits in {images_path.name}")
        data["labels"] = {"file": labels_path.name, "sha256": sha256_file(labels_path)}
    vae = DigitVAE.load(model_dir.resolve(), providers, threads=threads)
    mixture = fit_prior(vae, images, labels, config)
    files = {f.path: verified_bytes(model_dir, f) for v in manifest.variants.values() for f in v.values()}
    prior = prior_files(mixture)
    manifest = with_prior(manifest, prior, describe(mixture, config, data))
    write_model_folder(model_dir, {**folder_files(model_dir), **files, **prior.files}, manifest, force=True)
    logger.info(
        "fit a %d-component prior (%d classes) to %s; wrote it into %s",
        mixture.means.shape[0],
        mixture.num_classes,
        images_path.name,
        model_dir / MANIFEST_NAME,
    )
    return manifest
