"""Open a model folder's ONNX files as onnxruntime sessions, each file and each signature checked first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError, ProviderError
from ..folders.manifest import PRIOR_ROLES, Manifest, ModelFile
from ..folders.onnxscan import declared_graph
from ..folders.reading import checked_graph
from ..logs import get_logger
from .contract import check_signatures, trial_run
from .sessions import LazySession, open_session, session_options

if TYPE_CHECKING:
    import onnxruntime as ort

    from .providers import Plan

logger = get_logger(__name__)


#: The roles a CPU-only load opens on first use: generating needs neither.
LAZY_ROLES = ("encoder", "prior_density")


def open_model(
    model_dir: Path,
    manifest: Manifest,
    variant: str,
    roles: Sequence[str],
    threads: int | None,
    plan: Plan,
    *,
    strict: bool = False,
) -> tuple[dict[str, LazySession], dict[str, bytes]]:
    """Open a model's files for these roles, each checked; on the CPU alone, LAZY_ROLES open on first use.

    Other providers open everything at load, so that the providers a model reports and `strict`
    speak for every file then. Returns the sessions and the verified bytes of those opened now.
    """
    files = manifest.files(variant)
    # The prior's graphs are small: a thread pool of their own would only spin beside the
    # decoder's and steal its cores (4 ms stalls of batch-1 calls on two cores).
    role_threads = {role: 1 if role in PRIOR_ROLES else threads for role in roles}
    cpu_only = plan.names == ["CPUExecutionProvider"] and not plan.plugins and not plan.record_assignment
    lazy = [role for role in roles if cpu_only and role in LAZY_ROLES]
    sessions = {role: open_lazily(model_dir, manifest, role, files[role], role_threads[role]) for role in lazy}
    eager = {role: files[role] for role in roles if role not in lazy}
    opened, blobs = open_checked(model_dir, manifest, eager, role_threads, plan, strict=strict)
    sessions.update((role, LazySession.opened(session)) for role, session in opened.items())
    return sessions, blobs


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


def open_lazily(model_dir: Path, manifest: Manifest, role: str, entry: ModelFile, threads: int | None) -> LazySession:
    """Check one role's file now as `open_checked` does, and open it as a CPU session on first use.

    The sha256, the scan for external data and the declared signature are checked here, from
    the file's bytes; the session and its trial run wait for the first call, whose ModelError
    then says what onnxruntime found.
    """
    data = checked_graph(model_dir, entry)
    check_signatures(model_dir, manifest, {role: declared_graph(data, model_dir / entry.path)})

    def opener() -> ort.InferenceSession:
        try:
            session = open_session(data, session_options(threads))
        except Exception as exc:  # onnxruntime raises several unrelated types for bad models
            raise ModelError(f"{model_dir / entry.path}: onnxruntime cannot load it: {exc}") from None
        check_signatures(model_dir, manifest, {role: session})
        trial_run(model_dir, manifest, {role: session})
        logger.debug("opened %s", model_dir / entry.path)
        return session

    return LazySession(opener)


def _cpu_session(data: bytes, threads: int | None) -> ort.InferenceSession | None:
    """Return a CPU session on a graph, or None when onnxruntime cannot load it at all."""
    try:
        return open_session(data, session_options(threads))
    except Exception:
        return None
