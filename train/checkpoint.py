"""Checkpoints: config, weights, optimizer state and progress in one file, written atomically."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from digitvae.runtime.atomic import atomic_write
from digitvae.runtime.errors import CheckpointError

from .config import TrainConfig, VAEConfig, from_dict, to_dict

FORMAT = "digitvae-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """Everything needed to resume training or to export the model."""

    model_config: VAEConfig
    train_config: TrainConfig
    preset: str
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    epoch: int
    generator_state: torch.Tensor
    #: Per epoch: its number, losses and seconds; valid_loss is None in epochs that skip validation.
    history: list[dict[str, float | None]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    seconds: float = 0.0
    package_version: str = ""

    def to_state(self) -> dict[str, Any]:
        """Return the checkpoint as a dict of plain data and tensors (loadable with weights_only)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_config": to_dict(self.model_config),
            "train_config": to_dict(self.train_config),
            "preset": self.preset,
            "model": self.model_state,
            "optimizer": self.optimizer_state,
            "epoch": self.epoch,
            "generator": self.generator_state,
            "history": self.history,
            "best": self.best,
            "data": self.data,
            "command": self.command,
            "seconds": self.seconds,
            "package_version": self.package_version,
        }


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    """Write a checkpoint to a temporary file beside path, then rename it into place."""
    # atomic_write also cleans up on KeyboardInterrupt: the previous checkpoint stays usable.
    with atomic_write(path) as fh:
        torch.save(checkpoint.to_state(), fh)


def read_state(path: Path, fmt: str, version: int, kind: str) -> dict[str, Any]:
    """Load a torch-saved dict safely and check its format and version; `kind` names it in errors."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {kind} file")
    try:
        # weights_only: a checkpoint is data, never code to unpickle.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise CheckpointError(f"{path}: not a readable digitvae {kind} ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise CheckpointError(f"{path}: not a digitvae {kind}")
    if state.get("version") != version:
        raise CheckpointError(f"{path}: {kind} version {state.get('version')!r} is not supported (expected {version})")
    return state


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and validate a checkpoint written by save_checkpoint."""
    path = Path(path)
    state = read_state(path, FORMAT, VERSION, "checkpoint")
    try:
        return Checkpoint(
            model_config=from_dict(VAEConfig, state["model_config"]),
            train_config=from_dict(TrainConfig, state["train_config"]),
            preset=str(state["preset"]),
            model_state=state["model"],
            optimizer_state=state["optimizer"],
            epoch=int(state["epoch"]),
            generator_state=state["generator"],
            history=list(state["history"]),
            best=dict(state["best"]),
            data=dict(state["data"]),
            command=str(state["command"]),
            seconds=float(state["seconds"]),
            package_version=str(state["package_version"]),
        )
    except KeyError as exc:
        raise CheckpointError(f"{path}: checkpoint lacks field {exc.args[0]!r}") from None
