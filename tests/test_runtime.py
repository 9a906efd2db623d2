"""The runtime on the shipped model: shapes, ranges, determinism, quality, input validation."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from digitvae.runtime import DigitVAE, InputError, IntegrityError, ModelError, ModelNotFoundError, ProviderError
from digitvae.runtime.folders.locate import list_shipped_models, shipped_models_dir
from digitvae.runtime.folders.reading import read_manifest

#: Latent size of the shipped default model.
D = read_manifest(shipped_models_dir() / "mnist-vae").latent_dim


def test_shipped_model_is_listed_and_described(vae: DigitVAE) -> None:
    assert "mnist-vae" in list_shipped_models()
    assert vae.name == "mnist-vae"
    assert vae.latent_dim == 32
    assert vae.manifest.preset == "iwae-mix"
    assert vae.providers == ["CPUExecutionProvider"]
    assert vae.manifest.metrics["valid_neg_elbo"] < 120


def test_generate_shape_range_and_seed(vae: DigitVAE) -> None:
    a = vae.generate(16, seed=3)
    assert a.shape == (16, 28, 28) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, vae.generate(16, seed=3))
    assert not np.array_equal(a, vae.generate(16, seed=4))
    # Digits are mostly dark background with a bright stroke, not grey noise.
    assert 0.05 < a.mean() < 0.25
    assert (a > 0.5).mean() > 0.05


def test_generate_equals_decode_of_sampled_latents(vae: DigitVAE) -> None:
    z = vae.sample_latents(5, seed=7)
    assert z.shape == (5, vae.latent_dim) and z.dtype == np.float32
    np.testing.assert_array_equal(vae.decode(z), vae.generate(5, seed=7))


@pytest.mark.parametrize("rows", [1, 5, 4100])
def test_decoder_outputs_are_decoder_onnx_outputs(vae: DigitVAE, rows: int) -> None:
    z = np.random.default_rng(rows).standard_normal((rows, vae.latent_dim), dtype=np.float32)
    logits, image = vae.decoder_outputs(z)
    assert logits.shape == image.shape == (rows, 1, 28, 28) and logits.dtype == image.dtype == np.float32
    plain = ort.InferenceSession(str(vae.model_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for start in range(0, rows, 4096):  # the plain session on the chunks the runtime sends
        part = slice(start, start + 4096)
        expected = plain.run(["logits", "image"], {"z": z[part]})
        np.testing.assert_array_equal(logits[part], expected[0])
        np.testing.assert_array_equal(image[part], expected[1])
    np.testing.assert_array_equal(image[:, 0], vae.decode(z))
    with pytest.raises(InputError, match="not conditional"):
        vae.decoder_outputs(z, labels=np.zeros(rows, np.int64))


def test_encode_returns_mean_and_logvar(vae: DigitVAE, digits: np.ndarray) -> None:
    mean, logvar = vae.encode(digits)
    assert mean.shape == logvar.shape == (100, vae.latent_dim)
    assert mean.dtype == logvar.dtype == np.float32
    # The posterior is narrower than the prior on the dimensions the model uses.
    assert np.median(logvar) < 0


def test_reconstruction_is_close_to_the_input(vae: DigitVAE, digits: np.ndarray) -> None:
    x = digits.astype(np.float32) / 255
    rebuilt = vae.reconstruct(digits)
    assert rebuilt.shape == (100, 28, 28)
    err = np.abs(rebuilt - x).mean(axis=(1, 2))
    # Each reconstruction is nearer its own digit than to any other digit of the batch.
    cross = np.abs(rebuilt[:, None] - x[None]).mean(axis=(2, 3))
    assert (cross.argmin(axis=1) == np.arange(100)).mean() > 0.95
    assert err.mean() < 0.06


@pytest.mark.parametrize("layout", ["n28x28", "n1x28x28", "n784"])
@pytest.mark.parametrize("kind", ["uint8", "float32", "float64"])
def test_every_accepted_image_layout_gives_the_same_encoding(
    vae: DigitVAE, digits: np.ndarray, layout: str, kind: str
) -> None:
    x = digits[:8]
    reference = vae.encode(x)[0]
    array = x if kind == "uint8" else (x / 255.0).astype(kind)
    shaped = {"n28x28": array, "n1x28x28": array[:, None], "n784": array.reshape(8, 784)}[layout]
    np.testing.assert_allclose(vae.encode(shaped)[0], reference, atol=1e-5)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((28, 28), np.uint8), "images[None]"),
        (np.zeros((2, 28, 27), np.uint8), "shaped"),
        (np.zeros((2, 3, 28, 28), np.float32), "shaped"),
        (np.zeros((0, 28, 28), np.uint8), "empty"),
        (np.zeros((2, 28, 28), np.int64), "dtype"),
        (np.zeros((2, 28, 28), bool), "dtype"),
        (np.full((2, 28, 28), 1.5, np.float32), "[0, 1]"),
        (np.full((2, 28, 28), -0.1, np.float32), "[0, 1]"),
        (np.full((2, 28, 28), np.nan, np.float32), "NaN"),
        (np.full((2, 28, 28), np.inf, np.float64), "NaN"),
        ("not an array", "shaped"),
        ([[object()]], "numeric"),
    ],
)
def test_bad_images_are_refused(vae: DigitVAE, images: object, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        vae.encode(images)


@pytest.mark.parametrize(
    ("z", "message"),
    [
        (np.zeros(D, np.float32), r"z\[None\]"),
        (np.zeros((3, D - 1), np.float32), rf"\[N,{D}\]"),
        (np.zeros((0, D), np.float32), "empty"),
        (np.full((2, D), np.nan, np.float32), "NaN"),
        (np.full((2, D), 1e39, np.float64), "NaN or infinite"),
        (np.zeros((2, D), complex), "float"),
    ],
)
def test_bad_latents_are_refused(vae: DigitVAE, z: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        vae.decode(z)


@pytest.mark.parametrize("n", [0, -1, 1_000_001, 2.5, "3", True, None])
def test_bad_counts_are_refused(vae: DigitVAE, n: object) -> None:
    with pytest.raises(InputError, match="n must be"):
        vae.generate(n)  # type: ignore[arg-type]


def test_large_batches_are_processed_in_chunks(vae: DigitVAE) -> None:
    z = vae.sample_latents(5000, seed=0)
    whole = vae.decode(z)
    np.testing.assert_allclose(whole[4096:4100], vae.decode(z[4096:4100]), atol=1e-6)


def _copy_shipped(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(shipped_models_dir() / "mnist-vae", target)
    return target


def test_load_by_path_and_by_manifest_path(tmp_path: Path) -> None:
    model = _copy_shipped(tmp_path)
    assert DigitVAE.load(model).latent_dim == D
    assert DigitVAE.load(model / "model.json").name == "mnist-vae"


def test_flipped_weight_byte_is_refused(tmp_path: Path) -> None:
    model = _copy_shipped(tmp_path)
    data = bytearray((model / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (model / "decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="decoder.onnx.*sha256"):
        DigitVAE.load(model)


def test_missing_model_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="mnist-vae"):
        DigitVAE.load("no-such-model")
    model = _copy_shipped(tmp_path)
    (model / "encoder.onnx").unlink()
    with pytest.raises(ModelError, match="encoder.onnx: missing"):
        DigitVAE.load(model)
    (model / "model.json").unlink()
    with pytest.raises(ModelError, match="no model.json"):
        DigitVAE.load(model)


def test_encoder_decoder_swap_is_refused(tmp_path: Path) -> None:
    model = _copy_shipped(tmp_path)
    text = (model / "model.json").read_text()
    text = (
        text.replace('"encoder.onnx"', '"SWAP"')
        .replace('"decoder.onnx"', '"encoder.onnx"')
        .replace('"SWAP"', '"decoder.onnx"')
    )
    # Keep the hashes consistent with the swapped paths, so only the signature check can catch it.
    import json

    data = json.loads(text)
    files = data["variants"]["fp32"]
    files["encoder"]["sha256"], files["decoder"]["sha256"] = files["decoder"]["sha256"], files["encoder"]["sha256"]
    (model / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="not a digitvae model"):
        DigitVAE.load(model)


def test_latent_size_mismatch_is_refused(tmp_path: Path) -> None:
    model = _copy_shipped(tmp_path)
    manifest = json.loads((model / "model.json").read_text())
    manifest["latent_dim"] = 16
    (model / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="latent_dim 16"):
        DigitVAE.load(model)


def test_unavailable_provider_warns_or_fails_when_strict(caplog: pytest.LogCaptureFixture) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    with caplog.at_level(logging.WARNING, logger="digitvae"):
        vae = DigitVAE.load(providers=["cuda", "cpu"])
    assert vae.providers == ["CPUExecutionProvider"]
    assert any("CUDAExecutionProvider" in r.getMessage() for r in caplog.records)
    with pytest.raises(ProviderError, match="CUDAExecutionProvider is not available"):
        DigitVAE.load(providers="cuda", strict=True)


def test_provider_names_short_full_and_unknown() -> None:
    assert DigitVAE.load(providers="CPU").providers == ["CPUExecutionProvider"]
    assert DigitVAE.load(providers=["CPUExecutionProvider"], strict=True).providers == ["CPUExecutionProvider"]
    assert DigitVAE.load(providers=[("cpu", {})]).providers == ["CPUExecutionProvider"]
    with pytest.raises(ProviderError, match="unknown execution provider 'gpu'"):
        DigitVAE.load(providers="gpu")
    with pytest.raises(ProviderError, match="at least one"):
        DigitVAE.load(providers=[])


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_provider_that_fails_to_start_is_detected(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime drops a provider that cannot start without raising: we must notice."""
    from digitvae.runtime.inference import providers

    # Pretend CUDA is available so it is handed to onnxruntime, which will then not activate it.
    real = providers.available_providers
    monkeypatch.setattr(providers, "available_providers", lambda: [*real(), "CUDAExecutionProvider"])
    if "CUDAExecutionProvider" in real():
        pytest.skip("CUDA is really available here")
    try:
        with caplog.at_level(logging.WARNING, logger="digitvae"):
            vae = DigitVAE.load(providers="cuda")
    except ModelError:
        pytest.skip("this onnxruntime refuses unavailable providers outright")
    assert "CUDAExecutionProvider" not in vae.providers
    assert any("failed to start" in r.getMessage() for r in caplog.records)
    with pytest.raises(ProviderError, match="failed to start"):
        DigitVAE.load(providers="cuda", strict=True)


def test_threads_option(vae: DigitVAE) -> None:
    one = DigitVAE.load(threads=1)
    np.testing.assert_array_equal(one.generate(4, seed=1), vae.generate(4, seed=1))
    with pytest.raises(InputError, match="threads"):
        DigitVAE.load(threads=-2)
