"""Interpolation between two digits drawn on the page's pad, against the Python runtime.

Two digits (a 7, then a 0) are drawn with synthesised pointer events and used as A and B; the
page's frames must be `DigitVAE.decode` of the straight line between `DigitVAE.encode`'s means
of the same prepared pixels, which are `prepare_digit` of the pad's pixels.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from web_page import missing, run_script, served

from digitvae.runtime import DigitVAE, prepare_digit

pytestmark = pytest.mark.heavy  # starts node and a headless browser

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("interpolation")
    with served() as url:
        yield run_script("interpolate-check.mjs", url, out, result=out / "interpolation.json")


def test_the_ends_are_the_pads_digits_prepared_as_python_prepares_them(shown: dict[str, Any]) -> None:
    for which in ("a", "b"):
        end = shown["ends"][which]
        rgba = np.frombuffer(base64.b64decode(end["rgba"]), np.uint8).reshape(end["height"], end["width"], 4)
        prepared = np.asarray(shown[which], np.float32).reshape(28, 28)
        assert prepared.max() > 0.9 and 20 < prepared.sum() < 300, which
        assert np.abs(prepared - prepare_digit(rgba)).max() <= TOLERANCE, which
    assert np.abs(np.asarray(shown["a"]) - np.asarray(shown["b"])).max() > 0.5  # two different digits


def test_the_frames_decode_the_line_between_pythons_encoder_means(shown: dict[str, Any]) -> None:
    vae = DigitVAE.load("mnist-vae")
    steps, d = shown["steps"], vae.latent_dim
    assert steps == 10
    ends = np.stack([np.asarray(shown["a"], np.float32), np.asarray(shown["b"], np.float32)]).reshape(2, 28, 28)
    mean, _ = vae.encode(ends)
    assert np.abs(np.asarray(shown["means"], np.float32) - mean).max() <= TOLERANCE
    t = np.linspace(0, 1, steps, dtype=np.float64)[:, None]
    z = ((1 - t) * mean[0] + t * mean[1]).astype(np.float32)
    assert np.abs(np.asarray(shown["z"], np.float32).reshape(steps, d) - z).max() <= TOLERANCE
    expected = vae.decode(z).reshape(steps, 784)
    frames = np.asarray(shown["frames"], np.float32).reshape(steps, 784)
    assert np.abs(frames - expected).max() <= TOLERANCE
    # The ends are A's and B's reconstructions, and the steps between them change the picture.
    np.testing.assert_allclose(frames[[0, -1]], vae.reconstruct(ends).reshape(2, 784), rtol=0, atol=TOLERANCE)
    assert np.abs(frames[0] - frames[-1]).max() > 0.5
    assert shown["canvas"] == [steps * 28 * 2, 28 * 2]
    assert shown["caption"].startswith(f"{steps} steps from A to B")
    assert not [line for line in shown["console"] if line.startswith(("error", "pageerror"))]


def test_bad_arguments_to_interpolate_reject_with_clear_errors(shown: dict[str, Any]) -> None:
    errors = shown["errors"]
    assert errors["oneStep"] == {"name": "InputError", "message": "steps must be at least 2 (the two ends), got 1"}
    assert errors["shortImage"]["name"] == "InputError"
    assert "b must hold n x 784 (1 x 784) = 784 values, got 783" in errors["shortImage"]["message"]
