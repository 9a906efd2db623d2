"""Model and training configurations, and the named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from digitvae.runtime.errors import CheckpointError, InputError


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of the MLP VAE; saved inside every checkpoint."""

    input_dim: int = 784
    encoder_hidden: tuple[int, ...] = (500, 500)
    decoder_hidden: tuple[int, ...] = (500, 500)
    latent_dim: int = 20
    activation: str = "elu"
    #: "he": TF's variance_scaling_initializer (truncated normal, factor 2, fan-in).
    init: str = "he"

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise InputError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in ("he", "torch"):
            raise InputError(f"init must be 'he' or 'torch', got {self.init!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; saved inside every checkpoint."""

    epochs: int = 50
    batch_size: int = 150
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")


@dataclass(frozen=True)
class Preset:
    """A named pair of model and training configurations."""

    name: str
    description: str
    model: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


ACTIVATIONS = ("elu", "relu", "tanh")

PRESETS: dict[str, Preset] = {
    "geron": Preset(
        name="geron",
        description=(
            "the classic MLP VAE: 784-500-500 encoder, 20 latents, 500-500-784 decoder, ELU, "
            "He init, Adam 1e-3, batch 150, 50 epochs"
        ),
    ),
}


def get_preset(name: str) -> Preset:
    """Return a preset by name, or raise InputError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}") from None


def with_overrides(config: Any, **overrides: Any) -> Any:
    """Return a copy of a config dataclass with the given fields replaced (None means keep)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def to_dict(config: Any) -> dict[str, Any]:
    """Return a config dataclass as plain JSON-ready data."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def from_dict(cls: type, data: Any) -> Any:
    """Rebuild a config dataclass from checkpoint data, refusing unknown or missing fields."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{cls.__name__} in checkpoint must be a dict, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{cls.__name__} in checkpoint has unknown fields {unknown}; made by a newer digitvae?")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, InputError) as exc:
        raise CheckpointError(f"{cls.__name__} in checkpoint is invalid: {exc}") from None
