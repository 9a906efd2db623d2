"""The training loop: epochs of Adam on -ELBO, validation, checkpoints, resume; one process or K under DDP."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from digitvae.runtime._version import __version__
from digitvae.runtime.errors import CheckpointError, InputError

from .augment import distort, draw_distortions
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, VAEConfig, with_overrides
from .data import Split
from .ddp import SINGLE, PeerFailed, Processes
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
def evaluate(
    model: VAE,
    x: torch.Tensor,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    processes: Processes = SINGLE,
) -> float:
    """Return the mean -ELBO per digit with one posterior sample, reproducible for a seed.

    In a distributed run each rank scores every K-th block of digits and the sums are added up.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for block, i in enumerate(range(0, len(x), _EVAL_BATCH)):
        part = slice(i, i + _EVAL_BATCH)
        # Every rank draws every block's noise, so a block's noise does not depend on who scores it.
        eps = torch.randn((len(x[part]), model.config.latent_dim), generator=generator)
        if block % processes.world_size == processes.rank:
            total += float(model.neg_elbo(x[part], None, _part(labels, part), eps=eps.to(x.device)).sum())
    return processes.all_sum([total])[0] / len(x)


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
    processes: Processes = SINGLE,
) -> Checkpoint:
    """Train (or resume training) a VAE, writing last.pt every epoch and best.pt on improvement.

    Returns the final checkpoint. On resume the configs come from out_dir/last.pt and
    `epochs` may extend the run. In a distributed run (`processes` from ddp.start) rank 0 alone
    reads and writes out_dir and calls on_epoch; every rank trains on its share of each batch.
    """
    out_dir = Path(out_dir)
    start: Checkpoint | BaseException | None = None
    if processes.is_main:
        try:
            start = _starting_point(
                train_split, valid_split, out_dir, model_config, train_config, preset, resume, epochs, command
            )
            processes.check_batch_size(start.train_config.batch_size)
            _check_data(start.model_config, train_split, valid_split)
            out_dir.mkdir(parents=True, exist_ok=True)
        except Exception as exc:  # every rank must hear of it, whatever it is
            start = exc
    ckpt: Checkpoint = processes.from_main(start)
    return _run(ckpt, train_split, valid_split, out_dir, on_epoch, processes)


