"""Stamp every ONNX file with the lowest IR version and opsets its graph needs, so older runtimes load it.

A graph's nodes are built against one opset (torch's exporter and the prior's builder use
BUILD_OPSET), but each node's operator has kept its schema since some earlier version: the
lowest opset a graph needs is, per domain, the newest `since_version` among its nodes' schemas.
Declaring that opset changes no node's meaning, only the header, and the lowest IR version
follows from the opsets (onnx.helper.VERSION_TABLE) and from what else the file uses (data
types, local functions). onnxruntime 1.15-1.17 read IR 9 at most, and refuse a file stamped
IR 10 whatever its contents. The metadata_props that IR 10 added to graphs and nodes are
annotations (torch's exporter leaves its graph signature there): a file that needs no other
IR 10 feature goes out without them rather than unreadable by those releases.

Domains whose schemas onnx does not know (com.microsoft, a model's local functions) keep the
version they declare.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import onnx
from onnx import TensorProto, helper

from digitvae.runtime.errors import ExportError

#: The ai.onnx opset graphs are built in; written files declare only what their nodes need.
BUILD_OPSET = 18
_DEFAULT = ""
#: The IR version that introduced each tensor element type beyond the first ones (onnx.proto).
_TYPE_IR = {
    "BFLOAT16": 4,
    "FLOAT8E4M3FN": 9,
    "FLOAT8E4M3FNUZ": 9,
    "FLOAT8E5M2": 9,
    "FLOAT8E5M2FNUZ": 9,
    "UINT4": 10,
    "INT4": 10,
    "FLOAT4E2M1": 11,
    "FLOAT8E8M0": 12,
    "UINT2": 13,
    "INT2": 13,
}
#: The IR version that added metadata_props to graphs, nodes, values and functions.
_ANNOTATED_IR = 10
_TYPE_FLOOR = {getattr(TensorProto, name): ir for name, ir in _TYPE_IR.items() if hasattr(TensorProto, name)}


def _domain(name: str) -> str:
    return _DEFAULT if name in ("", "ai.onnx") else name


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Yield every node of a graph and of its subgraphs (If, Loop, Scan bodies)."""
    for sub in _graphs(graph):
        yield from sub.node


def _since(node: onnx.NodeProto, version: int) -> int | None:
    """Return the version of the node's schema in effect at `version` of its domain, or None if onnx lacks it."""
    domain = _domain(node.domain)
    if not onnx.defs.has(node.op_type, domain):
        return None
    try:
        return int(onnx.defs.get_schema(node.op_type, max_inclusive_version=version, domain=domain).since_version)
    except onnx.defs.SchemaError:
        return None


def lowest_opsets(model: onnx.ModelProto) -> dict[str, int]:
    """Return, per domain, the lowest opset version in which every node keeps the schema it has now."""
    declared = {_domain(o.domain): o.version for o in model.opset_import}
    local = {_domain(f.domain) for f in model.functions}
    needed: dict[str, int] = {}
    kept: set[str] = set(local)
    for node in _nodes(model.graph):
        domain = _domain(node.domain)
        if domain not in declared:
            raise ExportError(
                f"node {node.name or node.op_type!r} uses domain {domain!r}, which the model does not import"
            )
        since = None if domain in local else _since(node, declared[domain])
        if since is None:
            kept.add(domain)
        else:
            needed[domain] = max(needed.get(domain, 1), since)
    for function in model.functions:  # a function's body is read with the model's imports of its domains
        for o in function.opset_import:
            kept.add(_domain(o.domain))
    result = {}
    for domain, version in declared.items():
        if domain in kept:
            result[domain] = version
        elif domain in needed:
            result[domain] = needed[domain]
        elif domain == _DEFAULT:
            result[domain] = 1  # ai.onnx is always imported, even by a graph without an ai.onnx node
    return result


def lowest_ir_version(model: onnx.ModelProto, opsets: Mapping[str, int]) -> int:
    """Return the lowest IR version that these opsets and the model's contents allow."""
    floor = helper.find_min_ir_version_for([helper.make_opsetid(d, v) for d, v in opsets.items()], ignore_unknown=True)
    graph = model.graph
    inputs = {v.name for v in graph.input}
    if any(t.name not in inputs for t in graph.initializer):
        floor = max(floor, 4)  # IR 4 let initializers be other than graph inputs
    if len(graph.sparse_initializer):
        floor = max(floor, 6)
    if len(model.training_info):
        floor = max(floor, 7)
    if len(model.functions):
        floor = max(floor, 10 if any(f.overload for f in model.functions) else 8)
    for elem in _element_types(graph):
        floor = max(floor, _TYPE_FLOOR.get(elem, 1))
    return floor


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Yield a graph and every subgraph below it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub)


