"""The latent explorer (mnist-vae-2d's 2-D plane) in headless Chromium, and its codes asset.

A synthesised pointer moves over the plane; the page must decode the code under the pointer and
show the Python runtime's pixels for it. The dots drawn must be the asset's, and the asset must
be what scripts/web_latent_codes.py makes from the shipped model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from web_page import ROOT, WEB, load_script, missing, run_script, served

from digitvae.runtime import DigitVAE

pytestmark = pytest.mark.heavy  # starts node and a headless browser

ASSET = WEB / "public" / "latent-codes.json"
MODEL = ROOT / "models" / "mnist-vae-2d"
DATA = Path(os.environ.get("DIGITVAE_SHARED_DATA", ROOT.parent / "shared" / "data" / "mnist"))
TOLERANCE = 1e-4
#: The page's class colours (web/src/explorer.js COLOURS), as RGB.
COLOURS = ["4e79a7", "f28e2b", "e15759", "76b7b2", "59a14f", "edc948", "b07aa1", "ff9da7", "9c755f", "bab0ac"]


def _script() -> ModuleType:
    return load_script("web_latent_codes")


@pytest.fixture(scope="module")
def asset() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ASSET.read_text())
    return data


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("explorer")
    with served() as url:
        yield run_script("explorer-check.mjs", url, out, result=out / "explorer.json")


def test_the_asset_is_small_balanced_and_made_with_the_shipped_encoder(asset: dict[str, Any]) -> None:
    assert ASSET.stat().st_size < 40_000
    assert asset["model"] == "mnist-vae-2d"
    encoder = MODEL / asset["encoder"]["path"]
    assert asset["encoder"]["sha256"] == hashlib.sha256(encoder.read_bytes()).hexdigest(), (
        "web/public/latent-codes.json is stale: run scripts/web_latent_codes.py"
    )
    manifest = json.loads((MODEL / "model.json").read_text())
    assert manifest["variants"]["fp32"]["encoder"]["sha256"] == asset["encoder"]["sha256"]
    labels = np.asarray(asset["labels"])
    assert np.bincount(labels, minlength=10).tolist() == [asset["data"]["per_class"]] * 10
    codes = np.asarray(asset["codes"]).reshape(-1, 2)
    assert len(codes) == len(labels) and codes.std(axis=0).min() > 0.5  # spread over the plane
    for axis, column in zip("xy", codes.T, strict=True):
        low, high = asset["bounds"][axis]
        assert low < column.min() and column.max() < high


def test_the_asset_is_what_the_script_makes_from_the_stored_digits(asset: dict[str, Any]) -> None:
    """Rerun the encoder over the stored training digits: the same codes, to the last decimal."""
    images = DATA / asset["data"]["file"]
    if not images.is_file():
        pytest.skip(f"no training digits at {DATA} (set DIGITVAE_SHARED_DATA)")
    assert hashlib.sha256(images.read_bytes()).hexdigest() == asset["data"]["sha256"]
    script = _script()
    made = script.latent_codes(DATA)
    assert script.dumps(made) == ASSET.read_text()


def test_a_pointer_move_decodes_the_code_under_it_as_python_does(
    explored: dict[str, Any], asset: dict[str, Any]
) -> None:
    vae = DigitVAE.load("mnist-vae-2d")
    box = explored["box"]
    (x0, x1), (y0, y1) = asset["bounds"]["x"], asset["bounds"]["y"]
    shown = []
    for move in explored["moves"]:
        px, py = move["point"]
        # The code under the pointer, from the plane's box and bounds alone.
        expected_z = [x0 + (px - box["x"]) / box["width"] * (x1 - x0), y1 - (py - box["y"]) / box["height"] * (y1 - y0)]
        np.testing.assert_allclose(move["code"], expected_z, rtol=0, atol=1e-6)
        np.testing.assert_allclose(move["z"], expected_z, rtol=0, atol=1e-3)
        z = np.asarray([move["z"]], np.float32)
        expected = vae.decode(z).reshape(784)
        got = np.asarray(move["pixels"], np.float32)
        assert np.abs(got - expected).max() <= TOLERANCE
        assert move["text"] == f"z = ({move['z'][0]:.2f}, {move['z'][1]:.2f})"
        shown.append(got)
    # Different places on the plane are different digits, not one picture both sides agree on.
    assert min(np.abs(a - b).max() for i, a in enumerate(shown) for b in shown[i + 1 :]) > 0.3


def test_the_dots_are_the_assets_codes_coloured_by_class(explored: dict[str, Any], asset: dict[str, Any]) -> None:
    labels = np.asarray(asset["labels"])
    assert explored["dots"]["count"] == len(labels)
    assert explored["dots"]["perClass"] == np.bincount(labels, minlength=10).tolist()
    assert [entry["text"] for entry in explored["legend"]] == [str(d) for d in range(10)]
    assert [entry["colour"] for entry in explored["legend"]] == [f"#{c}" for c in COLOURS]
    for entry, colour in zip(explored["legend"], COLOURS, strict=True):
        rgb = tuple(int(colour[i : i + 2], 16) for i in (0, 2, 4))
        assert entry["shown"] == f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"
    codes = np.asarray(asset["codes"]).reshape(-1, 2)
    width, height = explored["size"]
    (x0, x1), (y0, y1) = asset["bounds"]["x"], asset["bounds"]["y"]
    checked = 0
    for centre in explored["centres"]:
        i = centre["index"]
        px, py = centre["pixel"]
        assert abs(px - (codes[i, 0] - x0) / (x1 - x0) * width) < 1e-6
        assert abs(py - (y1 - codes[i, 1]) / (y1 - y0) * height) < 1e-6
        # A later dot within 3 px would paint over this one's centre.
        later = codes[i + 1 :]
        near = np.hypot(
            (later[:, 0] - codes[i, 0]) / (x1 - x0) * width, (later[:, 1] - codes[i, 1]) / (y1 - y0) * height
        )
        if (near < 3.5).any():
            continue
        colour = COLOURS[labels[i]]
        assert centre["rgb"] == [int(colour[j : j + 2], 16) for j in (0, 2, 4)], (i, labels[i], centre)
        checked += 1
    assert checked >= 10
    assert not [line for line in explored["console"] if line.startswith(("error", "pageerror"))]
