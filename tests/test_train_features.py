"""The training recipe beyond the reference: augmentation, IWAE bound, schedules, conditional VAEs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mnist_files import TRAIN_IMAGES, VALID_IMAGES
from train_extra import needs_torch

from digitvae.runtime import DigitVAE, InputError

pytestmark = [needs_torch, pytest.mark.heavy]  # trains with torch

torch = pytest.importorskip("torch")


def _digits(n: int = 64) -> torch.Tensor:
    from digitvae.runtime.digits.idx import read_mnist_images

    return torch.from_numpy(read_mnist_images(TRAIN_IMAGES)[:n].reshape(n, -1).astype(np.float32) / 255)


def test_augment_moves_a_share_of_digits_and_keeps_pixels_valid() -> None:
    from digitvae.train.augment import augment

    x = _digits()
    same = augment(x, 0.0, torch.Generator().manual_seed(0))
    assert same is x
    half = augment(x, 0.5, torch.Generator().manual_seed(0))
    moved = (half - x).abs().amax(dim=1) > 1e-6
    assert 16 < int(moved.sum()) < 48  # about half of 64
    assert half.min() >= 0 and half.max() <= 1
    # A small distortion keeps most of the ink: the stroke is moved, not erased.
    ink = half[moved].sum(1) / x[moved].sum(1)
    assert ((ink > 0.75) & (ink < 1.3)).all()
    again = augment(x, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(half, again)


def test_importance_weighted_bound_is_tighter_than_the_elbo() -> None:
    from digitvae.train.config import VAEConfig
    from digitvae.train.model import VAE

    torch.manual_seed(0)
    model = VAE(VAEConfig(encoder_hidden=(32,), decoder_hidden=(32,), latent_dim=4))
    x = _digits(32)
    with torch.no_grad():
        elbo = torch.stack([model.neg_elbo(x, torch.Generator().manual_seed(s)) for s in range(50)]).mean(0)
        one = torch.stack([model.neg_iw_bound(x, 1, torch.Generator().manual_seed(s)) for s in range(50)]).mean(0)
        many = model.neg_iw_bound(x, 200, torch.Generator().manual_seed(0))
    # k=1 estimates the same -ELBO (with a sampled instead of an exact KL); k=200 is lower.
    assert abs(float(one.mean() - elbo.mean())) < 0.02 * float(elbo.mean())
    assert float(many.mean()) < float(elbo.mean()) - 0.5


def test_learning_rate_schedule_and_kl_warmup() -> None:
    from digitvae.train.config import TrainConfig
    from digitvae.train.loop import kl_weight, learning_rate

    cosine = TrainConfig(epochs=11, lr=1e-3, lr_schedule="cosine", lr_final_ratio=0.1, kl_warmup=4)
    assert learning_rate(cosine, 1) == pytest.approx(1e-3)
    assert learning_rate(cosine, 6) == pytest.approx(0.55e-3)
    assert learning_rate(cosine, 11) == pytest.approx(1e-4)
    assert learning_rate(TrainConfig(lr=2e-3), 7) == 2e-3
    assert [kl_weight(cosine, e) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert kl_weight(TrainConfig(), 1) == 1.0


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("iw_samples", 0, "iw_samples"),
        ("augment", 1.5, "augment"),
        ("lr_schedule", "step", "lr_schedule"),
        ("kl_warmup", -1, "kl_warmup"),
    ],
)
def test_bad_training_settings_are_refused(field: str, value: object, fragment: str) -> None:
    from digitvae.train.config import TrainConfig

    with pytest.raises(InputError, match=fragment):
        TrainConfig(**{field: value})


def test_conditional_vae_trains_exports_and_draws_the_asked_digit(tmp_path: Path) -> None:
    from digitvae.export.onnx import export_checkpoint
    from digitvae.train.config import TrainConfig, VAEConfig
    from digitvae.train.data import load_splits
    from digitvae.train.loop import train

    train_split, valid_split = load_splits(None, TRAIN_IMAGES, VALID_IMAGES)
    config = VAEConfig(encoder_hidden=(64,), decoder_hidden=(64,), latent_dim=4, num_classes=10)
    train(
        train_split,
        valid_split,
        tmp_path / "run",
        model_config=config,
        train_config=TrainConfig(epochs=2, batch_size=50, iw_samples=2, augment=0.5, kl_warmup=2),
        preset="tiny-cvae",
    )
    result = export_checkpoint(tmp_path / "run", tmp_path / "cvae")
    assert result.manifest.num_classes == 10
    assert max(d["max_scaled_diff"] for d in result.parity.values()) <= 1e-5
    vae = DigitVAE.load(tmp_path / "cvae")
    assert vae.num_classes == 10
    sevens = vae.generate(6, seed=1, digit=7)
    assert sevens.shape == (6, 28, 28)
    # The exported prior was fit per class: the codes of sevens come from the sevens' mixture.
    z = vae.sample_latents(6, seed=1, digit=7)
    np.testing.assert_allclose(sevens, vae.decode(z, np.full(6, 7)), atol=1e-6)
    assert not np.array_equal(z, vae.sample_latents(6, seed=1, digit=1))
    assert not np.array_equal(sevens, vae.decode(z, np.full(6, 1)))
    # Without a digit the classes take turns, so a grid of ten columns holds one class per column.
    np.testing.assert_allclose(
        vae.generate(12, seed=1), vae.decode(vae.sample_latents(12, seed=1), np.arange(12) % 10), atol=1e-6
    )
    digits = valid_split.images[:10]
    assert vae.iw_nll(digits, 5, labels=valid_split.labels[:10]).shape == (10,)
    with pytest.raises(InputError, match="conditional"):
        vae.reconstruct(digits)
    with pytest.raises(InputError, match=r"labels must be in \[0, 9\]"):
        vae.decode(z, np.full(6, 10))
    with pytest.raises(InputError, match="one integer or a"):
        vae.decode(z, np.zeros(5, dtype=np.int64))


def test_conditional_training_needs_labels(tmp_path: Path) -> None:
    from dataclasses import replace

    from digitvae.train.config import TrainConfig, VAEConfig
    from digitvae.train.data import load_splits
    from digitvae.train.loop import train

    train_split, valid_split = load_splits(None, TRAIN_IMAGES, VALID_IMAGES)
    unlabelled = replace(train_split, labels=None, labels_path=None)
    with pytest.raises(InputError, match="needs labels"):
        train(
            unlabelled,
            valid_split,
            tmp_path / "run",
            model_config=VAEConfig(encoder_hidden=(8,), decoder_hidden=(8,), latent_dim=2, num_classes=10),
            train_config=TrainConfig(epochs=1),
        )


def test_validation_every_few_epochs_and_after_the_last(tmp_path: Path) -> None:
    from digitvae.train.config import TrainConfig, VAEConfig
    from digitvae.train.data import load_splits
    from digitvae.train.loop import EpochStats, train

    train_split, valid_split = load_splits(None, TRAIN_IMAGES, VALID_IMAGES)
    seen: list[EpochStats] = []
    ckpt = train(
        train_split,
        valid_split,
        tmp_path / "run",
        model_config=VAEConfig(encoder_hidden=(16,), decoder_hidden=(16,), latent_dim=2),
        train_config=TrainConfig(epochs=5, batch_size=100, eval_every=2),
        on_epoch=seen.append,
    )
    assert [s.valid_loss is not None for s in seen] == [False, True, False, True, True]
    assert [h["valid_loss"] is not None for h in ckpt.history] == [False, True, False, True, True]
    assert ckpt.best["epoch"] in (2, 4, 5)
    with pytest.raises(InputError, match="eval_every"):
        TrainConfig(eval_every=0)
