"""What the page costs to open: compressed, revalidated files, and only what the first digits need.

The server sends every file brotli- or gzip-compressed as the client's Accept-Encoding asks, with
a strong ETag per representation (a 304 for a matching If-None-Match). The default page fetches
only model.json and its first-digits file before its first digits, drawn in JavaScript
(tests/test_web_first_decoder.py): no ONNX file and no onnxruntime-web, which follow with the fp32
decoder for everything after; the encoder and the outlier checks' files follow on the pad's
first use. A ?variant=int8 page draws its first digits with onnxruntime-web and its int8 decoder. Bytes over the wire are deterministic; times are not, and are not checked.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web_page import ROOT, WEB, missing, run_script, served

from digitvae.runtime import DigitVAE

pytestmark = pytest.mark.heavy  # starts node and a headless browser


def _unbrotli(body: bytes) -> bytes:
    """Decompress brotli with the brotli package, or with node's zlib where it is not installed."""
    try:
        import brotli  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        script = "process.stdout.write(require('zlib').brotliDecompressSync(require('fs').readFileSync(0)))"
        return subprocess.run(["node", "-e", script], input=body, capture_output=True, check=True).stdout
    return bytes(brotli.decompress(body))


#: Bytes over the wire before the first digits (headers and compressed bodies) of the default page:
#: the first-digits file (0.69 MB with brotli); onnxruntime's wasm (2.4-2.8 MB with brotli), the
#: prior and the fp32 decoder (2.4 MB over the wire as float32 weights barely compress) come after.
DEFAULT_BUDGET = 4_000_000
#: The same with ?variant=int8, whose first digits are onnxruntime's wasm, the prior and the int8 decoder.
INT8_BUDGET = 4_000_000
#: Max abs difference of the int8 page's pixels from Python's int8 run (dynamic quantization
#: rounds activations per batch; onnxruntime-web and onnxruntime may round a few differently).
INT8_TOLERANCE = 0.05
LAZY = ("encoder.onnx", "prior_density.onnx", "mnist-vae-geron/", "src/prepare.js", "/mnist-vae/decoder.onnx")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    with served() as base:
        yield base


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.parametrize(
    ("path", "file"),
    [
        ("", WEB / "public" / "index.html"),
        ("src/app.js", WEB / "src" / "app.js"),
        ("models/mnist-vae/decoder.onnx", ROOT / "models" / "mnist-vae" / "decoder.onnx"),
        (
            "ort/ort-wasm-simd-threaded.wasm",
            WEB / "node_modules" / "onnxruntime-web" / "dist" / "ort-wasm-simd-threaded.wasm",
        ),
    ],
)
def test_files_are_sent_compressed_as_asked_with_strong_etags(url: str, path: str, file: Path) -> None:
    raw = file.read_bytes()
    tags = set()
    for accept, encoding, decode in [
        ("gzip, deflate, br", "br", _unbrotli),
        ("gzip", "gzip", gzip.decompress),
        ("br;q=0.5, gzip;q=0.9", "gzip", gzip.decompress),
        ("*", "br", _unbrotli),
        ("br;q=0, gzip;q=0", None, bytes),
        ("identity", None, bytes),
    ]:
        status, headers, body = _get(url + path, **{"Accept-Encoding": accept})
        assert status == 200
        assert headers.get("Content-Encoding") == encoding, accept
        assert decode(body) == raw, accept
        assert int(headers["Content-Length"]) == len(body)
        assert headers["Vary"] == "Accept-Encoding" and headers["Cache-Control"] == "no-cache"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        tag = headers["ETag"]
        assert tag.startswith('"') and tag.endswith('"'), tag  # strong: no W/
        if encoding:
            assert len(body) < len(raw), accept
        tags.add((encoding, tag))
        # The tag revalidates this representation: 304, no body, the same tag.
        status, again, body = _get(url + path, **{"Accept-Encoding": accept, "If-None-Match": tag})
        assert (status, body, again["ETag"]) == (304, b"", tag)
    assert len({tag for _, tag in tags}) == 3  # one per representation: br, gzip, identity
    status, _, body = _get(url + path, **{"If-None-Match": '"something-else"'})
    assert status == 200 and body == raw


