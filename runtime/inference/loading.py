"""Open a model folder's ONNX files as onnxruntime sessions, each file and each signature checked first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError, ProviderError
from ..folders.compose import images_only
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


#: The roles a CPU-only load opens on first use: generating needs none of them. The decoder's
#: images come from its images-only graph, opened at load (see open_model).
LAZY_ROLES = ("encoder", "prior_density", "decoder")


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
    speak for every file then. Returns the sessions by role, with "images" for the session that
    makes the decoder's images, and the verified bytes of every file. On the CPU alone that is
    the decoder's graph with `image` its only output (folders.compose.images_only: the same
    nodes, no logits copied out), opened now, while the whole decoder, needed for its logits,
    opens on first use; elsewhere it is the decoder itself.
    """
    files = manifest.files(variant)
    # The prior's graphs are small: a thread pool of their own would only spin beside the
    # decoder's and steal its cores (4 ms stalls of batch-1 calls on two cores).
    role_threads = {role: 1 if role in PRIOR_ROLES else threads for role in roles}
    cpu_only = plan.names == ["CPUExecutionProvider"] and not plan.plugins and not plan.record_assignment
    lazy = [role for role in roles if cpu_only and role in LAZY_ROLES]
    sessions: dict[str, LazySession] = {}
    blobs: dict[str, bytes] = {}
    for role in lazy:
        sessions[role], blobs[role] = open_lazily(model_dir, manifest, role, files[role], role_threads[role])
    eager = {role: files[role] for role in roles if role not in lazy}
    opened, eager_blobs = open_checked(model_dir, manifest, eager, role_threads, plan, strict=strict)
    sessions.update((role, LazySession.opened(session)) for role, session in opened.items())
    blobs.update(eager_blobs)
    if "decoder" in lazy:
        images = open_images(model_dir, manifest, files["decoder"], blobs["decoder"], role_threads["decoder"])
        sessions["images"] = LazySession.opened(images) if images is not None else sessions["decoder"]
    elif "decoder" in sessions:
        sessions["images"] = sessions["decoder"]
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


def open_lazily(
    model_dir: Path, manifest: Manifest, role: str, entry: ModelFile, threads: int | None
) -> tuple[LazySession, bytes]:
    """Check one role's file now as `open_checked` does, and open it as a CPU session on first use.

    The sha256, the scan for external data and the declared signature are checked here, from
    the file's bytes; the session and its trial run wait for the first call, whose ModelError
    then says what onnxruntime found. Returns the session to be and the file's verified bytes.
    """
    data = checked_graph(model_dir, entry)
    check_signatures(model_dir, manifest, {role: declared_graph(data, model_dir / entry.path)})

    def opener() -> ort.InferenceSession:
        session = _cpu_session_or_error(data, threads, model_dir / entry.path)
        check_signatures(model_dir, manifest, {role: session})
        trial_run(model_dir, manifest, {role: session})
        logger.debug("opened %s", model_dir / entry.path)
        return session

    return LazySession(opener), data


def open_images(
    model_dir: Path, manifest: Manifest, entry: ModelFile, data: bytes, threads: int | None
) -> ort.InferenceSession | None:
    """Open the decoder's images-only graph as a CPU session and run it once; None where it cannot be derived.

    `data` are the decoder's verified bytes, its declared signature already checked.
    """
    derived = images_only(data)
    if derived is None:
        logger.debug("%s: no images-only graph; images come from the whole decoder", model_dir / entry.path)
        return None
    session = _cpu_session_or_error(derived, threads, model_dir / entry.path)
    trial_run(model_dir, manifest, {"decoder": session})
    return session


def _cpu_session_or_error(data: bytes, threads: int | None, path: Path) -> ort.InferenceSession:
    """Return a CPU session on a graph; ModelError saying what onnxruntime found where it cannot load it."""
    try:
        return open_session(data, session_options(threads))
    except Exception as exc:  # onnxruntime raises several unrelated types for bad models
        raise ModelError(f"{path}: onnxruntime cannot load it: {exc}") from None


def _cpu_session(data: bytes, threads: int | None) -> ort.InferenceSession | None:
    """Return a CPU session on a graph, or None when onnxruntime cannot load it at all."""
    try:
        return open_session(data, session_options(threads))
    except Exception:
        return None
