"""The training loop: epochs of Adam on -ELBO, validation, checkpoints, resume."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from digitvae.runtime._version import __version__
from digitvae.runtime.errors import CheckpointError, InputError

from .augment import augment
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, VAEConfig, with_overrides
from .data import Split
from .model import VAE

logger = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
_EVAL_BATCH = 1000


@dataclass(frozen=True)
class EpochStats:
    """Losses of one epoch, in nats per digit (-ELBO)."""

    epoch: int
    epochs: int
    train_loss: float
    #: None in epochs that skip validation (see TrainConfig.eval_every).
    valid_loss: float | None
    seconds: float
    is_best: bool


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """Return uint8 digits [N,28,28] as float32 [N,784] in [0,1]."""
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


def to_labels(split: Split, config: VAEConfig) -> torch.Tensor | None:
    """Return a split's labels for a conditional model or a prior with classes (else None)."""
    classes = config.num_classes or config.prior_classes
    if not classes:
        return None
    if split.labels is None:
        raise InputError(
            f"{split.images_path}: this model needs labels (it has classes), but no labels file sits beside it"
        )
    if int(split.labels.max()) >= classes:
        raise InputError(f"{split.images_path}: labels go up to {int(split.labels.max())}, beyond {classes} classes")
    return torch.from_numpy(split.labels.astype(np.int64))


def _part(labels: torch.Tensor | None, index: torch.Tensor | slice) -> torch.Tensor | None:
    return None if labels is None else labels[index]


@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, seed: int = 0, labels: torch.Tensor | None = None) -> float:
    """Return the mean -ELBO per digit with one posterior sample, reproducible for a seed."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, len(x), _EVAL_BATCH):
        part = slice(i, i + _EVAL_BATCH)
        total += float(model.neg_elbo(x[part], generator, _part(labels, part)).sum())
    return total / len(x)


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Return the learning rate of an epoch (1-based) under the configured schedule."""
    if cfg.lr_schedule == "constant" or cfg.epochs <= 1:
        return cfg.lr
    progress = (epoch - 1) / (cfg.epochs - 1)
    low = cfg.lr * cfg.lr_final_ratio
    return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * progress))


def kl_weight(cfg: TrainConfig, epoch: int) -> float:
    """Return the weight of the latent term in an epoch (1-based) of KL warm-up."""
    return 1.0 if cfg.kl_warmup <= 0 else min(1.0, epoch / cfg.kl_warmup)


