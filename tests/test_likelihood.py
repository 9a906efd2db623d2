"""Likelihood from the ONNX files alone: -ELBO and the importance-weighted bound."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from digitvae.runtime import DigitVAE, InputError
from digitvae.runtime.inference import likelihood as lk


def test_bernoulli_log_prob_matches_the_textbook_formula() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(3, 784)).astype(np.float32)
    x = rng.uniform(size=(3, 784)).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = (x * np.log(p) + (1 - x) * np.log1p(-p)).sum(axis=1)
    np.testing.assert_allclose(lk.bernoulli_log_prob(logits, x), expected, rtol=1e-5)


def test_bernoulli_log_prob_stays_finite_for_extreme_logits() -> None:
    logits = np.array([[-500.0, 500.0, 0.0]], dtype=np.float32)
    x = np.array([[1.0, 0.0, 0.5]], dtype=np.float32)
    value = lk.bernoulli_log_prob(logits, x)
    assert np.isfinite(value).all()
    np.testing.assert_allclose(value, [-1000 - np.log(2)], rtol=1e-6)


def test_log_mean_exp_is_stable_and_exact() -> None:
    w = np.array([[-1000.0, -1001.0, -1002.0], [0.0, 0.0, 0.0]])
    expected = -1000 + np.log(np.mean(np.exp([0.0, -1.0, -2.0])))
    np.testing.assert_allclose(lk.log_mean_exp(w), [expected, 0.0])


def test_gaussian_terms_match_scipy_free_reference() -> None:
    eps = np.array([[0.5, -1.0]])
    logvar = np.array([[np.log(4.0), 0.0]])
    # z - mean = sigma * eps, so the density is N(1.0; 0, 4) * N(-1.0; 0, 1).
    expected = -0.5 * (1.0 / 4 + np.log(2 * np.pi * 4)) - 0.5 * (1.0 + np.log(2 * np.pi))
    np.testing.assert_allclose(lk.gaussian_log_prob_of_noise(eps, logvar), [expected])
    np.testing.assert_allclose(lk.standard_normal_log_prob(np.zeros((1, 3))), [-1.5 * np.log(2 * np.pi)])
    np.testing.assert_allclose(lk.kl_to_standard_normal(np.zeros((1, 4)), np.zeros((1, 4))), [0.0])


def test_elbo_is_per_digit_deterministic_and_plausible(vae: DigitVAE, digits: np.ndarray) -> None:
    elbo = vae.elbo(digits)
    assert elbo.shape == (100,) and elbo.dtype == np.float64
    assert (elbo < 0).all()
    assert 60 < -elbo.mean() < 160
    np.testing.assert_array_equal(elbo, vae.elbo(digits))
    assert not np.array_equal(elbo, vae.elbo(digits, seed=1))
    # More samples average the same expectation: the means agree, the spread shrinks.
    many = vae.elbo(digits, samples=20)
    assert abs(many.mean() - elbo.mean()) < 2


@pytest.mark.heavy
def test_importance_weighting_tightens_the_bound(vae: DigitVAE, digits: np.ndarray) -> None:
    one = vae.iw_nll(digits, k=1)
    tight = vae.iw_nll(digits, k=100)
    assert tight.shape == (100,) and np.isfinite(tight).all()
    assert tight.mean() < one.mean() - 1
    assert tight.mean() < -vae.elbo(digits, samples=10).mean()
    # k=1 is a one-sample estimate of -ELBO.
    assert abs(one.mean() + vae.elbo(digits, samples=10).mean()) < 3


@pytest.mark.heavy
def test_likelihood_is_independent_of_batching(vae: DigitVAE, digits: np.ndarray) -> None:
    whole = vae.iw_nll(digits[:30], k=300, seed=5)
    assert whole.shape == (30,)
    # k=300 puts 13 digits in a chunk; the first digits' values must not depend on the rest.
    np.testing.assert_allclose(vae.iw_nll(digits[:13], k=300, seed=5), whole[:13], rtol=1e-12)


def test_noise_is_far_less_likely_than_digits(vae: DigitVAE, digits: np.ndarray) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    assert vae.iw_nll(noise, k=20).min() > 2 * vae.iw_nll(digits, k=20).max()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sample_counts_are_refused(vae: DigitVAE, digits: np.ndarray, bad: object) -> None:
    with pytest.raises(InputError, match="k must be"):
        vae.iw_nll(digits[:2], k=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="samples must be"):
        vae.elbo(digits[:2], samples=bad)  # type: ignore[arg-type]


def test_unconditional_model_refuses_labels_and_digits(vae: DigitVAE, digits: np.ndarray) -> None:
    assert vae.num_classes == 0
    with pytest.raises(InputError, match="not conditional"):
        DigitVAE.load(prior=False).generate(3, digit=7)  # the learned prior has classes; N(0, I) has none
    with pytest.raises(InputError, match="not conditional"):
        vae.elbo(digits[:2], labels=[1, 2])
    with pytest.raises(InputError, match="not conditional"):
        vae.reconstruct(digits[:2], labels=[1, 2])


@pytest.mark.heavy
def test_progress_is_told_the_digits_done_batch_by_batch(vae: DigitVAE, digits: np.ndarray) -> None:
    calls: list[int] = []
    vae.iw_nll(digits[:50], k=200, progress=calls.append)
    assert calls == [20, 40, 50]  # 4,096 rows a batch: 20 digits of 200 samples
    calls.clear()
    vae.elbo(digits[:7], progress=calls.append)
    assert calls == [7]


@pytest.mark.heavy
def test_many_samples_go_through_in_chunks_with_the_same_result(vae: DigitVAE, digits: np.ndarray) -> None:
    import tracemalloc

    x = digits[:1]
    k = 10_000  # more than the 4,096 rows a decoder call takes
    mean, logvar = vae.encode(x)
    eps = np.random.default_rng(7).standard_normal((1, k, vae.latent_dim), dtype=np.float32)
    z = mean[:, None, :] + np.exp(0.5 * logvar)[:, None, :] * eps
    decoder = ort.InferenceSession(str(vae.model_dir / "decoder.onnx"))
    logits = decoder.run(["logits"], {"z": z[0]})[0].reshape(1, k, -1)
    flat = (x.reshape(1, 1, -1) / np.float32(255)).astype(np.float32)
    log_w = (
        lk.bernoulli_log_prob(logits, flat)
        + vae.prior.log_prob(z)
        - lk.gaussian_log_prob_of_noise(eps, logvar[:, None, :])
    )
    np.testing.assert_allclose(vae.iw_nll(x, k=k, seed=7), -lk.log_mean_exp(log_w, axis=1), rtol=1e-6)
    assert vae.elbo(x, samples=k, seed=7).shape == (1,)
    tracemalloc.start()
    vae.iw_nll(x, k=50_000, seed=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # All at once, 50,000 samples' logits alone would take 157 MB.
    assert peak < 80 * 2**20, peak
