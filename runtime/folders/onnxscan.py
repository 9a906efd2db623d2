"""Strict scans of ONNX protobuf bytes, without the onnx package: external data, and the declared signature.

digitvae models are self-contained: every tensor keeps its data inside its .onnx file, which
model.json pins with a sha256. The runtime hands onnxruntime those verified bytes, so a
tensor whose data lives in another file would load weights that no hash covers, resolved
against the current directory rather than the model folder. Every such reference is refused
before onnxruntime sees the model: one that leaves the model folder (an absolute path, a
`..` component, a link out) as an escape attempt, one inside it as unsupported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from ..errors import ModelError

__all__ = ["DeclaredArg", "DeclaredGraph", "check_self_contained", "declared_graph"]

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
#: protobuf's own default nesting limit; crafted subgraph chains stop here.
_MAX_DEPTH = 100
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL

# Message-typed fields that can lead to a TensorProto, by field number, from onnx/onnx.proto:
# ModelProto.graph 7, training_info 20, functions 25; TrainingInfoProto.initialization 1,
# algorithm 2; FunctionProto.node 7, attribute_proto 11; GraphProto.node 1, initializer 5,
# sparse_initializer 15; NodeProto.attribute 5; AttributeProto.t 5, g 6, tensors 10,
# graphs 11, sparse_tensor 22, sparse_tensors 23; SparseTensorProto.values 1, indices 2.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
# TensorProto: name 8, external_data 13 (StringStringEntryProto: key 1, value 2), data_location 14.
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14


class _Malformed(Exception):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode one base-128 varint at pos; return it and the position after it."""
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed(f"truncated varint at byte {pos}")
        if shift > 63:
            raise _Malformed(f"varint longer than 10 bytes at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, wire type, a, b) per field: a varint's value, or a payload's [a, b)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
            continue
        if wire == _LEN:
            size, pos = _varint(buf, pos, end)
            first = pos
        elif wire in (_FIXED64, _FIXED32):
            size, first = (8 if wire == _FIXED64 else 4), pos
        else:  # groups (3, 4) appear nowhere in onnx.proto; 6 and 7 do not exist
            raise _Malformed(f"wire type {wire} at byte {pos}")
        if size > end - pos:
            raise _Malformed(f"field {number} runs past the end of its message at byte {pos}")
        pos += size
        yield number, wire, first, pos


def _text(buf: memoryview, start: int, end: int) -> str:
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"invalid UTF-8 in a string at byte {start}") from None


def _leaves_folder(location: str, folder: Path) -> bool:
    """Return True if an external-data location could resolve outside folder."""
    if not location or "\0" in location or os.path.isabs(location) or location[0] in "/\\":
        return True
    if PureWindowsPath(location).drive or ".." in location.replace("\\", "/").split("/"):
        return True
    base = os.path.realpath(folder)
    return os.path.commonpath([base, os.path.realpath(os.path.join(base, location))]) != base


def _check_tensor(buf: memoryview, start: int, end: int, path: Path) -> None:
    """Refuse a TensorProto whose data is stored outside the model bytes."""
    name, locations, external = "", [], False
    for number, wire, a, b in _fields(buf, start, end):
        if number == _TENSOR_NAME and wire == _LEN:
            name = _text(buf, a, b)
        elif number == _TENSOR_LOCATION:
            if wire != _VARINT:
                raise _Malformed(f"data_location with wire type {wire}")
            external = external or a == _EXTERNAL
        elif number == _TENSOR_EXTERNAL:
            if wire != _LEN:
                raise _Malformed(f"external_data with wire type {wire}")
            external = True
            entry = {n: _text(buf, x, y) for n, w, x, y in _fields(buf, a, b) if n in (1, 2) and w == _LEN}
            if entry.get(1) == "location":
                locations.append(entry.get(2, ""))
    if not external:
        return
    where = f"{path}: tensor {name!r}"
    if not locations:
        raise ModelError(
            f"{where} is marked as external data without a location; digitvae models keep all data inside the .onnx file"
        )
    for location in locations:
        if _leaves_folder(location, path.parent):
            raise ModelError(
                f"{where} refers to external data {location!r} outside the model folder; refusing to load it"
            )
    raise ModelError(
        f"{where} keeps its data in the separate file {locations[0]!r}; digitvae models are self-contained "
        "(every weight inside the .onnx file that model.json hashes), so external data is not supported"
    )


