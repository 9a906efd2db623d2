"""The ONNX contract: the inputs and outputs every file of a model folder must have."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..arrays import all_finite
from ..errors import InputError, ModelError
from ..folders.manifest import Manifest

if TYPE_CHECKING:
    import onnxruntime as ort

#: The largest input magnitude a model must turn into finite outputs. Codes and noise lie within
#: a few units of 0 and pixels in [0, 1]; beyond this, float32 overflow inside a sound model is
#: the input's doing, while NaN or infinity from inputs within it means the model is broken.
ORDINARY = 1e4


class _Arg(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def shape(self) -> Sequence[Any]: ...


class _Signed(Protocol):
    """An onnxruntime session, or a graph's declared signature (folders.onnxscan.DeclaredGraph)."""

    def get_inputs(self) -> Sequence[_Arg]: ...
    def get_outputs(self) -> Sequence[_Arg]: ...


def check_signatures(model_dir: Path, manifest: Manifest, sessions: Mapping[str, _Signed]) -> None:
    """Refuse ONNX files that do not follow the contract of this manifest (README, "ONNX contract")."""
    d = manifest.latent_dim
    label: dict[str, list[int]] = {"label": []} if manifest.conditional else {}
    draws = {"noise": [d], "uniform": [], "label": []}
    expected: dict[str, tuple[dict[str, list[int]], dict[str, list[int]]]] = {
        "encoder": ({"image": [1, 28, 28], **label}, {"mean": [d], "logvar": [d]}),
        "decoder": ({"z": [d], **label}, {"logits": [1, 28, 28], "image": [1, 28, 28]}),
        "prior": (draws, {"z": [d]}),
        "prior_density": ({"z": [d], "label": []}, {"log_prob": []}),
    }
    for role, session in sessions.items():
        inputs, outputs = expected[role]
        where = f"{model_dir}: {role}"
        for kind, wanted, found in (
            ("input", inputs, session.get_inputs()),
            ("output", outputs, session.get_outputs()),
        ):
            have = {arg.name: arg for arg in found}
            if sorted(have) != sorted(wanted):
                raise ModelError(
                    f"{where} has {kind}s {sorted(have)}, expected {sorted(wanted)} "
                    "(not a digitvae model, or from another version)"
                )
            for name, tail in wanted.items():
                arg = have[name]
                shape = list(arg.shape)
                dtype = "tensor(int64)" if name == "label" else "tensor(float)"
                if arg.type != dtype or len(shape) != 1 + len(tail) or shape[1:] != tail:
                    raise ModelError(
                        f"{where} {kind} {name!r} is {arg.type} {shape}, expected {dtype} "
                        f"[{', '.join(map(str, ['N', *tail]))}] (latent_dim {d} in model.json)"
                    )


class _Runner(Protocol):
    def run(self, outputs: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray] | None: ...


def run_session(session: ort.InferenceSession, outputs: list[str], feeds: dict[str, Any], role: str) -> list[Any]:
    """Run a session; a failure inside onnxruntime is the model's fault: a ModelError naming the file's role."""
    try:
        return list(session.run(outputs, feeds))
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelError(f"the {role} failed on a batch of {len(next(iter(feeds.values())))}: {exc}") from None


def run_checked(
    session: ort.InferenceSession,
    outputs: Sequence[str],
    feeds: dict[str, Any],
    role: str,
    shapes: Sequence[tuple[int, ...]],
    small: _Runner | None = None,
) -> list[np.ndarray]:
    """Run a session (through `small` where it serves the batch) and check each output's shape.

    The trial run at load sees one batch size; a graph can still return another shape for
    another batch (a slice, a reshape to a constant). Any such surprise is a ModelError here,
    never a silently short or misaligned result.
    """
    found = small.run(outputs, feeds) if small is not None else None
    if found is None:  # the small-batch path's buffers have the declared shapes: only this path can differ
        found = run_session(session, list(outputs), feeds, role)
        for name, array, want in zip(outputs, found, shapes):
            shape = getattr(array, "shape", None)
            if shape != want:
                raise ModelError(
                    f"the {role} returned {name!r} of shape {list(shape or [])} for a batch of "
                    f"{len(next(iter(feeds.values())))}, expected {list(want)} (the ONNX contract)"
                )
    for name, array in zip(outputs, found):
        if not all_finite(array):
            raise _non_finite(role, name, array, feeds)
    return found


