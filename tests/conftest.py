"""Shared fixtures: the checked-in digits, the shipped model, and one tiny trained-and-exported run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mnist_files import TRAIN_IMAGES, VALID_IMAGES

from digitvae.runtime import DigitVAE
from digitvae.runtime.digits.idx import read_mnist_images


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """Return 100 real test-set digits, uint8 [100,28,28]."""
    return read_mnist_images(VALID_IMAGES)


@pytest.fixture(scope="session")
def vae() -> DigitVAE:
    """Return the shipped default model on CPU."""
    return DigitVAE.load()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train the geron preset for one epoch on the 300-digit fixture; return the run folder."""
    from digitvae.train.config import get_preset, with_overrides
    from digitvae.train.data import load_splits
    from digitvae.train.loop import train

    out = tmp_path_factory.mktemp("run")
    preset = get_preset("geron")
    train_split, valid_split = load_splits(None, TRAIN_IMAGES, VALID_IMAGES)
    train(
        train_split,
        valid_split,
        out,
        model_config=preset.model,
        train_config=with_overrides(preset.train, epochs=1),
        command="pytest tiny run",
    )
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Export the tiny run; return the model folder."""
    from digitvae.export.onnx import export_checkpoint

    out = tmp_path_factory.mktemp("models") / "tiny-vae"
    export_checkpoint(tiny_run, out)
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every slow test heavy too, so that the quick run (-m 'not heavy') leaves out the stress runs."""
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.heavy)
