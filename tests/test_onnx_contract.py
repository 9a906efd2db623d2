"""What docs/contract.md promises about the shipped ONNX files, and how the runtime guards what they do not check."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from mnist_files import VALID_IMAGES

from digitvae.runtime import DigitVAE, InputError
from digitvae.runtime.digits.idx import read_mnist_labels
from digitvae.runtime.folders.locate import list_shipped_models, shipped_models_dir
from digitvae.runtime.folders.reading import read_manifest, verified_bytes

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [prior] extra (onnx)")
#: onnxruntime 1.15-1.17 read IR version 9 at most.
MAX_IR = 9
SHIPPED = [
    (name, variant, role, entry.path)
    for name in list_shipped_models()
    for variant, entries in read_manifest(shipped_models_dir() / name).variants.items()
    for role, entry in entries.items()
]
#: Each ONNX file once (every variant shares the prior's two files).
FILES = sorted({(name, path) for name, _, _, path in SHIPPED})
LAYOUTS = {"[N,784]": lambda x: x.reshape(len(x), 784), "[N,28,28]": lambda x: x, "[N,1,28,28]": lambda x: x[:, None]}


def _session(name: str, path: str) -> ort.InferenceSession:
    folder = shipped_models_dir() / name
    entry = next(f for v in read_manifest(folder).variants.values() for f in v.values() if f.path == path)
    return ort.InferenceSession(verified_bytes(folder, entry), providers=["CPUExecutionProvider"])


@needs_onnx
@pytest.mark.parametrize(("name", "path"), FILES, ids=[f"{n}/{p}" for n, p in FILES])
def test_every_shipped_file_declares_the_lowest_ir_version_and_opset_its_graph_needs(name: str, path: str) -> None:
    import onnx

    from digitvae.export.opset import lowest_ir_version, lowest_opsets

    model = onnx.load(str(shipped_models_dir() / name / path))
    declared = {o.domain or "": o.version for o in model.opset_import}
    assert model.ir_version <= MAX_IR
    assert declared == lowest_opsets(model)
    assert model.ir_version == lowest_ir_version(model, declared)
    # Independently of export.opset: one opset lower, some node has no schema or another one.
    opset = declared[""]
    since = [onnx.defs.get_schema(n.op_type, opset, n.domain).since_version for n in model.graph.node]
    assert max(since) == opset
    assert model.ir_version == onnx.helper.find_min_ir_version_for(model.opset_import)
    onnx.checker.check_model(model, full_check=True)


def test_every_shipped_file_loads_in_this_onnxruntime() -> None:
    # On the oldest onnxruntime CI installs (see .ci/run) as on the newest: no file may need more.
    for name, path in FILES:
        session = _session(name, path)
        assert session.get_inputs() and session.get_outputs(), f"{name}/{path}"


def test_the_encoder_graph_takes_rank_4_images_only() -> None:
    # The runtime reshapes [N,784] and [N,28,28] itself; apps calling the graph must not.
    session = _session("mnist-vae", "encoder.onnx")
    assert [i.shape for i in session.get_inputs()] == [["N", 1, 28, 28]]
    assert session.get_inputs()[0].type == "tensor(float)"
    session.run(None, {"image": np.zeros((2, 1, 28, 28), np.float32)})
    with pytest.raises(Exception, match="(?i)rank|dimension|shape"):
        session.run(None, {"image": np.zeros((2, 784), np.float32)})


def test_the_conditional_graph_does_not_check_its_label_the_runtime_does() -> None:
    session = _session("mnist-cvae", "decoder.onnx")
    label = next(i for i in session.get_inputs() if i.name == "label")
    assert label.type == "tensor(int64)"
    d = read_manifest(shipped_models_dir() / "mnist-cvae").latent_dim
    z = np.zeros((1, d), np.float32)
    # Label 10 is no class, yet the graph decodes it (a one-hot of zeros): a digit of no class.
    nothing = session.run(["image"], {"z": z, "label": np.array([10], np.int64)})[0]
    assert nothing.shape == (1, 1, 28, 28) and np.isfinite(nothing).all()
    cvae = DigitVAE.load("mnist-cvae")
    digits = cvae.generate(2, seed=0, digit=3)
    for bad in (10, -1, [3, 10], np.array([0, 11], np.uint8)):
        with pytest.raises(InputError, match=r"in \[0, 9\]"):
            cvae.generate(2, seed=0, digit=bad)
        with pytest.raises(InputError, match=r"in \[0, 9\]"):
            cvae.decode(np.zeros((2, d), np.float32), bad)
        with pytest.raises(InputError, match=r"in \[0, 9\]"):
            cvae.reconstruct(digits, bad)
        with pytest.raises(InputError, match=r"in \[0, 9\]"):
            cvae.iw_nll(digits, 2, bad)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("model", ["mnist-vae", "mnist-cvae"])
def test_every_image_layout_reconstructs_and_scores_alike(model: str, layout: str, digits: np.ndarray) -> None:
    vae = DigitVAE.load(model)
    x = digits[:6]
    labels = read_mnist_labels(Path(str(VALID_IMAGES).replace("images-idx3", "labels-idx1")))[:6]
    y = labels if vae.num_classes else None
    shaped = LAYOUTS[layout](x)
    np.testing.assert_array_equal(vae.reconstruct(shaped, y), vae.reconstruct(x, y))
    np.testing.assert_array_equal(vae.iw_nll(shaped, 4, y), vae.iw_nll(x, 4, y))
    assert vae.reconstruct(shaped, y).shape == (6, 28, 28)
