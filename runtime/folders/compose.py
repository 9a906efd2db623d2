"""Derive graphs from a model's verified ONNX bytes, without the onnx package.

`compose_generator` joins a prior's sampler and its decoder into one graph; `images_only` keeps
a decoder's `image` as its one graph output.

The sampler maps (noise, uniform, label) to z and the decoder maps z to (logits, image); the
composed graph maps (noise, uniform, label) to (logits, image) with the same nodes and weights.
Protobuf concatenates repeated fields, so the composition copies each field of the two graphs
as it stands: it re-encodes nothing. It is refused (None) unless the graphs join cleanly: z
is the sampler's only output and the decoder's only input, both declare the same IR version and
opsets, and no other name is shared.
"""

from __future__ import annotations

from .onnxscan import _LEN, _fields, _Malformed, _text

# ModelProto: ir_version 1, opset_import 8, graph 7, training_info 20, functions 25.
_IR_VERSION, _GRAPH, _OPSET, _TRAINING, _FUNCTIONS = 1, 7, 8, 20, 25
# GraphProto: node 1, name 2, initializer 5, sparse_initializer 15, input 11, output 12, value_info 13.
_NODE, _NAME, _INITIALIZER, _SPARSE, _INPUT, _OUTPUT, _VALUE_INFO = 1, 2, 5, 15, 11, 12, 13
# NodeProto: output 2, name 3. TensorProto: name 8. ValueInfoProto: name 1.
_NODE_OUTPUT, _NODE_NAME, _TENSOR_NAME, _VALUE_NAME = 2, 3, 8, 1
#: The value that joins the two graphs.
_JOIN = "z"
#: The decoder output that images-only graphs keep.
_IMAGE = "image"


def compose_generator(sampler: bytes, decoder: bytes) -> bytes | None:
    """Return the bytes of a model running `sampler` then `decoder`, or None where they do not join cleanly."""
    try:
        return _compose(memoryview(sampler), memoryview(decoder))
    except _Malformed:
        return None


def _compose(sampler: memoryview, decoder: memoryview) -> bytes | None:
    s_model, d_model = _top(sampler), _top(decoder)
    if s_model is None or d_model is None or s_model[0] != d_model[0]:
        return None  # another IR version or other opsets: joining could change what a node means
    s_graph, d_graph = _graph(sampler, s_model[1]), _graph(decoder, d_model[1])
    if [_name(sampler, f) for f in s_graph[_OUTPUT]] != [_JOIN] or [_name(decoder, f) for f in d_graph[_INPUT]] != [
        _JOIN
    ]:
        return None
    if s_graph[_SPARSE] or d_graph[_SPARSE]:
        return None
    s_names, d_names = _defined(sampler, s_graph), _defined(decoder, d_graph)
    if (s_names & d_names) - {_JOIN} or _node_names(sampler, s_graph) & _node_names(decoder, d_graph):
        return None
    graph = bytearray(_field(_NAME, b"generator"))
    for number, source, parts in (
        (_NODE, sampler, s_graph[_NODE]),
        (_NODE, decoder, d_graph[_NODE]),
        (_INITIALIZER, sampler, s_graph[_INITIALIZER]),
        (_INITIALIZER, decoder, d_graph[_INITIALIZER]),
        (_INPUT, sampler, s_graph[_INPUT]),
        (_OUTPUT, decoder, d_graph[_OUTPUT]),
        (_VALUE_INFO, sampler, s_graph[_VALUE_INFO]),
        (_VALUE_INFO, decoder, d_graph[_VALUE_INFO]),
    ):
        for a, b in parts:
            graph += _field(number, source[a:b])
    model = bytearray()
    for number, start, end in d_model[2]:  # the decoder's own fields, in order, its graph replaced
        model += _field(_GRAPH, graph) if number == _GRAPH else decoder[start:end]
    return bytes(model)


