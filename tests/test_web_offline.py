"""The page offline after one visit (its service worker), in headless Chromium with the network off.

The first visit generates, scores a drawn digit and opens the explorer; then the browser context
goes offline (Playwright's setOffline), a file never fetched is unreachable, and the reloaded page
generates the same digits, scores the same drawing the same and decodes in the explorer again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from web_page import missing, run_script, served

from digitvae.runtime import DigitVAE

pytestmark = pytest.mark.heavy  # starts node and a headless browser


@pytest.fixture(scope="module")
def visits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("offline")
    with served() as url:
        yield run_script("offline-check.mjs", url, out, result=out / "offline.json")


def test_the_first_visit_keeps_every_file_it_fetched(visits: dict[str, Any]) -> None:
    kept = {key.split("/", 3)[3] for key in visits["keys"]}
    for path in (
        "",
        "ort/ort-wasm-simd-threaded.wasm",
        "models/mnist-vae/decoder.onnx",
        "models/mnist-vae/encoder.onnx",
        "models/mnist-vae-geron/encoder.onnx",
        "models/mnist-vae-2d/decoder.onnx",
        "latent-codes.json",
        "src/prepare.js",
    ):
        assert path in kept, path
    assert visits["online"]["controlled"] and visits["offline"]["controlled"]


def test_offline_the_page_generates_scores_and_explores_as_online(visits: dict[str, Any]) -> None:
    online, offline = visits["online"], visits["offline"]
    assert visits["unreachable"], "the network was still on"
    assert offline["grid"] == online["grid"] and offline["grid"].startswith("data:image/png")
    assert offline["score"] == online["score"]
    expected = DigitVAE.load("mnist-vae-2d").decode(np.asarray([[0.5, -0.5]], np.float32)).reshape(784)
    assert np.abs(np.asarray(offline["explored"], np.float32) - expected).max() <= 1e-4
    assert offline["status"].startswith("mnist-vae: ")
    errors = [line for line in visits["console"] if line.startswith(("error", "pageerror"))]
    # The only failure is the probe for a file never fetched.
    assert errors == ["error: Failed to load resource: net::ERR_FAILED"], visits["console"]
