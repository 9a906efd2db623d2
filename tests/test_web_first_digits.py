"""Where the page refuses its first-digits file, its first digits come from the int8 decoder; fp32 follows.

The default page draws its first digits in JavaScript from web/public/first-decoder/mnist-vae.bin
(tests/test_web_first_decoder.py). Where that file was made from another decoder.onnx than
model.json's, the page refuses it and takes onnxruntime-web's path, checked here: its first digits
come from the int8 decoder, a quarter of the fp32 decoder's bytes over the wire, whose digits read
as fp32's (scripts/web_first_grid.py measures it over 1,000 seeds). The page fetches the fp32 decoder
once the first digits are shown and draws them again with it; every API call without a `variant`
waits for the fp32 decoder (Python's fp32 digits within 1e-4), and `variant: "int8"` asks for int8's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from digit_mlp import classify
from web_page import missing, run_script, served

from digitvae.runtime import DigitVAE

pytestmark = pytest.mark.heavy  # starts node and a headless browser

#: Max abs difference from Python's fp32 pixels of a call answered by the fp32 decoder.
FP32_TOLERANCE = 1e-4
#: Max abs difference of the page's int8 pixels from Python's int8 run (test_web_speed.py's).
INT8_TOLERANCE = 0.05
#: Seeds x digits compared in Python: 25 x 40 (the measured figures, over 1,000 seeds, are in docs/web.md).
SEEDS, N = 25, 40


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("first-digits")
    vae = DigitVAE.load("mnist-vae")
    int8 = DigitVAE.load("mnist-vae", variant="int8")
    z = np.random.default_rng(1).standard_normal((4, vae.latent_dim)).astype(np.float32)
    rng = np.random.default_rng(0)  # the draws of vae.generate(8, seed=0)
    noise = rng.standard_normal((8, vae.latent_dim), dtype=np.float32)
    uniform = rng.random(8, dtype=np.float32)
    payload = {"z": z.ravel().tolist(), "n": len(z), "noise": noise.ravel().tolist(), "uniform": uniform.tolist()}
    (out / "input.json").write_text(json.dumps(payload))
    with served() as url:
        result: dict[str, Any] = run_script(
            "first-digits-check.mjs", url, out / "input.json", out, "stale", result=out / "first-digits.json"
        )
    result["expected"] = {
        "decoded": vae.decode(z).reshape(len(z), 784),
        "generated": vae.generate(8, seed=0).reshape(8, 784),
        "generatedInt8": int8.generate(8, seed=0).reshape(8, 784),
    }
    yield result


def _pixels(values: list[float], n: int) -> np.ndarray:
    return np.asarray(values, np.float32).reshape(n, 784)


def test_a_stale_first_digits_file_is_refused_for_onnxruntime_webs_path(opened: dict[str, Any]) -> None:
    timings = opened["timings"]
    assert timings["firstPath"] == "onnxruntime-web" and opened["firstGrid"]["path"] == "onnxruntime-web"
    assert "made from another decoder" in timings["firstRefused"], timings["firstRefused"]
    assert opened["first"]["path"] == "onnxruntime-web"
    assert "/first-decoder/mnist-vae.bin" in opened["requested"]


def test_the_first_digits_come_from_the_int8_decoder_and_fp32_follows(opened: dict[str, Any]) -> None:
    before = [e["url"] for e in opened["timings"]["filesBeforeFirstDigits"]]
    assert any(u.endswith("/models/mnist-vae/decoder.int8.onnx") for u in before), before
    assert not [u for u in before if u.endswith("/models/mnist-vae/decoder.onnx")], before
    requested = opened["requested"]
    assert requested.count("/models/mnist-vae/decoder.int8.onnx") == 1
    assert requested.count("/models/mnist-vae/decoder.onnx") == 1  # fetched once, after
    assert requested.count("/models/mnist-vae/prior.onnx") == 1  # shared by both variants
    assert requested.index("/models/mnist-vae/decoder.int8.onnx") < requested.index("/models/mnist-vae/decoder.onnx")
    assert opened["first"]["variant"] == "int8" and opened["info"]["variant"] == "fp32"
    assert opened["info"]["bytes"] == {"prior.onnx": 214412, "decoder.onnx": 2640778}
    assert opened["timings"]["variantLoadMs"] > 0
    assert not [line for line in opened["console"] if line.startswith(("error", "pageerror"))]


def test_the_grid_on_screen_is_drawn_again_with_the_fp32_decoder(opened: dict[str, Any]) -> None:
    assert opened["int8GridDiffers"]  # else the check below could not tell the decoders apart
    assert opened["gridIsPageDecoders"] and not opened["gridIsInt8s"]


def test_calls_without_a_variant_wait_for_the_fp32_decoder(opened: dict[str, Any]) -> None:
    expected = opened["expected"]
    n = len(expected["decoded"])
    # Asked for as soon as the page's API exists, and again after the first digits.
    assert np.abs(_pixels(opened["early"]["pixels"], n) - expected["decoded"]).max() <= FP32_TOLERANCE
    assert np.abs(_pixels(opened["decoded"], n) - expected["decoded"]).max() <= FP32_TOLERANCE
    assert np.abs(_pixels(opened["generated"], 8) - expected["generated"]).max() <= FP32_TOLERANCE


def test_an_explicit_variant_uses_that_decoder(opened: dict[str, Any]) -> None:
    expected = opened["expected"]
    n = len(expected["decoded"])
    generated = _pixels(opened["generatedInt8"], 8)
    assert np.abs(generated - expected["generatedInt8"]).max() <= INT8_TOLERANCE
    assert np.abs(generated - expected["generated"]).max() > FP32_TOLERANCE  # not fp32's
    assert np.abs(_pixels(opened["decodedInt8"], n) - expected["decoded"]).max() > FP32_TOLERANCE
    unknown = opened["unknown"]
    assert unknown["name"] == "InputError"
    assert "fp64" in unknown["message"] and "fp32, int8, fp16" in unknown["message"]


def test_the_int8_decoders_digits_read_as_the_fp32_decoders() -> None:
    fp32 = DigitVAE.load("mnist-vae")
    int8 = DigitVAE.load("mnist-vae", variant="int8")
    same, total, diffs = 0, 0, []
    for seed in range(SEEDS):
        z, labels = fp32.sample_codes(N, seed=seed)
        a, b = fp32.decode(z, labels), int8.decode(z, labels)
        diffs.append(np.abs(a - b).mean())
        same += int((classify(a) == classify(b)).sum())
        total += N
    assert same / total >= 0.995, (same, total)
    assert float(np.mean(diffs)) <= 0.005
