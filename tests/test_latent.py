"""Latent-space tools: interpolation paths, manifold grids, and their commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import GAP, STEP, assert_clean_failure, invoke, listing, ok, read_grid, write_png
from mnist_files import VALID_IMAGES

from digitvae.runtime import DigitVAE, InputError
from digitvae.runtime.inference.latent import interpolate, lerp, manifold_codes, normal_grid, principal_plane, slerp


def test_lerp_and_slerp_keep_their_ends() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 20)).astype(np.float32)
    for path in (lerp(a, b, 7), slerp(a, b, 7)):
        assert path.shape == (7, 20) and path.dtype == np.float32
        np.testing.assert_allclose(path[0], a, atol=1e-6)
        np.testing.assert_allclose(path[-1], b, atol=1e-6)
    # The straight line is evenly spaced; the arc keeps the norm between the two end norms.
    np.testing.assert_allclose(np.diff(lerp(a, b, 7), axis=0), np.tile((b - a) / 6, (6, 1)), atol=1e-6)
    norms = np.linalg.norm(slerp(a, b, 7), axis=1)
    np.testing.assert_allclose(norms, np.linspace(np.linalg.norm(a), np.linalg.norm(b), 7), rtol=1e-5)
    assert np.linalg.norm(lerp(a, b, 7), axis=1)[3] < norms[3]


def test_slerp_handles_parallel_and_zero_codes() -> None:
    a = np.ones(4, np.float32)
    np.testing.assert_allclose(slerp(a, 2 * a, 3), lerp(a, 2 * a, 3), atol=1e-6)
    np.testing.assert_allclose(slerp(np.zeros(4, np.float32), a, 3), lerp(np.zeros(4, np.float32), a, 3))


def test_interpolate_refuses_bad_requests() -> None:
    a = np.zeros(3, np.float32)
    with pytest.raises(InputError, match="mode"):
        interpolate(a, a, 5, "cubic")
    with pytest.raises(InputError, match="steps"):
        interpolate(a, a, 1, "linear")


def test_manifold_codes_of_a_2d_latent_are_prior_quantiles() -> None:
    codes = manifold_codes(2, 4)
    q = normal_grid(4)
    assert codes.shape == (16, 2)
    np.testing.assert_allclose(codes[:4, 0], q, rtol=1e-6)  # first row walks the first axis
    np.testing.assert_allclose(codes[::4, 1], q[::-1], rtol=1e-6)  # rows go down the second
    np.testing.assert_allclose(q, -q[::-1], atol=1e-12)


def test_principal_plane_finds_the_spread_directions() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 5)) * [5.0, 0.1, 2.0, 0.1, 0.1] + 3.0
    plane = principal_plane(x)
    directions = np.abs(np.asarray(plane["directions"]))
    assert directions[0].argmax() == 0 and directions[1].argmax() == 2
    np.testing.assert_allclose(plane["spread"], [5.0, 2.0], rtol=0.1)
    codes = manifold_codes(5, 3, plane)
    assert codes.shape == (9, 5)
    np.testing.assert_allclose(codes[4], plane["centre"], atol=1e-5)  # the grid's middle is the centre
    with pytest.raises(InputError, match="principal plane"):
        manifold_codes(5, 3, None)
    with pytest.raises(InputError, match="does not match"):
        manifold_codes(6, 3, plane)


def test_interpolate_command_writes_both_rows(tmp_path: Path, vae: DigitVAE, digits: np.ndarray) -> None:
    out = tmp_path / "strip.png"
    result = ok(invoke("interpolate", f"{VALID_IMAGES}:0", f"{VALID_IMAGES}:1", "-o", out, "--steps", 8))
    assert "2 x 8" in result.stdout
    grid = read_grid(out)
    assert grid.shape == (2 * STEP - GAP, 8 * STEP - GAP)
    means, _ = vae.encode(digits[:2])
    ends = np.rint(vae.decode(means) * 255).astype(np.uint8)
    for row in (0, 1):  # both paths start and end at the decoded means of A and B
        assert np.abs(grid[row * STEP : row * STEP + 28, :28].astype(int) - ends[0]).max() <= 1
        assert np.abs(grid[row * STEP : row * STEP + 28, 7 * STEP :].astype(int) - ends[1]).max() <= 1
    assert listing(tmp_path) == ["strip.png"]


def test_interpolate_accepts_png_files_and_npy_output(tmp_path: Path, digits: np.ndarray) -> None:
    a, b = write_png(digits[2], tmp_path / "a.png"), write_png(digits[3], tmp_path / "b.png")
    ok(invoke("interpolate", a, b, "-o", tmp_path / "s.npy", "--steps", 5, "--mode", "spherical"))
    strip = np.load(tmp_path / "s.npy")
    assert strip.shape == (5, 28, 28) and strip.dtype == np.float32


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((f"{VALID_IMAGES}:100", f"{VALID_IMAGES}:1"), "out of range"),
        ((str(VALID_IMAGES), f"{VALID_IMAGES}:1"), "holds 100 digits"),
        (("missing.png", f"{VALID_IMAGES}:1"), "no such file"),
        ((f"{VALID_IMAGES}:0", f"{VALID_IMAGES}:1", "--digit", 3), "not conditional"),
    ],
)
def test_interpolate_refuses_bad_inputs(tmp_path: Path, args: tuple, fragment: str) -> None:
    assert_clean_failure(invoke("interpolate", *args, "-o", tmp_path / "s.png"), fragment)
    assert listing(tmp_path) == []


def test_manifold_over_principal_plane_of_given_digits(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = ok(invoke("manifold", "-o", out, "--size", 6, "--data", VALID_IMAGES))
    assert "principal directions" in result.stdout
    grid = read_grid(out)
    assert grid.shape == (6 * STEP - GAP, 6 * STEP - GAP)
    corners = [grid[:28, :28], grid[-28:, -28:]]
    assert np.abs(corners[0].astype(int) - corners[1]).mean() > 10  # opposite corners differ


def test_manifold_needs_a_plane_for_a_wide_latent_without_calibration(tmp_path: Path) -> None:
    import json

    from helpers import copy_shipped_model

    model = copy_shipped_model(tmp_path / "m")
    manifest = json.loads((model / "model.json").read_text())
    manifest.get("metrics", {}).pop("latent_plane", None)
    (model / "model.json").write_text(json.dumps(manifest))
    assert_clean_failure(invoke("manifold", "-o", tmp_path / "g.png", "--model", model), "principal plane")
    assert not (tmp_path / "g.png").exists()
