"""The sampler and decoder composed into one graph: the same digits as the two sessions, for every seed, or not used."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from digitvae.runtime import DigitVAE
from digitvae.runtime.folders.compose import compose_generator
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.inference import generator

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [train] extra (onnx)")

MODELS = shipped_models_dir()
UNCONDITIONAL = ("mnist-vae", "mnist-vae-geron", "mnist-vae-2d")


def _session(data: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _two_sessions(model: Path, n: int, seed: int, decoder: str = "decoder.onnx") -> np.ndarray:
    """Return generate(n, seed) as the contract defines it: default_rng(seed)'s noise then uniforms, sampler, decoder."""
    sampler, dec = _session(str(model / "prior.onnx")), _session(str(model / decoder))
    dim = sampler.get_inputs()[0].shape[1]
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, dim), dtype=np.float32)
    uniform = rng.random(n, dtype=np.float32)
    z = sampler.run(["z"], {"noise": noise, "uniform": uniform, "label": np.full(n, -1, np.int64)})[0]
    image: np.ndarray = dec.run(["image"], {"z": z})[0]
    return image.reshape(n, 28, 28)


@pytest.mark.parametrize("name", UNCONDITIONAL)
@pytest.mark.parametrize("variant", ["", ".int8", ".fp16"])
def test_the_composed_graph_computes_what_the_two_graphs_compute(name: str, variant: str) -> None:
    sampler = (MODELS / name / "prior.onnx").read_bytes()
    decoder = (MODELS / name / f"decoder{variant}.onnx").read_bytes()
    data = compose_generator(sampler, decoder)
    assert data is not None
    composed = _session(data)
    assert [i.name for i in composed.get_inputs()] == ["noise", "uniform", "label"]
    assert [o.name for o in composed.get_outputs()] == ["logits", "image"]
    rng = np.random.default_rng(7)
    dim = composed.get_inputs()[0].shape[1]
    feeds = {
        "noise": rng.standard_normal((16, dim), dtype=np.float32),
        "uniform": rng.random(16, dtype=np.float32),
        "label": np.full(16, -1, np.int64),
    }
    z = _session(sampler).run(["z"], feeds)[0]
    want = _session(decoder).run(["logits", "image"], {"z": z})
    for got, expected in zip(composed.run(["logits", "image"], feeds), want):
        np.testing.assert_array_equal(got, expected)


@needs_onnx
def test_the_composed_graph_is_a_valid_onnx_model() -> None:
    import onnx

    data = compose_generator(
        (MODELS / "mnist-vae/prior.onnx").read_bytes(), (MODELS / "mnist-vae/decoder.onnx").read_bytes()
    )
    assert data is not None
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)


def test_graphs_that_do_not_join_are_not_composed() -> None:
    cvae = MODELS / "mnist-cvae"
    # The conditional decoder takes a label beside z (and declares another opset).
    assert compose_generator((cvae / "prior.onnx").read_bytes(), (cvae / "decoder.onnx").read_bytes()) is None
    decoder = (MODELS / "mnist-vae/decoder.onnx").read_bytes()
    assert compose_generator(decoder, decoder) is None  # a "sampler" whose output is not z
    assert compose_generator(b"\x0a\xff", decoder) is None  # malformed protobuf


@needs_onnx
def test_a_shared_name_keeps_the_graphs_apart() -> None:
    import onnx

    sampler = onnx.load(str(MODELS / "mnist-vae/prior.onnx"))
    decoder = onnx.load(str(MODELS / "mnist-vae/decoder.onnx"))
    taken = decoder.graph.initializer[0].name
    inner = sampler.graph.node[0].output[0]
    for node in sampler.graph.node:
        node.output[:] = [taken if o == inner else o for o in node.output]
        node.input[:] = [taken if i == inner else i for i in node.input]
    _session(sampler.SerializeToString())  # still a sound sampler on its own
    assert compose_generator(sampler.SerializeToString(), decoder.SerializeToString()) is None


@pytest.mark.parametrize("name", UNCONDITIONAL)
def test_seeded_digits_are_the_two_sessions_digits_for_every_seed(name: str) -> None:
    vae = DigitVAE.load(name)
    for seed in range(40):
        for n in (1, 2, 16, 17):
            np.testing.assert_array_equal(vae.generate(n, seed=seed), _two_sessions(vae.model_dir, n, seed))
    composed = vae._composed
    assert composed is not None and composed._runner is not None  # the composed session served n <= 16


def test_the_int8_variant_composes_its_own_decoder() -> None:
    vae = DigitVAE.load("mnist-vae", variant="int8")
    for seed in range(10):
        got = vae.generate(3, seed=seed)
        np.testing.assert_array_equal(got, _two_sessions(vae.model_dir, 3, seed, "decoder.int8.onnx"))
    assert vae._composed is not None and vae._composed._runner is not None


def test_a_composed_graph_that_differs_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = generator.open_session

    def off_by_a_bit(data: bytes, *args: object) -> object:
        session = real(data, *args)  # type: ignore[arg-type]

        class Drifting:
            def __getattr__(self, name: str) -> object:
                return getattr(session, name)

            def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
                return [np.nextafter(a, np.float32(2)) for a in session.run(names, feeds)]

        return Drifting()

    monkeypatch.setattr(generator, "open_session", off_by_a_bit)
    vae = DigitVAE.load()
    with caplog.at_level(logging.DEBUG, logger="digitvae.runtime.inference.generator"):
        got = vae.generate(1, seed=3)
    assert "differs from the two sessions" in caplog.text
    np.testing.assert_array_equal(got, _two_sessions(vae.model_dir, 1, 3))
    assert vae._composed is not None and vae._composed._runner is None
    np.testing.assert_array_equal(vae.generate(2, seed=4), _two_sessions(vae.model_dir, 2, 4))


def test_nan_from_the_composed_graph_is_reported_by_the_two_sessions() -> None:
    vae = DigitVAE.load()
    vae.generate(1, seed=0)
    composed = vae._composed
    assert composed is not None and composed._runner is not None
    runner = composed._runner

    class Poisoned:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            found = runner.run(names, feeds)
            assert found is not None
            return [np.full_like(found[0], np.nan)]

    composed._runner = Poisoned()  # type: ignore[assignment]
    # The two sessions compute the real digits: the composed graph's NaN is never returned.
    np.testing.assert_array_equal(vae.generate(1, seed=5), _two_sessions(vae.model_dir, 1, 5))


def test_a_model_whose_graphs_do_not_compose_generates_through_both(caplog: pytest.LogCaptureFixture) -> None:
    vae = DigitVAE.load("mnist-cvae")
    assert vae._composed is None  # conditional: the decoder takes labels the sampler does not make
    assert vae.generate(3, seed=1).shape == (3, 28, 28)


def test_nothing_is_read_from_disk_after_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = Path(shutil.copytree(MODELS / "mnist-vae", tmp_path / "m"))
    vae = DigitVAE.load(model)
    shutil.rmtree(model)  # the composed generator, the encoder and the density all come from bytes read at load

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"read after load: {args}")

    monkeypatch.setattr("builtins.open", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    digits = vae.generate(2, seed=0)
    np.testing.assert_array_equal(digits, _two_sessions(MODELS / "mnist-vae", 2, 0))
    assert vae._composed is not None and vae._composed._runner is not None
    assert np.isfinite(vae.iw_nll(digits, k=3)).all()
