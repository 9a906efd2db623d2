"""A model folder's files: sha256 checks, external-data references, links, FIFOs, directories, and names that find no model."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import assert_clean_failure, invoke, listing
from helpers import copy_2d_model as _model_copy

from digitvae.runtime import DigitVAE, InputError, IntegrityError, ModelError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.onnxscan import check_self_contained

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [train] extra (onnx)")

SHIPPED = shipped_models_dir() / "mnist-vae"


# ---------------------------------------------------------------------------------------------------------------
# helpers


def copy_model(dest: Path) -> Path:
    """Copy the shipped model folder to dest."""
    shutil.copytree(SHIPPED, dest)
    return dest


def install(folder: Path, role: str, data: bytes) -> Path:
    """Replace one ONNX file of a model folder and record its sha256, as a forger with write access would."""
    path = folder / f"{role}.onnx"
    path.write_bytes(data)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["variants"]["fp32"][role]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "model.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Record the model bytes of every onnxruntime session created during a test."""
    created: list[bytes] = []
    real = ort.InferenceSession

    def spy(model: bytes, *args: object, **kwargs: object) -> ort.InferenceSession:
        created.append(bytes(model))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    yield created


# A minimal protobuf writer, so that the scanner is tested without the onnx package.


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def message(number: int, payload: bytes) -> bytes:
    """Encode a length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def number(field: int, value: int) -> bytes:
    """Encode a varint field."""
    return varint(field << 3) + varint(value)


def tensor(name: str = "w", location: str | None = None, data_location: int | None = 1) -> bytes:
    """Return a TensorProto whose data is (claimed to be) stored in an external file."""
    body = message(8, name.encode()) + number(1, 4) + number(2, 1)
    if location is not None:
        entry = message(1, b"location") + message(2, location.encode())
        body += message(13, entry) + message(13, message(1, b"offset") + message(2, b"0"))
    if data_location is not None:
        body += number(14, data_location)
    return body


def graph_with(inner: bytes) -> bytes:
    """Wrap a GraphProto body in a ModelProto (ir_version 8, graph field 7)."""
    return number(1, 8) + message(7, inner)


def attribute_with(field: int, payload: bytes) -> bytes:
    """Return a GraphProto with one node whose attribute holds payload in the given field."""
    attribute = message(1, b"value") + message(field, payload)
    return message(1, message(4, b"Constant") + message(5, attribute))


EXTERNAL = tensor(location="weights.bin")
PLACES: dict[str, bytes] = {
    "initializer": graph_with(message(5, EXTERNAL)),
    "sparse-values": graph_with(message(15, message(1, EXTERNAL))),
    "sparse-indices": graph_with(message(15, message(2, EXTERNAL))),
    "attribute-t": graph_with(attribute_with(5, EXTERNAL)),
    "attribute-tensors": graph_with(attribute_with(10, EXTERNAL)),
    "attribute-sparse": graph_with(attribute_with(22, message(1, EXTERNAL))),
    "attribute-sparse-list": graph_with(attribute_with(23, message(1, EXTERNAL))),
    "subgraph": graph_with(attribute_with(6, message(5, EXTERNAL))),
    "subgraph-list": graph_with(attribute_with(11, message(5, EXTERNAL))),
    "nested-subgraph": graph_with(attribute_with(6, attribute_with(6, attribute_with(5, EXTERNAL)))),
    "function-node": number(1, 8) + message(25, message(7, message(5, message(5, EXTERNAL)))),
    "function-attribute-default": number(1, 8) + message(25, message(11, message(5, EXTERNAL))),
    "training-initialization": number(1, 8) + message(20, message(1, message(5, EXTERNAL))),
    "training-algorithm": number(1, 8) + message(20, message(2, message(5, EXTERNAL))),
}


# ---------------------------------------------------------------------------------------------------------------
# sha256


def _flip_middle(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x80])


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "flip-weight-byte": _flip_middle,
    "flip-last-byte": _flip_last,
    "truncate": lambda data: data[:-1],
    "append": lambda data: data + b"\0",
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("role", ["encoder", "decoder"])
def test_changed_onnx_file_is_refused_before_any_session(
    tmp_path: Path, sessions: list[bytes], role: str, damage: str
) -> None:
    model = copy_model(tmp_path / "model")
    path = model / f"{role}.onnx"
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.raises(IntegrityError, match="sha256 mismatch") as info:
        DigitVAE.load(model)
    assert str(path) in str(info.value)
    assert path.read_bytes() not in sessions
    if role == "encoder":
        assert sessions == []


def test_manifest_hash_edit_alone_is_refused(tmp_path: Path, sessions: list[bytes]) -> None:
    model = copy_model(tmp_path / "model")
    manifest = json.loads((model / "model.json").read_text())
    manifest["variants"]["fp32"]["encoder"]["sha256"] = "0" * 64
    (model / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="encoder.onnx"):
        DigitVAE.load(model)
    assert sessions == []


def test_untouched_copy_loads_and_matches_the_shipped_model(tmp_path: Path, vae: DigitVAE) -> None:
    model = copy_model(tmp_path / "model")
    np.testing.assert_array_equal(DigitVAE.load(model).generate(3, seed=5), vae.generate(3, seed=5))


# ---------------------------------------------------------------------------------------------------------------
# the protobuf scanner on hand-built bytes


@pytest.mark.parametrize("place", PLACES)
def test_external_data_is_found_wherever_a_tensor_can_sit(tmp_path: Path, place: str) -> None:
    path = tmp_path / "encoder.onnx"
    with pytest.raises(ModelError, match="self-contained") as info:
        check_self_contained(PLACES[place], path)
    assert str(path) in str(info.value) and "'weights.bin'" in str(info.value)


@pytest.mark.parametrize(
    "location",
    [
        "/etc/passwd",
        "../secret.bin",
        "sub/../../secret.bin",
        "a/../b.bin",
        "..",
        "..\\secret.bin",
        "C:\\w.bin",
        "\\\\host\\share\\w",
        "",
        "w\0.bin",
    ],
)
def test_locations_leaving_the_folder_are_refused_as_such(tmp_path: Path, location: str) -> None:
    path = tmp_path / "decoder.onnx"
    with pytest.raises(ModelError, match="outside the model folder") as info:
        check_self_contained(graph_with(message(5, tensor(location=location))), path)
    assert str(path) in str(info.value)


def test_link_out_of_the_folder_is_refused_as_leaving_it(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    os.symlink(tmp_path / "secret.bin", folder / "weights.bin")
    with pytest.raises(ModelError, match="outside the model folder"):
        check_self_contained(graph_with(message(5, tensor(location="weights.bin"))), folder / "encoder.onnx")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (tensor(location="sub/weights.bin"), "self-contained"),
        (tensor(location=None), "without a location"),
        (tensor(location="weights.bin", data_location=None), "self-contained"),
        # A later DEFAULT does not excuse an earlier EXTERNAL: refuse whenever in doubt.
        (tensor(location="weights.bin") + number(14, 0), "self-contained"),
    ],
    ids=["subfolder", "no-location", "entries-without-data-location", "location-reset"],
)
def test_every_external_marking_is_refused(tmp_path: Path, body: bytes, fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        check_self_contained(graph_with(message(5, body)), tmp_path / "encoder.onnx")


def test_embedded_tensors_and_unknown_fields_pass() -> None:
    embedded = message(8, b"w") + number(1, 2) + number(2, 1) + message(9, b"\0" * 8) + number(14, 0)
    unknown = number(999, 5) + varint(1000 << 3 | 1) + b"\0" * 8 + varint(1001 << 3 | 5) + b"\0" * 4
    check_self_contained(graph_with(message(5, embedded) + unknown) + unknown, Path("m.onnx"))
    check_self_contained(b"", Path("m.onnx"))  # an empty ModelProto: onnxruntime will say what is wrong with it


@pytest.mark.parametrize(
    "data",
    [
        b"\x3a",  # graph field with no length
        b"\x3a\x05ab",  # graph longer than the bytes left
        b"\x3a\x02\x2a",  # initializer cut short inside the graph
        b"\x08" + b"\xff" * 11,  # varint longer than 10 bytes
        b"\x38\x01",  # graph field (7) sent as a varint
        b"\x3b",  # wire type 3 (group)
        b"\x00\x01",  # field number 0
        graph_with(message(5, message(13, message(1, b"location") + message(2, b"\xff\xfe")) + number(14, 1))),
        graph_with(message(5, varint(14 << 3 | 2) + varint(0))),  # data_location as bytes
    ],
    ids=[
        "no-length",
        "overlong",
        "cut-inside",
        "long-varint",
        "wrong-wire-type",
        "group",
        "field-0",
        "bad-utf8",
        "location-as-bytes",
    ],
)
def test_malformed_protobuf_is_a_model_error(data: bytes) -> None:
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        check_self_contained(data, Path("m.onnx"))


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    graph = message(5, EXTERNAL)
    for _ in range(500):
        graph = attribute_with(6, graph)
    with pytest.raises(ModelError, match="nested more than"):
        check_self_contained(graph_with(graph), Path("m.onnx"))


@pytest.mark.parametrize("role", ["encoder", "decoder"])
def test_shipped_and_truncated_models(role: str) -> None:
    path = SHIPPED / f"{role}.onnx"
    data = path.read_bytes()
    check_self_contained(data, path)
    for cut in (1, 100, len(data) // 2, len(data) - 1):
        with pytest.raises(ModelError, match=f"{role}.onnx: not a valid ONNX model"):
            check_self_contained(data[:cut], path)


# ---------------------------------------------------------------------------------------------------------------
# the scanner inside DigitVAE.load and the CLI


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "weights.bin"])
def test_load_refuses_external_data_before_any_session(tmp_path: Path, sessions: list[bytes], location: str) -> None:
    model = copy_model(tmp_path / "model")
    (model / "weights.bin").write_bytes(b"\0" * 16)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    path = install(model, "encoder", graph_with(message(5, tensor(location=location))))
    with pytest.raises(ModelError, match="outside the model folder" if "/" in location else "self-contained") as info:
        DigitVAE.load(model)
    assert str(path) in str(info.value)
    assert sessions == []


def test_load_refuses_malformed_bytes_with_a_valid_hash(tmp_path: Path, sessions: list[bytes]) -> None:
    model = copy_model(tmp_path / "model")
    forged = install(model, "decoder", b"\x3a\xff\xff\x03garbage")
    with pytest.raises(ModelError, match="decoder.onnx: not a valid ONNX model"):
        DigitVAE.load(model)
    assert forged.read_bytes() not in sessions


def test_cli_refuses_external_data_cleanly(tmp_path: Path) -> None:
    model = copy_model(tmp_path / "model")
    install(model, "decoder", graph_with(message(5, tensor(location="../../etc/shadow"))))
    out = tmp_path / "out"
    out.mkdir()
    line = assert_clean_failure(
        invoke("generate", "-n", 2, "--model", model, "-o", out / "x.png"), "outside the model folder"
    )
    assert "decoder.onnx" in line and "../../etc/shadow" in line
    assert listing(out) == []


# ---------------------------------------------------------------------------------------------------------------
# models written by the onnx package: the field numbers agree with the real schema


def _externalize(tensor_proto: object, location: str) -> None:
    from onnx.external_data_helper import set_external_data

    set_external_data(tensor_proto, location=location, offset=0, length=16)
    tensor_proto.ClearField("raw_data")


def _onnx_model(place: str, location: str | None) -> bytes:
    """Build, with the onnx package, a model whose tensor at `place` refers to external data (if location)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2) if place != "sparse-initializer" else 2, np.float32), "w")
    if location is not None:
        _externalize(w, location)  # before the builders below copy it into the model
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
    add = helper.make_node("Add", ["x", "w"], ["y"])
    nodes, initializers, sparse, functions = [add], [], [], []
    if place == "initializer":
        initializers.append(w)
    elif place == "sparse-initializer":
        indices = numpy_helper.from_array(np.array([0, 3], np.int64), "w_indices")
        sparse.append(helper.make_sparse_tensor(w, indices, [2, 2]))
    elif place == "constant-node":
        nodes.insert(0, helper.make_node("Constant", [], ["w"], value=w))
    elif place == "if-subgraph":
        then = helper.make_graph(
            [helper.make_node("Constant", [], ["b"], value=w)],
            "then",
            [],
            [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 2])],
        )
        other = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["c"])],
            "else",
            [],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 2])],
        )
        initializers.append(numpy_helper.from_array(np.array(True), "cond"))
        nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)]
    elif place == "function":
        body = [helper.make_node("Constant", [], ["w"], value=w), helper.make_node("Add", ["a", "w"], ["r"])]
        functions.append(helper.make_function("local", "AddW", ["a"], ["r"], body, [helper.make_opsetid("", 17)]))
        nodes = [helper.make_node("AddW", ["x"], ["y"], domain="local")]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=initializers, sparse_initializer=sparse)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    return helper.make_model(graph, opset_imports=opsets, functions=functions, ir_version=8).SerializeToString()


