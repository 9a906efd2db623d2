"""Open a model folder's ONNX files as onnxruntime sessions, each file and each signature checked first."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError, ProviderError
from ..folders.manifest import Manifest, ModelFile
from ..folders.reading import checked_graph
from .contract import check_signatures, trial_run
from .sessions import open_session, session_options

if TYPE_CHECKING:
    import onnxruntime as ort

    from .providers import Plan

logger = logging.getLogger(__name__)


def open_checked(
    model_dir: Path,
    manifest: Manifest,
    files: Mapping[str, ModelFile],
    threads: Mapping[str, int | None],
    plan: Plan | None = None,
    *,
    strict: bool = False,
) -> tuple[dict[str, ort.InferenceSession], dict[str, bytes]]:
    """Open each role's file as a session on `plan`'s providers; return the sessions and the bytes they run.

    Each file is checked against its sha256 and for references to other files before
    onnxruntime sees it; then every signature is checked against the ONNX contract and each
    session runs once on a small batch. A plugin EP that cannot compile a graph leaves that
    graph on the CPU provider (a warning), or is a ProviderError when `strict`.
    `threads` gives each role's intra-op threads (None or 0: onnxruntime's default).
    """
    sessions: dict[str, ort.InferenceSession] = {}
    blobs: dict[str, bytes] = {}
    for role, entry in files.items():
        blobs[role] = data = checked_graph(model_dir, entry)
        try:
            sessions[role] = open_session(data, session_options(threads.get(role)), plan)
        except Exception as exc:  # onnxruntime raises several unrelated types for bad models
            # A plugin EP that fails to compile the graph, or a broken graph: the CPU provider tells.
            fallback = _cpu_session(data, threads.get(role)) if plan is not None and plan.plugins else None
            if fallback is None:
                raise ModelError(f"{model_dir / entry.path}: onnxruntime cannot load it: {exc}") from None
            sessions[role] = fallback
            assert plan is not None
            message = f"{', '.join(c.ep_name for c in plan.plugins)} cannot run {entry.path}: {exc}"
            if strict:
                raise ProviderError(message) from None
            logger.warning("%s; running it on CPUExecutionProvider", message)
    check_signatures(model_dir, manifest, sessions)
    trial_run(model_dir, manifest, sessions)
    return sessions, blobs


def _cpu_session(data: bytes, threads: int | None) -> ort.InferenceSession | None:
    """Return a CPU session on a graph, or None when onnxruntime cannot load it at all."""
    try:
        return open_session(data, session_options(threads))
    except Exception:
        return None
