"""LoadOptions: one value from the command line to every loader, and through MLServer's settings."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_clean_failure, copy_shipped_model, invoke, ok
from mnist_files import VALID_IMAGES

from digitvae.runtime import DigitVAE, InputError, LoadOptions, ProviderError
from digitvae.runtime.folders.locate import shipped_models_dir

needs_serve = pytest.mark.skipif(
    importlib.util.find_spec("mlserver") is None, reason="needs the [serve] extra (MLServer)"
)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[LoadOptions]:
    """Record the options of every DigitVAE.from_options call, which still loads the model."""
    seen: list[LoadOptions] = []
    real = DigitVAE.from_options.__func__  # type: ignore[attr-defined]

    def recording(cls: type[DigitVAE], options: LoadOptions) -> DigitVAE:
        seen.append(options)
        return real(cls, options)  # type: ignore[no-any-return]

    monkeypatch.setattr(DigitVAE, "from_options", classmethod(recording))
    return seen


@pytest.mark.parametrize(
    "options",
    [
        LoadOptions(),
        LoadOptions("mnist-cvae", "int8", ("cuda", "cpu"), True, 1, False),
        LoadOptions(str(Path("some") / "folder"), "fp16", (("openvino", {"device_type": "CPU"}), "cpu"), threads=0),
        LoadOptions("mnist-vae", providers=("plugin:my_ep",), threads=1024),
    ],
)
def test_options_round_trip_through_json(options: LoadOptions) -> None:
    line = options.to_json()
    assert "\n" not in line
    assert LoadOptions.from_json(line) == options
    assert LoadOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options


def test_one_provider_and_a_path_are_taken_as_the_loaders_take_them(tmp_path: Path) -> None:
    options = LoadOptions(tmp_path, providers="cpu")  # type: ignore[arg-type]
    assert options.model == str(tmp_path) and options.providers == ("cpu",)
    assert options.provider_request() == ["cpu"] and LoadOptions().provider_request() is None
    assert LoadOptions.from_dict({"providers": "cuda"}).providers == ("cuda",)
    assert LoadOptions.from_dict({"providers": None}).providers == ()


@pytest.mark.parametrize(
    "values, error, fragment",
    [
        ({"model": "mnist-vae", "colour": "red"}, InputError, "unknown load option(s) colour"),
        ({"threads": -1}, InputError, "threads must be an integer from 0"),
        ({"threads": 1025}, InputError, "threads must be an integer from 0"),
        ({"threads": True}, InputError, "threads must be an integer from 0"),
        ({"threads": "2"}, InputError, "threads must be an integer from 0"),
        ({"variant": 8}, InputError, "variant must be a name"),
        ({"model": 3}, InputError, "model must be a shipped model name or a folder path"),
        ({"providers": 5}, ProviderError, "providers must be a name"),
    ],
)
def test_unknown_keys_and_bad_values_are_refused(values: dict[str, Any], error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as caught:
        LoadOptions.from_dict(values)
    assert fragment in str(caught.value)


def test_a_request_that_names_no_provider_is_refused_everywhere(tmp_path: Path, loads: list[LoadOptions]) -> None:
    with pytest.raises(ProviderError, match="at least one execution provider"):
        LoadOptions(providers=[])  # type: ignore[arg-type]
    with pytest.raises(ProviderError, match="at least one execution provider"):
        DigitVAE.load(providers=[])
    assert LoadOptions(providers=()).providers == LoadOptions(providers=None).providers == ()  # type: ignore[arg-type]
    assert_clean_failure(invoke("generate", "-n", 2, "-p", ",", "-o", tmp_path / "x.npy"), "at least one")
    assert loads == [] and not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"mnist-vae"'])
def test_json_that_is_not_an_object_of_options_is_refused(text: str) -> None:
    with pytest.raises(InputError, match="load options"):
        LoadOptions.from_json(text)


def test_cli_options_reach_the_loader(tmp_path: Path, loads: list[LoadOptions]) -> None:
    out = tmp_path / "g.npy"
    options = ("--variant", "int8", "--threads", 1, "-p", "cpu", "--strict")
    ok(invoke("generate", "-n", 3, "--seed", 1, *options, "-o", out))
    assert loads == [LoadOptions("mnist-vae", "int8", ("cpu",), True, 1, True)]
    expected = DigitVAE.from_options(LoadOptions(variant="int8", threads=1)).generate(3, seed=1)
    np.testing.assert_array_equal(np.load(out), expected)

    loads.clear()
    ok(invoke("generate", "-n", 2, "--standard-prior", "-m", "mnist-vae-2d", "-o", tmp_path / "s.npy"))
    ok(invoke("interpolate", f"{VALID_IMAGES}:0", f"{VALID_IMAGES}:1", "--threads", 1, "-o", tmp_path / "i.npy"))
    assert loads == [LoadOptions("mnist-vae-2d", prior=False), LoadOptions(threads=1)]


def test_evaluate_and_score_pass_the_options_to_every_model_they_load(loads: list[LoadOptions]) -> None:
    ok(invoke("evaluate", VALID_IMAGES, "--limit", 4, "-k", 2, "--standard-prior", "--variant", "fp16", "--json"))
    assert loads == [LoadOptions(variant="fp16", prior=False)]

    loads.clear()
    ok(invoke("score", VALID_IMAGES, "--limit", 4, "--variant", "int8", "--threads", 1))
    reference = json.loads((shipped_models_dir() / "mnist-vae" / "model.json").read_text())["metrics"]["score"]
    assert loads == [
        LoadOptions(variant="int8", threads=1),
        LoadOptions(reference["reference"]["model"], "int8", threads=1),
    ]


def test_calibrate_loads_the_model_and_its_reference_alike(tmp_path: Path, loads: list[LoadOptions]) -> None:
    model = copy_shipped_model(tmp_path / "m")
    args = ("calibrate", model, VALID_IMAGES, "--limit", 100, "-k", 2, "--threads", 1, "-p", "cpu")
    ok(invoke(*args, "--reference", "mnist-vae-geron"))
    assert loads == [
        LoadOptions(str(model), providers=("cpu",), threads=1),
        LoadOptions("mnist-vae-geron", providers=("cpu",), threads=1),
    ]


def test_parity_needs_a_provider_before_it_loads_anything(loads: list[LoadOptions]) -> None:
    assert_clean_failure(invoke("parity", "--variant", "int8"), "name one with --provider")
    assert loads == []


#: Run in a fresh process: MLServer's gRPC messages share their protobuf names with tritonclient's,
#: which another test may have imported here. Prints what each served role loaded, as JSON.
_SERVED_LOADS = r"""
import asyncio, json, sys
from mlserver import ModelSettings
from digitvae.runtime import DigitVAE, DigitVAEError, LoadOptions
from digitvae.serve import runtimes
from digitvae.serve.server import IMPLEMENTATIONS, ServedModel, model_settings

