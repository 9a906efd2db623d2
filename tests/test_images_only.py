"""The decoder's images-only graph: the same nodes with `image` its one output, the same images to the bit, used on the CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from digitvae.runtime import DigitVAE
from digitvae.runtime.folders.compose import images_only
from digitvae.runtime.folders.locate import shipped_models_dir

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [train] extra (onnx)")

MODELS = shipped_models_dir()
NAMES = sorted(p.name for p in MODELS.iterdir() if (p / "model.json").is_file())
DECODERS = [(name, file) for name in NAMES for file in ("decoder.onnx", "decoder.int8.onnx", "decoder.fp16.onnx")]


def _session(data: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _feeds(model: Path, n: int) -> dict[str, np.ndarray]:
    manifest = json.loads((model / "model.json").read_text())
    rng = np.random.default_rng(n)
    feeds = {"z": rng.standard_normal((n, manifest["latent_dim"]), dtype=np.float32)}
    if manifest.get("num_classes"):
        feeds["label"] = rng.integers(0, manifest["num_classes"], n)
    return feeds


@pytest.mark.parametrize("name, file", DECODERS)
def test_the_images_only_graph_gives_the_whole_decoders_images_bit_for_bit(name: str, file: str) -> None:
    data = (MODELS / name / file).read_bytes()
    derived = images_only(data)
    assert derived is not None
    whole, images = _session(data), _session(derived)
    assert [o.name for o in whole.get_outputs()] == ["logits", "image"]
    assert [o.name for o in images.get_outputs()] == ["image"]
    assert [(i.name, i.type, i.shape) for i in images.get_inputs()] == [
        (i.name, i.type, i.shape) for i in whole.get_inputs()
    ]
    for n in (1, 17, 1024):
        feeds = _feeds(MODELS / name, n)
        np.testing.assert_array_equal(images.run(["image"], feeds)[0], whole.run(["image"], feeds)[0])


@needs_onnx
@pytest.mark.parametrize("name", NAMES)
def test_only_the_graph_outputs_change(name: str) -> None:
    import onnx

    whole = onnx.load_from_string((MODELS / name / "decoder.onnx").read_bytes())
    derived = images_only(whole.SerializeToString())
    assert derived is not None
    images = onnx.load_from_string(derived)
    onnx.checker.check_model(images, full_check=True)
    assert [o.name for o in images.graph.output] == ["image"]
    assert images.graph.output[0] == whole.graph.output[1]
    del whole.graph.output[0]  # logits: what remains must be the same model, field for field
    assert images == whole


@pytest.mark.parametrize("name", ["encoder.onnx", "prior.onnx", "prior_density.onnx"])
def test_a_graph_without_an_image_output_has_no_images_only_form(name: str) -> None:
    assert images_only((MODELS / "mnist-vae" / name).read_bytes()) is None


@pytest.mark.parametrize("data", [b"", b"\xff\xff\xff", b"\x3a\x05abc"])
def test_bytes_that_are_no_model_have_no_images_only_form(data: bytes) -> None:
    assert images_only(data) is None


def test_a_cpu_load_opens_the_whole_decoder_only_for_logits(digits: np.ndarray) -> None:
    vae = DigitVAE.load()
    assert [o.name for o in vae._decoder.get_outputs()] == ["image"]
    assert not vae._whole_slot.is_open
    vae.generate(3, seed=0)
    vae.generate(40, seed=0)
    vae.decode(np.zeros((1100, vae.latent_dim), np.float32))
    vae.reconstruct(digits[:20])
    assert not vae._whole_slot.is_open  # images never need it
    logits, image = vae.decoder_outputs(np.zeros((3, vae.latent_dim), np.float32))
    assert vae._whole_slot.is_open
    assert [o.name for o in vae._whole_decoder().get_outputs()] == ["logits", "image"]
    np.testing.assert_array_equal(image[:, 0], vae.decode(np.zeros((3, vae.latent_dim), np.float32)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 16, 17, 1024])
def test_decode_gives_what_a_plain_session_on_decoder_onnx_gives(name: str, n: int) -> None:
    vae = DigitVAE.load(name)
    feeds = _feeds(MODELS / name, n)
    want = _session(str(MODELS / name / "decoder.onnx")).run(["image"], feeds)[0]
    found = vae.decode(feeds["z"], feeds.get("label"))
    np.testing.assert_array_equal(found, want.reshape(n, 28, 28))


def test_logits_come_from_the_whole_decoder(digits: np.ndarray) -> None:
    vae = DigitVAE.load()
    z = np.random.default_rng(3).standard_normal((20, vae.latent_dim), dtype=np.float32)
    want = _session(str(MODELS / "mnist-vae" / "decoder.onnx")).run(["logits", "image"], {"z": z})
    logits, image = vae.decoder_outputs(z)
    np.testing.assert_array_equal(logits, want[0])
    np.testing.assert_array_equal(image, want[1])


def test_without_an_images_only_graph_the_whole_decoder_makes_the_images(
    monkeypatch: pytest.MonkeyPatch, digits: np.ndarray
) -> None:
    from digitvae.runtime.inference import loading

    monkeypatch.setattr(loading, "images_only", lambda data: None)  # e.g. a graph with local functions
    vae = DigitVAE.load()
    assert [o.name for o in vae._decoder.get_outputs()] == ["logits", "image"]
    assert vae._whole_slot.is_open and vae._whole_decoder() is vae._decoder
    z = np.random.default_rng(5).standard_normal((20, vae.latent_dim), dtype=np.float32)
    want = _session(str(MODELS / "mnist-vae" / "decoder.onnx")).run(["logits", "image"], {"z": z})
    np.testing.assert_array_equal(vae.decode(z), want[1].reshape(20, 28, 28))
    logits, _ = vae.decoder_outputs(z[:3])
    np.testing.assert_array_equal(logits, want[0][:3])
    assert np.isfinite(vae.iw_nll(digits[:2], k=3)).all()
