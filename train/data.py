"""Find and load MNIST splits from IDX files (any folder, or explicit files)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitvae.runtime.digits.idx import labels_beside, read_mnist_images, read_mnist_pair
from digitvae.runtime.errors import DataFormatError
from digitvae.runtime.folders.reading import sha256_file

logger = logging.getLogger(__name__)

_IMAGES = re.compile(r"^(?P<prefix>.+?)[-.]images[-.]idx3[-.]ubyte(?:\.gz)?$")
_SPLIT_PREFIXES = {"train": ("train",), "valid": ("valid", "val", "t10k", "test")}


@dataclass(frozen=True)
class Split:
    """The digits of one split as uint8 [N,28,28], with labels when a labels file sits beside them."""

    images_path: Path
    images: np.ndarray
    labels: np.ndarray | None
    labels_path: Path | None
    sha256: str

    def describe(self) -> dict[str, object]:
        """Return what a manifest records about this split."""
        return {"file": self.images_path.name, "sha256": self.sha256, "digits": int(len(self.images))}


def find_images(directory: Path, split: str) -> Path:
    """Find the one images file of a split ("train" or "valid") in a folder."""
    if not directory.is_dir():
        raise DataFormatError(f"{directory}: no such data folder (run `digitvae data download` or pass --data DIR)")
    prefixes = _SPLIT_PREFIXES[split]
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        match = _IMAGES.match(path.name)
        if not (match and path.is_file() and match["prefix"].lower().startswith(prefixes)):
            continue
        key = path.name.removesuffix(".gz")
        # When both X and X.gz exist they hold the same digits: take the uncompressed one.
        if key not in found or not path.name.endswith(".gz"):
            found[key] = path
    if not found:
        raise DataFormatError(
            f"{directory}: no {split} images file (expected a name like "
            f"{prefixes[0]}-images-idx3-ubyte[.gz]); pass --{split} FILE"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found.values())
        raise DataFormatError(f"{directory}: several {split} images files ({names}); choose one with --{split} FILE")
    return next(iter(found.values()))


def load_split(images_path: Path) -> Split:
    """Read an images file (and its labels, if beside it) with full validation."""
    labels_path = labels_beside(images_path)
    if labels_path is None:
        images, labels = read_mnist_images(images_path), None
    else:
        images, labels = read_mnist_pair(images_path, labels_path)
    logger.info("read %d digits from %s", len(images), images_path)
    return Split(images_path, images, labels, labels_path, sha256_file(images_path))


def load_splits(data_dir: Path | None, train: Path | None, valid: Path | None) -> tuple[Split, Split]:
    """Resolve the training and validation files from a folder and/or explicit paths, and read them."""
    if train is None or valid is None:
        if data_dir is None:
            from .download import default_data_dir

            data_dir = default_data_dir()
        train = train if train is not None else find_images(data_dir, "train")
        valid = valid if valid is not None else find_images(data_dir, "valid")
    return load_split(Path(train)), load_split(Path(valid))
