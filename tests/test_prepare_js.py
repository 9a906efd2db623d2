"""web/src/prepare.js gives the same 28x28 digits as prepare_digit, run by node on the same pictures."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from drawings import Style, decode, draw, encode, gallery
from mnist_files import VALID_IMAGES

from digitvae.runtime import prepare_digit
from digitvae.runtime.digits.idx import read_mnist_images

MODULE = Path(__file__).parents[1] / "web" / "src" / "prepare.js"
NODE = shutil.which("node")
pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed: the JavaScript port cannot be run"),
    pytest.mark.heavy,
]  # runs node

#: Reads each case's RGBA bytes, runs rgbaToGray and prepareDigit, writes the 784 floats or the error.
RUNNER = """
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const [module, folder] = process.argv.slice(2);
const { rgbaToGray, prepareDigit } = await import(pathToFileURL(module).href);
const cases = JSON.parse(readFileSync(`${folder}/cases.json`, 'utf8'));
for (const c of cases) {
  const rgba = new Uint8ClampedArray(readFileSync(`${folder}/${c.name}.rgba`));
  try {
    const digit = prepareDigit(rgbaToGray(rgba, c.width, c.height), c.width, c.height);
    writeFileSync(`${folder}/${c.name}.out`, Buffer.from(digit.buffer));
  } catch (error) {
    writeFileSync(`${folder}/${c.name}.err`, `${error.name}: ${error.message}`);
  }
}
"""


def _rgba(picture: np.ndarray, alpha: int = 255) -> np.ndarray:
    """Return uint8 [H,W,4] as a canvas gives it."""
    rgb = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), alpha, np.uint8)], axis=2)


def _cases() -> dict[str, np.ndarray]:
    cases = {}
    for i, (digit, style) in enumerate(gallery(30, seed=1)):
        cases[f"drawn{i:02d}-{digit}"] = _rgba(decode(encode(draw(digit, style, seed=i), style)))
    ink = np.asarray(draw(4, Style(canvas=(160, 200), pen=6.0)))
    see_through = np.zeros(ink.shape + (4,), np.uint8)
    see_through[..., 3] = 255 - ink  # transparent paper, as a drawing canvas leaves it
    cases["transparent"] = see_through
    cases["half-opaque"] = _rgba(np.asarray(draw(9, Style(canvas=(90, 120), colour=True))), alpha=140)
    for i, digit in enumerate(read_mnist_images(VALID_IMAGES)[:5]):
        cases[f"mnist{i}"] = _rgba(digit)
    cases["tiny"] = _rgba(np.asarray(draw(1, Style(canvas=(5, 9), pen=1.0))))
    strip = np.full((3, 60_000), 240, np.uint8)  # far longer than wide: pooled without padding to a square
    strip[:, 20_000:45_000] = 30
    cases["strip"] = _rgba(strip)
    cases["noisy paper"] = _rgba(np.asarray(draw(8, Style(canvas=(320, 240), pen=7.0, paper=200, ink=60, noise=25.0))))
    return cases


def _run(cases: dict[str, np.ndarray], folder: Path) -> None:
    meta = []
    for name, rgba in cases.items():
        (folder / f"{name}.rgba").write_bytes(np.ascontiguousarray(rgba).tobytes())
        meta.append({"name": name, "width": rgba.shape[1], "height": rgba.shape[0]})
    (folder / "cases.json").write_text(json.dumps(meta))
    (folder / "run.mjs").write_text(RUNNER)
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(folder / "run.mjs"), str(MODULE), str(folder)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr


def test_javascript_and_python_prepare_the_same_digits(tmp_path: Path) -> None:
    cases = _cases()
    _run(cases, tmp_path)
    for name, rgba in cases.items():
        assert not (tmp_path / f"{name}.err").exists(), (tmp_path / f"{name}.err").read_text()
        js = np.frombuffer((tmp_path / f"{name}.out").read_bytes(), np.float32).reshape(28, 28)
        py = prepare_digit(rgba)
        assert py.max() > 0.9, name
        assert np.abs(js - py).max() <= 1e-5, name


def test_javascript_refuses_what_python_refuses(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cases = {
        "blank": _rgba(np.full((40, 30), 230, np.uint8)),
        "noise": _rgba(np.clip(rng.normal(200, 4, (120, 160)), 0, 255).astype(np.uint8)),
        "uniform": _rgba(rng.integers(0, 256, (120, 160), dtype=np.uint8)),
        "uniform RGB": _rgba(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)),
        "Gaussian": _rgba(np.clip(rng.normal(128, 40, (64, 48)), 0, 255).astype(np.uint8)),
        "Gaussian over a page": _rgba(np.clip(rng.normal(200, 60, (480, 640)), 0, 255).astype(np.uint8)),
        "pepper": _rgba(np.where(rng.random((240, 320)) < 0.05, np.uint8(25), np.uint8(235))),
        "salt and pepper": _rgba(rng.choice(np.array([0, 128, 128, 128, 255], np.uint8), (200, 200))),
    }
    _run(cases, tmp_path)
    for name, rgba in cases.items():
        with pytest.raises(ValueError, match="no ink found"):
            prepare_digit(rgba)
        assert (tmp_path / f"{name}.err").read_text().startswith("RangeError: no ink found"), name
