"""Where `digitvae data download` puts MNIST, and the hint a missing MNIST file gets."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MNIST_NAMES", "default_data_dir", "download_hint"]

#: The four official MNIST file names, as the mirrors serve them.
MNIST_NAMES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def default_data_dir() -> Path:
    """Return $DIGITVAE_DATA, else $XDG_CACHE_HOME/digitvae/mnist (XDG_CACHE_HOME defaults to ~/.cache)."""
    explicit = os.environ.get("DIGITVAE_DATA")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "digitvae" / "mnist"


def _is_mnist_file(path: Path) -> bool:
    """Tell whether a path names an official MNIST file (gunzipped too) or sits in the default data folder."""
    if path.name in MNIST_NAMES or path.name + ".gz" in MNIST_NAMES:
        return True
    try:
        return path.expanduser().absolute().parent == default_data_dir().absolute()
    except (OSError, RuntimeError):  # no home folder to expand
        return False


def download_hint(path: str | os.PathLike[str]) -> str:
    """Return what to add to "no such file" for a missing MNIST file ("" for another file)."""
    if not _is_mnist_file(Path(path)):
        return ""
    return f"; get MNIST with `digitvae data download` (it writes to {default_data_dir()}, or --dir DIR)"
