"""Write a whole model folder at once: a reader sees the old folder or the complete new one."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from digitvae.runtime.atomic import swapped_in
from digitvae.runtime.errors import DigitVAEError, ModelError, OutputError
from digitvae.runtime.folders.manifest import MANIFEST_NAME, Manifest
from digitvae.runtime.folders.reading import read_manifest, verified_bytes
from digitvae.runtime.folders.writing import check_manifest_text, model_folder_lock

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


def write_model_folder(
    out_dir: Path,
    files: dict[str, bytes],
    manifest: Manifest,
    *,
    force: bool,
    measure: Callable[[Path], Mapping[str, Any]] | None = None,
) -> Manifest:
    """Write the model's files (name -> bytes) into a temporary sibling folder, then swap it into place.

    Every ONNX file goes out stamped with the lowest IR version and opsets it needs. The new
    folder is loaded as a reader would (`check_loadable`) before anything is replaced. `measure`,
    if given, is called on the new folder, once it loads, for figures to merge into its metrics
    (one level deep), so that the folder and its figures are replaced in one step. Returns the
    manifest written.
    """
    files, manifest = stamped_files(files, manifest)
    try:
        out_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the model folder: {exc.strerror}") from None

    def move_aside(existing: Path) -> bool:
        if not existing.exists():
            return False
        if not force and (not existing.is_dir() or any(existing.iterdir())):
            raise OutputError(f"{existing} already exists and is not empty; pass --force to replace it")
        return True

    with swapped_in(out_dir, move_aside, lambda exc: f"{out_dir}: cannot write the model: {exc.strerror}") as staging:
        for filename, blob in files.items():
            (staging / filename).write_bytes(blob)
        text = manifest.to_json()
        check_manifest_text(text, out_dir, target=out_dir)
        (staging / MANIFEST_NAME).write_text(text, encoding="utf-8")
        os.chmod(staging, 0o755)
        check_loadable(staging, out_dir)
        if measure is not None:
            metrics = dict(manifest.metrics)
            for key, value in measure(staging).items():
                merged = isinstance(metrics.get(key), Mapping) and isinstance(value, Mapping)
                metrics[key] = {**metrics[key], **value} if merged else value
            manifest = replace(manifest, metrics=metrics)
            text = manifest.to_json()
            check_manifest_text(text, out_dir, target=out_dir)
            (staging / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest


def check_loadable(folder: Path, out_dir: Path) -> None:
    """Load every variant of a new model folder as DigitVAE.load does; raise ModelError if one would not load.

    This holds every writer to the rules of the readers: `folder` is the new folder, not yet in
    `out_dir`'s place, so a folder that no reader could open is never put there.
    """
    from digitvae.runtime.inference.model import DigitVAE

    try:
        manifest = read_manifest(folder)
        for variant in manifest.variants:
            DigitVAE.load(folder, variant=variant, threads=1)
    except DigitVAEError as exc:
        reason = str(exc).replace(str(folder), str(out_dir))
        raise ModelError(f"{out_dir} not written: the new model folder would not load: {reason}") from None


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
