"""NaN or infinity out of a model: the caller's fault when its inputs caused it, the model's otherwise.

A sound model overflows float32 only on inputs far beyond any code or noise it was trained on
(values of 1e38); that is an InputError. NaN from ordinary inputs means a broken file: a ModelError.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from digitvae.runtime import DigitVAE, InputError, ModelError
from digitvae.runtime.arrays import all_finite
from digitvae.runtime.inference.contract import ORDINARY, run_checked
from digitvae.runtime.inference.sessions import LazySession

MODELS = ("mnist-vae", "mnist-cvae")
HUGE = 3e38  # finite in float32, and overflows any layer


class _Poisoned:
    """A session that returns NaN in its first output for the rows listed, whatever they hold."""

    def __init__(self, session: Any, rows: tuple[int, ...] = (0,)) -> None:
        self._session = session
        self._rows = list(rows)

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        found = [a.copy() for a in self._session.run(names, feeds)]
        found[0][self._rows] = np.nan
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _draws(vae: DigitVAE, n: int, value: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    noise = np.random.default_rng(0).standard_normal((n, vae.latent_dim), dtype=np.float32)
    if value is not None:
        noise[:] = value
    label = np.zeros(n, np.int64) if vae.num_classes else np.full(n, -1, np.int64)
    return noise, np.full(n, 0.5, np.float32), label


@pytest.fixture(scope="module", params=MODELS)
def model(request: pytest.FixtureRequest) -> DigitVAE:
    return DigitVAE.load(request.param)


@pytest.mark.parametrize("value", [HUGE, -HUGE, np.inf, np.nan])
def test_extreme_or_non_finite_noise_is_the_callers_error(model: DigitVAE, value: float) -> None:
    for n in (1, 3, 300):  # the small-batch runner and the plain session
        with pytest.raises(InputError, match=r"prior sampler returned NaN or infinite z for \d+ of") as caught:
            model.prior.sample(*_draws(model, n, value))
        assert not isinstance(caught.value, ModelError)


def test_extreme_codes_are_the_callers_error_in_every_decoder_call(model: DigitVAE) -> None:
    z = np.zeros((3, model.latent_dim), np.float32)
    z[1] = HUGE  # one bad row among ordinary ones
    labels = np.arange(3) if model.num_classes else None
    for call in (lambda: model.decode(z, labels), lambda: model.decoder_outputs(z, labels)):
        with pytest.raises(InputError, match=r"decoder returned NaN or infinite \w+ for 1 of 3 row"):
            call()


def test_extreme_codes_are_the_callers_error_for_the_density(model: DigitVAE) -> None:
    z = np.full((2, model.latent_dim), 1e20, np.float32)  # -|z|^2 / 2 overflows to -inf
    with pytest.raises(InputError, match="prior density returned NaN or infinite log_prob"):
        model.prior.log_prob(z)


def test_large_but_ordinary_inputs_still_work(model: DigitVAE) -> None:
    noise, uniform, label = _draws(model, 4, ORDINARY)
    z = model.prior.sample(noise, uniform, label)
    assert np.isfinite(z).all()
    assert np.isfinite(
        model.decode(np.full((2, model.latent_dim), 1e30, np.float32), [0, 1] if model.num_classes else None)
    ).all()


def test_nan_from_ordinary_noise_is_the_models_error(model: DigitVAE) -> None:
    prior: Any = model.prior
    prior._sampler = _Poisoned(prior._sampler)
    prior._small.enabled = False
    try:
        with pytest.raises(ModelError, match=r"prior sampler returned NaN or infinite z for ordinary inputs \(row 0"):
            prior.sample(*_draws(model, 5))
        with pytest.raises(ModelError, match="the model file is broken"):
            model.generate(5, seed=0)
    finally:
        prior._sampler = prior._sampler._session
        prior._small.enabled = True


def test_a_broken_row_among_extreme_ones_is_still_the_models_error() -> None:
    vae = DigitVAE.load()
    vae._whole_slot = LazySession.opened(_Poisoned(vae._whole_decoder(), rows=(0,)))
    vae._small["whole"].enabled = False
    z = np.zeros((2, vae.latent_dim), np.float32)
    z[1] = HUGE  # row 1 is the caller's doing, row 0 (NaN from zeros) is not
    with pytest.raises(ModelError, match=r"decoder returned NaN or infinite logits for ordinary inputs \(row 0 of 2"):
        vae.decoder_outputs(z)


class _Constant:
    """A session that returns a fixed value per row, whatever it is fed."""

    def __init__(self, value: float) -> None:
        self.value = value

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.full((len(feeds["x"]), 3), self.value, np.float32)]


@pytest.mark.parametrize(
    "value, given, error",
    [
        (np.nan, 0.0, ModelError),
        (np.inf, 1.0, ModelError),
        (np.nan, ORDINARY, ModelError),
        (np.nan, ORDINARY * 10, InputError),
        (-np.inf, -HUGE, InputError),
        (np.nan, np.nan, InputError),
        (np.inf, np.inf, InputError),
    ],
)
def test_run_checked_blames_the_input_only_beyond_ordinary_values(value: float, given: float, error: type) -> None:
    for rows in (4, 5000):  # the float64-sum test and np.isfinite
        feeds = {"x": np.full((rows, 2), given, np.float32), "label": np.zeros(rows, np.int64)}
        with pytest.raises(error) as caught:
            run_checked(_Constant(value), ["y"], feeds, "thing", ((rows, 3),))  # type: ignore[arg-type]
        assert type(caught.value) is error


def test_run_checked_passes_finite_outputs_through() -> None:
    feeds = {"x": np.full((2, 2), HUGE, np.float32)}
    (out,) = run_checked(_Constant(0.25), ["y"], feeds, "thing", ((2, 3),))  # type: ignore[arg-type]
    assert out.shape == (2, 3) and (out == 0.25).all()


@pytest.mark.parametrize("shape", [(3, 784), (1024, 1, 28, 28), (100, 784), (5000, 32), (17, 4096)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 1, -1, "middle"])
def test_all_finite_finds_one_bad_value_anywhere_in_any_batch(
    shape: tuple[int, ...], bad: float, where: object
) -> None:
    array = np.random.default_rng(0).random(shape, dtype=np.float32)
    assert all_finite(array)
    flat = array.reshape(-1)
    flat[flat.size // 2 if where == "middle" else where] = bad
    assert not all_finite(array)
    assert not all_finite(array.astype(np.float64)) and not all_finite(array[::-1])


def test_all_finite_tells_huge_values_from_infinities() -> None:
    """Huge finite values of both signs are finite; +inf beside -inf is not (nor would their sum be)."""
    huge = np.full((1024, 784), 3e38, np.float32)
    huge[::2] *= -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all_finite(huge)
        huge[7, 3], huge[7, 4] = np.inf, -np.inf
        assert not all_finite(huge)
