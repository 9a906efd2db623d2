"""Stamp model folders' ONNX files with the lowest IR version and opsets they need, and check the result.

    python scripts/restamp_models.py models/*/

Each folder is rewritten atomically under its lock (digitvae.export.folder.restamp_folder):
only the versions the files declare change, so every file must give the same outputs as
before, which this script checks in onnxruntime on fixed inputs before writing anything
(float16 graphs: see _check). A calibration that names one
of the restamped folders as its reference records that folder's sha256; those records are
moved to the new hashes through the manifest's writer, since the reference computes exactly
what it did.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from digitvae.export.folder import folder_files, restamp_folder
from digitvae.export.opset import lowest_bytes
from digitvae.export.variants import TOLERANCES, differences
from digitvae.runtime.folders.reading import read_manifest
from digitvae.runtime.folders.writing import update_metrics
from digitvae.runtime.inference.sessions import open_session

logger = logging.getLogger("restamp")

_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64}


def _feeds(session: ort.InferenceSession, n: int = 7) -> dict[str, np.ndarray]:
    """Return fixed inputs for a digitvae graph: values in each input's valid range."""
    rng = np.random.default_rng(0)
    feeds = {}
    for arg in session.get_inputs():
        shape = [n, *arg.shape[1:]]
        if arg.name == "label":
            feeds[arg.name] = (np.arange(n) % 10).astype(np.int64)
        elif arg.name in ("image", "uniform"):
            feeds[arg.name] = rng.random(shape, dtype=np.float32)
        else:
            feeds[arg.name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds


def _outputs(blob: bytes) -> dict[str, np.ndarray]:
    session = open_session(blob)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, _feeds(session)), strict=True))


def _check(name: str, before: bytes, after: bytes) -> str | None:
    """Compare a file's outputs before and after; return what is wrong, or None.

    float32 and int8 graphs must give identical numbers. In a float16 graph, onnxruntime's CPU
    provider has no float16 Elu: at opset 18 it inlines Elu's function body in float16, below
    it computes Elu in float32 between casts, so outputs move by float16 rounding, within the
    variant's own tolerances (export.variants.TOLERANCES["fp16"]).
    """
    old, new = _outputs(before), _outputs(after)
    half = ".fp16." in name
    for output, want in old.items():
        diff = differences(want, new[output])
        stat, bound = TOLERANCES["fp16"].get(output, ("scaled", 0.0)) if half else ("scaled", 0.0)
        found = diff["max_scaled_diff" if stat == "scaled" else "mean_abs_diff"]
        logger.info("  %s %s: max |after - before| = %.3g", name, output, diff["max_abs_diff"])
        if not found <= bound:
            return f"{name} output {output!r} moved by {found:.3g} ({stat}; allowed {bound:g})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Restamp each folder given, check outputs, update calibration references."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    renamed: dict[str, str] = {}
    for folder in args.folders:
        for name, blob in sorted(folder_files(folder).items()):
            if name.endswith(".onnx"):
                problem = _check(name, blob, lowest_bytes(blob))
                if problem:
                    logger.error("%s: %s; nothing written", folder, problem)
                    return 1
        changed = restamp_folder(folder)
        logger.info("%s: %d files restamped", folder, len(changed))
        renamed.update(changed)
    for folder in args.folders:
        score = read_manifest(folder).metrics.get("score")
        hashes = ((score or {}).get("reference") or {}).get("sha256") or {}
        if any(sha in renamed for sha in hashes.values()):
            updated = json.loads(json.dumps(score))
            updated["reference"]["sha256"] = {role: renamed.get(sha, sha) for role, sha in hashes.items()}
            update_metrics(folder, {"score": updated})
            logger.info(
                "%s: calibration reference %s now pinned to its restamped files", folder, score["reference"]["model"]
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
