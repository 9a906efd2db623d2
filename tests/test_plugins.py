"""Plugin execution providers: OpenVINO through onnxruntime's plugin EP API, and the generic "plugin:MODULE" form.

The tests of OpenVINO really running use whichever OpenVINO is here: the plugin package, or
onnxruntime-openvino (OpenVINO built into onnxruntime, which runs on any x86-64 CPU).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from helpers import assert_clean_failure, invoke, ok
from mnist_files import VALID_IMAGES

from digitvae.runtime import DigitVAE, ProviderError
from digitvae.runtime.digits.idx import read_mnist_images
from digitvae.runtime.inference import plugins
from digitvae.runtime.inference import providers as eps
from digitvae.runtime.inference.sessions import active_providers, open_session

OPENVINO = "OpenVINOExecutionProvider"
HAVE_OPENVINO = importlib.util.find_spec("onnxruntime_ep_openvino") is not None
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason="needs the [openvino] extra (onnxruntime-ep-openvino)")
#: onnxruntime-openvino in place of onnxruntime: OpenVINO is available without a plugin package.
BUILT_IN_OPENVINO = not HAVE_OPENVINO and OPENVINO in ort.get_available_providers()


def _openvino_cpu() -> str | None:
    """Return why OpenVINO cannot run on this machine's CPU, or None when it can."""
    try:
        plugins.choose(plugins.KNOWN["openvino"], {})
    except ProviderError as exc:
        return str(exc)
    return None


def _built_in_openvino_cpu() -> str | None:
    """Return why onnxruntime-openvino's EP cannot run a model on this machine's CPU, or None when it can."""
    try:
        DigitVAE.load(providers="openvino", strict=True)
    except ProviderError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def openvino_cpu() -> None:
    """Skip unless OpenVINO runs on this machine's CPU: built into onnxruntime, or the plugin (Intel CPUs only)."""
    if BUILT_IN_OPENVINO:
        why = _built_in_openvino_cpu()
        if why is not None:
            pytest.skip(f"onnxruntime-openvino is installed, but {why}")
        return
    if not HAVE_OPENVINO:
        pytest.skip("needs the [openvino] extra (onnxruntime-ep-openvino)")
    why = _openvino_cpu()
    if why is not None:
        pytest.skip(f"the [openvino] extra is installed, but {why}")


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget which plugin libraries this process registered, for the test's duration."""
    monkeypatch.setattr(plugins, "_registered", {})
    yield


