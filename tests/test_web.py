"""The browser demo (web/) in headless Chromium: the page's model agrees with the Python runtime.

One module-scoped run serves web/ on a free loopback port, drives the page with playwright-core
(web/test/browser-check.mjs) and hands back what the page computed; the tests compare it with
`digitvae.runtime`. Skipped, with the reason, only where node, web/'s npm packages or Chromium
are missing (.ci/run installs all three).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web_page import missing

from digitvae.runtime import DigitVAE, OutlierDetector
from digitvae.runtime.digits.idx import read_mnist_images
from digitvae.runtime.digits.prepare import prepare_digit

pytestmark = pytest.mark.heavy  # starts node and a headless browser

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
MODELS = ROOT / "models"
FIXTURE = Path(__file__).parent / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
TOLERANCE = 1e-4  # max abs difference on pixels, codes and log-variances


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Serve web/ on a free loopback port (PORT=0) and yield its base URL."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "PORT": "0"}
    proc = subprocess.Popen(["node", "server.js"], cwd=WEB, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "digitvae demo at http://127.0.0.1:PORT/"
        assert line.startswith("digitvae demo at http://127.0.0.1:"), line
        yield line.split(" at ")[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def detector() -> OutlierDetector:
    return OutlierDetector.load()


@pytest.fixture(scope="module")
def page(server: str, detector: OutlierDetector, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the browser check once: fixed inputs in, the page's results (and page.png) out."""
    vae, reference = detector.vae, detector.reference
    assert reference is not None
    k, d = detector.calibration.k, vae.latent_dim
    images = read_mnist_images(FIXTURE)[:3].reshape(3, 784).astype(np.float32) / 255
    digits = np.arange(10)
    rng = np.random.default_rng(0)  # the draws of vae.generate(10, seed=0, ...), in its order
    noise = rng.standard_normal((len(digits), d), dtype=np.float32)
    uniform = rng.random(len(digits), dtype=np.float32)
    # The same draws for the conditional model, at its own latent size.
    rng = np.random.default_rng(0)
    conditional_d = DigitVAE.load("mnist-cvae").latent_dim
    conditional_noise = rng.standard_normal((len(digits), conditional_d), dtype=np.float32)
    conditional_uniform = rng.random(len(digits), dtype=np.float32)
    inputs = {
        "z": np.random.default_rng(1).standard_normal((5, d), dtype=np.float32).tolist(),
        "images": images.tolist(),
        # iw_nll(seed=0) draws each model's posterior noise as default_rng(0).standard_normal((n, k, D))
        "eps": np.random.default_rng(0).standard_normal((3, k, d), dtype=np.float32).ravel().tolist(),
        "epsReference": np.random.default_rng(0)
        .standard_normal((3, k, reference.latent_dim), dtype=np.float32)
        .ravel()
        .tolist(),
        "digits": digits.tolist(),
        "noise": noise.ravel().tolist(),
        "uniform": uniform.tolist(),
        "conditionalNoise": conditional_noise.ravel().tolist(),
        "conditionalUniform": conditional_uniform.tolist(),
    }
    out = tmp_path_factory.mktemp("web")
    (out / "input.json").write_text(json.dumps(inputs))
    run = subprocess.run(
        ["node", "test/browser-check.mjs", server, str(out / "input.json"), str(out)],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    result["out"] = out
    result["inputs"] = {key: np.asarray(value, np.float32) for key, value in inputs.items()}
    return result


def test_page_loads_the_default_model_isolated(page: dict[str, Any], detector: OutlierDetector) -> None:
    info = page["info"]
    assert info["model"] == "mnist-vae"
    assert info["latentDim"] == detector.vae.latent_dim
    assert info["crossOriginIsolated"] is True and page["isolated"] is True
    assert set(info["bytes"]) == {"encoder.onnx", "decoder.onnx", "prior.onnx", "prior_density.onnx"}
    for name, size in info["bytes"].items():
        assert size == (MODELS / "mnist-vae" / name).stat().st_size
    assert page["timings"]["loadMs"] > 0
    assert not [line for line in page["console"] if line.startswith(("error", "pageerror"))], page["console"]


def test_decode_matches_python(page: dict[str, Any], detector: OutlierDetector) -> None:
    z = page["inputs"]["z"]
    expected = detector.vae.decode(z).reshape(len(z), 784)
    got = np.asarray(page["decoded"], np.float32).reshape(len(z), 784)
    assert np.abs(got - expected).max() <= TOLERANCE
    assert expected.std() > 0.1  # real digits, not a blank array both sides agree on


def test_encode_matches_python(page: dict[str, Any], detector: OutlierDetector) -> None:
    images = page["inputs"]["images"]
    mean, logvar = detector.vae.encode(images)
    assert np.abs(np.reshape(page["mean"], mean.shape) - mean).max() <= TOLERANCE
    assert np.abs(np.reshape(page["logvar"], logvar.shape) - logvar).max() <= TOLERANCE


def test_generate_with_pythons_draws_gives_pythons_digits(page: dict[str, Any], detector: OutlierDetector) -> None:
    expected = detector.vae.generate(10, seed=0, digit=np.arange(10)).reshape(10, 784)
    got = np.asarray(page["generated"]["images"], np.float32).reshape(10, 784)
    assert np.abs(got - expected).max() <= TOLERANCE
    codes = detector.vae.sample_latents(10, seed=0, digit=np.arange(10))
    assert np.abs(np.reshape(page["generated"]["z"], codes.shape) - codes).max() <= TOLERANCE


def test_conditional_model_generates_pythons_digits(page: dict[str, Any]) -> None:
    cvae = DigitVAE.load("mnist-cvae")
    result = page["conditional"]
    assert result["info"]["model"] == "mnist-cvae" and result["info"]["numClasses"] == cvae.num_classes
    expected = cvae.generate(10, seed=0, digit=np.arange(10)).reshape(10, 784)
    assert np.abs(np.asarray(result["images"], np.float32).reshape(10, 784) - expected).max() <= TOLERANCE
    assert "is conditional: pass labels" in result["missingLabels"]


def test_scores_match_the_python_detector(page: dict[str, Any], detector: OutlierDetector) -> None:
    images = page["inputs"]["images"]
    expected = detector.scores(images)
    assert set(page["scores"]) == set(expected) == {"nll", "complexity", "ratio"}
    for name, values in expected.items():
        # Same noise, float32 graphs on both sides: equal up to rounding in sums over 784 pixels.
        np.testing.assert_allclose(page["scores"][name], values, rtol=0, atol=1e-3)
    assert page["flags"] == detector.flags(expected)


def test_bad_arguments_reject_with_clear_errors(page: dict[str, Any]) -> None:
    errors = page["errors"]
    expected = {
        "wrongLength": "must hold n x D",
        "zeroCount": "n must be a positive integer",
        "fractionalCount": "n must be a positive integer",
        "notTyped": "must be a Float32Array",
        "pixelRange": "must be in [0, 1]",
        "digitRange": "must be an integer from -1 to 9",
        "labelsOnUnconditional": "is not conditional",
    }
    for case, words in expected.items():
        error = errors[case]
        assert error is not None, f"{case} did not reject"
        assert error["isError"] and error["name"] == "InputError", error
        assert words in error["message"], error


def test_drawn_stroke_is_prepared_reconstructed_and_scored(page: dict[str, Any], detector: OutlierDetector) -> None:
    drawn = page["drawn"]
    rgba = np.frombuffer(base64.b64decode(drawn["rgba"]), np.uint8).reshape(drawn["height"], drawn["width"], 4)
    assert (rgba[..., :3] < 128).any(), "the synthesised stroke left no ink on the pad"
    prepared = np.asarray(drawn["prepared"], np.float32).reshape(28, 28)
    assert prepared.max() > 0.9 and 20 < prepared.sum() < 300  # an MNIST-like stroke, not a blank or a blot
    assert np.abs(prepared - prepare_digit(rgba)).max() <= TOLERANCE
    expected = detector.vae.reconstruct(prepared[None]).reshape(784)
    assert np.abs(np.asarray(drawn["reconstruction"], np.float32) - expected).max() <= TOLERANCE
    assert set(drawn["scores"]) == {"nll", "complexity", "ratio"}
    assert all(np.isfinite(v) for v in drawn["scores"].values())
    assert drawn["verdict"].startswith("Outlier" if drawn["flag"] else "Typical")


def test_drawn_square_is_an_outlier(page: dict[str, Any]) -> None:
    square = page["drawn"]["square"]
    assert square["flag"], "a square passed every check"
    assert square["verdict"] == f"Outlier: {square['flag']}"


def test_screenshot_is_saved(page: dict[str, Any]) -> None:
    from PIL import Image

    with Image.open(page["out"] / "page.png") as shot:
        assert shot.format == "PNG" and shot.width >= 800 and shot.height >= 800


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_server_isolates_and_serves_models_in_place(server: str) -> None:
    for path in ("", "models/mnist-vae/decoder.onnx", "ort/ort.wasm.min.mjs", "src/prepare.js"):
        status, headers, _ = _get(server + path)
        assert status == 200, path
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    _, _, body = _get(server + "models/mnist-vae/model.json")
    assert body == (MODELS / "mnist-vae" / "model.json").read_bytes()
    status, headers, _ = _get(server + "ort/ort-wasm-simd-threaded.wasm")
    assert status == 200 and headers["Content-Type"] == "application/wasm"
    for path in ("models/../README.md", "models/%2e%2e/README.md", "src/..%2f..%2fREADME.md", "nothing.html"):
        assert _get(server + path)[0] == 404, path
