"""A small CNN digit classifier, the feature extractor behind the sample-quality metrics: trained once per training set."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitvae.runtime._version import __version__
from digitvae.runtime.arrays import as_images
from digitvae.runtime.atomic import atomic_write
from digitvae.runtime.errors import CheckpointError, DataFormatError, InputError
from digitvae.runtime.folders.reading import sha256_file

from .checkpoint import read_state
from .config import DIGIT_CLASSES, from_dict, to_dict, with_overrides

if TYPE_CHECKING:
    from .data import Split

logger = logging.getLogger(__name__)

FORMAT = "digitvae-classifier"
VERSION = 1
# Mean and standard deviation of MNIST pixels in [0, 1]: centred inputs train faster.
_PIXEL_MEAN, _PIXEL_STD = 0.1307, 0.3081
#: Digits per forward pass when scoring.
_BATCH = 1000
#: Where trained classifiers are cached, one file per training set (named by its sha256).
CACHE_DIR = Path("runs")


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture: two 3x3 conv layers with max pooling, a feature layer and a 10-way head."""

    conv1: int = 16
    conv2: int = 32
    features: int = 128
    dropout: float = 0.25
    batch_norm: bool = True

    def __post_init__(self) -> None:
        if min(self.conv1, self.conv2, self.features) < 1:
            raise InputError(f"layer sizes must be at least 1, got {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Optimisation settings: Adam with a linearly decaying rate, random shifts of up to max_shift pixels."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    max_shift: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError(f"epochs and batch size must be at least 1, got {self.epochs} and {self.batch_size}")
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.max_shift <= 8:
            raise InputError(f"max_shift must be in 0..8 pixels, got {self.max_shift}")


class DigitClassifier(nn.Module):
    """CNN over [N,1,28,28] images in [0,1]; `embed` gives the penultimate features."""

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ClassifierConfig()
        self.conv1 = nn.Conv2d(1, config.conv1, 3, padding=1)
        self.conv2 = nn.Conv2d(config.conv1, config.conv2, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(config.conv1) if config.batch_norm else nn.Identity()
        self.norm2 = nn.BatchNorm2d(config.conv2) if config.batch_norm else nn.Identity()
        self.hidden = nn.Linear(config.conv2 * 7 * 7, config.features)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.features, DIGIT_CLASSES)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the penultimate (post-ReLU) activations [N, features]."""
        h = (x - _PIXEL_MEAN) / _PIXEL_STD
        h = F.max_pool2d(F.relu(self.norm1(self.conv1(h))), 2)
        h = F.max_pool2d(F.relu(self.norm2(self.conv2(h))), 2)
        return F.relu(self.hidden(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits [N, 10]."""
        return self.head(self.dropout(self.embed(x)))

    def features(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return penultimate features float64 [N, 128] and class probabilities float64 [N, 10] of digits."""
        x = torch.from_numpy(as_images(images))
        self.eval()
        feats, probs = [], []
        with torch.no_grad():
            for i in range(0, len(x), _BATCH):
                h = self.embed(x[i : i + _BATCH])
                feats.append(h.double().numpy())
                probs.append(torch.softmax(self.head(h).double(), dim=1).numpy())
        return np.concatenate(feats), np.concatenate(probs)


@dataclass
class ClassifierCheckpoint:
    """A trained classifier with what it was trained on and how well it did."""

    model: DigitClassifier
    train_config: ClassifierTrainConfig
    data: dict[str, Any] = field(default_factory=dict)
    valid_accuracy: float | None = None
    seconds: float = 0.0
    package_version: str = __version__


def _shifted(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Move each image by its own random offset in [-max_shift, max_shift]^2, filling with black."""
    n, side = len(x), x.shape[-1]
    padded = F.pad(x[:, 0], (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator)
    steps = torch.arange(side)
    rows, cols = (dy + steps)[:, :, None], (dx + steps)[:, None, :]
    return padded[torch.arange(n)[:, None, None], rows, cols][:, None]


def _check_labelled(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(as_images(images))
    y = np.asarray(labels)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= DIGIT_CLASSES:
        raise InputError(f"labels must be {len(x)} integers in 0..9, got shape {list(y.shape)}, dtype {y.dtype}")
    return x, torch.from_numpy(y.astype(np.int64))


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    config: ClassifierConfig | None = None,
    train_config: ClassifierTrainConfig | None = None,
) -> DigitClassifier:
    """Train a classifier on labelled digits; a seed and thread count give the same weights on one machine."""
    cfg = with_overrides(train_config or ClassifierTrainConfig(), epochs=epochs, seed=seed)
    x, y = _check_labelled(images, labels)
    # A private RNG stream keeps training reproducible without disturbing the caller's torch seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = DigitClassifier(config)
        generator = torch.Generator().manual_seed(cfg.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        steps = cfg.epochs * -(-len(x) // cfg.batch_size)
        # A linear decay to zero settles the weights without tuning a schedule per data size.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
        start = time.perf_counter()
        model.train()
        for epoch in range(1, cfg.epochs + 1):
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for i in range(0, len(x), cfg.batch_size):
                batch = order[i : i + cfg.batch_size]
                xb = _shifted(x[batch], cfg.max_shift, generator) if cfg.max_shift else x[batch]
                loss = F.cross_entropy(model(xb), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                schedule.step()
                total += loss.item() * len(batch)
            logger.info("classifier epoch %d/%d: loss %.4f", epoch, cfg.epochs, total / len(x))
        logger.info("trained the classifier on %d digits in %.1fs", len(x), time.perf_counter() - start)
    model.eval()
    return model


def accuracy(classifier: DigitClassifier, images: Any, labels: np.ndarray) -> float:
    """Return the fraction of digits whose most probable class is their label."""
    _, probs = classifier.features(images)
    labels = np.asarray(labels)
    if labels.shape != (len(probs),):
        raise InputError(f"labels must be shaped [{len(probs)}], got {list(labels.shape)}")
    return float(np.mean(probs.argmax(1) == labels))


def save_classifier(checkpoint: ClassifierCheckpoint, path: Path) -> None:
    """Write a classifier checkpoint to a temporary file beside path, then rename it into place."""
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": to_dict(checkpoint.model.config),
        "train_config": to_dict(checkpoint.train_config),
        "model": checkpoint.model.state_dict(),
        "data": checkpoint.data,
        "valid_accuracy": checkpoint.valid_accuracy,
        "seconds": checkpoint.seconds,
        "package_version": checkpoint.package_version,
    }
    with atomic_write(path) as fh:
        torch.save(state, fh)


def load_classifier(path: Path) -> ClassifierCheckpoint:
    """Read and validate a checkpoint written by save_classifier."""
    path = Path(path)
    state = read_state(path, FORMAT, VERSION, "classifier checkpoint")
    try:
        model = DigitClassifier(from_dict(ClassifierConfig, state["config"]))
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path}: weights do not fit the saved architecture ({exc})") from None
        model.eval()
        accuracy_ = state["valid_accuracy"]
        return ClassifierCheckpoint(
            model=model,
            train_config=from_dict(ClassifierTrainConfig, state["train_config"]),
            data=dict(state["data"]),
            valid_accuracy=None if accuracy_ is None else float(accuracy_),
            seconds=float(state["seconds"]),
            package_version=str(state["package_version"]),
        )
    except KeyError as exc:
        raise CheckpointError(f"{path}: classifier checkpoint lacks field {exc.args[0]!r}") from None


def labels_of(split: Split) -> tuple[np.ndarray, Path]:
    """Return a split's labels and their file, refusing a split without them."""
    if split.labels is None or split.labels_path is None:
        raise DataFormatError(
            f"{split.images_path}: the quality metrics need labels; put its labels file "
            "(e.g. train-labels-idx1-ubyte.gz) beside it"
        )
    return split.labels, split.labels_path


def describe_labelled(split: Split) -> dict[str, Any]:
    """Describe a labelled split, refusing one without labels."""
    return {**split.describe(), "labels_sha256": sha256_file(labels_of(split)[1])}


def classifier_for(
    path: Path | None, train: Split, valid: Split, say: Callable[[str], None] = logger.info
) -> tuple[ClassifierCheckpoint, Path]:
    """Load the classifier trained on these digits, or train and save one; `say` tells of training.

    Without `path`, the classifier is cached in CACHE_DIR under the training set's sha256, and a
    cached one trained with other than the default settings is trained again.
    """
    data = {"train": describe_labelled(train), "valid": describe_labelled(valid)}
    cached = path is None
    if path is None:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        path = CACHE_DIR / f"classifier-{train.sha256[:12]}.pt"
    if path.exists():
        ckpt = _load_matching(path, data["train"])
        # A cached classifier from other default settings is stale; one named by the user is used as is.
        if not cached or (ckpt.model.config, ckpt.train_config) == (ClassifierConfig(), ClassifierTrainConfig()):
            return ckpt, path
        say(f"{path} was trained with other settings; training it again")
    return _train_and_save(path, train, valid, data, say), path


def _load_matching(path: Path, wanted: dict[str, Any]) -> ClassifierCheckpoint:
    """Load a saved classifier, refusing one trained on other digits than `wanted` describes."""
    ckpt = load_classifier(path)
    seen = ckpt.data.get("train", {})
    if (seen.get("sha256"), seen.get("labels_sha256")) != (wanted["sha256"], wanted["labels_sha256"]):
        raise CheckpointError(
            f"{path}: this classifier was trained on {seen.get('file', 'other digits')} "
            f"(sha256 {str(seen.get('sha256'))[:12]}...), not on {wanted['file']} "
            f"(sha256 {wanted['sha256'][:12]}...); pass another --classifier or delete it"
        )
    return ckpt


def _train_and_save(
    path: Path, train: Split, valid: Split, data: dict[str, Any], say: Callable[[str], None]
) -> ClassifierCheckpoint:
    """Train the classifier with the default settings, measure it on the validation digits, save it."""
    say(f"training the digit classifier on {len(train.images)} digits ({train.images_path.name})")
    train_config = ClassifierTrainConfig()
    start = time.perf_counter()
    model = train_classifier(train.images, labels_of(train)[0], train_config=train_config)
    seconds = time.perf_counter() - start
    ckpt = ClassifierCheckpoint(
        model=model,
        train_config=train_config,
        data=data,
        valid_accuracy=accuracy(model, valid.images, labels_of(valid)[0]),
        seconds=seconds,
    )
    save_classifier(ckpt, path)
    say(f"trained in {seconds:.1f}s, {ckpt.valid_accuracy:.2%} accurate on {valid.images_path.name}; saved {path}")
    return ckpt
