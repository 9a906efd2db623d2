"""Sample-quality metrics: the Fréchet distance, the digit classifier, and the `quality` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from mnist_files import DATA, TRAIN_IMAGES, VALID_IMAGES
from train_extra import needs_torch

from digitvae.cli.quality import quality
from digitvae.runtime import CheckpointError, DataFormatError, DigitVAE, InputError
from digitvae.runtime.digits.idx import read_mnist_labels
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.reading import sha256_file
from digitvae.runtime.inference.prior import Prior
from digitvae.train.quality import FeatureStats, feature_stats, frechet_distance, sqrt_psd, write_sample_quality

KEYS = {"model", "prior", "n", "seed", "fid", "mean_confidence", "class_balance", "class_balance_entropy"}
#: The shipped default's prior has classes: its samples are also asked for each digit.
PER_CLASS = {"conditional_accuracy"}


def stats(mean: np.ndarray, cov: np.ndarray) -> FeatureStats:
    return FeatureStats(np.asarray(mean, float), np.asarray(cov, float), 1000)


def random_rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances() -> None:
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(stats(m1, np.diag(v1)), stats(m2, np.diag(v2))) == pytest.approx(expected, rel=1e-10)
    # Rotating both Gaussians the same way leaves the distance alone but makes the covariances dense.
    q = random_rotation(6, 1)
    rotated = frechet_distance(stats(q @ m1, q @ np.diag(v1) @ q.T), stats(q @ m2, q @ np.diag(v2) @ q.T))
    assert rotated == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_to_the_identity_covariance_uses_the_eigenvalues() -> None:
    a = np.random.default_rng(2).normal(size=(5, 5))
    cov = a @ a.T
    expected = 5 + np.trace(cov) - 2 * np.sqrt(np.linalg.eigvalsh(cov)).sum()
    assert frechet_distance(stats(np.zeros(5), np.eye(5)), stats(np.zeros(5), cov)) == pytest.approx(
        expected, rel=1e-10
    )


def test_frechet_distance_of_identical_and_shifted_feature_sets() -> None:
    feats = np.random.default_rng(3).gamma(2.0, size=(400, 16))
    assert frechet_distance(feats, feats) < 1e-8
    shift = np.linspace(-1, 2, 16)
    assert frechet_distance(feats, feats + shift) == pytest.approx(np.sum(shift**2), rel=1e-7)
    assert frechet_distance(feats, feats * 1.5) > 0.1


def test_sqrt_psd_of_a_singular_matrix_and_feature_stats_validation() -> None:
    a = np.random.default_rng(4).normal(size=(6, 3))
    singular = a @ a.T
    root = sqrt_psd(singular)
    np.testing.assert_allclose(root @ root, singular, atol=1e-10)
    np.testing.assert_allclose(root, root.T)
    with pytest.raises(InputError, match="N >= 2"):
        feature_stats(np.ones((1, 4)))
    with pytest.raises(InputError, match="feature sizes differ"):
        frechet_distance(np.ones((3, 4)), np.ones((3, 5)))


def test_write_sample_quality_keeps_the_rest_of_the_manifest(tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    before = json.loads((model / "model.json").read_text())
    before["metrics"].pop("sample_quality", None)  # the shipped figures, replaced below
    onnx = {p.name: p.read_bytes() for p in model.glob("*.onnx")}
    write_sample_quality(model, "sample_quality", {"fid": 1.5})
    after = json.loads((model / "model.json").read_text())
    assert after["metrics"].pop("sample_quality") == {"fid": 1.5}
    assert after == before
    assert {p.name: p.read_bytes() for p in model.glob("*.onnx")} == onnx
    assert DigitVAE.load(model).manifest.metrics["sample_quality"] == {"fid": 1.5}


# ---- with torch: the classifier and the metrics it gives ----


@pytest.fixture(scope="module")
def fixture_digits() -> dict[str, np.ndarray]:
    from digitvae.runtime.digits.idx import read_mnist_images

    return {
        "train": read_mnist_images(TRAIN_IMAGES),
        "train_labels": read_mnist_labels(DATA / "train-labels-idx1-ubyte.gz"),
        "valid": read_mnist_images(VALID_IMAGES),
        "valid_labels": read_mnist_labels(DATA / "t10k-labels-idx1-ubyte.gz"),
    }


@pytest.fixture(scope="module")
def classifier(fixture_digits: dict[str, np.ndarray]) -> Any:
    from digitvae.train.classifier import ClassifierTrainConfig, train_classifier

    quick = ClassifierTrainConfig(epochs=2, batch_size=16, max_shift=0, seed=0)
    return train_classifier(fixture_digits["train"], fixture_digits["train_labels"], train_config=quick)


@pytest.mark.heavy
@needs_torch
def test_classifier_learns_the_fixture_digits(classifier: Any, fixture_digits: dict[str, np.ndarray]) -> None:
    from digitvae.train.classifier import accuracy

    # 2 epochs on the 300 training digits reach 0.74-0.86 on the 100 test digits over seeds 0-4; chance is 0.1.
    assert accuracy(classifier, fixture_digits["valid"], fixture_digits["valid_labels"]) >= 0.6


@pytest.mark.heavy
@needs_torch
def test_classifier_training_is_deterministic_for_a_seed(fixture_digits: dict[str, np.ndarray]) -> None:
    import torch

    from digitvae.train.classifier import train_classifier

    x, y = fixture_digits["train"][:64], fixture_digits["train_labels"][:64]
    a, b, c = (train_classifier(x, y, epochs=1, seed=s).state_dict() for s in (5, 5, 6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(InputError, match="labels"):
        train_classifier(x, y[:10], epochs=1)


@needs_torch
def test_shift_augmentation_moves_each_digit_whole(fixture_digits: dict[str, np.ndarray]) -> None:
    import torch

    from digitvae.train.classifier import _shifted

    images = fixture_digits["train"][:60]
    border = np.ones((28, 28), bool)
    border[2:-2, 2:-2] = False
    # Digits with no ink in the outer 2 pixels lose nothing when moved by up to 2.
    x = torch.from_numpy(images[~images[:, border].any(axis=1), None].astype(np.float32))
    moved = _shifted(x, 2, torch.Generator().manual_seed(0)).numpy()
    assert moved.shape == x.shape
    offsets = set()
    for original, shifted in zip(x.numpy()[:, 0], moved[:, 0]):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(np.roll(original, (dy, dx), axis=(0, 1)), shifted)
        ]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 10


@pytest.mark.heavy
@needs_torch
def test_classifier_checkpoint_round_trip_and_corruption(classifier: Any, tmp_path: Path) -> None:
    import torch

    from digitvae.train.classifier import ClassifierCheckpoint, ClassifierTrainConfig, load_classifier, save_classifier
    from digitvae.train.quality import features

    path = tmp_path / "classifier.pt"
    data = {"train": {"file": "x", "sha256": "ab" * 32}}
    save_classifier(ClassifierCheckpoint(classifier, ClassifierTrainConfig(epochs=2), data, 0.75, 1.5), path)
    loaded = load_classifier(path)
    assert (loaded.data, loaded.valid_accuracy, loaded.seconds) == (data, 0.75, 1.5)
    assert loaded.train_config.epochs == 2 and loaded.model.config == classifier.config
    probe = np.random.default_rng(0).uniform(size=(3, 28, 28))
    for mine, theirs in zip(features(classifier, probe), features(loaded.model, probe)):
        np.testing.assert_array_equal(mine, theirs)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something-else"}, foreign)
    for bad, message in (
        (truncated, "not a readable"),
        (foreign, "not a digitvae classifier"),
        (tmp_path / "none.pt", "no such"),
    ):
        with pytest.raises(CheckpointError, match=message):
            load_classifier(bad)


@pytest.mark.heavy
@needs_torch
def test_sample_quality_of_the_shipped_model(
    classifier: Any, fixture_digits: dict[str, np.ndarray], vae: DigitVAE
) -> None:
    from digitvae.train.quality import real_quality, sample_quality

    real, reference = real_quality(
        classifier, fixture_digits["valid"], fixture_digits["valid_labels"], fixture_digits["train"]
    )
    result = sample_quality(vae, classifier, reference, n=200, seed=1)
    assert set(result) == KEYS | PER_CLASS and (result["model"], result["n"], result["seed"]) == ("mnist-vae", 200, 1)
    assert result["prior"] == "gaussian_mixture" and len(result["conditional_accuracy"]["per_class"]) == 10
    assert len(result["class_balance"]) == 10 and sum(result["class_balance"]) == pytest.approx(1.0)
    assert 0.5 < result["class_balance_entropy"] <= 1.0
    # Samples convince the classifier less than real digits do (0.42 against 0.46 here), and the
    # blurry ones that N(0, I) gives the same network far less (0.30).
    assert 0.1 <= result["mean_confidence"] < real["mean_confidence"]
    plain = sample_quality(DigitVAE.load(prior=False), classifier, reference, n=200, seed=1)
    assert plain["prior"] == "standard_normal" and "conditional_accuracy" not in plain
    assert (
        plain["mean_confidence"] < real["mean_confidence"] - 0.05
        and plain["mean_confidence"] < result["mean_confidence"]
    )
    assert result == sample_quality(vae, classifier, fixture_digits["valid"], n=200, seed=1)
    # The FID ranks real digits above the model's samples, and those far above noise.
    noise = np.random.default_rng(0).uniform(size=(200, 28, 28))
    assert 0 < real["fid"] < result["fid"] < frechet_distance(feature_stats(features_of(classifier, noise)), reference)
    assert real["classifier_valid_accuracy"] >= 0.6 and (real["train_digits"], real["valid_digits"]) == (300, 100)
    with pytest.raises(InputError, match="at least 10"):
        sample_quality(vae, classifier, reference, n=5)


def features_of(classifier: Any, images: np.ndarray) -> np.ndarray:
    from digitvae.train.quality import features

    return features(classifier, images)[0]


class RealDigits:
    """A stand-in conditional model that returns real digits of the class asked for, plus `offset`."""

    name, num_classes = "real-digits", 10
    prior = Prior(latent_dim=2)  # N(0, I): the stand-in has no learned prior

    def __init__(self, images: np.ndarray, labels: np.ndarray, offset: int) -> None:
        self.by_class = {c: images[labels == c] for c in range(10)}
        self.offset = offset

    def generate(self, n: int, seed: int | None = None, digit: Any = None) -> np.ndarray:
        counts = dict.fromkeys(range(10), 0)
        out = []
        for d in np.asarray(digit):
            pool = self.by_class[(int(d) + self.offset) % 10]
            out.append(pool[counts[int(d)] % len(pool)])
            counts[int(d)] += 1
        return np.stack(out).astype(np.float32) / 255


@pytest.mark.heavy
@needs_torch
def test_conditional_accuracy_counts_the_requested_digit(
    classifier: Any, fixture_digits: dict[str, np.ndarray]
) -> None:
    from digitvae.train.quality import sample_quality

    images, labels = fixture_digits["valid"], fixture_digits["valid_labels"]
    right = sample_quality(RealDigits(images, labels, 0), classifier, images, n=50)  # type: ignore[arg-type]
    wrong = sample_quality(RealDigits(images, labels, 1), classifier, images, n=50)  # type: ignore[arg-type]
    assert set(right) == KEYS | {"conditional_accuracy"}
    per_class = right["conditional_accuracy"]["per_class"]
    assert len(per_class) == 10 and right["conditional_accuracy"]["overall"] == pytest.approx(np.mean(per_class))
    assert right["conditional_accuracy"]["overall"] > 0.6 > 0.2 > wrong["conditional_accuracy"]["overall"]


# ---- the command ----


def run(*args: object) -> Result:
    return CliRunner().invoke(quality, [str(a) for a in args])


@pytest.fixture(scope="module")
def saved_classifier(classifier: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save the fixture classifier as the command would, for the fixture data folder."""
    from digitvae.train.classifier import (
        ClassifierCheckpoint,
        ClassifierTrainConfig,
        describe_labelled,
        save_classifier,
    )
    from digitvae.train.data import load_splits

    train, valid = load_splits(DATA, None, None)
    path = tmp_path_factory.mktemp("classifier") / "fixture.pt"
    data = {"train": describe_labelled(train), "valid": describe_labelled(valid)}
    save_classifier(ClassifierCheckpoint(classifier, ClassifierTrainConfig(epochs=2), data, None), path)
    return path