@pytest.fixture
def unregistered(monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> None:
    """A process that has registered no OpenVINO library (onnxruntime then lists it as available)."""
    listed = ort.get_available_providers()
    monkeypatch.setattr(eps, "available_providers", lambda: [p for p in listed if p != OPENVINO])


# ---------------------------------------------------------------------------------------------------------------
# OpenVINO really running (a machine whose CPU the plugin offers)


@pytest.fixture(scope="module")
def pair(openvino_cpu: None) -> tuple[DigitVAE, DigitVAE]:
    return DigitVAE.load(providers="openvino", strict=True), DigitVAE.load()


def test_openvino_matches_the_cpu_provider(pair: tuple[DigitVAE, DigitVAE]) -> None:
    ov, cpu = pair
    assert ov.providers == [OPENVINO, "CPUExecutionProvider"]
    x = read_mnist_images(VALID_IMAGES)[:64].astype(np.float32) / 255
    z = np.random.default_rng(0).standard_normal((256, ov.latent_dim), dtype=np.float32)
    assert np.abs(ov.decode(z) - cpu.decode(z)).max() < 1e-4
    for a, b in zip(ov.encode(x), cpu.encode(x)):
        assert np.abs(a - b).max() < 1e-4
    assert np.abs(ov.generate(32, seed=3) - cpu.generate(32, seed=3)).max() < 1e-4
    assert np.abs(ov.iw_nll(x, k=50) - cpu.iw_nll(x, k=50)).max() < 1e-3


def test_openvino_takes_the_nodes(pair: tuple[DigitVAE, DigitVAE]) -> None:
    """get_providers() lists a plugin EP even when it declined every node: the assignment says who runs them."""
    ov, _ = pair
    taken = plugins.assigned(ov._decoder)
    assert taken is not None and OPENVINO in taken


def test_openvino_in_float32_unless_asked(openvino_cpu: None) -> None:
    reference = DigitVAE.load()
    z = np.random.default_rng(1).standard_normal((64, reference.latent_dim), dtype=np.float32)
    cpu = reference.decoder_outputs(z)[0]
    f32 = DigitVAE.load(providers="openvino", strict=True).decoder_outputs(z)[0]
    assert np.abs(f32 - cpu).max() < 1e-3
    # The caller's precision passes through: OpenVINO's own default (bf16 where the CPU has it).
    asked = DigitVAE.load(providers=[("openvino", {"load_config": {"CPU": {}}})], strict=True)
    assert asked.providers[0] == OPENVINO
    assert np.isfinite(asked.decoder_outputs(z)[0]).all()


def test_cli_provider_openvino(openvino_cpu: None, tmp_path: Path) -> None:
    ok(invoke("generate", "-n", 8, "--seed", 2, "-o", tmp_path / "ov.npy", "--provider", "openvino", "--strict"))
    ok(invoke("generate", "-n", 8, "--seed", 2, "-o", tmp_path / "cpu.npy"))
    assert np.abs(np.load(tmp_path / "ov.npy") - np.load(tmp_path / "cpu.npy")).max() < 1e-4
    info = json.loads(ok(invoke("info", "--provider", "openvino", "--strict", "--json")).stdout)
    assert info["active_providers"][0] == OPENVINO


def test_bench_times_openvino(openvino_cpu: None) -> None:
    args = ["bench", "--provider", "openvino", "--quick", "--no-torch", "--no-cold-start"]
    report = json.loads(ok(invoke(*args, "--json")).stdout)
    assert report["providers"][0] == OPENVINO
    assert f"on {OPENVINO}, CPUExecutionProvider" in ok(invoke(*args)).stdout


# ---------------------------------------------------------------------------------------------------------------
# OpenVINO that cannot run: a clear ProviderError when strict, a warning and the CPU otherwise


@needs_openvino
def test_a_device_the_plugin_does_not_offer(caplog: pytest.LogCaptureFixture) -> None:
    if not plugins.has_plugin_api():
        pytest.skip(f"onnxruntime {ort.__version__} has no plugin EP API")
    spec = [("openvino", {"device_type": "FPGA"})]
    with pytest.raises(ProviderError, match="OpenVINOExecutionProvider offers no"):
        DigitVAE.load(providers=spec, strict=True)
    with caplog.at_level(logging.WARNING, logger="digitvae"):
        assert DigitVAE.load(providers=spec).providers == ["CPUExecutionProvider"]
    assert any("OpenVINOExecutionProvider offers no" in r.getMessage() for r in caplog.records)


@needs_openvino
def test_cli_provider_openvino_where_it_cannot_run(tmp_path: Path) -> None:
    if not plugins.has_plugin_api():
        pytest.skip(f"onnxruntime {ort.__version__} has no plugin EP API")
    why = _openvino_cpu()
    if why is None:
        pytest.skip("OpenVINO runs here: test_cli_provider_openvino covers the CLI")
    result = ok(invoke("generate", "-n", 3, "-o", tmp_path / "x.npy", "--provider", "openvino"))
    assert result.stderr.splitlines() == [f"warning: {why}; skipping it"]
    assert np.load(tmp_path / "x.npy").shape == (3, 28, 28)
    assert_clean_failure(invoke("generate", "-o", tmp_path / "y.npy", "--provider", "openvino", "--strict"), why)
    assert not (tmp_path / "y.npy").exists()


def test_plugin_package_absent(
    monkeypatch: pytest.MonkeyPatch, unregistered: None, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(plugins, "has_plugin_api", lambda: True)
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_openvino", None)  # import fails as if not installed
    with pytest.raises(ProviderError, match=r"not installed: pip install .*\[openvino\]"):
        DigitVAE.load(providers="openvino", strict=True)
    with caplog.at_level(logging.WARNING, logger="digitvae"):
        assert DigitVAE.load(providers=["openvino", "cpu"]).providers == ["CPUExecutionProvider"]
    assert any("[openvino]" in r.getMessage() for r in caplog.records)
    result = invoke("generate", "-n", 2, "-o", tmp_path / "x.npy", "--provider", "openvino", "--strict")
    assert_clean_failure(result, "[openvino]")
    assert not (tmp_path / "x.npy").exists()


def test_onnxruntime_without_the_plugin_api_names_the_version(
    monkeypatch: pytest.MonkeyPatch, unregistered: None, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime before 1.23 (CI's runtime-only floor is 1.15) has no plugin EP API."""
    if plugins.has_plugin_api():
        monkeypatch.delattr(ort, "register_execution_provider_library")
    with pytest.raises(ProviderError, match=r"needs onnxruntime 1\.23 or later, and this is onnxruntime "):
        DigitVAE.load(providers="openvino", strict=True)
    with caplog.at_level(logging.WARNING, logger="digitvae"):
        assert DigitVAE.load(providers="openvino").providers == ["CPUExecutionProvider"]
    assert any("1.23 or later" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------------------------
# The generic form: "plugin:MODULE"


def test_generic_names() -> None:
    assert plugins.find("openvino") is plugins.KNOWN["openvino"]
    assert plugins.find("OpenVINOExecutionProvider") is plugins.KNOWN["openvino"]
    assert plugins.find("plugin:onnxruntime_ep_openvino") is plugins.KNOWN["openvino"]
    assert plugins.find("plugin:some_vendor_ep") == plugins.Plugin(module="some_vendor_ep")
    assert plugins.find("cuda") is None
    with pytest.raises(ProviderError, match="Python module name"):
        plugins.find("plugin:not a module")


def test_generic_form_refuses_what_is_not_a_plugin_package(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    monkeypatch.setattr(plugins, "has_plugin_api", lambda: True)
    with pytest.raises(ProviderError, match="no_such_ep_package is not installed"):
        DigitVAE.load(providers="plugin:no_such_ep_package", strict=True)
    with pytest.raises(ProviderError, match="json has no get_library_path"):
        DigitVAE.load(providers="plugin:json", strict=True)
    with pytest.raises(ProviderError, match="plugin:MODULE"):
        DigitVAE.load(providers="warp-drive")


@needs_openvino
def test_generic_form_registers_the_package_once(monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> None:
    if not plugins.has_plugin_api():
        pytest.skip(f"onnxruntime {ort.__version__} has no plugin EP API")
    calls = []
    real = ort.register_execution_provider_library

    def counting(name: str, path: str) -> None:
        calls.append(name)
        real(name, path)

    monkeypatch.setattr(ort, "register_execution_provider_library", counting)
    generic = plugins.Plugin(module="onnxruntime_ep_openvino")  # EP names from the package's get_ep_names()
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(plugins.register(generic))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[OPENVINO]] * 8
    assert len(calls) <= 1  # none when an earlier test's registration left OpenVINO devices behind
    assert plugins.register(generic) == [OPENVINO] and len(calls) <= 1
    why = _openvino_cpu()
    if why is None:
        vae = DigitVAE.load(providers="plugin:onnxruntime_ep_openvino", strict=True)
        assert vae.providers == [OPENVINO, "CPUExecutionProvider"]
    else:
        with pytest.raises(ProviderError, match="OpenVINOExecutionProvider offers no"):
            DigitVAE.load(providers="plugin:onnxruntime_ep_openvino", strict=True)


# ---------------------------------------------------------------------------------------------------------------
# onnxruntime-openvino: OpenVINO built into onnxruntime, named in providers= with the plugin's options


@pytest.fixture
def built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """An onnxruntime that lists OpenVINO among its own providers, and no plugin package."""
    listed = [p for p in ort.get_available_providers() if p != OPENVINO]
    monkeypatch.setattr(eps, "available_providers", lambda: [OPENVINO, *listed])
    monkeypatch.setattr(plugins, "installed", lambda plugin: False)


def test_built_in_openvino_goes_by_name_in_float32(built_in: None) -> None:
    plan = eps.plan(eps.normalize([("openvino", {"device_type": "gpu.1", "num_streams": 2})]), strict=True)
    assert plan.plugins == [] and plan.names == [OPENVINO, "CPUExecutionProvider"]
    f32 = json.dumps({"GPU.1": {"INFERENCE_PRECISION_HINT": "f32"}})
    assert plan.options[0] == {"device_type": "GPU.1", "num_streams": "2", "load_config": f32}
    assert plan.record_assignment and plan.started == [OPENVINO, "CPUExecutionProvider"]
    default = eps.plan(eps.normalize("openvino"), strict=True).options[0]
    assert default == {"load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "f32"}})}
    # The caller's precision passes through, as to the plugin.
    assert eps.plan(eps.normalize([("openvino", {"precision": "ACCURACY"})]), strict=True).options[0] == {
        "precision": "ACCURACY"
    }
    # Other built-in providers keep their options as given, and sessions record nothing extra.
    cpu = eps.plan(eps.normalize([("cpu", {"arena_extend_strategy": "kSameAsRequested"})]), strict=True)
    assert cpu.options == [{"arena_extend_strategy": "kSameAsRequested"}] and not cpu.record_assignment


def test_built_in_openvino_sessions_record_who_runs_each_node(built_in: None) -> None:
    """The record is what lets vae.providers leave out an OpenVINO that took no node."""
    if not hasattr(ort.InferenceSession, "get_provider_graph_assignment_info"):
        pytest.skip(f"onnxruntime {ort.__version__} cannot report which EP runs each node")
    model = str(DigitVAE.load().model_dir / "decoder.onnx")
    cpu_only = eps.Plan(["CPUExecutionProvider"], [{}])
    assert plugins.assigned(open_session(model, None, cpu_only)) is None
    recorded = eps.Plan(["CPUExecutionProvider"], [{}], record_assignment=True)
    assert plugins.assigned(open_session(model, None, recorded)) == {"CPUExecutionProvider"}


# ---------------------------------------------------------------------------------------------------------------
# Device choice, options and what a session reports, on onnxruntime's own objects' shapes


def _device(ep: str, hw: str, meta: dict[str, str] | None = None, virtual: bool = False) -> Any:
    hardware = SimpleNamespace(type=SimpleNamespace(name=hw), metadata={"is_virtual": "1"} if virtual else {})
    return SimpleNamespace(ep_name=ep, device=hardware, ep_metadata=meta or {})


def test_device_choice() -> None:
    ov = plugins.KNOWN["openvino"]
    devices = [
        _device("Other", "CPU"),
        _device(OPENVINO, "NPU", {"ov_device": "NPU"}, virtual=True),
        _device(OPENVINO, "GPU", {"ov_device": "GPU.0"}),
        _device(OPENVINO, "GPU", {"ov_device": "GPU.1"}),
        _device(OPENVINO, "CPU", {"ov_device": "CPU"}),
    ]
    assert plugins.select_device(ov, [OPENVINO], "cpu", devices) is devices[4]
    assert plugins.select_device(ov, [OPENVINO], "GPU", devices) is devices[2]
    assert plugins.select_device(ov, [OPENVINO], "GPU.1", devices) is devices[3]
    # Virtual devices are for compiling models for hardware that is not here, not for running them.
    with pytest.raises(ProviderError, match="offers no NPU device here; choose one of CPU, GPU.0, GPU.1"):
        plugins.select_device(ov, [OPENVINO], "NPU", devices)
    with pytest.raises(ProviderError, match=r"offers no device on this machine \(it runs on Intel"):
        plugins.select_device(ov, [OPENVINO], "CPU", devices[:2])


def test_options_float32_unless_the_caller_sets_a_precision() -> None:
    ov = plugins.KNOWN["openvino"]
    options = plugins.plugin_options(ov, "GPU.1", {"device_type": "GPU.1", "num_streams": 2})
    assert options == {"num_streams": "2", "load_config": json.dumps({"GPU.1": {"INFERENCE_PRECISION_HINT": "f32"}})}
    assert plugins.plugin_options(ov, "CPU", {"precision": "FP16"}) == {"precision": "FP16"}
    mine = {"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}
    assert plugins.plugin_options(ov, "CPU", {"load_config": mine}) == {"load_config": json.dumps(mine)}
    assert plugins.plugin_options(plugins.Plugin(module="x"), "CPU", {"a": "b"}) == {"a": "b"}


def test_active_providers_drop_a_plugin_that_took_no_node() -> None:
    def session(assigned: list[tuple[str, int]] | None) -> Any:
        def info() -> list[Any]:
            if assigned is None:
                raise RuntimeError("not recorded")
            return [SimpleNamespace(ep_name=ep, get_nodes=lambda n=n: [object()] * n) for ep, n in assigned]

        return SimpleNamespace(
            get_providers=lambda: [OPENVINO, "CPUExecutionProvider"], get_provider_graph_assignment_info=info
        )

    assert active_providers(session([(OPENVINO, 5)])) == [OPENVINO, "CPUExecutionProvider"]
    assert active_providers(session([("CPUExecutionProvider", 5), (OPENVINO, 0)])) == ["CPUExecutionProvider"]
    assert active_providers(session(None)) == [OPENVINO, "CPUExecutionProvider"]


@needs_openvino
def test_a_plugin_that_cannot_compile_the_graph(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenVINO handed a virtual NPU (for compiling only, no NPU compiler here) fails at session creation."""
    if not plugins.has_plugin_api():
        pytest.skip(f"onnxruntime {ort.__version__} has no plugin EP API")
    import onnxruntime_ep_openvino

    registration = "digitvae-test.virtual"  # the suffix lets the library offer virtual devices
    ort.register_execution_provider_library(registration, onnxruntime_ep_openvino.get_library_path())
    try:
        npu = [d for d in ort.get_ep_devices() if d.ep_name == OPENVINO and d.device.metadata.get("is_virtual") == "1"]
        if not npu:
            pytest.skip("OpenVINO's plugin offers no virtual device to fail with")
        choice = plugins.Choice(npu[0], plugins.plugin_options(plugins.KNOWN["openvino"], "NPU", {}))
        monkeypatch.setattr(plugins, "choose", lambda plugin, options: choice)
        with pytest.raises(ProviderError, match="OpenVINOExecutionProvider cannot run encoder.onnx"):
            DigitVAE.load(providers="openvino", strict=True)
        with caplog.at_level(logging.WARNING, logger="digitvae"):
            vae = DigitVAE.load(providers="openvino")
        assert vae.providers == ["CPUExecutionProvider"]
        assert any("running it on CPUExecutionProvider" in r.getMessage() for r in caplog.records)
        z = np.zeros((2, vae.latent_dim), np.float32)
        assert np.array_equal(vae.decode(z), DigitVAE.load().decode(z))
    finally:
        ort.unregister_execution_provider_library(registration)
