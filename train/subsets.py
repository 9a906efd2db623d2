"""The 5,000-digit MNIST subsets the shipped models are trained and measured on, made from the official files.

`train5k` is 500 digits of each class from MNIST's official training set (60,000 digits), in a
fixed shuffled order, so any prefix is roughly class-balanced. `valid5k` is the first 5,000
digits of the official test set (t10k), in their order. The training subset cannot be named
by a rule, so it is stored as one 8-byte fingerprint (the start of the sha256 of the 784 pixel
bytes) and the label of each of its digits, in order (`train5k.npz`, 43 kB); `make_subsets`
finds each digit in the downloaded files and checks the result against the sha256 of the
subsets' full contents. The files are gzipped as they were first published (level 9, their
inner name, no time), so with zlib's deflate they are byte for byte the files whose sha256
the shipped models' model.json records under `training.data`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from digitvae.runtime.digits.idx import idx_bytes, read_mnist_pair, write_idx
from digitvae.runtime.errors import DataFormatError

logger = logging.getLogger(__name__)

#: sha256 of each subset's uncompressed IDX contents (header and data), images then labels.
CONTENTS = {
    "train5k": (
        "1d63efb4ac5ab122c73fed605a3f2897fe3ede87e9b4e9fe369abbdd36dad1e7",
        "d212e5beab3667d7fe028273e33cf4cd1e584108be3fdcc5dde1f59e74a2a558",
    ),
    "valid5k": (
        "118ae22e5d4e94bb7f7335211629ca4da103e2b74481bd772edf32b2aff5970f",
        "24f8aa7197fa0ee1ceb43e0809492febb35d3bdb1d1c31379ca14bd851f82ba7",
    ),
}
#: The official files each subset is made from (as `digitvae data download` names them).
SOURCES = {
    "train5k": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "valid5k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SUBSET_SIZE = 5000
FINGERPRINT_BYTES = 8


@dataclass(frozen=True)
class Subset:
    """One subset's digits, uint8 [5000, 28, 28], and labels, uint8 [5000]."""

    name: str
    images: np.ndarray
    labels: np.ndarray

    def file_names(self) -> tuple[str, str]:
        """Return the subset's images and labels file names."""
        return f"{self.name}-images-idx3-ubyte.gz", f"{self.name}-labels-idx1-ubyte.gz"


def fingerprints(images: np.ndarray) -> np.ndarray:
    """Return each digit's fingerprint, uint64 [N]: the first 8 bytes of the sha256 of its pixels."""
    flat = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    return np.array(
        [int.from_bytes(hashlib.sha256(row.tobytes()).digest()[:FINGERPRINT_BYTES], "big") for row in flat],
        dtype=np.uint64,
    )


def stored_train5k() -> tuple[np.ndarray, np.ndarray]:
    """Return train5k's fingerprints, uint64 [5000], and labels, uint8 [5000], in its order."""
    with resources.files("digitvae.train").joinpath("train5k.npz").open("rb") as fh, np.load(fh) as data:
        return data["fingerprint"].astype(np.uint64), data["label"].astype(np.uint8)


def select_train5k(images: np.ndarray, labels: np.ndarray) -> Subset:
    """Pick train5k's digits out of MNIST's training set (images [60000, 28, 28], labels [60000])."""
    wanted, wanted_labels = stored_train5k()
    rows: dict[tuple[int, int], list[int]] = {}
    for i, (key, label) in enumerate(zip(fingerprints(images).tolist(), labels.tolist())):
        rows.setdefault((key, label), []).append(i)
    picked: list[int] = []
    for key, label in zip(wanted.tolist(), wanted_labels.tolist()):
        found = rows.get((key, label))
        if not found:
            raise DataFormatError(
                f"{len(picked)} of {SUBSET_SIZE} train5k digits found, then one is missing: these are not "
                "MNIST's official training files (get them with `digitvae data download`)"
            )
        picked.append(found.pop(0) if len(found) > 1 else found[0])
    index = np.array(picked)
    return Subset("train5k", images[index], labels[index])


def select_valid5k(images: np.ndarray, labels: np.ndarray) -> Subset:
    """Pick valid5k's digits: the first 5,000 of MNIST's test set."""
    return Subset("valid5k", images[:SUBSET_SIZE], labels[:SUBSET_SIZE])


def make_subsets(source: Path, out_dir: Path, names: tuple[str, ...] = ("train5k", "valid5k")) -> list[Path]:
    """Write the named subsets, made from the official MNIST files in `source`, into out_dir; return their paths.

    Each subset is checked against the sha256 of its contents before anything is written (or
    out_dir made), so the folder gets the four files whole or nothing new.
    """
    made = []
    for name in names:
        images_name, labels_name = SOURCES[name]
        images, labels = read_mnist_pair(source / images_name, source / labels_name)
        subset = select_train5k(images, labels) if name == "train5k" else select_valid5k(images, labels)
        _check(subset)
        made.append(subset)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for subset in made:
        for array, file_name in zip((subset.images, subset.labels), subset.file_names()):
            write_idx(array, out_dir / file_name, level=9, inner_name=file_name.removesuffix(".gz"))
            paths.append(out_dir / file_name)
    logger.info("wrote %s to %s", ", ".join(s.name for s in made), out_dir)
    return paths


def _check(subset: Subset) -> None:
    """Raise DataFormatError unless a subset's images and labels have the contents recorded for it."""
    found = tuple(hashlib.sha256(idx_bytes(a)).hexdigest() for a in (subset.images, subset.labels))
    if found != CONTENTS[subset.name]:
        raise DataFormatError(
            f"{subset.name} made from these files differs from the one the shipped models were trained on "
            f"(contents sha256 {found[0][:16]}..., expected {CONTENTS[subset.name][0][:16]}...): "
            "these are not MNIST's official files (get them with `digitvae data download`)"
        )
