"""The lowest IR version and opset of a graph (digitvae.export.opset), and the folders written with them."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from train_extra import needs_torch

from digitvae.runtime import DigitVAE, ExportError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.reading import read_manifest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [prior] extra (onnx)")

if importlib.util.find_spec("onnx") is not None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from digitvae.export.opset import is_lowest, lowest_bytes, lowest_opsets, merged_opsets, stamp_lowest


def _model(nodes: list, inits: list, opsets: dict[str, int], ir_version: int = 10) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = ir_version
    return model


def _sum_rows(opset: int) -> onnx.ModelProto:
    """x [N,3] -> sum over axis 1 of (x + 1): ReduceSum takes its axes as an input from opset 13."""
    one = numpy_helper.from_array(np.ones(3, np.float32), "one")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [helper.make_node("Add", ["x", "one"], ["s"])]
    if opset >= 13:
        nodes.append(helper.make_node("ReduceSum", ["s", "axes"], ["y"], keepdims=0))
        return _model(nodes, [one, axes], {"": opset})
    nodes.append(helper.make_node("ReduceSum", ["s"], ["y"], axes=[1], keepdims=0))
    return _model(nodes, [one], {"": opset}, ir_version=6)


def _run(model: onnx.ModelProto) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    return session.run(None, {"x": x})[0]


def test_the_lowest_opset_is_the_newest_schema_among_the_nodes() -> None:
    model = _sum_rows(18)  # Add-14 and ReduceSum-13 at opset 18
    before = _run(model)
    assert lowest_opsets(model) == {"": 14}
    stamp_lowest(model)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 14)]
    assert model.ir_version == 7  # opset 14 came with IR 7 (onnx 1.9)
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_array_equal(_run(model), before)
    assert is_lowest(model)


def test_an_operator_whose_schema_changed_keeps_its_opset() -> None:
    model = _model([helper.make_node("Shape", ["x"], ["s"], start=1)], [], {"": 18})
    assert lowest_opsets(model) == {"": 15}  # Shape-15 added start and end


def test_other_domains_keep_their_version_and_unused_known_ones_go() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("FusedMatMul", ["r", "r"], ["y"], domain="com.microsoft"),
    ]
    model = _model(nodes, [], {"": 18, "com.microsoft": 1, "ai.onnx.ml": 3})
    stamp_lowest(model)
    assert {o.domain: o.version for o in model.opset_import} == {"": 14, "com.microsoft": 1}
    assert model.ir_version == 7


def test_a_file_already_at_its_lowest_keeps_its_bytes_and_metadata_only_goes_below_ir_10() -> None:
    model = _sum_rows(18)
    entry = model.graph.metadata_props.add()
    entry.key, entry.value = "pkg.torch.export.ExportedProgram.graph_signature", "..."
    stamped = lowest_bytes(model.SerializeToString())
    again = onnx.load_from_string(stamped)
    assert again.ir_version == 7 and len(again.graph.metadata_props) == 0
    assert lowest_bytes(stamped) is stamped
    # A file that really needs IR 10 (an INT4 tensor) keeps its annotations.
    int4 = numpy_helper.from_array(np.zeros(2, np.float32), "w")
    int4.data_type = TensorProto.INT4
    needs_10 = _sum_rows(18)
    needs_10.graph.initializer.append(int4)
    needs_10.graph.metadata_props.add().key = "kept"
    stamp_lowest(needs_10)
    assert needs_10.ir_version == 10 and len(needs_10.graph.metadata_props) == 1


def test_merging_graphs_refuses_a_node_that_would_read_differently() -> None:
    # Add-7 and ReduceSum-11 (axes an attribute) are other operators under opset 13's imports.
    with pytest.raises(ExportError, match="opset 11 reads differently in opset 13"):
        merged_opsets(_sum_rows(11), _sum_rows(13))
    assert {o.domain: o.version for o in merged_opsets(_sum_rows(14), _sum_rows(18))} == {"": 18}


def test_restamping_a_folder_of_ir_10_files_gives_back_the_shipped_bytes(tmp_path: Path) -> None:
    from digitvae.export.folder import restamp_folder

    shipped = shipped_models_dir() / "mnist-vae-2d"
    model = shutil.copytree(shipped, tmp_path / "m")
    data = json.loads((model / "model.json").read_text())
    old_hashes = {}
    for path in sorted(model.glob("*.onnx")):  # as an export before this module wrote them
        proto = onnx.load(str(path))
        proto.ir_version = 10
        for o in proto.opset_import:
            o.version = 18
        path.write_bytes(proto.SerializeToString())
        old_hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    for entries in data["variants"].values():
        for entry in entries.values():
            entry["sha256"] = old_hashes[entry["path"]]
    (model / "model.json").write_text(json.dumps(data, indent=2) + "\n")
    renamed = restamp_folder(model)
    assert len(renamed) == len(old_hashes)
    for path in sorted(shipped.glob("*.onnx")):
        assert (model / path.name).read_bytes() == path.read_bytes(), path.name
    assert read_manifest(model).variants == read_manifest(shipped).variants
    assert restamp_folder(model) == {}
    np.testing.assert_array_equal(DigitVAE.load(model).generate(3, seed=1), DigitVAE.load(shipped).generate(3, seed=1))


@pytest.mark.heavy
@needs_torch
def test_export_writes_every_file_at_its_lowest(tiny_model: Path) -> None:
    for path in sorted(tiny_model.glob("*.onnx")):
        model = onnx.load(str(path))
        assert is_lowest(model) and model.ir_version <= 9, path.name
        assert len(model.graph.metadata_props) == 0, path.name