def _starting_point(
    train_split: Split,
    valid_split: Split,
    out_dir: Path,
    model_config: VAEConfig | None,
    train_config: TrainConfig | None,
    preset: str,
    resume: bool,
    epochs: int | None,
    command: str,
) -> Checkpoint:
    """Return the checkpoint a run starts from: out_dir's last.pt when resuming, else a fresh model."""
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
        return ckpt
    if last_path.exists():
        raise CheckpointError(
            f"{out_dir} already holds a run ({LAST}); pass --resume to continue it or choose another --output"
        )
    if model_config is None or train_config is None:
        raise InputError("train() needs model_config and train_config unless resuming")
    torch.manual_seed(train_config.seed)
    model = VAE(model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr)
    return Checkpoint(
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


def _check_data(config: VAEConfig, train_split: Split, valid_split: Split) -> None:
    """Refuse splits this model cannot train on (on rank 0, before any rank starts)."""
    if len(train_split.images) < 1:
        raise InputError("the training split holds no digits")
    to_labels(train_split, config)
    if config.num_classes:
        to_labels(valid_split, config)


class _Objective(nn.Module):
    """The training loss per digit as a module's forward, so that DDP sees every step."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor, label: torch.Tensor | None, beta: float) -> torch.Tensor:
        if len(eps) == 1:
            return self.vae.neg_elbo(x, None, label, beta, eps[0])
        return self.vae.neg_iw_bound(x, len(eps), None, label, beta, eps)


def _train_epoch(
    net: nn.Module,
    latent_dim: int,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    x_train: torch.Tensor,
    y_train: torch.Tensor | None,
    cfg: TrainConfig,
    epoch: int,
    processes: Processes,
) -> float:
    """Make one pass over the shuffled training digits; return the mean training loss per digit."""
    net.train()
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(cfg, epoch)
    beta = kl_weight(cfg, epoch)
    order = torch.randperm(len(x_train), generator=generator)
    total = torch.zeros((), dtype=torch.float64, device=x_train.device)
    for i in range(0, len(order), cfg.batch_size):
        index = order[i : i + cfg.batch_size]
        # Every rank draws all that the whole batch needs, in the order a single process does, and
        # keeps its share: K processes see the same digits, distortions and noise as one.
        distortions = draw_distortions(len(index), cfg.augment, generator)
        noise = torch.randn((cfg.iw_samples, len(index), latent_dim), generator=generator)
        part = processes.shard(len(index))
        mine = index[part].to(x_train.device)
        batch = x_train[mine]
        if distortions is not None:
            batch = distort(batch, distortions[0][part], distortions[1][part])
        # Summed over the batch, as in the reference design (Adam is scale-invariant anyway).
        loss = net(batch, noise[:, part].to(x_train.device), _part(y_train, mine), beta).sum()
        optimizer.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients: K times each share's sum averages to the whole batch's sum.
        (loss * processes.world_size if processes.world_size > 1 else loss).backward()
        optimizer.step()
        total += loss.detach()
    return processes.all_sum([float(total)])[0] / len(x_train)


def _run(
    ckpt: Checkpoint,
    train_split: Split,
    valid_split: Split,
    out_dir: Path,
    on_epoch: Callable[[EpochStats], None] | None,
    processes: Processes,
) -> Checkpoint:
    cfg = ckpt.train_config
    device = processes.device
    model = VAE(ckpt.model_config)
    model.load_state_dict(ckpt.model_state)
    model.to(device)
    net = processes.wrap(_Objective(model))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    optimizer.load_state_dict(ckpt.optimizer_state)
    generator = torch.Generator()
    generator.set_state(ckpt.generator_state)
    x_train, x_valid = to_tensor(train_split.images).to(device), to_tensor(valid_split.images).to(device)
    y_train = _to(to_labels(train_split, ckpt.model_config), device)
    # Validation scores p(x) itself: a prior's classes are marginalised, only a conditional model takes labels.
    y_valid = _to(to_labels(valid_split, ckpt.model_config), device) if ckpt.model_config.num_classes else None
    best = ckpt.best.get("valid_loss", float("inf"))

    for epoch in range(ckpt.epoch + 1, cfg.epochs + 1):
        start = time.perf_counter()
        train_loss = _train_epoch(
            net, model.config.latent_dim, optimizer, generator, x_train, y_train, cfg, epoch, processes
        )
        validate = epoch % cfg.eval_every == 0 or epoch == cfg.epochs
        valid_loss = evaluate(model, x_valid, cfg.seed, y_valid, processes) if validate else None
        if not np.isfinite(train_loss) or (valid_loss is not None and not np.isfinite(valid_loss)):
            # Every rank sees the same summed losses; one of them says so.
            if not processes.is_main:
                raise PeerFailed("training diverged")
            raise InputError(f"training diverged at epoch {epoch} (loss {train_loss}); try a lower --lr")
        seconds = time.perf_counter() - start
        improved = valid_loss if valid_loss is not None and valid_loss < best else None
        is_best = improved is not None
        ckpt.epoch = epoch
        ckpt.seconds += seconds
        ckpt.history.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss, "seconds": seconds})
        # On the CPU, whatever the device: a checkpoint loads anywhere.
        ckpt.model_state = _on_cpu(model.state_dict())
        ckpt.optimizer_state = _on_cpu(optimizer.state_dict())
        ckpt.generator_state = generator.get_state()
        if improved is not None:
            best = improved
            ckpt.best = {"epoch": epoch, "valid_loss": improved, "train_loss": train_loss}
        if processes.is_main:
            if is_best:
                save_checkpoint(ckpt, out_dir / BEST)
            save_checkpoint(ckpt, out_dir / LAST)
            logger.info(
                "epoch %d: train %.3f valid %s", epoch, train_loss, "-" if valid_loss is None else f"{valid_loss:.3f}"
            )
            if on_epoch is not None:
                on_epoch(EpochStats(epoch, cfg.epochs, train_loss, valid_loss, seconds, is_best))
        # The others wait for rank 0's files: when any process has finished, the run folder is complete.
        processes.barrier()
    return ckpt


def _to(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def _on_cpu(state: Any) -> Any:
    """Return a state dict (nested dicts, lists, tensors) with every tensor on the CPU."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {key: _on_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_on_cpu(value) for value in state)
    return state
