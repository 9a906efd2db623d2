"""Write a whole model folder at once: a reader sees the old folder or the complete new one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from digitvae.runtime.atomic import swapped_in
from digitvae.runtime.errors import OutputError
from digitvae.runtime.manifest import MANIFEST_NAME, Manifest, model_folder_lock, read_manifest, verified_bytes

from .opset import lowest_bytes


def variant_file(variant: str, role: str) -> str:
    """Return the file name of one role of one variant, e.g. decoder.int8.onnx."""
    return f"{role}.onnx" if variant == "fp32" else f"{role}.{variant}.onnx"


def folder_files(model_dir: Path) -> dict[str, bytes]:
    """Return every regular file of a model folder but model.json (name -> bytes), to carry over a rewrite."""
    return {p.name: p.read_bytes() for p in Path(model_dir).iterdir() if p.is_file() and p.name != MANIFEST_NAME}


def stamped_files(files: Mapping[str, bytes], manifest: Manifest) -> tuple[dict[str, bytes], Manifest]:
    """Stamp every ONNX file with the lowest versions it needs; return them with the manifest's sha256 to match.

    Files already at their lowest (all that digitvae makes) keep their bytes; this catches files
    carried over from a folder written before, so that a rewrite leaves no file above its needs.
    """
    stamped = {name: lowest_bytes(blob) if name.endswith(".onnx") else blob for name, blob in files.items()}
    changed = {name: hashlib.sha256(blob).hexdigest() for name, blob in stamped.items() if blob is not files[name]}
    if not changed:
        return stamped, manifest
    variants = {
        variant: {role: replace(f, sha256=changed.get(f.path, f.sha256)) for role, f in entries.items()}
        for variant, entries in manifest.variants.items()
    }
    return stamped, replace(manifest, variants=variants)


def write_model_folder(out_dir: Path, files: dict[str, bytes], manifest: Manifest, *, force: bool) -> None:
    """Write the model's files (name -> bytes) into a temporary sibling folder, then swap it into place.

    Every ONNX file goes out stamped with the lowest IR version and opsets it needs.
    """
    files, manifest = stamped_files(files, manifest)
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=parent))
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the model folder: {exc.strerror}") from None

    def move_aside(existing: Path) -> bool:
        if not existing.exists():
            return False
        if not force and (not existing.is_dir() or any(existing.iterdir())):
            raise OutputError(f"{existing} already exists and is not empty; pass --force to replace it")
        return True

    with swapped_in(staging, out_dir, move_aside, lambda exc: f"{out_dir}: cannot write the model: {exc.strerror}"):
        for filename, blob in files.items():
            (staging / filename).write_bytes(blob)
        (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        os.chmod(staging, 0o755)


def restamp_folder(model_dir: Path) -> dict[str, str]:
    """Stamp a model folder's ONNX files with the lowest versions they need, in place and atomically.

    Every file is checked against its sha256 first. Returns {old sha256: new sha256} of the files
    that changed (their numbers do not: only the versions they declare), for whatever records them.
    """
    model_dir = Path(model_dir)
    with model_folder_lock(model_dir):
        manifest = read_manifest(model_dir)
        listed = {f.path: f for entries in manifest.variants.values() for f in entries.values()}
        files = {**folder_files(model_dir), **{path: verified_bytes(model_dir, f) for path, f in listed.items()}}
        files, stamped = stamped_files(files, manifest)
        now = {f.path: f.sha256 for entries in stamped.variants.values() for f in entries.values()}
        renamed = {f.sha256: now[path] for path, f in listed.items() if now[path] != f.sha256}
        if renamed:
            write_model_folder(model_dir, files, stamped, force=True)
    return renamed