def check_self_contained(data: bytes, path: Path) -> None:
    """Raise ModelError if the ONNX model in data is malformed or refers to external data."""
    buf = memoryview(data)
    stack = [("model", 0, len(buf), 0)]
    try:
        while stack:
            kind, start, end, depth = stack.pop()
            if kind == "tensor":
                _check_tensor(buf, start, end, path)
                continue
            if depth > _MAX_DEPTH:
                raise _Malformed(f"messages nested more than {_MAX_DEPTH} deep")
            children = _CHILDREN[kind]
            for number, wire, a, b in _fields(buf, start, end):
                child = children.get(number)
                if child is None:
                    continue
                if wire != _LEN:
                    raise _Malformed(f"field {number} of a {kind} message has wire type {wire}, expected a message")
                stack.append((child, a, b, depth + 1))
    except _Malformed as exc:
        raise ModelError(f"{path}: not a valid ONNX model (malformed protobuf: {exc})") from None


# ModelProto.graph 7; GraphProto.initializer 5, input 11, output 12; ValueInfoProto name 1, type 2;
# TypeProto.tensor_type 1; TypeProto.Tensor elem_type 1, shape 2; TensorShapeProto.dim 1;
# Dimension dim_value 1, dim_param 2.
_GRAPH, _INITIALIZER, _INPUT, _OUTPUT = 7, 5, 11, 12
#: TensorProto.DataType numbers as onnxruntime names them in NodeArg.type.
_ELEM_TYPES = {1: "float", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "double"}


@dataclass(frozen=True)
class DeclaredArg:
    """A graph input or output as its protobuf declares it, named as onnxruntime's NodeArg names it."""

    name: str
    type: str  # "tensor(float)", "tensor(int64)", ...
    shape: list[int | str | None]  # a size, a symbolic name, or None where the file gives neither


@dataclass(frozen=True)
class DeclaredGraph:
    """A graph's declared inputs (initializers excluded, as onnxruntime does) and outputs."""

    inputs: list[DeclaredArg]
    outputs: list[DeclaredArg]

    def get_inputs(self) -> list[DeclaredArg]:
        """Return the inputs, as InferenceSession.get_inputs does."""
        return self.inputs

    def get_outputs(self) -> list[DeclaredArg]:
        """Return the outputs, as InferenceSession.get_outputs does."""
        return self.outputs


def declared_graph(data: bytes, path: Path) -> DeclaredGraph:
    """Return the inputs and outputs an ONNX model's main graph declares; ModelError if malformed."""
    buf = memoryview(data)
    inputs: list[DeclaredArg] = []
    outputs: list[DeclaredArg] = []
    initializers: set[str] = set()
    try:
        for number, wire, a, b in _fields(buf, 0, len(buf)):
            if number != _GRAPH or wire != _LEN:
                continue
            for field, kind, x, y in _fields(buf, a, b):
                if kind != _LEN:
                    continue
                if field == _INPUT:
                    inputs.append(_value_info(buf, x, y))
                elif field == _OUTPUT:
                    outputs.append(_value_info(buf, x, y))
                elif field == _INITIALIZER:
                    initializers.update(
                        _text(buf, m, n) for f, w, m, n in _fields(buf, x, y) if f == _TENSOR_NAME and w == _LEN
                    )
    except _Malformed as exc:
        raise ModelError(f"{path}: not a valid ONNX model (malformed protobuf: {exc})") from None
    return DeclaredGraph([arg for arg in inputs if arg.name not in initializers], outputs)


def _value_info(buf: memoryview, start: int, end: int) -> DeclaredArg:
    """Read a ValueInfoProto: its name, its tensor element type and its shape."""
    name, elem, shape = "", 0, []
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == _LEN:
            name = _text(buf, a, b)
        elif number == 2 and wire == _LEN:
            for t, tw, ta, tb in _fields(buf, a, b):
                if t != 1 or tw != _LEN:
                    continue  # a sequence, map or optional type: no tensor_type to read
                for f, fw, fa, fb in _fields(buf, ta, tb):
                    if f == 1 and fw == _VARINT:
                        elem = fa
                    elif f == 2 and fw == _LEN:
                        shape = [_dim(buf, da, db) for d, dw, da, db in _fields(buf, fa, fb) if d == 1 and dw == _LEN]
    kind = _ELEM_TYPES.get(elem)
    return DeclaredArg(name, f"tensor({kind})" if kind else f"element type {elem}", shape)


def _dim(buf: memoryview, start: int, end: int) -> int | str | None:
    """Read a TensorShapeProto.Dimension: its size, its symbolic name, or None."""
    value: int | str | None = None
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == _VARINT:
            value = a - (1 << 64) if a >= 1 << 63 else a  # int64 as a varint: two's complement
        elif number == 2 and wire == _LEN:
            value = _text(buf, a, b)
    return value