ONNX_PLACES = ["initializer", "sparse-initializer", "constant-node", "if-subgraph", "function"]


@needs_onnx
@pytest.mark.parametrize("place", ONNX_PLACES)
def test_onnx_built_external_data_is_refused(tmp_path: Path, place: str) -> None:
    check_self_contained(_onnx_model(place, None), tmp_path / "encoder.onnx")
    outside, inside = _onnx_model(place, "../secret.bin"), _onnx_model(place, "w.bin")
    with pytest.raises(ModelError, match="'../secret.bin' outside the model folder"):
        check_self_contained(outside, tmp_path / "encoder.onnx")
    with pytest.raises(ModelError, match="'w.bin'.*self-contained"):
        check_self_contained(inside, tmp_path / "encoder.onnx")


@needs_onnx
@pytest.mark.parametrize("location", ["../secret.bin", "/tmp/secret.bin", "weights.bin"])
def test_shipped_encoder_with_an_external_weight_is_refused(
    tmp_path: Path, sessions: list[bytes], location: str
) -> None:
    import onnx

    model = copy_model(tmp_path / "model")
    proto = onnx.load_from_string((model / "encoder.onnx").read_bytes())
    target = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    _externalize(target, location)
    path = install(model, "encoder", proto.SerializeToString())
    with pytest.raises(ModelError, match=f"tensor '{target.name}'") as info:
        DigitVAE.load(model)
    assert str(path) in str(info.value) and repr(location) in str(info.value)
    assert sessions == []


