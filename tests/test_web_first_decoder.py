"""The page's first grid in plain JavaScript: web/src/first.js and web/public/first-decoder/<model>.bin.

scripts/web_first_decoder.py writes the files: prior.onnx's Gaussian mixture and decoder.onnx's
MLP, its weights as int8 per output channel with a float32 scale each, and the sha256 of both ONNX
files. In Node, the JavaScript prior gives prior.onnx's codes for the same draws, and the decoder
computes exactly the file's int8 arithmetic (with its WebAssembly kernel and its JavaScript loop);
its digits are the fp32 decoder's within the tolerances below, read as the same digits. In the
browser, the default page and mnist-cvae's draw their first grid that way, fetch no ONNX file and
no onnxruntime-web before it, then draw it again with the fp32 decoder; a model without a file
(mnist-vae-2d) takes onnxruntime-web's path (tests/test_web_first_digits.py: a stale file too).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from digit_mlp import classify
from web_page import ROOT, WEB, load_script, missing, run_script, served

from digitvae.runtime import DigitVAE

#: Building a first-digits file reads the ONNX graphs with onnx; reading and decoding one need only numpy.
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [train] extra (onnx)")

pytestmark = pytest.mark.heavy  # starts node and a headless browser

MODELS = ("mnist-vae", "mnist-cvae")
FILES = WEB / "public" / "first-decoder"
#: The JavaScript prior's codes against prior.onnx's (float32 products summed in another order).
PRIOR_TOLERANCE = 1e-5
#: The JavaScript decoder's pixels against the file's int8 arithmetic done in float64 by numpy.
ARITHMETIC_TOLERANCE = 1e-5
#: Its pixels against the fp32 decoder's (DigitVAE.decode) for the same codes: max and mean abs
#: difference. Measured over 40,000 prior draws per model (scripts/web_first_grid.py --variant js):
#: max 0.053 (mnist-vae) and 0.069 (mnist-cvae), mean 0.00095 and 0.00106 (docs/web.md).
FP32_MAX = 0.1
FP32_MEAN = 0.002
#: The share of digits the test classifier reads the same in both (measured: 99.945% and 99.95%).
SAME_DIGIT = 0.995
#: Bytes over the wire before the first digits of the default page: the first-digits file (0.69 MB
#: with brotli) and the page; onnxruntime-web (2.4 MB or more) comes after.
FIRST_BUDGET = 800_000
#: Prior draws compared per model: 25 seeds x 40.
SEEDS, N = 25, 40


@cache
def _script() -> ModuleType:
    return load_script("web_first_decoder")


def _prior(model: str, noise: np.ndarray, uniform: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return prior.onnx's codes for the draws, in Python's onnxruntime."""
    session = ort.InferenceSession(str(ROOT / "models" / model / "prior.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"noise": noise, "uniform": uniform, "label": labels.astype(np.int64)}
    return np.asarray(session.run(["z"], feeds)[0])


def _draws(model: str) -> dict[str, np.ndarray]:
    """Return SEEDS x N prior draws (numpy's, per seed): half any class, half digits 0-9, and the decoder's labels."""
    vae = DigitVAE.load(model)
    noise, uniform = [], []
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        noise.append(rng.standard_normal((N, vae.latent_dim), dtype=np.float32))
        uniform.append(rng.random(N, dtype=np.float32))
    n = SEEDS * N
    prior_labels = np.where(np.arange(n) < n // 2, -1, np.arange(n) % 10)
    labels = np.where(prior_labels < 0, np.arange(n) % 10, prior_labels) if vae.num_classes else None
    return {
        "noise": np.concatenate(noise),
        "uniform": np.concatenate(uniform),
        "prior_labels": prior_labels,
        "labels": labels,
    }


@pytest.fixture(scope="module", params=MODELS)
def in_node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if missing():
        pytest.skip(missing())
    model: str = request.param
    out = tmp_path_factory.mktemp(f"first-decoder-{model}")
    draws = _draws(model)
    n = len(draws["uniform"])
    z = _prior(model, draws["noise"], draws["uniform"], draws["prior_labels"])
    labels = draws["labels"]
    payload = {
        "model": model,
        "n": n,
        "noise": draws["noise"].ravel().tolist(),
        "uniform": draws["uniform"].tolist(),
        "priorLabels": draws["prior_labels"].tolist(),
        "z": z.ravel().tolist(),
        "labels": None if labels is None else labels.tolist(),
    }
    (out / "input.json").write_text(json.dumps(payload))
    result: dict[str, Any] = run_script(
        "first-decoder-check.mjs", out / "input.json", out, result=out / "first-decoder.json"
    )
    result.update(model=model, n=n, zExpected=z, labels=labels)
    return result


def test_the_javascript_prior_gives_prior_onnxs_codes(in_node: dict[str, Any]) -> None:
    got = np.asarray(in_node["z"], np.float32).reshape(in_node["zExpected"].shape)
    assert np.abs(got - in_node["zExpected"]).max() <= PRIOR_TOLERANCE
    assert in_node["zExpected"].std() > 0.5  # real codes, not zeros


def test_the_javascript_decoder_computes_the_files_int8_arithmetic(in_node: dict[str, Any]) -> None:
    data = (FILES / f"{in_node['model']}.bin").read_bytes()
    expected = _script().decode(data, in_node["zExpected"], in_node["labels"])
    assert in_node["kernel"]  # Node has WebAssembly SIMD: both ways are checked
    for way in ("simd", "plain"):
        got = np.asarray(in_node[way], np.float64).reshape(expected.shape)
        assert np.abs(got - expected).max() <= ARITHMETIC_TOLERANCE, way


def test_the_javascript_digits_read_as_the_fp32_decoders(in_node: dict[str, Any]) -> None:
    vae = DigitVAE.load(in_node["model"])
    fp32 = vae.decode(in_node["zExpected"], in_node["labels"]).reshape(in_node["n"], 784)
    got = np.asarray(in_node["simd"], np.float32).reshape(fp32.shape)
    diff = np.abs(got - fp32)
    assert diff.max() <= FP32_MAX and diff.mean() <= FP32_MEAN, (diff.max(), diff.mean())
    assert diff.max() > 0  # the int8 weights are not fp32's: the check above can fail
    same = classify(got.reshape(-1, 28, 28)) == classify(fp32.reshape(-1, 28, 28))
    assert same.mean() >= SAME_DIGIT, same.mean()


def test_a_file_made_from_another_decoder_prior_or_model_is_refused(in_node: dict[str, Any]) -> None:
    refusals = in_node["refusals"]
    assert {r["name"] for r in refusals.values()} == {"ModelError"}
    assert "made from another decoder" in refusals["decoder"]["message"]
    assert "made from another prior" in refusals["prior"]["message"]
    assert f"is {in_node['model']}'s, not mnist-vae-other's" in refusals["model"]["message"]


@needs_onnx
@pytest.mark.parametrize("model", MODELS)
def test_the_files_are_what_the_script_makes_now(model: str) -> None:
    made = _script().first_decoder(model)
    assert made == (FILES / f"{model}.bin").read_bytes(), (
        f"web/public/first-decoder/{model}.bin is stale: run python scripts/web_first_decoder.py"
    )
    header, _ = _script().read(made)
    manifest = json.loads((ROOT / "models" / model / "model.json").read_text())
    assert header["decoder"]["sha256"] == manifest["variants"]["fp32"]["decoder"]["sha256"]
    assert header["prior"]["sha256"] == manifest["variants"]["fp32"]["prior"]["sha256"]


@needs_onnx
def test_the_script_refuses_graphs_it_cannot_draw() -> None:
    script = _script()
    with pytest.raises(script.UnsupportedGraph, match="not an MLP"):
        script.decoder_layers(ROOT / "models" / "mnist-vae" / "encoder.onnx")
    with pytest.raises(script.UnsupportedGraph, match="not the mixture sampler"):
        script.prior_mixture(ROOT / "models" / "mnist-vae" / "prior_density.onnx")


@needs_onnx
def test_the_script_writes_whole_files_and_refuses_an_unknown_model_in_one_line(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "web_first_decoder.py"), "--out", str(tmp_path)]
    run = subprocess.run([*script, "mnist-vae"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "mnist-vae.bin").read_bytes() == (FILES / "mnist-vae.bin").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["mnist-vae.bin"]  # no temporary file left
    run = subprocess.run([*script, "no-such-model"], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert run.stderr.splitlines() == [
        f"error: no-such-model is not a shipped model: no {ROOT / 'models' / 'no-such-model' / 'model.json'}"
    ]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    if missing():
        pytest.skip(missing())
    out = tmp_path_factory.mktemp("first-grid")
    z = np.random.default_rng(1).standard_normal((4, 32)).astype(np.float32)
    (out / "input.json").write_text(json.dumps({"z": z.ravel().tolist(), "n": 4, "labels": None}))
    opened: dict[str, dict[str, Any]] = {}
    with served() as url:
        for model, query in [
            ("mnist-vae", ""),
            ("mnist-cvae", "?model=mnist-cvae"),
            ("mnist-vae-2d", "?model=mnist-vae-2d"),
        ]:
            where = out / model
            where.mkdir()
            extra = [out / "input.json"] if model == "mnist-vae" else []
            opened[model] = run_script(
                "first-grid-check.mjs", url + query, where, *extra, result=where / "first-grid.json"
            )
    opened["mnist-vae"]["zEarly"] = z
    yield opened


@pytest.mark.parametrize("model", MODELS)
def test_the_page_draws_its_first_grid_in_javascript_then_with_fp32(
    pages: dict[str, dict[str, Any]], model: str
) -> None:
    opened = pages[model]
    timings, grid = opened["atFirst"], opened["firstGrid"]
    assert timings["firstPath"] == "javascript" and grid["path"] == "javascript"
    assert opened["first"]["path"] == "javascript" and opened["info"]["variant"] == "fp32"
    before = [f["url"] for f in timings["filesBeforeFirstDigits"]]
    assert any(u.endswith(f"/first-decoder/{model}.bin") for u in before), before
    assert not [u for u in before if u.endswith((".onnx", ".wasm", "/src/model.js")) or "/ort/" in u], before
    assert timings["bytesBeforeFirstDigits"] <= FIRST_BUDGET, timings["bytesBeforeFirstDigits"]
    # The first grid's codes are prior.onnx's for the page's draws, its pixels the fp32 decoder's.
    vae = DigitVAE.load(model)
    noise = np.asarray(grid["noise"], np.float32).reshape(40, vae.latent_dim)
    uniform = np.asarray(grid["uniform"], np.float32)
    z = np.asarray(grid["z"], np.float32).reshape(40, vae.latent_dim)
    assert np.abs(z - _prior(model, noise, uniform, np.full(40, -1))).max() <= PRIOR_TOLERANCE
    labels = np.asarray(grid["labels"]) if vae.num_classes else None
    if labels is not None:
        assert labels.tolist() == [i % 10 for i in range(40)]
    diff = np.abs(np.asarray(grid["images"], np.float32).reshape(40, 784) - vae.decode(z, labels).reshape(40, 784))
    assert diff.max() <= FP32_MAX and diff.mean() <= FP32_MEAN
    # Then onnxruntime-web's fp32 decoder draws the grid again.
    assert opened["gridIsPageDecoders"] and not opened["gridIsFirstGrids"]
    assert "onnxruntime-web" in opened["status"]
    assert not [line for line in opened["console"] if line.startswith(("error", "pageerror"))]


def test_calls_without_a_variant_still_give_pythons_fp32_digits(pages: dict[str, dict[str, Any]]) -> None:
    opened = pages["mnist-vae"]
    expected = DigitVAE.load("mnist-vae").decode(opened["zEarly"]).reshape(4, 784)
    assert np.abs(np.asarray(opened["early"]["pixels"], np.float32).reshape(4, 784) - expected).max() <= 1e-4


def test_a_model_without_a_file_draws_its_first_grid_with_onnxruntime_web(pages: dict[str, dict[str, Any]]) -> None:
    opened = pages["mnist-vae-2d"]
    timings = opened["atFirst"]
    assert timings["firstPath"] == "onnxruntime-web" and opened["firstGrid"]["path"] == "onnxruntime-web"
    assert "HTTP 404" in timings["firstRefused"], timings["firstRefused"]
    assert opened["first"]["variant"] == "int8" and opened["info"]["variant"] == "fp32"
    before = [f["url"] for f in timings["filesBeforeFirstDigits"]]
    assert any(u.endswith("/models/mnist-vae-2d/decoder.int8.onnx") for u in before), before
    assert opened["gridIsPageDecoders"]