def train(
    train_split: Split,
    valid_split: Split,
    out_dir: Path,
    *,
    model_config: VAEConfig | None = None,
    train_config: TrainConfig | None = None,
    preset: str = "geron",
    resume: bool = False,
    epochs: int | None = None,
    command: str = "",
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> Checkpoint:
    """Train (or resume training) a VAE, writing last.pt every epoch and best.pt on improvement.

    Returns the final checkpoint. On resume the configs come from out_dir/last.pt and
    `epochs` may extend the run.
    """
    out_dir = Path(out_dir)
    last_path = out_dir / LAST
    if resume:
        ckpt = load_checkpoint(last_path)
        if epochs is not None:
            ckpt.train_config = with_overrides(ckpt.train_config, epochs=epochs)
        if ckpt.data.get("train", {}).get("sha256") not in (None, train_split.sha256):
            logger.warning("resuming on different training data than the checkpoint was trained on")
        if command:
            # The record says how the whole run came about: its first command, then each resume.
            ckpt.command = f"{ckpt.command} && {command}" if ckpt.command else command
    else:
        if last_path.exists():
            raise CheckpointError(
                f"{out_dir} already holds a run ({LAST}); pass --resume to continue it or choose another --output"
            )
        if model_config is None or train_config is None:
            raise InputError("train() needs model_config and train_config unless resuming")
        torch.manual_seed(train_config.seed)
        model = VAE(model_config)
        optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr)
        ckpt = Checkpoint(
            model_config=model_config,
            train_config=train_config,
            preset=preset,
            model_state=model.state_dict(),
            optimizer_state=optimizer.state_dict(),
            epoch=0,
            generator_state=torch.Generator().manual_seed(train_config.seed).get_state(),
            # The path lets export fit the prior on the same digits; model.json keeps only the name.
            data={
                "train": {**train_split.describe(), "path": str(train_split.images_path.resolve())},
                "valid": valid_split.describe(),
            },
            command=command,
            package_version=__version__,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return _run(ckpt, train_split, valid_split, out_dir, on_epoch)


def _train_epoch(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    x_train: torch.Tensor,
    y_train: torch.Tensor | None,
    cfg: TrainConfig,
    epoch: int,
) -> float:
    """Make one pass over the shuffled training digits; return the mean training loss per digit."""
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(cfg, epoch)
    beta = kl_weight(cfg, epoch)
    order = torch.randperm(len(x_train), generator=generator)
    total = 0.0
    for i in range(0, len(order), cfg.batch_size):
        index = order[i : i + cfg.batch_size]
        batch, labels = augment(x_train[index], cfg.augment, generator), _part(y_train, index)
        if cfg.iw_samples == 1:
            per_digit = model.neg_elbo(batch, generator, labels, beta)
        else:
            per_digit = model.neg_iw_bound(batch, cfg.iw_samples, generator, labels, beta)
        # Summed over the batch, as in the reference design (Adam is scale-invariant anyway).
        loss = per_digit.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(x_train)


def _run(
    ckpt: Checkpoint,
    train_split: Split,
    valid_split: Split,
    out_dir: Path,
    on_epoch: Callable[[EpochStats], None] | None,
) -> Checkpoint:
    cfg = ckpt.train_config
    model = VAE(ckpt.model_config)
    model.load_state_dict(ckpt.model_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    optimizer.load_state_dict(ckpt.optimizer_state)
    generator = torch.Generator()
    generator.set_state(ckpt.generator_state)
    x_train, x_valid = to_tensor(train_split.images), to_tensor(valid_split.images)
    y_train = to_labels(train_split, ckpt.model_config)
    # Validation scores p(x) itself: a prior's classes are marginalised, only a conditional model takes labels.
    y_valid = to_labels(valid_split, ckpt.model_config) if ckpt.model_config.num_classes else None
    if len(x_train) < 1:
        raise InputError("the training split holds no digits")
    best = ckpt.best.get("valid_loss", float("inf"))

    for epoch in range(ckpt.epoch + 1, cfg.epochs + 1):
        start = time.perf_counter()
        train_loss = _train_epoch(model, optimizer, generator, x_train, y_train, cfg, epoch)
        validate = epoch % cfg.eval_every == 0 or epoch == cfg.epochs
        valid_loss = evaluate(model, x_valid, seed=cfg.seed, labels=y_valid) if validate else None
        if not np.isfinite(train_loss) or (valid_loss is not None and not np.isfinite(valid_loss)):
            raise InputError(f"training diverged at epoch {epoch} (loss {train_loss}); try a lower --lr")
        seconds = time.perf_counter() - start
        is_best = valid_loss is not None and valid_loss < best
        ckpt.epoch = epoch
        ckpt.seconds += seconds
        ckpt.history.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss, "seconds": seconds})
        ckpt.model_state = model.state_dict()
        ckpt.optimizer_state = optimizer.state_dict()
        ckpt.generator_state = generator.get_state()
        if is_best:
            best = valid_loss
            ckpt.best = {"epoch": epoch, "valid_loss": valid_loss, "train_loss": train_loss}
            save_checkpoint(ckpt, out_dir / BEST)
        save_checkpoint(ckpt, out_dir / LAST)
        logger.info(
            "epoch %d: train %.3f valid %s", epoch, train_loss, "-" if valid_loss is None else f"{valid_loss:.3f}"
        )
        if on_epoch is not None:
            on_epoch(EpochStats(epoch, cfg.epochs, train_loss, valid_loss, seconds, is_best))
    return ckpt
