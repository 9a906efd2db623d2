"""Model and training configurations, and the named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from digitvae.runtime.errors import CheckpointError, InputError

ACTIVATIONS = ("elu", "relu", "tanh")
#: Classes of MNIST: the digits 0-9.
DIGIT_CLASSES = 10


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
    #: Classes of a conditional VAE (the label is fed one-hot to encoder and decoder); 0 = unconditional.
    num_classes: int = 0
    #: Components of a diagonal Gaussian mixture prior learned with the model; 0 = the N(0, I) prior.
    prior_components: int = 0
    #: Classes the prior's components are shared out among (prior_components / prior_classes each):
    #: training digits of class c are scored under p(z | c), so the encoder keeps the classes
    #: apart, while encoder and decoder never see a label. 0 = all components for every digit.
    prior_classes: int = 0

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise InputError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if self.num_classes != 0 and not 2 <= self.num_classes <= 1000:
            raise InputError(f"num_classes must be 0 (unconditional) or 2-1000, got {self.num_classes}")
        if not 0 <= self.prior_components <= 10_000:
            raise InputError(f"prior_components must be between 0 (N(0, I)) and 10000, got {self.prior_components}")
        if self.prior_classes and (
            self.num_classes or not self.prior_components or self.prior_components % self.prior_classes
        ):
            raise InputError(
                f"prior_classes ({self.prior_classes}) needs an unconditional model whose prior_components "
                f"({self.prior_components}) it divides"
            )
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
    #: Importance samples in the training bound: 1 is the ELBO, k > 1 the IWAE bound (Burda et al.).
    iw_samples: int = 1
    #: Epochs over which the weight of the latent term rises linearly from 0 to 1 (KL warm-up).
    kl_warmup: int = 0
    #: Share of training digits given a small random rotation, scaling and shift each epoch.
    augment: float = 0.0
    #: "constant", or "cosine": anneal the learning rate to lr_final_ratio * lr over the run.
    lr_schedule: str = "constant"
    lr_final_ratio: float = 0.0
    #: Validate every this many epochs (and after the last); validation costs about 15% of a
    #: short epoch, and with a decaying learning rate the best epoch comes near the end.
    eval_every: int = 1

    def __post_init__(self) -> None:
        if self.eval_every < 1:
            raise InputError(f"eval_every must be at least 1, got {self.eval_every}")
        if self.iw_samples < 1:
            raise InputError(f"iw_samples must be at least 1, got {self.iw_samples}")
        if self.kl_warmup < 0:
            raise InputError(f"kl_warmup must be non-negative, got {self.kl_warmup}")
        if not 0.0 <= self.augment <= 1.0:
            raise InputError(f"augment must be a share between 0 and 1, got {self.augment}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise InputError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
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


_BETTER_MODEL = VAEConfig(latent_dim=32)
#: Augmented digits, the 3-sample IWAE bound and a cosine learning rate from 2e-3; early
#: stopping on the validation split keeps the best epoch.
_BETTER_TRAIN = TrainConfig(
    epochs=250,
    batch_size=150,
    lr=2e-3,
    iw_samples=3,
    augment=0.5,
    lr_schedule="cosine",
    lr_final_ratio=0.02,
    eval_every=5,
)

PRESETS: dict[str, Preset] = {
    "geron": Preset(
        name="geron",
        description=(
            "the classic MLP VAE: 784-500-500 encoder, 20 latents, 500-500-784 decoder, ELU, "
            "He init, Adam 1e-3, batch 150, 50 epochs"
        ),
    ),
    "iwae-aug": Preset(
        name="iwae-aug",
        description=(
            "the default model: the geron network with 32 latents, trained on the 3-sample IWAE bound "
            "with half the digits randomly rotated, scaled and shifted, and a cosine learning rate from "
            "2e-3 over 250 epochs"
        ),
        model=_BETTER_MODEL,
        train=_BETTER_TRAIN,
    ),
    "iwae-mix": Preset(
        name="iwae-mix",
        description=(
            "the iwae-aug recipe with a Gaussian mixture prior learned with the model, 10 components per "
            "class: each training digit's code is scored under its class's components (the labels shape "
            "the latent space only; encoder and decoder never see them)"
        ),
        model=replace(_BETTER_MODEL, prior_components=100, prior_classes=10),
        train=_BETTER_TRAIN,
    ),
    "cvae": Preset(
        name="cvae",
        description="the iwae-aug recipe as a conditional VAE: the digit's class, one-hot, feeds encoder and decoder",
        model=replace(_BETTER_MODEL, num_classes=10),
        train=_BETTER_TRAIN,
    ),
    "vae-2d": Preset(
        name="vae-2d",
        description="the iwae-aug recipe with a 2-D latent, for pictures of the whole latent manifold",
        model=replace(_BETTER_MODEL, latent_dim=2),
        train=replace(_BETTER_TRAIN, epochs=100),
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
