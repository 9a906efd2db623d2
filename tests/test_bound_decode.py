"""Large batches decoded in place (the result bound as onnxruntime's output): the same digits, or the ordinary path."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from digitvae.runtime import DigitVAE, ModelError
from digitvae.runtime.inference.sessions import CHUNK


def _plain(vae: DigitVAE, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    session = ort.InferenceSession(str(vae.model_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    parts = []
    for i in range(0, len(z), CHUNK):
        feeds = {"z": z[i : i + CHUNK]}
        if labels is not None:
            feeds["label"] = labels[i : i + CHUNK]
        parts.append(session.run(["image"], feeds)[0])
    return np.concatenate(parts).reshape(len(z), 28, 28)


@pytest.mark.parametrize("n", [17, 1024, CHUNK + 3])
def test_in_place_decoding_gives_the_plain_sessions_digits(n: int) -> None:
    vae = DigitVAE.load()
    z = np.random.default_rng(n).standard_normal((n, vae.latent_dim), dtype=np.float32)
    got = vae.decode(z)
    np.testing.assert_array_equal(got, _plain(vae, z))
    assert got.shape == (n, 28, 28) and got.flags.c_contiguous
    assert vae._small["decoder"]._bound is True  # the in-place path served it


def test_a_conditional_decoder_in_place() -> None:
    vae = DigitVAE.load("mnist-cvae")
    z = np.random.default_rng(0).standard_normal((300, vae.latent_dim), dtype=np.float32)
    labels = np.arange(300, dtype=np.int64) % 10
    np.testing.assert_array_equal(vae.decode(z, labels), _plain(vae, z, labels))
    assert vae._small["decoder"]._bound is True


def test_an_output_left_unset_turns_the_in_place_path_off() -> None:
    vae = DigitVAE.load()
    runner = vae._small["decoder"]
    real = runner._run
    runner._run = lambda *args: None  # type: ignore[method-assign]  # onnxruntime writing nowhere
    z = np.random.default_rng(1).standard_normal((40, vae.latent_dim), dtype=np.float32)
    np.testing.assert_array_equal(vae.decode(z), _plain(vae, z))
    assert runner._bound is False
    runner._run = real  # type: ignore[method-assign]
    np.testing.assert_array_equal(vae.decode(z), _plain(vae, z))  # it stays off: the ordinary path serves


def test_feeds_it_cannot_bind_go_the_ordinary_way() -> None:
    vae = DigitVAE.load()
    runner = vae._small["decoder"]
    out = np.empty((20, 1, 28, 28), np.float32)
    z = np.random.default_rng(2).standard_normal((20, 2 * vae.latent_dim), dtype=np.float32)
    assert not runner.run_into("image", {"z": z[:, ::2]}, out)  # not contiguous
    assert not runner.run_into("image", {"z": z[:, : vae.latent_dim].astype(np.float64)}, out)  # another dtype
    assert runner._bound is None  # neither reached onnxruntime


def test_non_finite_images_in_place_are_rerun_and_reported() -> None:
    vae = DigitVAE.load()
    runner = vae._small["decoder"]

    def poisoned(output: str, feeds: dict[str, np.ndarray], out: np.ndarray) -> bool:
        out.fill(np.nan)
        return True

    runner.run_into = poisoned  # type: ignore[method-assign]
    z = np.random.default_rng(3).standard_normal((30, vae.latent_dim), dtype=np.float32)
    # The ordinary path decodes the real digits: the in-place NaN is never returned.
    np.testing.assert_array_equal(vae.decode(z), _plain(vae, z))
    runner.enabled = False
    vae._decoder = _NaNSession(vae._decoder)
    with pytest.raises(ModelError, match="decoder returned NaN or infinite image"):
        vae.decode(z)


class _NaNSession:
    """A session whose image output is NaN."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.full_like(a, np.nan) for a in self._session.run(names, feeds)]
