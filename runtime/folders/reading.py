"""Read a model folder safely: model.json strictly, ONNX files checked against their sha256."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, ModelError
from .manifest import MANIFEST_NAME, Manifest, ModelFile, parse_manifest
from .onnxscan import check_self_contained

#: Largest model.json read: ours hold about 20 kB; 50 MB of small JSON objects would take 1.3 GiB.
MAX_MANIFEST_BYTES = 4 << 20
#: Largest ONNX file read: ours hold 0.2-3 MB.
MAX_ONNX_BYTES = 512 << 20


def read_manifest(model_dir: Path) -> Manifest:
    """Read and validate model_dir/model.json."""
    path = model_dir / MANIFEST_NAME
    if not path.exists():
        raise ModelError(
            f"{model_dir}: no {MANIFEST_NAME} (a model folder holds {MANIFEST_NAME}, encoder.onnx, decoder.onnx)"
        )
    manifest = parse_manifest(read_json(model_dir), str(path))
    if not manifest.name:
        manifest = replace(manifest, name=model_dir.name)
    return manifest


def read_json(model_dir: Path) -> Any:
    """Return model_dir/model.json decoded: UTF-8 (a leading BOM is allowed), no key given twice."""
    path = model_dir / MANIFEST_NAME
    try:
        text = read_model_file(model_dir, MANIFEST_NAME, MAX_MANIFEST_BYTES).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except RecursionError:
        raise ModelError(f"{path}: not valid JSON (nested too deeply)") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # an integer of thousands of digits, beyond Python's conversion limit
        raise ModelError(f"{path}: not a usable manifest ({exc})") from None
    except DuplicateKeyError as exc:
        # Parsers disagree on which of two values wins; a manifest that says two things says neither.
        raise ModelError(f"{path}: key {exc.args[0]!r} appears twice in one object") from None


def refuse_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}, which is no JSON number (a figure that could not be measured?)")


class DuplicateKeyError(Exception):
    pass


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_model_file(model_dir: Path, name: str, limit: int) -> bytes:
    """Read a file of a model folder: a regular file inside the folder, at most `limit` bytes.

    A FIFO or device would block or never end, and a symlink could point anywhere: each is a
    ModelError, as is a file over the limit (checked before it is read whole).
    """
    path = Path(model_dir) / name
    real = path.resolve()
    if real.parent != Path(model_dir).resolve():
        raise ModelError(f"{path}: a link that leaves the model folder (to {real}); model files must lie inside it")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing (listed in {MANIFEST_NAME})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)  # checked before fdopen, which refuses a directory with its own error
        raise ModelError(
            f"{path}: not a regular file (a directory, FIFO, device or socket); model files must be plain files"
        )
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > limit:
            raise ModelError(f"{path}: {info.st_size:,} bytes, more than the {limit:,} a model file may have")
        # The size just read, plus one byte to notice a file that grows while it is read.
        data = fh.read(info.st_size + 1)
    if len(data) > limit:
        raise ModelError(f"{path}: more than the {limit:,} bytes a model file may have")
    return data


def verified_bytes(model_dir: Path, entry: ModelFile) -> bytes:
    """Read one model file and check it against its sha256; return its bytes."""
    path = model_dir / entry.path
    data = read_model_file(model_dir, entry.path, MAX_ONNX_BYTES)
    found = hashlib.sha256(data).hexdigest()
    if found != entry.sha256:
        raise IntegrityError(
            f"{path}: sha256 mismatch (model.json says {entry.sha256[:16]}..., file has "
            f"{found[:16]}...); the file was modified or corrupted"
        )
    return data


def checked_graph(model_dir: Path, entry: ModelFile) -> bytes:
    """Return one ONNX file's bytes, checked against its sha256 and refused if it reads other files.

    The bytes checked are the bytes returned, so the file cannot change between check and use.
    """
    data = verified_bytes(model_dir, entry)
    check_self_contained(data, model_dir / entry.path)
    return data