@pytest.fixture(scope="module")
def opened(url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("speed")
    result: dict[str, Any] = run_script("speed-check.mjs", url, out, result=out / "speed.json")
    return result


@pytest.fixture(scope="module")
def opened_int8(url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("speed-int8")
    vae = DigitVAE.load("mnist-vae", variant="int8")
    rng = np.random.default_rng(0)  # the draws of vae.generate(8, seed=0)
    noise = rng.standard_normal((8, vae.latent_dim), dtype=np.float32)
    uniform = rng.random(8, dtype=np.float32)
    (out / "input.json").write_text(json.dumps({"noise": noise.ravel().tolist(), "uniform": uniform.tolist()}))
    result: dict[str, Any] = run_script(
        "speed-check.mjs", url + "?variant=int8", out, out / "input.json", result=out / "speed.json"
    )
    result["expected"] = vae.generate(8, seed=0).reshape(8, 784)
    return result


def _before(result: dict[str, Any]) -> list[str]:
    return [entry["url"] for entry in result["timings"]["filesBeforeFirstDigits"]]


def test_the_first_digits_fetch_only_model_json_and_the_first_digits_file(opened: dict[str, Any]) -> None:
    before = _before(opened)
    assert any(u.endswith("/first-decoder/mnist-vae.bin") for u in before), before
    assert any(u.endswith("/models/mnist-vae/model.json") for u in before), before
    assert not [u for u in before if u.endswith(".onnx") or "/ort/" in u or u.endswith("/src/model.js")], before
    assert not [u for u in before if any(lazy in u for lazy in LAZY)], before
    assert opened["timings"]["firstPath"] == "javascript"
    # onnxruntime-web, the prior and the fp32 decoder after the first digits, the pad's first use
    # the rest; the drawn digit is scored.
    after = opened["after"]
    for lazy in (*LAZY, "/mnist-vae/prior.onnx", "/ort/ort-wasm-simd-threaded.wasm"):
        assert any(lazy in u for u in after), lazy
    assert set(opened["info"]["bytes"]) == {"encoder.onnx", "decoder.onnx", "prior.onnx", "prior_density.onnx"}


def test_the_first_digits_cost_at_most_the_budget_over_the_wire(opened: dict[str, Any]) -> None:
    timings = opened["timings"]
    files = timings["filesBeforeFirstDigits"]
    assert timings["firstDigitsMs"] > 0
    assert timings["bytesBeforeFirstDigits"] >= sum(f["bytes"] for f in files) > 0
    assert timings["bytesBeforeFirstDigits"] <= DEFAULT_BUDGET, timings["bytesBeforeFirstDigits"]
    wasm = next(f for f in opened["afterFiles"] if f["url"].endswith(".wasm"))  # fetched after them
    assert wasm["bytes"] < wasm["size"] / 4  # sent compressed
    encodings = {r["url"]: r["encoding"] for r in opened["responses"] if r["status"] == 200}
    assert not [u for u, e in encodings.items() if e not in ("br", "gzip")], encodings
    assert not [line for line in opened["console"] if line.startswith(("error", "pageerror"))]


def test_the_int8_page_fits_four_megabytes_and_generates_pythons_int8_digits(opened_int8: dict[str, Any]) -> None:
    timings = opened_int8["timings"]
    assert any(u.endswith("/decoder.int8.onnx") for u in _before(opened_int8))
    assert not [u for u in _before(opened_int8) if u.endswith("/decoder.onnx")]
    assert timings["bytesBeforeFirstDigits"] <= INT8_BUDGET, timings["bytesBeforeFirstDigits"]
    assert opened_int8["info"]["variant"] == "int8"
    got = np.asarray(opened_int8["generated"], np.float32).reshape(8, 784)
    assert np.abs(got - opened_int8["expected"]).max() <= INT8_TOLERANCE
    assert opened_int8["expected"].std() > 0.1
