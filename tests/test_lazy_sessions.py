"""Sessions opened on first use: what a CPU load leaves unopened, what it still checks at load, and first-use failures."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from digitvae.runtime import DigitVAE, IntegrityError, ModelError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.inference.sessions import LazySession

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [train] extra (onnx)")


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(shipped_models_dir() / "mnist-vae", tmp_path / "m"))


def _install(folder: Path, role: str, data: bytes) -> None:
    """Replace one ONNX file and record its sha256 in model.json, as a forger with write access would."""
    (folder / f"{role}.onnx").write_bytes(data)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["variants"]["fp32"][role]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "model.json").write_text(json.dumps(manifest))


def test_a_cpu_load_opens_only_what_generation_needs() -> None:
    vae = DigitVAE.load()
    assert not vae._encoder_slot.is_open
    assert not vae.prior._density_slot.is_open  # type: ignore[attr-defined]
    assert vae.providers == ["CPUExecutionProvider"]
    digits = vae.generate(3, seed=1)
    assert not vae._encoder_slot.is_open and not vae.prior._density_slot.is_open  # type: ignore[attr-defined]
    mean, _ = vae.encode(digits)
    assert vae._encoder_slot.is_open and mean.shape == (3, vae.latent_dim)
    assert not vae.prior._density_slot.is_open  # type: ignore[attr-defined]
    assert np.isfinite(vae.iw_nll(digits, k=4)).all()
    assert vae.prior._density_slot.is_open  # type: ignore[attr-defined]


def test_a_lazily_opened_encoder_gives_what_an_eager_session_gives() -> None:
    vae = DigitVAE.load()
    digits = vae.generate(5, seed=2)
    eager = ort.InferenceSession(str(vae.model_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    mean, logvar = vae.encode(digits)
    want = eager.run(["mean", "logvar"], {"image": digits[:, None]})
    np.testing.assert_array_equal(mean, want[0])
    np.testing.assert_array_equal(logvar, want[1])


def test_a_lazy_files_sha256_is_still_checked_at_load(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    data = bytearray((model / "encoder.onnx").read_bytes())
    data[-1] ^= 1
    (model / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        DigitVAE.load(model)


@needs_onnx
def test_a_lazy_files_signature_is_still_checked_at_load(tmp_path: Path) -> None:
    import onnx

    model = _copy(tmp_path)
    encoder = onnx.load(str(model / "encoder.onnx"))
    encoder.graph.output[1].name = "log_sigma"
    for node in encoder.graph.node:
        node.output[:] = ["log_sigma" if o == "logvar" else o for o in node.output]
    _install(model, "encoder", encoder.SerializeToString())
    with pytest.raises(ModelError, match=r"encoder has outputs \['log_sigma', 'mean'\], expected \['logvar', 'mean'\]"):
        DigitVAE.load(model)


@needs_onnx
def test_a_lazy_file_that_fails_its_trial_run_fails_its_first_call_each_time(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    _install(model, "encoder", _one_row_encoder(model / "encoder.onnx"))
    vae = DigitVAE.load(model)  # sha256, external data and the declared signature all pass
    digits = vae.generate(2, seed=0)
    for _ in range(2):
        with pytest.raises(ModelError, match="encoder fails on a batch of 2"):
            vae.encode(digits)
    assert not vae._encoder_slot.is_open


def _one_row_encoder(path: Path) -> bytes:
    """Return the encoder with its `mean` output reshaped to [1, D]: it declares [N, D] but breaks for N > 1."""
    import onnx
    from onnx import helper, numpy_helper

    encoder = onnx.load(str(path))
    graph = encoder.graph
    for node in graph.node:
        node.output[:] = ["mean_raw" if o == "mean" else o for o in node.output]
    dim = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    graph.initializer.append(numpy_helper.from_array(np.array([1, dim], np.int64), "one_row"))
    graph.node.append(helper.make_node("Reshape", ["mean_raw", "one_row"], ["mean"]))
    return encoder.SerializeToString()


def test_a_lazy_session_is_made_once_however_many_threads_ask() -> None:
    made: list[int] = []
    gate = threading.Event()

    def opener() -> object:
        gate.wait()
        made.append(1)
        return object()

    lazy = LazySession(opener)  # type: ignore[arg-type]
    found: list[object] = []
    threads = [threading.Thread(target=lambda: found.append(lazy.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and len(found) == 8 and all(s is found[0] for s in found)


def test_a_failed_opening_is_raised_again_on_the_next_call() -> None:
    calls: list[int] = []

    def opener() -> ort.InferenceSession:
        calls.append(1)
        raise ModelError("broken")

    lazy = LazySession(opener)
    for _ in range(2):
        with pytest.raises(ModelError, match="broken"):
            lazy.get()
    assert len(calls) == 2 and not lazy.is_open
