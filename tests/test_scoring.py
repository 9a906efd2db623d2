"""Likelihood commands: evaluate, calibrate and score, and the typical-range logic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from digitvae.runtime import DigitVAE, InputError, ModelError
from digitvae.runtime.scoring import calibrate, flags, interval

from conftest import VALID_IMAGES
from test_cli import assert_clean_failure, copy_shipped_model, invoke, listing, ok


def test_calibration_takes_the_quantiles_of_validation_scores() -> None:
    scores = np.arange(1000, dtype=np.float64)
    c = calibrate(scores, k=10, data="valid")
    assert c["low"] == pytest.approx(np.quantile(scores, 0.005), abs=1e-3)
    assert c["high"] == pytest.approx(np.quantile(scores, 0.995), abs=1e-3)
    assert c["k"] == 10 and c["digits"] == 1000
    assert flags(np.array([c["low"] - 1, 500.0, c["high"] + 1]), c["low"], c["high"]) == ["low", "", "high"]
    with pytest.raises(InputError, match="at least 100"):
        calibrate(scores[:50], k=10, data="valid")


def test_interval_prefers_an_override_and_explains_a_missing_calibration() -> None:
    assert interval({"score": {"low": 1.0, "high": 2.0, "k": 7}}) == (1.0, 2.0, 7)
    assert interval({"score": {"low": 1.0, "high": 2.0, "k": 7}}, (0.0, 5.0)) == (0.0, 5.0, 7)
    with pytest.raises(ModelError, match="calibrate"):
        interval({})
    with pytest.raises(InputError, match="low < high"):
        interval({}, (5.0, 1.0))


def test_evaluate_agrees_with_the_runtime_api(vae: DigitVAE, digits: np.ndarray) -> None:
    result = ok(invoke("evaluate", "--data", VALID_IMAGES, "--k", 20, "--json"))
    report = json.loads(result.stdout)
    assert report["digits"] == 100 and report["k"] == 20
    # The CLI reads uint8 files as x / 255, the API scales by 1/255: equal up to float32 rounding.
    assert report["iw_nll"] == pytest.approx(vae.iw_nll(digits, 20).mean(), rel=1e-6)
    assert report["neg_elbo"] == pytest.approx(-vae.elbo(digits).mean(), rel=1e-6)
    assert report["iw_nll_bits_per_dim"] == pytest.approx(report["iw_nll"] / (784 * np.log(2)))
    text = ok(invoke("evaluate", "--data", VALID_IMAGES, "--k", 5, "--limit", 10)).stdout
    assert "-ELBO" in text and "IW-NLL" in text and "10 digits" in text


@pytest.fixture()
def calibrated(tmp_path: Path) -> Path:
    model = copy_shipped_model(tmp_path / "model")
    result = ok(invoke("calibrate", model, "--data", VALID_IMAGES, "--k", 10))
    assert "typical IW-NLL (k=10)" in result.stdout
    return model


def test_calibrate_stores_the_range_and_plane_and_keeps_the_rest(calibrated: Path, tmp_path: Path) -> None:
    manifest = json.loads((calibrated / "model.json").read_text())
    score = manifest["metrics"]["score"]
    assert score["k"] == 10 and score["digits"] == 100 and score["low"] < score["high"]
    assert len(manifest["metrics"]["latent_plane"]["directions"]) == 2
    original = json.loads((copy_shipped_model(tmp_path / "again") / "model.json").read_text())
    assert manifest["variants"] == original["variants"]
    assert DigitVAE.load(calibrated).manifest.metrics["score"] == score  # still a valid model
    assert sorted(p.name for p in calibrated.iterdir()) == sorted(p.name for p in (tmp_path / "again").iterdir())


def _odd_images(digits: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([
        rng.integers(0, 256, (28, 28)),  # noise
        np.zeros((28, 28)),  # blank
        255 - digits[0],  # inverted
        255 - digits[1],
    ]).astype(np.uint8)


def test_score_with_a_fresh_calibration_flags_noise_and_inverted(calibrated: Path, tmp_path: Path, digits: np.ndarray) -> None:
    np.save(tmp_path / "odd.npy", _odd_images(digits))
    report = json.loads(ok(invoke("score", tmp_path / "odd.npy", "--model", calibrated, "--json")).stdout)
    assert [s["flag"] for s in report["scores"]][2:] == ["high", "high"]
    assert report["scores"][0]["flag"] == "high"
    real = json.loads(ok(invoke("score", VALID_IMAGES, "--model", calibrated, "--json")).stdout)
    assert real["outliers"] <= 3  # calibrated on these very digits: about 1% fall outside
    text = ok(invoke("score", tmp_path / "odd.npy", "--model", calibrated)).stdout
    assert "outlier (high)" in text and "of 4 outside" in text


def test_shipped_model_flags_noise_blank_and_inverted_digits(tmp_path: Path, digits: np.ndarray) -> None:
    # The shipped calibration comes from the 5,000 validation digits (see README).
    np.save(tmp_path / "odd.npy", _odd_images(digits))
    report = json.loads(ok(invoke("score", tmp_path / "odd.npy", "--json")).stdout)
    assert [s["flag"] for s in report["scores"]] == ["high", "low", "high", "high"]
    real = json.loads(ok(invoke("score", VALID_IMAGES, "--json")).stdout)
    assert real["outliers"] <= 3


def test_score_without_calibration_is_a_clean_error_unless_a_range_is_given(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "m")
    manifest = json.loads((model / "model.json").read_text())
    manifest.get("metrics", {}).pop("score", None)
    (model / "model.json").write_text(json.dumps(manifest))
    assert_clean_failure(invoke("score", VALID_IMAGES, "--model", model), "calibrate")
    report = json.loads(ok(invoke("score", VALID_IMAGES, "--model", model, "--range", 0, 1000, "--limit", 3, "--json")).stdout)
    assert report["outliers"] == 0 and len(report["scores"]) == 3


def test_calibrate_refuses_too_few_digits_and_leaves_the_model_alone(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "m")
    before, files = (model / "model.json").read_bytes(), listing(model)
    assert_clean_failure(invoke("calibrate", model, "--data", VALID_IMAGES, "--limit", 20, "--k", 2), "at least 100")
    assert (model / "model.json").read_bytes() == before
    assert listing(model) == files


def test_evaluate_write_stores_the_figures_per_variant(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "m")
    report = json.loads(ok(invoke("evaluate", "--data", VALID_IMAGES, "--k", 4, "--model", model, "--json", "--write")).stdout)
    stored = json.loads((model / "model.json").read_text())["metrics"]["likelihood"]["fp32"]
    assert stored["iw_nll"] == report["iw_nll"] and stored["k"] == 4 and stored["digits"] == 100
    DigitVAE.load(model)  # the manifest stays valid
