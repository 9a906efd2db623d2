"""CUDA: its libraries preloaded from NVIDIA's pip packages, and its numbers against the CPU's.

The first tests run everywhere, on a stand-in for onnxruntime's preload. The rest need
onnxruntime-gpu and an NVIDIA GPU, and skip elsewhere (docs/edge.md, "CUDA", says where they ran).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from digitvae.cli.main import cli
from digitvae.runtime import DigitVAE
from digitvae.runtime.inference import providers
from digitvae.runtime.inference.parity import IMAGE_TOLERANCE, compare, tolerances
from digitvae.runtime.inference.sessions import SmallBatchRunner

CUDA = "CUDAExecutionProvider"
needs_cuda = pytest.mark.skipif(
    CUDA not in ort.get_available_providers(),
    reason="this onnxruntime has no CUDA provider (the onnxruntime-gpu package has it)",
)


@pytest.fixture
def fake_preload(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Stand in for onnxruntime.preload_dlls, with CUDA listed as available; return its calls."""
    calls: list[str] = []

    def preload_dlls() -> None:
        calls.append("preload")
        print("\x1b[33mFailed to load libcudnn.so.9: cannot open shared object file\x1b[0m")

    monkeypatch.setattr(ort, "preload_dlls", preload_dlls, raising=False)
    monkeypatch.setattr(providers, "available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    providers.preload_cuda_libraries.cache_clear()
    yield calls
    providers.preload_cuda_libraries.cache_clear()


def test_cuda_libraries_are_preloaded_once_when_cuda_is_asked_for(fake_preload: list[str]) -> None:
    providers.plan(providers.normalize("cpu"), strict=True)
    assert fake_preload == []
    chosen = providers.plan(providers.normalize(["cuda", "cpu"]), strict=True)
    assert chosen.names == [CUDA, "CPUExecutionProvider"]
    providers.plan(providers.normalize("tensorrt"), strict=False)
    assert fake_preload == ["preload"]


def test_what_the_preload_prints_goes_to_the_log_not_stdout(
    fake_preload: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=providers.__name__):
        providers.plan(providers.normalize("cuda"), strict=True)
    assert capsys.readouterr().out == ""
    assert caplog.messages == ["onnxruntime: Failed to load libcudnn.so.9: cannot open shared object file"]


def test_an_onnxruntime_without_preload_or_with_a_failing_one_still_plans(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(providers, "available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    monkeypatch.delattr(ort, "preload_dlls", raising=False)
    providers.preload_cuda_libraries.cache_clear()
    assert providers.plan(providers.normalize("cuda"), strict=True).names == [CUDA, "CPUExecutionProvider"]

    def broken() -> None:
        raise RuntimeError("Invalid parameter of directory=None")

    monkeypatch.setattr(ort, "preload_dlls", broken, raising=False)
    providers.preload_cuda_libraries.cache_clear()
    with caplog.at_level(logging.WARNING, logger=providers.__name__):
        assert providers.plan(providers.normalize("cuda"), strict=True).names[0] == CUDA
    providers.preload_cuda_libraries.cache_clear()
    assert caplog.messages == ["could not preload CUDA's libraries: Invalid parameter of directory=None"]


def test_cuda_computes_float32_in_float32_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    monkeypatch.setattr(providers, "preload_cuda_libraries", lambda: None)
    monkeypatch.setattr(ort, "__version__", "1.18.0")
    plain = providers.plan(providers.normalize("cuda"), strict=True)
    assert plain.options[0] == {"use_tf32": "0"}
    asked = providers.plan(providers.normalize([("cuda", {"use_tf32": "1", "device_id": "1"})]), strict=True)
    assert asked.options[0] == {"use_tf32": "1", "device_id": "1"}
    monkeypatch.setattr(ort, "__version__", "1.17.3")  # before the option: not passed, or CUDA refuses to start
    assert providers.plan(providers.normalize("cuda"), strict=True).options[0] == {}


@needs_cuda
@pytest.mark.parametrize("model", ["mnist-vae", "mnist-cvae", "mnist-vae-2d", "mnist-vae-geron"])
@pytest.mark.parametrize("variant", ["fp32", "int8", "fp16"])
def test_cuda_runs_both_halves_and_agrees_with_the_cpu(model: str, variant: str) -> None:
    gpu = DigitVAE.load(model, providers="cuda", strict=True, variant=variant)
    found = compare(gpu, DigitVAE.load(model, variant=variant), allowed=tolerances(variant))
    assert gpu.providers[0] == CUDA and gpu._encoder.get_providers()[0] == CUDA
    assert all(d.ok for d in found), found


@needs_cuda
@pytest.mark.parametrize("n", [1, 16, 17, 1024, 5000])
def test_cuda_decodes_batches_of_every_size_as_the_cpu_does(n: int) -> None:
    gpu = DigitVAE.load(providers="cuda", strict=True)
    cpu = DigitVAE.load()
    z = np.random.default_rng(n).standard_normal((n, gpu.latent_dim), dtype=np.float32)
    images = gpu.decode(z)
    assert images.shape == (n, 28, 28) and images.dtype == np.float32
    assert np.max(np.abs(images - cpu.decode(z))) <= IMAGE_TOLERANCE
    again = gpu.generate(n, seed=n)
    assert np.max(np.abs(again - cpu.generate(n, seed=n))) <= IMAGE_TOLERANCE


@needs_cuda
def test_cuda_decodes_large_batches_in_place_and_small_ones_the_ordinary_way() -> None:
    gpu = DigitVAE.load(providers="cuda", strict=True)
    runner = gpu._small["decoder"]
    plain = ort.InferenceSession(
        str(gpu.model_dir / "decoder.onnx"),
        providers=[(CUDA, {"use_tf32": "0"}), "CPUExecutionProvider"],
    )
    z = np.random.default_rng(0).standard_normal((40, gpu.latent_dim), dtype=np.float32)
    for rows in (3, 40):  # each against a plain session at the same batch size: cuBLAS picks kernels by size
        expected = plain.run(["image"], {"z": z[:rows]})[0].reshape(rows, 28, 28)
        assert np.array_equal(gpu.decode(z[:rows]), expected)
    assert runner.enabled and runner._bound is True and runner._plans == {}


class _Session:
    """What SmallBatchRunner asks of a session, for one on CUDA with these provider options."""

    def __init__(self, cuda_options: dict[str, str]) -> None:
        self._options = {CUDA: cuda_options, "CPUExecutionProvider": {}}
        decoder = ort.InferenceSession(str(DigitVAE.load().model_dir / "decoder.onnx"))
        self.get_inputs, self.get_outputs = decoder.get_inputs, decoder.get_outputs
        self.run_with_ortvaluevector = decoder.run_with_ortvaluevector

    def get_providers(self) -> list[str]:
        return [CUDA, "CPUExecutionProvider"]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return self._options


def test_a_captured_cuda_graph_keeps_the_bound_paths_off() -> None:
    """A graph replays the buffers of its capture: arrays bound afresh on each call would be ignored."""
    assert SmallBatchRunner(_Session({"use_tf32": "0"})).enabled  # type: ignore[arg-type]
    assert not SmallBatchRunner(_Session({"enable_cuda_graph": "1"})).enabled  # type: ignore[arg-type]


@needs_cuda
@pytest.mark.parametrize("variant", ["fp32", "int8", "fp16"])
def test_parity_command_passes_on_cuda(variant: str) -> None:
    result = CliRunner().invoke(cli, ["parity", "--provider", "cuda", "--variant", variant, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["providers"][0] == CUDA
    assert len(report["outputs"]) == 6 and all(o["max_abs_diff"] <= o["tolerance"] for o in report["outputs"])
