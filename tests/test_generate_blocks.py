"""Digits drawn in blocks: the digits of one draw, classes cycled across blocks, .npy files written block by block."""

from __future__ import annotations

import numpy as np
import pytest

from digitvae.runtime import DigitVAE, InputError


@pytest.mark.heavy
@pytest.mark.parametrize("block", [7, 4096])
def test_blockwise_draws_give_the_digits_of_one_draw(vae: DigitVAE, block: int) -> None:
    # sample_latents draws all noise, then all uniforms, at once: the reference for every block size.
    n = 5000 if block == 4096 else 30
    z = vae.sample_latents(n, seed=11)
    got = np.concatenate(list(vae.iter_generate(n, seed=11, block=block)))
    np.testing.assert_allclose(got, vae.decode(z), atol=1e-6)
    sevens = np.concatenate(list(vae.iter_generate(n, seed=3, digit=7, block=block)))
    np.testing.assert_allclose(sevens, vae.decode(vae.sample_latents(n, seed=3, digit=7)), atol=1e-6)


def test_a_conditional_model_cycles_the_classes_across_blocks() -> None:
    cvae = DigitVAE.load("mnist-cvae")
    whole = cvae.generate(23, seed=5)
    blocks = np.concatenate(list(cvae.iter_generate(23, seed=5, block=4)))
    np.testing.assert_allclose(blocks, whole, atol=1e-6)
    z = cvae.sample_latents(23, seed=5, digit=np.arange(23) % 10)
    np.testing.assert_allclose(whole, cvae.decode(z, np.arange(23) % 10), atol=1e-6)
    with pytest.raises(InputError, match="digit"):
        next(cvae.iter_generate(23, seed=5, digit=np.arange(22) % 10, block=4))


@pytest.mark.heavy
def test_iter_generate_yields_generate_in_blocks(vae: DigitVAE) -> None:
    blocks = list(vae.iter_generate(10_000, seed=4, block=4096))
    assert [len(b) for b in blocks] == [4096, 4096, 1808]
    np.testing.assert_array_equal(np.concatenate(blocks), vae.generate(10_000, seed=4))
    cvae = DigitVAE.load("mnist-cvae")
    # Other block sizes decode at other batch sizes, which onnxruntime rounds a little differently.
    np.testing.assert_allclose(
        np.concatenate(list(cvae.iter_generate(25, seed=1, block=7))), cvae.generate(25, seed=1), atol=1e-5
    )


@pytest.mark.heavy
def test_generate_writes_npy_block_by_block(tmp_path, vae: DigitVAE) -> None:  # type: ignore[no-untyped-def]
    import tracemalloc

    from helpers import invoke, ok

    tracemalloc.start()
    ok(invoke("generate", "-n", 20_000, "--seed", 2, "-o", tmp_path / "many.npy"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    digits = np.load(tmp_path / "many.npy")
    assert digits.shape == (20_000, 28, 28) and digits.dtype == np.float32
    np.testing.assert_array_equal(digits[-5:], vae.generate(20_000, seed=2)[-5:])
    assert peak < 40 * 2**20, peak  # the whole array is 63 MB