def _non_finite(role: str, name: str, array: np.ndarray, feeds: Mapping[str, Any]) -> InputError | ModelError:
    """Return the error for NaN or infinity in an output: the input's fault if every bad row's input is extreme."""
    n = len(array)
    bad = ~np.isfinite(array.reshape(n, -1)).all(axis=1)
    largest = np.zeros(n)
    for value in feeds.values():
        value = np.asarray(value)
        if value.dtype.kind == "f" and value.size and len(value) == n:
            # np.maximum keeps NaN, so a row with a NaN input never counts as ordinary.
            largest = np.maximum(largest, np.abs(value.reshape(n, -1)).max(axis=1))
    ordinary = bad & (largest <= ORDINARY)
    if ordinary.any():
        return ModelError(
            f"the {role} returned NaN or infinite {name} for ordinary inputs (row {int(np.argmax(ordinary))} "
            f"of {n}, no value beyond {ORDINARY:g} in size); the model file is broken"
        )
    return InputError(
        f"the {role} returned NaN or infinite {name} for {int(bad.sum())} of {n} row(s) whose inputs are NaN, "
        f"infinite or beyond {ORDINARY:g} in size: too large for float32 arithmetic "
        "(a trained model's codes and noise lie within a few units of 0)"
    )


def trial_run(model_dir: Path, manifest: Manifest, sessions: dict[str, ort.InferenceSession]) -> None:
    """Run every loaded file once on a batch of 2 and check the shapes it returns.

    Catches, at load, what the declared signatures cannot: a batch size fixed to 1, or an
    output of another shape than declared. It costs well under a millisecond.
    """
    d, n = manifest.latent_dim, 2
    label = {"label": np.zeros(n, np.int64)} if manifest.conditional else {}
    any_class = np.full(n, -1, np.int64) if not manifest.num_classes else np.zeros(n, np.int64)
    trials: dict[str, tuple[dict[str, Any], dict[str, tuple[int, ...]]]] = {
        "encoder": ({"image": np.zeros((n, 1, 28, 28), np.float32), **label}, {"mean": (n, d), "logvar": (n, d)}),
        "decoder": ({"z": np.zeros((n, d), np.float32), **label}, {"logits": (n, 1, 28, 28), "image": (n, 1, 28, 28)}),
        "prior": (
            {"noise": np.zeros((n, d), np.float32), "uniform": np.full(n, 0.5, np.float32), "label": any_class},
            {"z": (n, d)},
        ),
        "prior_density": ({"z": np.zeros((n, d), np.float32), "label": any_class}, {"log_prob": (n,)}),
    }
    for role, session in sessions.items():
        if role not in trials:
            continue
        feeds, wanted = trials[role]
        # The outputs the graph has: a decoder's images-only graph has no logits. Which outputs
        # each file must have is check_signatures' question.
        names = {output.name for output in session.get_outputs()}
        shapes = {name: shape for name, shape in wanted.items() if name in names}
        try:
            found = session.run(list(shapes), feeds)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise ModelError(f"{model_dir}: {role} fails on a batch of {n}: {exc}") from None
        for (name, want), got in zip(shapes.items(), found):
            if tuple(got.shape) != want:
                raise ModelError(
                    f"{model_dir}: {role} output {name!r} has shape {list(got.shape)} for a batch of {n}, "
                    f"expected {list(want)}"
                )
