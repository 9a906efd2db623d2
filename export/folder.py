"""Write a whole model folder at once: a reader sees the old folder or the complete new one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from digitvae.runtime.errors import OutputError
from digitvae.runtime.manifest import MANIFEST_NAME, Manifest


def variant_file(variant: str, role: str) -> str:
    """Return the file name of one role of one variant, e.g. decoder.int8.onnx."""
    return f"{role}.onnx" if variant == "fp32" else f"{role}.{variant}.onnx"


def folder_files(model_dir: Path) -> dict[str, bytes]:
    """Return every regular file of a model folder but model.json (name -> bytes), to carry over a rewrite."""
    return {p.name: p.read_bytes() for p in Path(model_dir).iterdir() if p.is_file() and p.name != MANIFEST_NAME}


def write_model_folder(out_dir: Path, files: dict[str, bytes], manifest: Manifest, *, force: bool) -> None:
    """Write the model's files (name -> bytes) into a temporary sibling folder, then swap it into place."""
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=parent))
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the model folder: {exc.strerror}") from None
    old: Path | None = None
    try:
        for filename, blob in files.items():
            (staging / filename).write_bytes(blob)
        (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        os.chmod(staging, 0o755)
        if out_dir.exists():
            if not force and (not out_dir.is_dir() or any(out_dir.iterdir())):
                raise OutputError(f"{out_dir} already exists and is not empty; pass --force to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=parent))
            os.replace(out_dir, old / "model")
        os.replace(staging, out_dir)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not out_dir.exists():
            os.replace(old / "model", out_dir)  # put the previous model back
        if isinstance(exc, OSError):
            raise OutputError(f"{out_dir}: cannot write the model: {exc.strerror}") from None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