seen = []
real = DigitVAE.from_options.__func__
DigitVAE.from_options = classmethod(lambda cls, options: seen.append(options.to_dict()) or real(cls, options))
options, max_batch, extra = LoadOptions.from_json(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
vae = real(DigitVAE, options)
listing = model_settings(ServedModel(vae.name, options, runtimes.dims_of(vae)), max_batch)
report = []
for settings in listing:
    settings["parameters"]["extra"].update(extra)
    read_back = ModelSettings.model_validate(json.loads(json.dumps(settings)))  # as model-settings.json holds it
    served = getattr(runtimes, IMPLEMENTATIONS[settings["name"].rsplit("-", 1)[1]].rsplit(".", 1)[1])(read_back)
    try:
        asyncio.run(served.load())
    except DigitVAEError as exc:
        report.append({"error": f"{type(exc).__name__}: {exc}"})
        continue
    report.append({"name": settings["name"], "extra": read_back.parameters.extra, "max_rows": served.max_rows,
                   "vae": [served.vae.name, served.vae.providers], "loads": len(seen)})
print(json.dumps({"report": report, "seen": seen}))
"""


def _served_loads(options: LoadOptions, max_batch: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the MLServer settings of a model's served roles, read them back and load each role's runtime."""
    args = [options.to_json(), str(max_batch), json.dumps(extra or {})]
    done = subprocess.run([sys.executable, "-c", _SERVED_LOADS, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@needs_serve
@pytest.mark.heavy
def test_options_travel_through_mlserver_settings_to_the_served_models() -> None:
    options = LoadOptions(str(shipped_models_dir() / "mnist-cvae"), "int8", ("cpu",), True, 1)
    found = _served_loads(options, 64)
    assert [r["name"] for r in found["report"]] == ["mnist-cvae-encoder", "mnist-cvae-decoder", "mnist-cvae-generate"]
    for role in found["report"]:
        assert role["extra"] == {**options.to_dict(), "max_batch": 64}
        assert role["max_rows"] == 64 and role["vae"] == ["mnist-cvae", ["CPUExecutionProvider"]]
        assert role["loads"] == 1  # the three roles share one loaded model
    assert [LoadOptions.from_dict(o) for o in found["seen"]] == [options]


@needs_serve
@pytest.mark.heavy
def test_mlserver_settings_with_an_unknown_option_are_refused() -> None:
    found = _served_loads(LoadOptions(), 8, {"provider": "cpu"})
    assert found["seen"] == []
    assert [r["error"] for r in found["report"]] == [
        "InputError: unknown load option(s) provider; known: model, prior, providers, strict, threads, variant"
    ] * 3


def test_the_cli_refuses_thread_counts_before_building_options(tmp_path: Path, loads: list[LoadOptions]) -> None:
    assert_clean_failure(invoke("info", "--threads", -1), "--threads")
    assert loads == []
