"""A graph's declared inputs and outputs read from its protobuf bytes, as onnxruntime reports them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnxruntime as ort
import pytest

from digitvae.runtime import ModelError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.onnxscan import declared_graph

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [train] extra (onnx)")

SHIPPED = sorted(shipped_models_dir().glob("*/*.onnx"))


def _reported(data: bytes) -> tuple[list[tuple[str, str, list[object]]], list[tuple[str, str, list[object]]]]:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return (
        [(a.name, a.type, list(a.shape)) for a in session.get_inputs()],
        [(a.name, a.type, list(a.shape)) for a in session.get_outputs()],
    )


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_file_declares_what_onnxruntime_reports(path: Path) -> None:
    data = path.read_bytes()
    graph = declared_graph(data, path)
    declared = (
        [(a.name, a.type, a.shape) for a in graph.get_inputs()],
        [(a.name, a.type, a.shape) for a in graph.get_outputs()],
    )
    assert declared == _reported(data)


@needs_onnx
def test_symbolic_unknown_and_negative_dims_and_initializers_listed_as_inputs() -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", None, 3])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [-1])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["s"]), helper.make_node("Shape", ["s"], ["y"])],
        "g",
        [x, w],
        [y],
        [numpy_helper.from_array(np.zeros(3, np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 7
    data = model.SerializeToString()
    found = declared_graph(data, Path("m.onnx"))
    assert [(a.name, a.type, a.shape) for a in found.inputs] == [("x", "tensor(float)", ["batch", None, 3])]
    assert [(a.name, a.type, a.shape) for a in found.outputs] == [("y", "tensor(int64)", [-1])]
    reported = _reported(data)
    assert reported[0] == [("x", "tensor(float)", ["batch", None, 3])]


def test_malformed_bytes_are_a_model_error_naming_the_file() -> None:
    with pytest.raises(ModelError, match=r"m\.onnx: not a valid ONNX model \(malformed protobuf"):
        declared_graph(b"\x3a\x05ab", Path("m.onnx"))