def _drop_annotations(model: onnx.ModelProto) -> None:
    """Remove the metadata_props of graphs, nodes, values and functions: annotations IR 10 added.

    They carry no meaning for running the model (torch's exporter leaves its graph signature
    there); the model's own metadata_props, which every IR version has, stay.
    """
    for graph in _graphs(model.graph):
        del graph.metadata_props[:]
        items: list[onnx.NodeProto | onnx.ValueInfoProto | onnx.TensorProto] = [
            *graph.node,
            *graph.input,
            *graph.output,
            *graph.value_info,
            *graph.initializer,
        ]
        for item in items:
            del item.metadata_props[:]
    for function in model.functions:
        del function.metadata_props[:]
        for node in function.node:
            del node.metadata_props[:]


def _element_types(graph: onnx.GraphProto) -> Iterator[int]:
    for tensor in graph.initializer:
        yield tensor.data_type
    for value in [*graph.input, *graph.output, *graph.value_info]:
        yield value.type.tensor_type.elem_type
    for node in _nodes(graph):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t.data_type
            elif attr.type == onnx.AttributeProto.TENSORS:
                yield from (t.data_type for t in attr.tensors)


def stamp_lowest(model: onnx.ModelProto) -> onnx.ModelProto:
    """Declare the lowest opsets and IR version the model needs, in place, changing no node; return it."""
    opsets = lowest_opsets(model)
    ir_version = lowest_ir_version(model, opsets)
    if ir_version < _ANNOTATED_IR:
        _drop_annotations(model)
    if ir_version > model.ir_version:
        raise ExportError(f"the model declares IR version {model.ir_version} but uses features of IR {ir_version}")
    # Keep the declared order of the domains, so a file already at its lowest serializes unchanged.
    order = [_domain(o.domain) for o in model.opset_import]
    spelled = {_domain(o.domain): o.domain for o in model.opset_import}
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(spelled[d], opsets[d]) for d in order if d in opsets)
    model.ir_version = ir_version
    return model


def checked_bytes(model: onnx.ModelProto, what: str) -> bytes:
    """Stamp a model with its lowest versions, in place, check it with onnx.checker and return its bytes.

    `what` names the model in the ExportError of a failed check: "{what} fails onnx.checker: ...".
    """
    stamp_lowest(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{what} fails onnx.checker: {exc}") from None
    return model.SerializeToString()


def lowest_bytes(blob: bytes) -> bytes:
    """Return a serialized model stamped with its lowest versions: the same bytes when it already is."""
    model = onnx.load_from_string(blob)
    if is_lowest(model):
        return blob
    return stamp_lowest(model).SerializeToString()


def is_lowest(model: onnx.ModelProto) -> bool:
    """Return whether a model declares the lowest IR version and opsets it needs (and so, below IR 10, no annotations)."""
    opsets = lowest_opsets(model)
    declared = {_domain(o.domain): o.version for o in model.opset_import}
    if declared != opsets or model.ir_version != lowest_ir_version(model, opsets):
        return False
    return model.ir_version >= _ANNOTATED_IR or not has_annotations(model)


def has_annotations(model: onnx.ModelProto) -> bool:
    """Return whether any graph, node, value or function of the model carries metadata_props (IR 10)."""
    items: list[onnx.GraphProto | onnx.NodeProto | onnx.ValueInfoProto | onnx.TensorProto | onnx.FunctionProto] = []
    for graph in _graphs(model.graph):
        items += [graph, *graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer]
    for function in model.functions:
        items += [function, *function.node]
    return any(len(item.metadata_props) for item in items)


def merged_opsets(*models: onnx.ModelProto) -> list[onnx.OperatorSetIdProto]:
    """Return the imports of a graph made of these models' nodes: per domain the highest version.

    Refuses a merge in which a node would read as another schema than in its own model.
    """
    merged: dict[str, int] = {}
    for model in models:
        for o in model.opset_import:
            merged[_domain(o.domain)] = max(merged.get(_domain(o.domain), 0), o.version)
    for model in models:
        declared = {_domain(o.domain): o.version for o in model.opset_import}
        for node in _nodes(model.graph):
            domain = _domain(node.domain)
            if declared[domain] == merged[domain]:
                continue
            before, after = _since(node, declared[domain]), _since(node, merged[domain])
            if before is None or before != after:
                raise ExportError(
                    f"cannot merge graphs: {node.op_type} of {domain or 'ai.onnx'} opset {declared[domain]} "
                    f"reads differently in opset {merged[domain]}"
                )
    return [helper.make_opsetid(d, v) for d, v in merged.items()]
