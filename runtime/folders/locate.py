"""Find model folders: the shipped ones by name, any other by path."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, ModelNotFoundError
from .manifest import MANIFEST_NAME

DEFAULT_MODEL = "mnist-vae"


def shipped_models_dir() -> Path:
    """Return the folder that holds the models installed with the package."""
    import importlib

    models = importlib.import_module("digitvae.models")
    return Path(str(models.__file__)).resolve().parent


def list_shipped_models() -> list[str]:
    """Return the names of the models installed with the package."""
    root = shipped_models_dir()
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_NAME).is_file())


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """Turn a shipped model name or a folder path into an existing model folder."""
    if not isinstance(model, (str, os.PathLike)):
        raise InputError(f"model must be a shipped model name or a folder path, got {type(model).__name__} {model!r}")
    text = os.fspath(model)
    if not text:
        raise InputError("model is empty: give a shipped model name (such as 'mnist-vae') or a folder path")
    try:
        if text and os.sep not in text and "/" not in text and text not in (".", ".."):
            shipped = shipped_models_dir() / text
            if (shipped / MANIFEST_NAME).is_file():
                return shipped
        path = Path(text).expanduser()
        if path.is_file() and path.name == MANIFEST_NAME:
            path = path.parent
        if path.is_dir():
            return path
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte, ...
        raise ModelNotFoundError(f"no model {text[:80]!r}: {getattr(exc, 'strerror', None) or exc}") from None
    names = ", ".join(list_shipped_models()) or "none installed"
    raise ModelNotFoundError(f"no model {text!r}: not a shipped model name ({names}) and not a model folder")