@pytest.mark.heavy
@needs_torch
def test_quality_command_json_and_write(saved_classifier: Path, tmp_path: Path) -> None:
    model, twin = tmp_path / "copy", tmp_path / "twin"
    for folder in (model, twin):
        shutil.copytree(shipped_models_dir() / "mnist-vae", folder)
    result = run(
        "--data", DATA, "--classifier", saved_classifier, "-m", twin, "-m", model, "--n", 50, "--json", "--write"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["classifier"]["path"] == str(saved_classifier)
    assert report["reference"]["valid_digits"] == 100 and report["reference"]["fid"] > 0
    first, second = report["models"]
    assert set(first) == KEYS | PER_CLASS | {"memorisation", "directory"} and first["n"] == 50
    assert set(first["memorisation"]) == {"samples", "reconstructions", "ratio"}
    # The same model and seed give the same figures, wherever its folder is.
    assert {k: v for k, v in first.items() if k != "directory"} == {k: v for k, v in second.items() if k != "directory"}
    stored = json.loads((model / "model.json").read_text())["metrics"]["sample_quality"]
    assert stored["fid"] == second["fid"] and stored["reference"]["fid"] == report["reference"]["fid"]
    assert stored["classifier"]["data"]["train"]["sha256"] == sha256_file(TRAIN_IMAGES)
    table = run("--data", DATA, "--classifier", saved_classifier, "--n", 20)
    assert table.exit_code == 0 and "FID vs validation digits" in table.stdout and "mnist-vae" in table.stdout


@pytest.mark.heavy
@needs_torch
def test_quality_command_trains_once_then_reuses_its_classifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digitvae.train.classifier as classifier_module
    from digitvae.train.classifier import train_classifier

    # Fewer epochs than the default keep the test quick; the command's caching logic is the same.
    monkeypatch.setattr(classifier_module, "train_classifier", lambda x, y, **_: train_classifier(x, y, epochs=1))
    monkeypatch.chdir(tmp_path)
    first = run("--data", DATA, "--n", 20, "--json")
    assert first.exit_code == 0, first.output
    assert "training the digit classifier on 300 digits" in first.stderr
    cached = list((tmp_path / "runs").glob("classifier-*.pt"))
    assert [p.name for p in cached] == [f"classifier-{sha256_file(TRAIN_IMAGES)[:12]}.pt"]
    again = run("--data", DATA, "--n", 20, "--json")
    assert again.exit_code == 0 and "training" not in again.stderr
    assert json.loads(again.stdout)["models"] == json.loads(first.stdout)["models"]


@pytest.mark.heavy
@needs_torch
def test_quality_command_refuses_other_data_and_missing_labels(saved_classifier: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(DATA / name, other / name)
    shutil.copy(DATA / "t10k-labels-idx1-ubyte.gz", other / "train-labels-idx1-ubyte.gz")
    result = run("--data", other, "--classifier", saved_classifier)
    assert isinstance(result.exception, DataFormatError)
    (other / "train-labels-idx1-ubyte.gz").unlink()
    result = run("--data", other, "--classifier", saved_classifier)
    assert isinstance(result.exception, DataFormatError) and "need labels" in str(result.exception)
    mixed = tmp_path / "mixed"
    shutil.copytree(DATA, mixed)
    shutil.copy(DATA / "t10k-labels-idx1-ubyte.gz", mixed / "train-labels-idx1-ubyte.gz")
    shutil.copy(DATA / "t10k-images-idx3-ubyte.gz", mixed / "train-images-idx3-ubyte.gz")
    result = run("--data", mixed, "--classifier", saved_classifier)
    assert isinstance(result.exception, CheckpointError) and "trained on train-images-idx3-ubyte.gz" in str(
        result.exception
    )


def test_table_shows_conditional_accuracy_only_for_conditional_models() -> None:
    from digitvae.cli.quality import _table

    base = {"fid": 1.0, "mean_confidence": 0.9, "class_balance": [0.1] * 10, "class_balance_entropy": 1.0}
    plain = _table(base, [{**base, "model": "plain"}])
    assert "plain" in plain and "recognised" not in plain and len(plain.splitlines()) == 14
    accuracy = {"per_class": [i / 10 for i in range(10)], "overall": 0.45}
    table = _table(base, [{**base, "model": "plain"}, {**base, "model": "cond", "conditional_accuracy": accuracy}])
    row = next(line for line in table.splitlines() if line.startswith("requested digit recognised"))
    assert row.split()[-3:] == ["-", "-", "45.0%"]
    assert table.splitlines()[-1].split()[-4:] == ["9", "-", "-", "90.0%"]


@pytest.mark.heavy
def test_quality_command_loads_without_torch(tmp_path: Path) -> None:
    code = """
        import sys
        sys.modules["torch"] = None
        from click.testing import CliRunner
        from digitvae.cli.quality import quality
        result = CliRunner().invoke(quality, [])
        print(type(result.exception).__name__, result.exception)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MissingDependencyError") and "[train]" in out.stdout


def test_nearest_distances_and_the_memorisation_ratio() -> None:
    from digitvae.train.quality import memorisation, nearest_distances

    rng = np.random.default_rng(0)
    train = rng.random((60, 28, 28)).astype(np.float32)
    queries = rng.random((25, 28, 28)).astype(np.float32)
    brute = np.sqrt(((queries[:, None] - train[None]) ** 2).sum(axis=(2, 3)).min(axis=1))
    np.testing.assert_allclose(nearest_distances(queries, train, batch=7), brute, rtol=1e-6)
    # Copies of training digits sit at distance 0: a model that memorises scores a ratio of 0.
    copies = memorisation(train[:25], queries, train)
    assert copies["samples"] == pytest.approx(0.0, abs=1e-3) and copies["ratio"] < 0.01
    fresh = memorisation(queries, queries, train)
    assert fresh["ratio"] == pytest.approx(1.0)