def images_only(decoder: bytes) -> bytes | None:
    """Return the decoder's bytes with `image` its only graph output, or None where it has no such output.

    The nodes stay as they are, so the images are the same to the bit. Only which values leave
    the graph changes: `logits`, no longer an output, need not be copied out of the last
    product (onnxruntime's Reshape works in place on an inner value), which saves a copy of
    every logit (1-4% of a 1,024-code fp32 decode on a 2-core AMD EPYC, 4-9% in int8).
    """
    try:
        return _keep_output(memoryview(decoder), _IMAGE)
    except _Malformed:
        return None


def _keep_output(buf: memoryview, keep: str) -> bytes | None:
    top = _top(buf)
    if top is None:
        return None
    _, (start, end), spans = top
    graph: list[memoryview] = []  # slices of buf, joined once below: the weights are copied once
    kept = 0
    for number, wire, a, b in _fields(buf, start, end):
        if number == _OUTPUT and wire == _LEN and _name(buf, (a, b)) != keep:
            start = b
            continue
        kept += number == _OUTPUT
        graph.append(buf[start:b])  # the whole field, its tag and length included, as it stands
        start = b
    if kept != 1:
        return None
    parts: list[bytes | memoryview] = []
    for number, first, last in spans:
        if number == _GRAPH:
            parts += [_varint((_GRAPH << 3) | _LEN), _varint(sum(len(part) for part in graph)), *graph]
        else:
            parts.append(buf[first:last])
    return b"".join(parts)


_Top = tuple[tuple[int, frozenset[bytes]], tuple[int, int], list[tuple[int, int, int]]]


def _top(buf: memoryview) -> _Top | None:
    """Return ((IR version, opsets), the graph's payload span, each field's whole span) of a ModelProto, or None."""
    ir, opsets, graphs = 0, set(), []
    spans: list[tuple[int, int, int]] = []
    start = 0
    for number, wire, a, b in _fields(buf, 0, len(buf)):
        spans.append((number, start, b))
        start = b
        if number == _IR_VERSION:
            ir = a
        elif number == _OPSET and wire == _LEN:
            opsets.add(bytes(buf[a:b]))
        elif number == _GRAPH and wire == _LEN:
            graphs.append((a, b))
        elif number in (_TRAINING, _FUNCTIONS):
            return None
    return ((ir, frozenset(opsets)), graphs[0], spans) if len(graphs) == 1 else None


def _graph(buf: memoryview, span: tuple[int, int]) -> dict[int, list[tuple[int, int]]]:
    """Return the payload spans of a GraphProto's fields, by field number."""
    found: dict[int, list[tuple[int, int]]] = {
        n: [] for n in (_NODE, _INITIALIZER, _SPARSE, _INPUT, _OUTPUT, _VALUE_INFO)
    }
    for number, wire, a, b in _fields(buf, *span):
        if number in found:
            if wire != _LEN:
                raise _Malformed(f"graph field {number} with wire type {wire}")
            found[number].append((a, b))
    return found


def _strings(buf: memoryview, span: tuple[int, int], number: int) -> list[str]:
    """Return the string fields `number` of the message at span."""
    return [_text(buf, a, b) for n, w, a, b in _fields(buf, *span) if n == number and w == _LEN]


def _name(buf: memoryview, span: tuple[int, int]) -> str:
    names = _strings(buf, span, _VALUE_NAME)
    return names[-1] if names else ""


def _defined(buf: memoryview, graph: dict[int, list[tuple[int, int]]]) -> set[str]:
    """Return every value name a graph declares or computes."""
    names = {n for span in graph[_NODE] for n in _strings(buf, span, _NODE_OUTPUT)}
    names.update(n for span in graph[_INITIALIZER] for n in _strings(buf, span, _TENSOR_NAME))
    for number in (_INPUT, _OUTPUT, _VALUE_INFO):
        names.update(_name(buf, span) for span in graph[number])
    return names - {""}


def _node_names(buf: memoryview, graph: dict[int, list[tuple[int, int]]]) -> set[str]:
    return {n for span in graph[_NODE] for n in _strings(buf, span, _NODE_NAME)} - {""}


def _field(number: int, payload: bytes | bytearray | memoryview) -> bytes:
    """Encode a length-delimited field."""
    return _varint((number << 3) | _LEN) + _varint(len(payload)) + bytes(payload)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
