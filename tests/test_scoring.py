"""Likelihood commands: evaluate, calibrate and score, and the typical-range logic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_clean_failure, copy_shipped_model, invoke, listing, ok
from mnist_files import VALID_IMAGES

from digitvae.runtime import DigitVAE, InputError, ModelError, OutlierDetector
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.outliers.scoring import Calibration, calibrate, code_length


def test_one_check_takes_the_central_quantiles_of_validation_scores() -> None:
    scores = np.arange(1000, dtype=np.float64)
    c = calibrate({"nll": scores}, k=10, data="valid")
    # With one check the common level is half the false-alarm rate on each side: 0.5% and 99.5%.
    assert c["quantiles"][0] == pytest.approx(0.005, abs=1e-6)
    assert c["checks"]["nll"]["low"] == pytest.approx(np.quantile(scores, 0.005), abs=1e-3)
    assert c["checks"]["nll"]["high"] == pytest.approx(np.quantile(scores, 0.995), abs=1e-3)
    assert c["k"] == 10 and c["digits"] == 1000 and c["flagged"] <= 0.01
    low, high = c["checks"]["nll"]["low"], c["checks"]["nll"]["high"]
    assert Calibration(10, {"nll": (low, high)}).flags({"nll": np.array([low - 1, 500.0, high + 1])}) == [
        "nll low",
        "",
        "nll high",
    ]
    with pytest.raises(InputError, match="at least 100"):
        calibrate({"nll": scores[:50]}, k=10, data="valid")


def test_several_checks_share_a_level_that_flags_the_false_alarm_rate_together() -> None:
    rng = np.random.default_rng(0)
    scores = {"nll": rng.normal(size=4000), "complexity": rng.normal(size=4000), "ratio": rng.normal(size=4000)}
    c = calibrate(scores, k=5, data="valid", false_alarm=0.03, reference={"model": "m", "sha256": {}})
    level = c["quantiles"][0]
    # Independent checks: each may flag only about a third of the 3%, so the level is near 0.5%, not 1.5%.
    assert 0.004 < level < 0.006
    flagged = np.zeros(4000, dtype=bool)
    for name, values in scores.items():
        r = c["checks"][name]
        assert r["low"] == pytest.approx(np.quantile(values, level), abs=1e-3)
        flagged |= (values < r["low"]) | (values > r["high"])
    assert 0.028 <= flagged.mean() <= 0.03 and c["flagged"] == pytest.approx(flagged.mean(), abs=1e-4)
    assert c["reference"]["model"] == "m"
    with pytest.raises(InputError, match="between 0 and 0.5"):
        calibrate(scores, k=5, data="valid", false_alarm=0.7)
    with pytest.raises(InputError, match="one score per"):
        calibrate({"nll": scores["nll"], "ratio": scores["ratio"][:200]}, k=5, data="valid")
    with pytest.raises(InputError, match="among"):
        calibrate({"nll": scores["nll"], "likelihood": scores["ratio"]}, k=5, data="valid")
    with pytest.raises(InputError, match="finite"):
        calibrate({"nll": np.append(scores["nll"], np.nan)}, k=5, data="valid")


def test_flags_name_every_failed_check() -> None:
    c = Calibration(5, {"nll": (0.0, 10.0), "complexity": (-5.0, 5.0)})
    scores = {"nll": np.array([5.0, 11.0, -1.0, 5.0]), "complexity": np.array([0.0, 6.0, 0.0, -6.0])}
    assert c.flags(scores) == ["", "nll high, complexity high", "nll low", "complexity low"]
    with pytest.raises(InputError, match="complexity"):
        c.flags({"nll": scores["nll"]})


def test_code_length_measures_how_much_an_image_compresses(digits: np.ndarray) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (1, 28, 28)).astype(np.uint8)
    blank = np.zeros((1, 28, 28), np.uint8)
    lengths = code_length(np.concatenate([blank, digits[:1], noise]).astype(np.float32) / 255)
    assert lengths[0] < lengths[1] < lengths[2]
    assert lengths[2] > 784 * 8 * np.log(2)  # random bytes do not compress
    # Float images are read back to the 8-bit pixels they came from.
    assert code_length(digits[:5] / 255.0) == pytest.approx(code_length(digits[:5].astype(np.float32) / 255))


def test_calibration_reads_both_formats_and_explains_what_is_wrong() -> None:
    new = {
        "score": {
            "k": 7,
            "checks": {"nll": {"low": 1.0, "high": 2.0}, "ratio": {"low": -1.0, "high": 1.0}},
            "reference": {"model": "mnist-vae-geron", "sha256": {}},
        }
    }
    c = Calibration.from_metrics(new)
    assert (
        c.k == 7 and c.ranges == {"nll": (1.0, 2.0), "ratio": (-1.0, 1.0)} and c.reference["model"] == "mnist-vae-geron"
    )
    old = Calibration.from_metrics({"score": {"low": 1.0, "high": 2.0, "k": 7}})  # before the other checks existed
    assert old.ranges == {"nll": (1.0, 2.0)} and old.reference is None
    assert Calibration.from_metrics(new, (0.0, 5.0)).ranges["nll"] == (0.0, 5.0)
    assert Calibration.from_metrics({}, (0.0, 5.0)).ranges == {"nll": (0.0, 5.0)}
    with pytest.raises(ModelError, match="calibrate"):
        Calibration.from_metrics({})
    with pytest.raises(InputError, match="low < high"):
        Calibration.from_metrics({}, (5.0, 1.0))
    no_reference = {"score": {"k": 7, "checks": new["score"]["checks"]}}
    with pytest.raises(ModelError, match="reference"):
        Calibration.from_metrics(no_reference)
    for broken in (
        {"k": "x", "low": 1, "high": 2},
        {"checks": {"nll": {"low": 1}}},
        {"checks": {"psnr": {"low": 1, "high": 2}}},
        {"checks": []},
        {"k": 7},
    ):
        with pytest.raises(ModelError, match="metrics.score"):
            Calibration.from_metrics({"score": broken})


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
    result = ok(invoke("calibrate", model, "--data", VALID_IMAGES, "--k", 10, "--no-reference"))
    assert "typical IW-NLL (k=10)" in result.stdout and str(model) in result.stdout
    return model


def test_recalibrating_keeps_the_reference_unless_told(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "model")
    result = ok(invoke("calibrate", model, "--data", VALID_IMAGES, "--k", 5))
    assert "keeping the reference model of the current calibration: mnist-vae-geron" in result.stderr
    score = json.loads((model / "model.json").read_text())["metrics"]["score"]
    assert set(score["checks"]) == {"nll", "complexity", "ratio"} and score["reference"]["model"] == "mnist-vae-geron"
    assert_clean_failure(
        invoke("calibrate", model, "--data", VALID_IMAGES, "--reference", "mnist-vae-2d", "--no-reference"), "exclude"
    )


def test_calibrate_stores_the_ranges_and_plane_and_keeps_the_rest(calibrated: Path, tmp_path: Path) -> None:
    manifest = json.loads((calibrated / "model.json").read_text())
    score = manifest["metrics"]["score"]
    assert score["k"] == 10 and score["digits"] == 100 and score["flagged"] <= 0.01
    assert set(score["checks"]) == {"nll", "complexity"} and "reference" not in score
    assert all(r["low"] < r["high"] for r in score["checks"].values())
    assert len(manifest["metrics"]["latent_plane"]["directions"]) == 2
    original = json.loads((copy_shipped_model(tmp_path / "again") / "model.json").read_text())
    assert manifest["variants"] == original["variants"]
    assert DigitVAE.load(calibrated).manifest.metrics["score"] == score  # still a valid model
    assert sorted(p.name for p in calibrated.iterdir()) == sorted(p.name for p in (tmp_path / "again").iterdir())


def _odd_images(digits: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack(
        [
            rng.integers(0, 256, (28, 28)),  # noise
            np.zeros((28, 28)),  # blank
            255 - digits[0],  # inverted
            255 - digits[1],
        ]
    ).astype(np.uint8)


def test_score_with_a_fresh_calibration_flags_noise_and_inverted(
    calibrated: Path, tmp_path: Path, digits: np.ndarray
) -> None:
    np.save(tmp_path / "odd.npy", _odd_images(digits))
    report = json.loads(ok(invoke("score", tmp_path / "odd.npy", "--model", calibrated, "--json")).stdout)
    flags = [s["flag"] for s in report["scores"]]
    assert "nll high" in flags[0] and "nll high" in flags[2] and "nll high" in flags[3]
    assert set(report["checks"]) == {"nll", "complexity"} and report["reference"] is None
    assert set(report["scores"][0]["checks"]) == {"nll", "complexity"}
    real = json.loads(ok(invoke("score", VALID_IMAGES, "--model", calibrated, "--json")).stdout)
    assert real["outliers"] <= 3  # calibrated on these very digits: about 1% fall outside
    text = ok(invoke("score", tmp_path / "odd.npy", "--model", calibrated)).stdout
    assert "outlier (nll high" in text and "of 4 outside" in text


@pytest.mark.heavy
def test_shipped_model_flags_noise_blank_and_inverted_digits(tmp_path: Path, digits: np.ndarray) -> None:
    # The shipped calibration comes from the 5,000 validation digits (see README).
    np.save(tmp_path / "odd.npy", _odd_images(digits))
    report = json.loads(ok(invoke("score", tmp_path / "odd.npy", "--json")).stdout)
    assert report["reference"] == "mnist-vae-geron" and set(report["checks"]) == {"nll", "complexity", "ratio"}
    flags = [s["flag"] for s in report["scores"]]
    # A blank page is as likely as a simple digit under the learned prior (51.7 nats), but far too
    # likely for an image that compresses to a few bytes: the complexity check flags it.
    assert ["nll high" in flags[0], "complexity high" in flags[1], "nll high" in flags[2], "nll high" in flags[3]] == [
        True
    ] * 4
    real = json.loads(ok(invoke("score", VALID_IMAGES, "--json")).stdout)
    assert real["outliers"] <= 3


@pytest.fixture()
def with_reference(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the default model calibrated against a copy of mnist-vae-geron."""
    model = copy_shipped_model(tmp_path / "model")
    reference = tmp_path / "reference"
    shutil.copytree(shipped_models_dir() / "mnist-vae-geron", reference)
    ok(invoke("calibrate", model, "--reference", reference, "--data", VALID_IMAGES, "--k", 10))
    return model, reference


