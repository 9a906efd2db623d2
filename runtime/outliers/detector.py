"""OutlierDetector: a model, its calibration and its reference model, scoring images as digits or not."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..arrays import as_images
from ..errors import ModelError, ModelNotFoundError
from ..folders.locate import DEFAULT_MODEL, shipped_models_dir
from ..folders.manifest import ROLES, Manifest
from ..inference.model import DigitVAE
from ..inference.providers import ProviderSpec
from ..logs import get_logger
from ..options import LoadOptions, as_provider_specs
from .scoring import Calibration, check_scores

logger = get_logger(__name__)


def fp32_hashes(manifest: Manifest) -> dict[str, str]:
    """Return the sha256 of the fp32 files a model's likelihood depends on: encoder, decoder, prior density."""
    files = manifest.files("fp32")
    return {role: files[role].sha256 for role in (*ROLES, "prior_density") if role in files}


def reference_entry(model: str | os.PathLike[str], reference: DigitVAE) -> dict[str, Any]:
    """Describe a loaded reference model for a calibration: its shipped name or absolute folder, and its hashes."""
    text = os.fspath(model)
    shipped = reference.model_dir.resolve() == (shipped_models_dir() / text).resolve()
    return {"model": text if shipped else str(reference.model_dir.resolve()), "sha256": fp32_hashes(reference.manifest)}


def score_images(
    vae: DigitVAE,
    reference: DigitVAE | None,
    images: Any,
    labels: Any,
    k: int,
    seed: int | None = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Return every check's score per image (see digitvae.runtime.outliers.scoring).

    `progress` is told the digits done, counting each model's pass: up to 2N with a reference.
    """
    x = as_images(images)
    nll = vae.iw_nll(x, k, labels, seed=seed, progress=progress)
    reference_nll = None
    if reference is not None:
        after = None if progress is None else (lambda done: progress(len(x) + done))
        reference_nll = reference.iw_nll(x, k, seed=seed, progress=after)
    return check_scores(nll, x, reference_nll)


class OutlierDetector:
    """Flag images that are not like the digits a model was calibrated on.

    Create it with `OutlierDetector.load(...)`; `scores` and `flags` take numpy arrays.
    """

    def __init__(self, vae: DigitVAE, calibration: Calibration, reference: DigitVAE | None = None) -> None:
        self.vae = vae
        self.calibration = calibration
        self.reference = reference

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        providers: ProviderSpec | Sequence[ProviderSpec] | None = None,
        strict: bool = False,
        *,
        variant: str = "fp32",
        threads: int | None = None,
        nll_range: tuple[float, float] | None = None,
    ) -> OutlierDetector:
        """Load a calibrated model and, when its calibration names one, its reference model.

        `nll_range` replaces the calibrated IW-NLL range, and is required for an uncalibrated model.
        """
        name = os.fspath(model) if isinstance(model, os.PathLike) else model
        options = LoadOptions(name, variant, as_provider_specs(providers), strict, threads)
        return cls.from_options(options, nll_range)

    @classmethod
    def from_options(cls, options: LoadOptions, nll_range: tuple[float, float] | None = None) -> OutlierDetector:
        """Load the model that `options` name (its learned prior always) and its reference model, alike."""
        vae = DigitVAE.from_options(replace(options, prior=True))
        calibration = Calibration.from_metrics(vae.manifest.metrics, nll_range)
        reference = None
        if calibration.reference is not None:
            reference = _load_reference(vae.model_dir, calibration.reference, options)
        return cls(vae, calibration, reference)

    @property
    def checks(self) -> list[str]:
        """Return the names of the checks this detector applies."""
        return list(self.calibration.ranges)

    def scores(
        self,
        images: npt.ArrayLike,
        labels: npt.ArrayLike | None = None,
        *,
        seed: int | None = 0,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Return each calibrated check's score per image, float64 [N] in nats (see `score_images` for progress)."""
        scores = score_images(self.vae, self.reference, images, labels, self.calibration.k, seed, progress)
        return {name: scores[name] for name in self.checks}

    def flags(self, scores: Mapping[str, np.ndarray]) -> list[str]:
        """Return "" for each typical image and the failed checks (e.g. "ratio low") for each outlier."""
        return self.calibration.flags(scores)

    def __repr__(self) -> str:
        ref = f", reference={self.reference.name!r}" if self.reference is not None else ""
        return f"OutlierDetector(model={self.vae.name!r}, checks={self.checks}{ref})"


def _load_reference(model_dir: Path, entry: Mapping[str, Any], options: LoadOptions) -> DigitVAE:
    """Load the calibration's reference model, refusing one that changed since calibration."""
    name = entry["model"]
    try:
        reference = DigitVAE.from_options(replace(options, model=name, prior=True))
    except ModelNotFoundError as exc:
        raise ModelError(f"{model_dir}: the score calibration's reference model is missing: {exc}") from None
    if fp32_hashes(reference.manifest) != entry.get("sha256"):
        raise ModelError(
            f"{model_dir}: the reference model {name!r} changed since calibration (its sha256 differs); "
            f"run `digitvae calibrate {model_dir} VALID_IDX --reference {name}` again"
        )
    if reference.num_classes:
        raise ModelError(
            f"{model_dir}: the score calibration's reference model {name!r} is conditional; it cannot score images alone"
        )
    logger.info("reference model for the ratio check: %s", reference.model_dir)
    return reference
