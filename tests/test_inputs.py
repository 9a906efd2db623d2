"""The Python API's arguments: seeds, np.matrix and masked arrays, variant names, thread counts, detector ranges and scores, huge batches."""

from __future__ import annotations

import numpy as np
import pytest

from digitvae.runtime import DigitVAE, InputError, OutlierDetector


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True, 2**128])
def test_bad_seeds_are_input_errors(vae: DigitVAE, digits: np.ndarray, seed: object) -> None:
    with pytest.raises(InputError, match="seed"):
        vae.generate(2, seed=seed)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="seed"):
        vae.iw_nll(digits[:2], k=2, seed=seed)  # type: ignore[arg-type]


def test_numpy_integer_seeds_work(vae: DigitVAE) -> None:
    np.testing.assert_array_equal(vae.generate(2, seed=np.int64(3)), vae.generate(2, seed=3))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # numpy's own note on np.matrix
def test_a_matrix_is_read_as_its_plain_array(vae: DigitVAE, digits: np.ndarray) -> None:
    flat = digits[:3].reshape(3, 784)
    np.testing.assert_array_equal(vae.encode(np.asmatrix(flat))[0], vae.encode(flat)[0])
    z = vae.sample_latents(2, seed=0)
    np.testing.assert_array_equal(vae.decode(np.asmatrix(z)), vae.decode(z))


def test_masked_arrays_are_refused_or_read_whole(vae: DigitVAE, digits: np.ndarray) -> None:
    unmasked = np.ma.masked_array(digits[:3], mask=False)
    np.testing.assert_array_equal(vae.reconstruct(unmasked), vae.reconstruct(digits[:3]))
    holey = np.ma.masked_array(digits[:3], mask=np.zeros_like(digits[:3], bool))
    holey.mask[0, 0, 0] = True
    for call in (vae.encode, vae.reconstruct, lambda x: vae.iw_nll(x, k=2)):
        with pytest.raises(InputError, match="masked"):
            call(holey)


@pytest.mark.parametrize("variant", [["fp32"], {"fp32"}, 32, None])
def test_a_variant_that_is_not_a_name_is_an_input_error(variant: object) -> None:
    with pytest.raises(InputError, match="variant must be a name"):
        DigitVAE.load(variant=variant)  # type: ignore[arg-type]


@pytest.mark.parametrize("threads", [2**31, 10**12, 1025, -1])
def test_thread_counts_beyond_the_limit_are_input_errors(threads: int) -> None:
    with pytest.raises(InputError, match="threads must be an integer from 0"):
        DigitVAE.load(threads=threads)


@pytest.mark.parametrize("bad", [(1.0,), (1.0, 2.0, 3.0), "ab", (float("nan"), 1.0), ("low", "high"), 5])
def test_detector_ranges_of_the_wrong_shape_are_input_errors(bad: object) -> None:
    with pytest.raises(InputError, match="range"):
        OutlierDetector.load(nll_range=bad)  # type: ignore[arg-type]


def test_huge_codes_are_an_input_error_and_leave_the_fast_path_on(vae: DigitVAE) -> None:
    fresh = DigitVAE.load()
    with pytest.raises(InputError, match="too large"):
        fresh.decode(np.full((1, fresh.latent_dim), 3e38, np.float32))
    assert fresh._small["decoder"].enabled
    z = fresh.sample_latents(1, seed=0)
    np.testing.assert_allclose(fresh.decode(z), vae.decode(z), atol=1e-6)
    assert fresh._small["decoder"].enabled


def test_batches_beyond_the_count_limit_are_refused_before_any_copy(vae: DigitVAE) -> None:
    huge = np.broadcast_to(np.zeros((1, 28, 28), np.uint8), (10**8, 28, 28))
    for call in (vae.encode, vae.reconstruct, lambda x: vae.iw_nll(x, k=1)):
        with pytest.raises(InputError, match="at most 1,000,000"):
            call(huge)
    with pytest.raises(InputError, match="at most 1,000,000"):
        vae.decode(np.broadcast_to(np.zeros((1, vae.latent_dim), np.float32), (10**8, vae.latent_dim)))
    with pytest.raises(InputError, match="k must be between 1 and 1,000,000"):
        vae.iw_nll(np.zeros((1, 28, 28), np.uint8), k=10**7)


def test_detector_flags_refuse_scores_of_the_wrong_form() -> None:
    detector = OutlierDetector.load()
    good = {name: np.zeros(3) for name in detector.checks}
    assert detector.flags(good) == [detector.flags(good)[0]] * 3
    for bad in (
        {},
        {**good, "nll": np.zeros(2)},
        {**good, "nll": "abc"},
        {**good, "nll": np.zeros((3, 2))},
        [np.zeros(3)],
    ):
        with pytest.raises(InputError, match="scores"):
            detector.flags(bad)  # type: ignore[arg-type]


def test_numpy_integer_thread_counts_work() -> None:
    assert DigitVAE.load("mnist-vae-2d", threads=np.int64(1)).generate(1, seed=0).shape == (1, 28, 28)