@pytest.mark.heavy
def test_calibrate_with_a_reference_adds_the_ratio_check(with_reference: tuple[Path, Path], digits: np.ndarray) -> None:
    model, reference = with_reference
    score = json.loads((model / "model.json").read_text())["metrics"]["score"]
    assert set(score["checks"]) == {"nll", "complexity", "ratio"}
    files = DigitVAE.load(reference).manifest.files("fp32")
    pinned = {role: files[role].sha256 for role in ("encoder", "decoder", "prior_density")}
    assert score["reference"] == {"model": str(reference.resolve()), "sha256": pinned}
    detector = OutlierDetector.load(model)
    assert detector.checks == ["nll", "complexity", "ratio"] and detector.reference is not None
    scores = detector.scores(digits[:8])
    # The ratio is the difference of the two models' IW-NLL with the same posterior noise.
    expected = DigitVAE.load(model).iw_nll(digits[:8], 10) - DigitVAE.load(reference).iw_nll(digits[:8], 10)
    np.testing.assert_allclose(scores["ratio"], expected, rtol=1e-12)
    report = json.loads(ok(invoke("score", VALID_IMAGES, "--model", model, "--limit", 8, "--json")).stdout)
    assert [s["flag"] for s in report["scores"]] == detector.flags(scores)
    # The CLI reads uint8 files as x / 255, the fixture scales by 1/255: equal up to float32 rounding.
    assert report["scores"][3]["checks"]["ratio"] == pytest.approx(scores["ratio"][3], abs=1e-4)


