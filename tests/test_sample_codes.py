"""DigitVAE.sample_codes: the codes generate decodes, with the digits they are for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from digitvae.runtime import DigitVAE, InputError
from digitvae.runtime.inference.sessions import CHUNK


@pytest.fixture(scope="module")
def models() -> dict[str, DigitVAE]:
    return {
        # N(0, I): no classes anywhere.
        "unconditional": DigitVAE.load("mnist-vae-2d", prior=False),
        # A learned prior fit per class, for an unconditional decoder.
        "per-class prior": DigitVAE.load("mnist-vae-2d"),
        "conditional": DigitVAE.load("mnist-cvae"),
    }


CASES = [
    ("unconditional", 1, None),
    ("unconditional", 37, None),
    ("per-class prior", 37, None),
    ("per-class prior", 12, 7),
    ("per-class prior", 5, [0, 1, 2, 3, 9]),
    ("conditional", 23, None),
    ("conditional", 12, 3),
    ("conditional", 5, [9, 8, 7, 6, 5]),
]


@pytest.mark.parametrize("kind, n, digit", [*CASES, ("conditional", CHUNK, None), ("per-class prior", CHUNK, 4)])
@pytest.mark.parametrize("seed", [0, 5, 123456])
def test_one_block_draws_the_codes_the_block_generator_draws(
    models: dict[str, DigitVAE], kind: str, n: int, digit: Any, seed: int
) -> None:
    """Up to one chunk the codes are drawn as one block (generate's path): the same as block by block."""
    vae = models[kind]
    z, labels = vae.sample_codes(n, seed=seed, digit=digit)
    blocks = list(vae._draws.code_blocks(n, seed, digit, CHUNK))
    np.testing.assert_array_equal(z, np.concatenate([b for b, _ in blocks]))
    if vae.num_classes:
        np.testing.assert_array_equal(labels, np.concatenate([y for _, y in blocks]))
    else:
        assert labels is None


@pytest.mark.parametrize("kind, n, digit", CASES)
def test_the_codes_decode_to_what_generate_draws(models: dict[str, DigitVAE], kind: str, n: int, digit: Any) -> None:
    vae = models[kind]
    z, labels = vae.sample_codes(n, seed=5, digit=digit)
    assert z.dtype == np.float32 and z.shape == (n, vae.latent_dim)
    np.testing.assert_array_equal(vae.decode(z, labels), vae.generate(n, seed=5, digit=digit))
    np.testing.assert_array_equal(vae.sample_latents(n, seed=5, digit=digit), z)
    if kind != "conditional":
        assert labels is None
        return
    assert labels is not None and labels.dtype == np.int64
    expected = np.arange(n) % 10 if digit is None else np.broadcast_to(digit, n)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("kind", ["per-class prior", "conditional"])
def test_beyond_one_chunk_the_classes_continue_across_blocks(models: dict[str, DigitVAE], kind: str) -> None:
    vae = models[kind]
    n = CHUNK + 13
    z, labels = vae.sample_codes(n, seed=2)
    generated = vae.generate(n, seed=2)
    np.testing.assert_array_equal(vae.decode(z, labels), generated)
    if labels is not None:
        np.testing.assert_array_equal(labels, np.arange(n) % 10)


def test_unseeded_codes_are_new_each_call_and_labelled_alike(models: dict[str, DigitVAE]) -> None:
    for kind, vae in models.items():
        first, labels = vae.sample_codes(4)
        second, _ = vae.sample_codes(4)
        assert first.shape == second.shape == (4, vae.latent_dim)
        assert not np.array_equal(first, second), kind
        assert (labels is None) == (kind != "conditional")
    _, labels = models["conditional"].sample_codes(12)
    np.testing.assert_array_equal(labels, np.arange(12) % 10)  # type: ignore[arg-type]


def test_bad_requests_are_refused_as_generate_refuses_them(models: dict[str, DigitVAE]) -> None:
    with pytest.raises(InputError, match="cannot be asked for a digit"):
        models["unconditional"].sample_codes(3, seed=0, digit=4)
    for n in (0, -1):
        with pytest.raises(InputError):
            models["conditional"].sample_codes(n, seed=0)
    with pytest.raises(InputError):
        models["conditional"].sample_codes(3, seed=0, digit=10)