def test_a_directory_in_place_of_an_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    def to_directory(model: Path) -> None:
        (model / "encoder.onnx").unlink()
        (model / "encoder.onnx").mkdir()

    with pytest.raises(ModelError, match="not a regular file"):
        DigitVAE.load(_model_copy(tmp_path, to_directory))


def test_an_empty_model_name_is_not_the_current_folder() -> None:
    with pytest.raises(InputError, match="model is empty"):
        DigitVAE.load("")


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["model.json", "decoder.onnx"])
def test_a_fifo_in_a_model_folder_is_refused_not_waited_on(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    import os

    from digitvae.runtime import ModelError

    model = _model_copy(tmp_path)
    (model / name).unlink()
    os.mkfifo(model / name)
    with pytest.raises(ModelError, match="not a regular file"):
        DigitVAE.load(model)


def test_links_to_devices_or_out_of_the_folder_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digitvae.runtime import ModelError

    model = _model_copy(tmp_path)
    outside = tmp_path / "decoder-elsewhere.onnx"
    (model / "decoder.onnx").rename(outside)
    (model / "decoder.onnx").symlink_to(outside)
    with pytest.raises(ModelError, match="leaves the model folder"):
        DigitVAE.load(model)
    (model / "decoder.onnx").unlink()
    (model / "decoder.onnx").symlink_to("/dev/zero")
    with pytest.raises(ModelError, match="leaves the model folder|not a regular file"):
        DigitVAE.load(model)


def test_a_model_name_too_long_for_the_file_system_is_not_found(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digitvae.runtime import ModelNotFoundError

    for name in ("x" * 5000, str(tmp_path / ("y" * 300)), "bad\x00name"):
        with pytest.raises(ModelNotFoundError, match="no model"):
            DigitVAE.load(name)
