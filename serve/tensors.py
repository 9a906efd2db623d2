"""Open Inference Protocol (KServe v2) tensors: read inputs into numpy and write outputs back.

Both protocols' inputs are read here: REST's JSON values, and gRPC's typed contents or raw bytes
(`raw_input_contents`). Only what the served models declare is accepted: the named inputs with
their datatype, a shape whose fixed dimensions match, and exactly as many values (or bytes) as the
shape holds. Everything else is an InputError that names the tensor and says what is allowed; the
model turns it into a 400 (gRPC: INVALID_ARGUMENT).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from digitvae.runtime.errors import InputError

#: The two datatypes the served models take and return, with their numpy types.
DTYPES = {"FP32": np.float32, "INT64": np.int64}
#: numpy kinds a JSON list may parse to for each datatype: ints are fine as floats, not floats as ints.
_KINDS = {"FP32": "iuf", "INT64": "iu"}


@dataclass(frozen=True)
class DeclaredTensor:
    """A declared input or output: its name, datatype and shape (-1 for any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False
    #: Another shape the input is also accepted in (the encoder's flat [N,784] images).
    also: tuple[int, ...] | None = None
    #: What metadata says besides name, datatype and shape (which form, other shapes).
    notes: tuple[tuple[str, Any], ...] = ()

    def metadata(self) -> dict[str, Any]:
        """Return the tensor as model metadata lists it."""
        out: dict[str, Any] = {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
        notes = dict(self.notes)
        if self.optional:
            notes["optional"] = True
        if self.also is not None:
            notes["also_accepts_shape"] = list(self.also)
        if notes:
            out["parameters"] = notes
        return out

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Return whether a request's shape matches the declared shape (or the other one accepted)."""
        return any(
            len(shape) == len(want) and all(w in (-1, g) for w, g in zip(want, shape))
            for want in (self.shape, *(() if self.also is None else (self.also,)))
        )


def read_inputs(
    inputs: Sequence[Any], forms: Sequence[Sequence[DeclaredTensor]], max_rows: int
) -> tuple[int, dict[str, np.ndarray]]:
    """Match request inputs to one of the model's input forms; return its index and the arrays by name.

    Each input is checked against its declaration (datatype, shape, value count) and against
    `max_rows`, the most rows one request may hold.
    """
    given: dict[Any, Any] = {getattr(i, "name", None): i for i in inputs}
    if len(given) != len(inputs):
        raise InputError("the request names an input twice")
    form = _pick_form(set(given), forms)
    declared = {d.name: d for d in forms[form]}
    return form, {name: read_tensor(given[name], declared[name], max_rows) for name in given}


def _pick_form(names: set[Any], forms: Sequence[Sequence[DeclaredTensor]]) -> int:
    for index, form in enumerate(forms):
        allowed = {d.name for d in form}
        required = {d.name for d in form if not d.optional}
        if required <= names <= allowed:
            return index
    described = " or ".join(_describe(form) for form in forms)
    got = ", ".join(sorted(map(str, names))) or "none"
    raise InputError(f"this model takes the inputs {described}; got {got}")


def _describe(form: Sequence[DeclaredTensor]) -> str:
    return "(" + ", ".join(f"{d.name}{' (optional)' if d.optional else ''}" for d in form) + ")"


def read_tensor(tensor: Any, declared: DeclaredTensor, max_rows: int) -> np.ndarray:
    """Return one input (v2 JSON values, or gRPC raw contents as bytes) as a numpy array of its declared type.

    Datatype and shape are checked first, so the values are only read once their count is known
    to be within `max_rows` rows: nothing is allocated from a size the request merely claims.
    """
    datatype = getattr(tensor.datatype, "value", tensor.datatype)
    if datatype != declared.datatype:
        raise InputError(f"input {declared.name!r} must have datatype {declared.datatype}, got {datatype}")
    shape = tuple(int(d) for d in tensor.shape)
    if not declared.fits(shape):
        shapes = " or ".join(_shape(s) for s in (declared.shape, declared.also) if s is not None)
        raise InputError(f"input {declared.name!r} must be shaped {shapes}, got {list(shape)}")
    if not shape or any(d < 0 for d in shape):
        raise InputError(f"input {declared.name!r} has a negative dimension: {list(shape)}")
    if shape[0] > max_rows:
        raise InputError(
            f"input {declared.name!r} holds {shape[0]:,} rows; one request takes at most {max_rows:,} (--max-batch)"
        )
    if shape[0] == 0:
        raise InputError(f"input {declared.name!r} is an empty batch {list(shape)}; pass at least one row")
    data = getattr(tensor.data, "root", tensor.data)
    expected = math.prod(shape)  # at most max_rows x 784: only the first dimension is free
    if isinstance(data, bytes):
        return _from_raw(data, declared, shape)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise InputError(f"input {declared.name!r}: data must be a flat or nested list of numbers") from None
    if array.dtype.kind not in _KINDS[declared.datatype]:
        what = "integers" if declared.datatype == "INT64" else "numbers"
        raise InputError(f"input {declared.name!r} ({declared.datatype}): data must hold {what}, got {_kind(array)}")
    if array.size != expected:
        raise InputError(f"input {declared.name!r}: shape {list(shape)} needs {expected:,} values, got {array.size:,}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(array, dtype=DTYPES[declared.datatype]).reshape(shape)
    if declared.datatype == "INT64" and not np.array_equal(out, array.reshape(shape)):
        raise InputError(f"input {declared.name!r}: values do not fit in INT64")
    return _finite(out, declared)


def _from_raw(raw: bytes, declared: DeclaredTensor, shape: tuple[int, ...]) -> np.ndarray:
    """Return gRPC raw contents (little-endian, as the protocol sends them) as an array of the declared shape."""
    dtype = np.dtype(DTYPES[declared.datatype]).newbyteorder("<")
    size = math.prod(shape) * dtype.itemsize
    if len(raw) != size:
        raise InputError(
            f"input {declared.name!r}: shape {list(shape)} needs {size:,} bytes of raw {declared.datatype} contents "
            f"({dtype.itemsize} per value), got {len(raw):,}"
        )
    out = np.frombuffer(raw, dtype).astype(DTYPES[declared.datatype]).reshape(shape)
    return _finite(out, declared)


def _finite(out: np.ndarray, declared: DeclaredTensor) -> np.ndarray:
    if declared.datatype == "FP32" and not np.isfinite(out).all():
        raise InputError(f"input {declared.name!r}: values must be finite FP32 numbers")
    return out


def attach_raw(inputs: Sequence[Any], raw: Sequence[bytes]) -> None:
    """Give each input of a gRPC request its raw_input_contents entry, as bytes for read_tensor to decode."""
    if not raw:
        return
    if len(raw) != len(inputs):
        raise InputError(
            f"the request has {len(inputs)} input(s) and {len(raw)} raw_input_contents entries; "
            "send one entry per input, in the order of the inputs"
        )
    for tensor, contents in zip(inputs, raw):
        if getattr(tensor.data, "root", tensor.data):
            raise InputError(f"input {tensor.name!r} has both typed contents and raw_input_contents; send one of them")
        tensor.data = bytes(contents)


def _kind(array: np.ndarray) -> str:
    return {"b": "booleans", "U": "strings", "S": "strings", "O": "mixed or nested values"}.get(
        array.dtype.kind, f"{array.dtype} values"
    )


def _shape(shape: Sequence[int]) -> str:
    return "[" + ",".join("N" if d == -1 else str(d) for d in shape) + "]"


def output(name: str, array: np.ndarray) -> dict[str, Any]:
    """Return a numpy array as a v2 JSON output tensor (FP32 or INT64)."""
    datatype = next(k for k, v in DTYPES.items() if array.dtype == v)
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


def requested(outputs: Sequence[Any] | None, available: Mapping[str, np.ndarray]) -> list[str]:
    """Return the output names a request asks for (all when it names none); unknown names are an InputError."""
    if not outputs:
        return list(available)
    names = [o.name for o in outputs]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"unknown output {unknown[0]!r}; this model returns {', '.join(available)}")
    return names