@pytest.mark.heavy
def test_a_changed_or_missing_reference_is_refused(with_reference: tuple[Path, Path]) -> None:
    model, reference = with_reference
    shutil.rmtree(reference)
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", reference)
    assert_clean_failure(invoke("score", VALID_IMAGES, "--model", model), "changed since calibration")
    with pytest.raises(ModelError, match="changed since calibration"):
        OutlierDetector.load(model)
    shutil.rmtree(reference)
    assert_clean_failure(invoke("score", VALID_IMAGES, "--model", model), "reference model is missing")


def test_a_hand_edited_conditional_reference_is_refused(with_reference: tuple[Path, Path]) -> None:
    model, _ = with_reference
    manifest = json.loads((model / "model.json").read_text())
    cvae = DigitVAE.load("mnist-cvae").manifest.files("fp32")
    manifest["metrics"]["score"]["reference"] = {
        "model": "mnist-cvae",
        "sha256": {r: f.sha256 for r, f in cvae.items()},
    }
    (model / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="conditional"):
        OutlierDetector.load(model)


def test_calibrate_refuses_the_model_as_its_own_reference(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "m")
    before = (model / "model.json").read_bytes()
    assert_clean_failure(
        invoke("calibrate", model, "--reference", "mnist-vae", "--data", VALID_IMAGES, "--k", 2), "model itself"
    )
    assert_clean_failure(
        invoke("calibrate", model, "--reference", "mnist-cvae", "--data", VALID_IMAGES, "--k", 2), "conditional"
    )
    assert (model / "model.json").read_bytes() == before


def test_score_without_calibration_is_a_clean_error_unless_a_range_is_given(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "m")
    manifest = json.loads((model / "model.json").read_text())
    manifest.get("metrics", {}).pop("score", None)
    (model / "model.json").write_text(json.dumps(manifest))
    assert_clean_failure(invoke("score", VALID_IMAGES, "--model", model), "calibrate")
    report = json.loads(
        ok(invoke("score", VALID_IMAGES, "--model", model, "--range", 0, 1000, "--limit", 3, "--json")).stdout
    )
    assert report["outliers"] == 0 and len(report["scores"]) == 3


def test_calibrate_refuses_too_few_digits_and_leaves_the_model_alone(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "m")
    before, files = (model / "model.json").read_bytes(), listing(model)
    assert_clean_failure(invoke("calibrate", model, "--data", VALID_IMAGES, "--limit", 20, "--k", 2), "at least 100")
    assert (model / "model.json").read_bytes() == before
    assert listing(model) == files


def test_evaluate_write_stores_the_figures_per_variant(tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "m")
    report = json.loads(
        ok(invoke("evaluate", "--data", VALID_IMAGES, "--k", 4, "--model", model, "--json", "--write")).stdout
    )
    stored = json.loads((model / "model.json").read_text())["metrics"]["likelihood"]["fp32"]
    assert stored["iw_nll"] == report["iw_nll"] and stored["k"] == 4 and stored["digits"] == 100
    DigitVAE.load(model)  # the manifest stays valid
