"""Write into a model folder: its figures into model.json, checked first by the readers' rules, under a lock."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import DigitVAEError, ModelError, OutputError
from ..logs import get_logger
from .manifest import MANIFEST_NAME, Manifest, parse_manifest
from .reading import DuplicateKeyError, read_json, read_manifest, refuse_constant, unique_keys

logger = get_logger(__name__)


def update_metrics(model_dir: Path, entries: Mapping[str, Any], merge: str | None = None) -> Manifest:
    """Store entries under `metrics` in model_dir/model.json, atomically; return the new manifest.

    This is the one writer of figures into an existing model folder. The JSON is edited as
    read, so fields this version does not model are kept, and each entry replaces its key
    (the entry named by `merge` is merged one level deep: metrics.likelihood.<variant>).
    """
    from ..atomic import atomic_write

    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_NAME
    with model_folder_lock(model_dir):
        read_manifest(model_dir)  # refuse to edit anything that is not a valid manifest
        data = read_json(model_dir)
        metrics = data.setdefault("metrics", {})
        if not isinstance(metrics, dict):
            raise ModelError(f"{path}: field 'metrics' must be an object")
        for key, value in entries.items():
            if key == merge and isinstance(metrics.get(key), dict):
                metrics[key].update(value)
            else:
                metrics[key] = value
        try:
            text = json.dumps(data, indent=2) + "\n"
        except (TypeError, ValueError) as exc:  # a figure that JSON cannot hold
            raise ModelError(f"{path} not written: its metrics cannot be written as JSON ({exc})") from None
        check_manifest_text(text, model_dir)
        with atomic_write(path, "w") as fh:
            fh.write(text)
    logger.info("wrote metrics %s to %s", ", ".join(entries), path)
    return read_manifest(model_dir)


def check_manifest_text(text: str, model_dir: Path, *, target: Path | None = None) -> Manifest:
    """Read a model.json about to be written into model_dir by the readers' rules; raise ModelError if one would refuse it.

    The error says that `target` (model_dir/model.json unless given) was not written, and why.

    The rules are those of `read_manifest`, of the readers of the figures that commands read
    back (`metrics.score`: score, OutlierDetector; `metrics.latent_plane`: manifold), and of
    strict JSON: NaN and Infinity, which Python reads, stop the browser's `response.json()`.
    """
    from ..inference.latent import manifold_codes
    from ..outliers.scoring import Calibration

    path = model_dir / MANIFEST_NAME
    try:
        manifest = parse_manifest(
            json.loads(text, object_pairs_hook=unique_keys, parse_constant=refuse_constant), str(path)
        )
        if isinstance(manifest.metrics.get("score"), Mapping):
            Calibration.from_metrics(manifest.metrics)
        if manifest.metrics.get("latent_plane") is not None:
            manifold_codes(manifest.latent_dim, 2, manifest.metrics["latent_plane"])
    except (DigitVAEError, ValueError, DuplicateKeyError) as exc:
        raise ModelError(f"{target or path} not written: the new {MANIFEST_NAME} would not load: {exc}") from None
    return manifest


@contextlib.contextmanager
def model_folder_lock(model_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of a model folder, across processes.

    The lock is taken on the folder's parent directory, which outlives the folder being
    replaced by a rename, and leaves no file behind. Without fcntl (Windows) it does nothing.
    Once it is held, what a writer killed outright left beside the folder is tidied (and a
    folder it had moved aside put back) before the folder is read: see atomic.recover_leftovers.
    """
    from ..atomic import recover_leftovers

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    parent = Path(model_dir).resolve().parent
    try:
        fd = os.open(parent, os.O_RDONLY)
    except OSError as exc:
        raise OutputError(f"cannot lock {parent} to update {model_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        recover_leftovers(model_dir)
        yield
    finally:
        os.close(fd)
