"""The learned latent prior: its ONNX graphs, the runtime's use of it, fitting it, and old folders."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from mnist_files import TRAIN_IMAGES
from train_extra import needs_torch

from digitvae.runtime import DigitVAE
from digitvae.runtime.errors import InputError, IntegrityError, ModelError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.manifest import PRIOR_ROLES

HAVE_FIT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "sklearn"))
needs_fit = pytest.mark.skipif(not HAVE_FIT, reason="needs the [prior] extra (onnx, scikit-learn)")
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the [prior] extra (onnx)")
TRAIN_LABELS = TRAIN_IMAGES.with_name("train-labels-idx1-ubyte.gz")


def _session(model: object) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]


def _mixture(seed: int = 0, d: int = 6):
    from digitvae.export.prior_graph import Mixture

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((4, d, d)) * 0.3
    covariances = a @ a.transpose(0, 2, 1) + 0.05 * np.eye(d)
    weights = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.75, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]])
    return Mixture(weights, rng.standard_normal((4, d)) * 2, covariances)


@pytest.mark.heavy
@needs_fit
def test_density_graph_matches_scikit_learn() -> None:
    from sklearn.mixture import GaussianMixture

    from digitvae.export.prior_graph import Mixture, density_graph

    rng = np.random.default_rng(0)
    points = np.concatenate([rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5)) + 3 * i for i in range(3)])
    gmm = GaussianMixture(3, covariance_type="full", random_state=0).fit(points)
    mixture = Mixture(gmm.weights_[None], gmm.means_, gmm.covariances_)
    z = rng.standard_normal((400, 5)).astype(np.float32) * 4
    found = _session(density_graph(mixture, opset=18, ir_version=10)).run(
        None, {"z": z, "label": np.full(400, -1, np.int64)}
    )[0]
    np.testing.assert_allclose(found, gmm.score_samples(z.astype(np.float64)), rtol=1e-5, atol=1e-3)


@needs_fit
@pytest.mark.parametrize("opset", [13, 17, 18])
def test_sampler_picks_components_by_cumulative_weight_and_applies_cholesky(opset: int) -> None:
    from digitvae.export.prior_graph import sampler_graph

    mixture = _mixture()
    session = _session(sampler_graph(mixture, opset=opset, ir_version=8))
    rng = np.random.default_rng(1)
    n = 3000
    noise = rng.standard_normal((n, 6), dtype=np.float32)
    uniform = rng.random(n, dtype=np.float32)
    chol = mixture.cholesky()
    for label in (-1, 0, 1):
        z = session.run(None, {"noise": noise, "uniform": uniform, "label": np.full(n, label, np.int64)})[0]
        cumulative = np.cumsum(mixture.weights[label + 1])
        component = np.minimum((uniform[:, None] >= cumulative[None]).sum(axis=1), 3)
        expected = mixture.means[component] + np.einsum("nij,nj->ni", chol[component], noise)
        np.testing.assert_allclose(z, expected, atol=1e-5)
        assert set(np.unique(component)) == set(np.flatnonzero(mixture.weights[label + 1]))


@needs_fit
def test_sampler_never_picks_a_component_the_class_lacks() -> None:
    from digitvae.export.prior_graph import sampler_graph

    mixture = _mixture()
    session = _session(sampler_graph(mixture, opset=18, ir_version=10))
    edges = np.array([0.0, 0.25, 0.7499999, 0.75, np.nextafter(np.float32(1), np.float32(0))], np.float32)
    z = session.run(None, {"noise": np.zeros((5, 6), np.float32), "uniform": edges, "label": np.zeros(5, np.int64)})[0]
    # Class 0 has components 0 and 1 only: with zero noise each code is one of their means.
    distances = np.abs(z[:, None, :] - mixture.means[None].astype(np.float32)).max(axis=2)
    assert set(distances.argmin(axis=1)) <= {0, 1}
    np.testing.assert_allclose(distances.min(axis=1), 0, atol=1e-6)


@needs_fit
def test_density_is_per_class_and_stays_finite_far_away() -> None:
    from digitvae.export.prior_graph import density_graph

    mixture = _mixture()
    session = _session(density_graph(mixture, opset=18, ir_version=10))
    z = np.concatenate([np.random.default_rng(2).standard_normal((50, 6)), np.full((1, 6), 1e3)]).astype(np.float32)
    for label in (-1, 0, 1):
        found = session.run(None, {"z": z, "label": np.full(len(z), label, np.int64)})[0]
        assert np.isfinite(found).all()
        np.testing.assert_allclose(found, mixture.log_prob(z, label + 1), rtol=1e-5, atol=1e-3)


@needs_onnx
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_generator_is_the_sampler_feeding_the_decoder(vae: DigitVAE, tmp_path: Path, variant: str) -> None:
    from digitvae.cli.main import cli

    out = tmp_path / "generator.onnx"
    result = CliRunner().invoke(cli, ["export-generator", "mnist-vae", "--variant", variant, "-o", str(out)])
    assert result.exit_code == 0, result.output
    files = vae.manifest.files(variant)
    sessions = {role: ort.InferenceSession(str(vae.model_dir / files[role].path)) for role in ("prior", "decoder")}
    generator = ort.InferenceSession(str(out))
    rng = np.random.default_rng(3)
    feeds = {
        "noise": rng.standard_normal((7, vae.latent_dim), dtype=np.float32),
        "uniform": rng.random(7, dtype=np.float32),
        "label": np.array([-1, 0, 1, 2, 7, 9, -1], np.int64),
    }
    z = sessions["prior"].run(["z"], feeds)[0]
    image = sessions["decoder"].run(["image"], {"z": z})[0]
    z2, image2 = generator.run(["z", "image"], feeds)
    np.testing.assert_array_equal(z, z2)
    np.testing.assert_allclose(image, image2, atol=1e-6)


@needs_onnx
def test_a_model_folder_stores_no_generator_and_an_old_one_still_loads(tmp_path: Path) -> None:
    """The runtime never loads the composed graph: folders leave it out, and older manifests listing one still load."""
    from digitvae.cli.main import cli

    for folder in shipped_models_dir().iterdir():
        if folder.is_dir() and (folder / "model.json").exists():
            assert not list(folder.glob("generator*.onnx")), folder
    model = tmp_path / "old"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    assert CliRunner().invoke(cli, ["export-generator", str(model), "-o", str(model / "generator.onnx")]).exit_code == 0
    data = json.loads((model / "model.json").read_text())
    data["variants"]["fp32"]["generator"] = {"path": "generator.onnx", "sha256": "0" * 64}
    (model / "model.json").write_text(json.dumps(data))
    np.testing.assert_array_equal(DigitVAE.load(model).generate(3, seed=1), DigitVAE.load().generate(3, seed=1))


@needs_onnx
@pytest.mark.parametrize(
    "args, match",
    [
        (["mnist-vae", "-o", "{tmp}/g.png"], "ending in .onnx"),
        (["mnist-vae", "--variant", "int4", "-o", "{tmp}/g.onnx"], "no variant 'int4'"),
        (["no-such-model", "-o", "{tmp}/g.onnx"], "no-such-model"),
        (["{plain}", "-o", "{tmp}/g.onnx"], "has no learned prior"),
    ],
)
def test_export_generator_refuses_bad_input_and_writes_nothing(tmp_path: Path, args: list[str], match: str) -> None:
    from digitvae.cli.main import cli

    plain = _strip_prior(shipped_models_dir() / "mnist-vae", tmp_path / "plain")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [a.format(tmp=out_dir, plain=plain) for a in args]
    result = CliRunner().invoke(cli, ["export-generator", *argv])
    assert result.exit_code != 0
    assert match in result.output and "Traceback" not in result.output
    assert result.output.count("\n") == 1
    assert not list(out_dir.iterdir())


def test_python_digits_equal_the_contract_run_by_hand(vae: DigitVAE) -> None:
    """Any language that draws noise, then uniform, and runs prior.onnx + decoder.onnx gets the same digits."""
    rng = np.random.default_rng(11)
    noise = rng.standard_normal((5, vae.latent_dim), dtype=np.float32)
    uniform = rng.random(5, dtype=np.float32)
    prior = ort.InferenceSession(str(vae.model_dir / "prior.onnx"))
    decoder = ort.InferenceSession(str(vae.model_dir / "decoder.onnx"))
    z = prior.run(["z"], {"noise": noise, "uniform": uniform, "label": np.full(5, 4, np.int64)})[0]
    by_hand = decoder.run(["image"], {"z": z})[0].reshape(5, 28, 28)
    np.testing.assert_allclose(vae.generate(5, seed=11, digit=4), by_hand, atol=1e-6)
    np.testing.assert_array_equal(vae.sample_latents(5, seed=11, digit=4), z)


def test_every_shipped_model_has_a_learned_prior() -> None:
    for name in ("mnist-vae", "mnist-vae-geron", "mnist-vae-2d", "mnist-cvae"):
        loaded = DigitVAE.load(name)
        assert loaded.prior.kind == "gaussian_mixture"
        assert loaded.prior.num_classes == 10
        for variant in loaded.manifest.variants:
            assert set(PRIOR_ROLES) <= set(loaded.manifest.files(variant))


def test_generate_asks_a_per_class_prior_for_a_digit(vae: DigitVAE) -> None:
    assert vae.num_classes == 0 and vae.prior.num_classes == 10
    sevens = vae.generate(40, seed=0, digit=7)
    assert sevens.shape == (40, 28, 28)
    assert not np.allclose(sevens, vae.generate(40, seed=0))
    mixed = vae.generate(10, seed=0, digit=np.arange(10))
    assert mixed.shape == (10, 28, 28)
    for bad in (10, -1, [1, 2]):
        with pytest.raises(InputError, match="digit"):
            vae.generate(10, seed=0, digit=bad)


def test_generate_is_decode_of_sample_latents(vae: DigitVAE) -> None:
    for n in (1, 16, 17, 300):
        np.testing.assert_allclose(vae.generate(n, seed=n), vae.decode(vae.sample_latents(n, seed=n)), atol=1e-6)


def test_standard_prior_is_available_and_changes_the_likelihood(vae: DigitVAE, digits: np.ndarray) -> None:
    plain = DigitVAE.load(prior=False)
    assert plain.prior.kind == "standard_normal" and plain.prior.num_classes == 0
    z = np.random.default_rng(5).standard_normal((4, plain.latent_dim), dtype=np.float32)
    np.testing.assert_array_equal(plain.sample_latents(4, seed=5), z)
    learned, standard = vae.iw_nll(digits[:50], k=50), plain.iw_nll(digits[:50], k=50)
    # The learned prior fits where the encoder puts digits: held-out digits become more likely.
    assert learned.mean() < standard.mean() - 1
    with pytest.raises(InputError, match="cannot be asked for a digit"):
        plain.generate(3, digit=1)


def test_iw_nll_uses_the_prior_density(vae: DigitVAE, digits: np.ndarray) -> None:
    from digitvae.runtime.inference import likelihood as lk

    x = digits[:6]
    mean, logvar = vae.encode(x)
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((6, 30, vae.latent_dim), dtype=np.float32)
    z = mean[:, None, :] + np.exp(0.5 * logvar)[:, None, :] * eps
    density = ort.InferenceSession(str(vae.model_dir / "prior_density.onnx"))
    log_pz = density.run(None, {"z": z.reshape(-1, vae.latent_dim), "label": np.full(180, -1, np.int64)})[0].reshape(
        6, 30
    )
    decoder = ort.InferenceSession(str(vae.model_dir / "decoder.onnx"))
    logits = decoder.run(["logits"], {"z": z.reshape(-1, vae.latent_dim)})[0].reshape(6, 30, -1)
    flat = (x.reshape(6, 1, -1) / np.float32(255)).astype(np.float32)
    log_w = lk.bernoulli_log_prob(logits, flat) + log_pz - lk.gaussian_log_prob_of_noise(eps, logvar[:, None, :])
    np.testing.assert_allclose(vae.iw_nll(x, k=30, seed=0), -lk.log_mean_exp(log_w, axis=1), rtol=1e-5)


def _strip_prior(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    data = json.loads((dst / "model.json").read_text())
    data["prior"] = "standard_normal"
    for files in data["variants"].values():
        for role in PRIOR_ROLES:
            (dst / files.pop(role)["path"]).unlink(missing_ok=True)
    (dst / "model.json").write_text(json.dumps(data))
    return dst


def test_a_folder_without_a_prior_keeps_n01(tmp_path: Path, digits: np.ndarray) -> None:
    old = DigitVAE.load(_strip_prior(shipped_models_dir() / "mnist-vae", tmp_path / "old"))
    assert old.prior.kind == "standard_normal"
    np.testing.assert_allclose(old.generate(5, seed=2), DigitVAE.load(prior=False).generate(5, seed=2))
    with pytest.raises(InputError, match="digit"):
        old.generate(2, digit=3)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda d: d["variants"]["fp32"].pop("prior_density"), ModelError, "missing required field 'prior_density'"),
        (lambda d: d["prior"].update(kind="flow"), ModelError, "kind 'flow' is not supported"),
        (lambda d: d["prior"].update(classes=1), ModelError, "classes must be 0"),
        (lambda d: d.update(prior="vampprior"), ModelError, "must be 'standard_normal' or an object"),
    ],
)
def test_malformed_prior_entries_are_refused(tmp_path: Path, change, error, match) -> None:
    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    data = json.loads((model / "model.json").read_text())
    change(data)
    (model / "model.json").write_text(json.dumps(data))
    with pytest.raises(error, match=match):
        DigitVAE.load(model)


def test_a_tampered_prior_file_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    blob = bytearray((model / "prior.onnx").read_bytes())
    blob[-10] ^= 1
    (model / "prior.onnx").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="prior.onnx"):
        DigitVAE.load(model)


def test_a_prior_with_the_wrong_signature_is_refused(tmp_path: Path) -> None:
    import hashlib

    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    # The density graph where the sampler belongs: loads, hashes fine, but breaks the contract.
    shutil.copy(model / "prior_density.onnx", model / "prior.onnx")
    data = json.loads((model / "model.json").read_text())
    data["variants"]["fp32"]["prior"]["sha256"] = hashlib.sha256((model / "prior.onnx").read_bytes()).hexdigest()
    (model / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="prior has inputs"):
        DigitVAE.load(model)


@pytest.mark.heavy
@needs_torch
def test_fit_writes_the_prior_atomically_and_records_its_data(tiny_model: Path, tmp_path: Path) -> None:
    from digitvae.export.prior import PriorConfig, fit_model_prior

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    manifest = fit_model_prior(model, TRAIN_IMAGES, None, PriorConfig(components=3, samples=2))
    assert manifest.prior is not None and manifest.prior["classes"] == 0 and manifest.prior["components"] == 3
    assert manifest.prior["fit"]["data"]["file"] == TRAIN_IMAGES.name and "labels" not in manifest.prior["fit"]
    vae = DigitVAE.load(model)
    with pytest.raises(InputError, match="digit"):
        vae.generate(2, digit=1)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    bad_labels = tmp_path / "labels.npy"
    bad_labels.write_bytes(b"not an idx file")
    with pytest.raises(Exception) as info:
        fit_model_prior(model, TRAIN_IMAGES, bad_labels, PriorConfig())
    assert "labels.npy" in str(info.value)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.heavy
@needs_torch
def test_export_fits_a_per_class_prior_whose_likelihood_agrees_with_torch(tiny_run: Path, tiny_model: Path) -> None:
    from digitvae.export.prior import PriorConfig, fit_prior
    from digitvae.runtime.digits.idx import read_mnist_images, read_mnist_labels
    from digitvae.train.checkpoint import load_checkpoint
    from digitvae.train.likelihood import iw_nll
    from digitvae.train.model import VAE

    vae = DigitVAE.load(tiny_model)
    assert vae.prior.num_classes == 10
    assert vae.manifest.prior["fit"]["labels"]["file"] == TRAIN_LABELS.name
    assert vae.generate(3, seed=0, digit=2).shape == (3, 28, 28)
    # Fitting is deterministic: the same mixture, fit again here, is the oracle for the ONNX density.
    images, labels = read_mnist_images(TRAIN_IMAGES), read_mnist_labels(TRAIN_LABELS)
    mixture = fit_prior(DigitVAE.load(tiny_model, prior=False), images, labels, PriorConfig())
    ckpt = load_checkpoint(tiny_run / "best.pt")
    model = VAE(ckpt.model_config)
    model.load_state_dict(ckpt.model_state)
    digits = read_mnist_images(TRAIN_IMAGES.with_name("t10k-images-idx3-ubyte.gz"))[:40]
    ours = vae.iw_nll(digits, 20, seed=3)
    theirs = iw_nll(model, digits, 20, seed=3, log_prior=mixture.log_prob)
    np.testing.assert_allclose(ours, theirs, atol=0.05)


@pytest.mark.heavy
@needs_torch
def test_prior_fit_command_and_generate_digit(tiny_model: Path, tmp_path: Path) -> None:
    from helpers import assert_clean_failure, invoke, ok

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    out = ok(invoke("prior", "fit", model, "--data", TRAIN_IMAGES, "--components", 2, "--samples", 3, "--threads", 1))
    assert "20-component prior (10 classes)" in out.output
    data = json.loads((model / "model.json").read_text())
    assert data["prior"]["fit"]["components"] == 2 and data["prior"]["fit"]["samples"] == 3
    ok(invoke("generate", "--model", model, "-n", 4, "--digit", 3, "-o", tmp_path / "threes.png"))
    ok(invoke("prior", "fit", model, "--data", TRAIN_IMAGES, "--no-labels", "--components", 3))
    assert json.loads((model / "model.json").read_text())["prior"]["classes"] == 0
    assert_clean_failure(invoke("generate", "--model", model, "-n", 4, "--digit", 3, "-o", tmp_path / "x.png"), "digit")
    assert not (tmp_path / "x.png").exists()
    labels_of_other_digits = TRAIN_IMAGES.with_name("t10k-labels-idx1-ubyte.gz")
    before = (model / "model.json").read_bytes()
    assert_clean_failure(
        invoke("prior", "fit", model, "--data", TRAIN_IMAGES, "--labels", labels_of_other_digits),
        "100 labels for 300 digits",
    )
    assert (model / "model.json").read_bytes() == before
    assert_clean_failure(invoke("prior", "fit", model, "--data", tmp_path / "none.gz"), "none.gz")
    text = ok(invoke("info", "--model", model)).output
    assert "gaussian_mixture, 3 components, no classes" in text


@pytest.mark.heavy
@needs_torch
def test_export_prior_options(tiny_run: Path, tmp_path: Path) -> None:
    from helpers import assert_clean_failure, invoke, ok

    ok(invoke("export", tiny_run, "-o", tmp_path / "plain", "--no-prior"))
    assert json.loads((tmp_path / "plain" / "model.json").read_text())["prior"] == "standard_normal"
    assert not (tmp_path / "plain" / "prior.onnx").exists()
    ok(
        invoke(
            "export",
            tiny_run,
            "-o",
            tmp_path / "other",
            "--prior-data",
            TRAIN_IMAGES.with_name("t10k-images-idx3-ubyte.gz"),
        )
    )
    fit = json.loads((tmp_path / "other" / "model.json").read_text())["prior"]["fit"]
    assert fit["data"]["file"] == "t10k-images-idx3-ubyte.gz" and fit["labels"]["file"] == "t10k-labels-idx1-ubyte.gz"
    assert_clean_failure(
        invoke("export", tiny_run, "-o", tmp_path / "x", "--no-prior", "--prior-data", TRAIN_IMAGES),
        "exclude each other",
    )
    assert not (tmp_path / "x").exists()


@pytest.mark.heavy
@needs_torch
def test_export_without_the_training_digits_says_what_to_do(tiny_run: Path, tmp_path: Path) -> None:
    from digitvae.export.onnx import export_checkpoint
    from digitvae.runtime.errors import ExportError
    from digitvae.train.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_run / "best.pt")
    moved = tmp_path / "moved.pt"
    from dataclasses import replace

    save_checkpoint(
        replace(ckpt, data={**ckpt.data, "train": {**ckpt.data["train"], "path": str(tmp_path / "gone.gz")}}), moved
    )
    with pytest.raises(ExportError, match="--prior-data FILE .*--no-prior"):
        export_checkpoint(moved, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_generate_command_each_digit_and_standard_prior(vae: DigitVAE, tmp_path: Path) -> None:
    from helpers import assert_clean_failure, invoke, ok

    ok(invoke("generate", "-n", 20, "--each-digit", "--seed", 3, "-o", tmp_path / "each.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "each.npy"), vae.generate(20, seed=3, digit=np.arange(20) % 10))
    ok(invoke("generate", "-n", 5, "--standard-prior", "--seed", 3, "-o", tmp_path / "plain.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), DigitVAE.load(prior=False).generate(5, seed=3))
    assert_clean_failure(invoke("generate", "-n", 5, "--each-digit", "--digit", 3, "-o", tmp_path / "x.npy"), "exclude")
    assert_clean_failure(
        invoke("generate", "-n", 5, "--standard-prior", "--digit", 3, "-o", tmp_path / "x.npy"), "digit"
    )
    assert not (tmp_path / "x.npy").exists()


@needs_fit
def test_a_class_without_digits_is_refused(vae: DigitVAE, digits: np.ndarray) -> None:
    from digitvae.export.prior import PriorConfig, fit_prior

    labels = np.arange(len(digits)) % 10
    labels[labels == 4] = 5  # no fours at all
    with pytest.raises(InputError, match="too few of class 4"):
        fit_prior(vae, digits, labels, PriorConfig(samples=1))


def test_unseeded_small_batches_decode_codes_drawn_a_block_ahead() -> None:
    from digitvae.runtime.inference.prior import ANY_CLASS, BlockPool

    vae = DigitVAE.load()
    vae._draws.unseeded.rng = np.random.default_rng(42)  # the generator an unseeded call would seed from the OS
    firsts = [vae.generate(1), vae.generate(2), vae.generate(1, digit=7)]
    rng = np.random.default_rng(42)
    noise, uniform = vae.prior.draw(rng, BlockPool.BLOCK)
    block = vae.prior.sample(noise, uniform, np.full(BlockPool.BLOCK, ANY_CLASS, np.int64))
    np.testing.assert_allclose(firsts[0], vae.decode(block[:1]), atol=1e-6)
    np.testing.assert_allclose(firsts[1], vae.decode(block[1:3]), atol=1e-6)
    # Each class has a block of its own, drawn when first asked for.
    noise, uniform = vae.prior.draw(rng, BlockPool.BLOCK)
    sevens = vae.prior.sample(noise, uniform, np.full(BlockPool.BLOCK, 7, np.int64))
    np.testing.assert_allclose(firsts[2], vae.decode(sevens[:1]), atol=1e-6)
    # A block is used up in order and replaced; no code is handed out twice.
    many = np.concatenate([vae.generate(16) for _ in range(80)])
    assert len(np.unique(many.reshape(len(many), -1), axis=0)) == len(many)


@pytest.mark.heavy
@needs_torch
def test_rewriting_a_model_folder_keeps_fields_it_does_not_model(tiny_model: Path, tmp_path: Path) -> None:
    from digitvae.export.prior import PriorConfig, fit_model_prior
    from digitvae.runtime.folders.writing import update_metrics

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    data = json.loads((model / "model.json").read_text())
    data["x-origin"] = {"team": "digits"}
    data["metrics"]["x-note"] = "kept"
    (model / "model.json").write_text(json.dumps(data))
    fit_model_prior(model, TRAIN_IMAGES, None, PriorConfig(components=2, samples=1))
    update_metrics(model, {"likelihood": {"fp32": {"iw_nll": 1.0}}}, merge="likelihood")
    after = json.loads((model / "model.json").read_text())
    assert after["x-origin"] == {"team": "digits"} and after["metrics"]["x-note"] == "kept"
    assert after["metrics"]["likelihood"]["fp32"] == {"iw_nll": 1.0}
