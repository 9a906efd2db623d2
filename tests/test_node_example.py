"""examples/node: onnxruntime-node draws digits through the shipped model's prior into a PNG grid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitvae.runtime import OutlierDetector

pytestmark = pytest.mark.heavy  # runs node

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "node"
SIDE = 28


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed")
    if not (EXAMPLE / "node_modules" / "onnxruntime-node" / "package.json").is_file():
        pytest.skip("examples/node lacks onnxruntime-node (run `ONNXRUNTIME_NODE_INSTALL=skip npm ci` there)")
    return path


def _generate(node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node, "generate.mjs", *args], cwd=EXAMPLE, capture_output=True, text=True, timeout=120)


def _tiles(path: Path, rows: int, cols: int) -> np.ndarray:
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == "L"
        assert picture.size == (cols * SIDE, rows * SIDE)
        pixels = np.asarray(picture)
    return pixels.reshape(rows, SIDE, cols, SIDE).transpose(0, 2, 1, 3).reshape(rows * cols, SIDE, SIDE)


def test_grid_holds_digit_like_pictures(node: str, tmp_path: Path) -> None:
    out = tmp_path / "digits.png"
    run = _generate(node, "-o", str(out), "-n", "40", "--seed", "5", "--cols", "10", "--scale", "1")
    assert run.returncode == 0, run.stderr
    assert "40 digits, 280x112 pixels" in run.stdout
    tiles = _tiles(out, 4, 10)
    # Each tile is a light stroke on black, centred as MNIST centres its digits.
    assert (tiles.reshape(40, -1).max(axis=1) > 200).all()
    assert np.isin(tiles[:, [0, -1]][:, :, [0, -1]], range(0, 30)).all()
    ink = tiles.mean(axis=(1, 2)) / 255
    assert ((ink > 0.03) & (ink < 0.35)).all(), ink
    ys, xs = np.mgrid[:SIDE, :SIDE]
    mass = tiles.sum(axis=(1, 2))
    centre_y = (tiles * ys).sum(axis=(1, 2)) / mass
    centre_x = (tiles * xs).sum(axis=(1, 2)) / mass
    assert (np.abs(centre_y - 13.5) < 4).all() and (np.abs(centre_x - 13.5) < 4).all()
    # And the model finds them as likely as real digits: the calibrated IW-NLL range holds them.
    detector = OutlierDetector.load()
    nll = detector.scores(tiles)["nll"]
    low, high = detector.calibration.ranges["nll"]
    assert ((nll > low) & (nll < high)).mean() >= 0.9, nll
    noise = np.random.default_rng(0).integers(0, 256, (5, SIDE, SIDE), dtype=np.uint8)
    assert (detector.scores(noise)["nll"] > high).all()  # the check itself tells noise apart


def _width(tiles: np.ndarray) -> np.ndarray:
    """Return how many columns of each tile hold ink."""
    return (tiles.max(axis=1) > 128).sum(axis=1)


def test_seed_repeats_and_digit_is_honoured(node: str, tmp_path: Path) -> None:
    paths = {name: tmp_path / f"{name}.png" for name in ("ones", "again", "other", "any")}
    for name, args in (
        ("ones", ["--seed", "1", "--digit", "1"]),
        ("again", ["--seed", "1", "--digit", "1"]),
        ("other", ["--seed", "2", "--digit", "1"]),
        ("any", ["--seed", "1"]),
    ):
        run = _generate(node, "-o", str(paths[name]), "-n", "30", "--scale", "1", *args)
        assert run.returncode == 0, run.stderr
    assert paths["ones"].read_bytes() == paths["again"].read_bytes()
    assert paths["ones"].read_bytes() != paths["other"].read_bytes()
    # Ones are the narrowest digit, with the least ink: asked for, they differ from any digit.
    ones, anything = _tiles(paths["ones"], 3, 10), _tiles(paths["any"], 3, 10)
    assert np.median(_width(ones)) <= 8 < 12 <= np.median(_width(anything))
    assert ones.mean() < 0.75 * anything.mean()


def test_bad_options_are_one_line_errors(node: str, tmp_path: Path) -> None:
    for args, words in (
        (["-n", "0"], "--n must be an integer from 1 to 10000"),
        (["--digit", "10"], "--digit must be an integer from 0 to 9"),
        (["-o", str(tmp_path / "missing" / "x.png")], "cannot write"),
    ):
        run = _generate(node, *args)
        assert run.returncode != 0
        assert run.stderr.startswith("error: ") and words in run.stderr and run.stderr.count("\n") == 1, run.stderr
    assert list(tmp_path.iterdir()) == []


def test_write_errors_name_the_output_not_its_temporary_file(node: str, tmp_path: Path) -> None:
    folder = tmp_path / "taken.png"
    folder.mkdir()
    for out, words in (
        (tmp_path / "missing" / "x.png", f"folder {tmp_path / 'missing'} does not exist"),
        (folder, "it is a folder"),
    ):
        run = _generate(node, "-n", "2", "-o", str(out))
        assert run.returncode == 1, run.stderr
        assert run.stderr == f"error: cannot write {out}: {words}\n", run.stderr
        assert "partial" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"] and list(folder.iterdir()) == []
