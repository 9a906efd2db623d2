"""A model's outputs are checked: too few rows, other shapes, NaN and run-time failures are ModelErrors, at load or on first use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import copy_2d_model as _model_copy
from helpers import run_cli_process as _cli

from digitvae.runtime import DigitVAE, ModelError
from digitvae.runtime.inference.sessions import LazySession


class _Sliced:
    """A session whose outputs keep at most `rows` rows (or fail) whatever the batch: a graph that
    passed the trial run on 2 rows and surprises on others."""

    def __init__(self, session: Any, rows: int = 2, outputs: tuple[str, ...] = (), fail: bool = False) -> None:
        self._session = session
        self._rows = rows
        self._outputs = outputs
        self._fail = fail

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._fail:
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Reshape node failed")  # a foreign exception type
        found = self._session.run(names, feeds)
        return [a[: self._rows] if not self._outputs or n in self._outputs else a for n, a in zip(names, found)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _broken(part: str, **kwargs: Any) -> DigitVAE:
    """Load the default model and replace one of its sessions by a _Sliced one (small-batch path off)."""
    vae = DigitVAE.load()
    if part == "decoder":
        _replace_decoder(vae, lambda session: _Sliced(session, **kwargs))
    elif part == "encoder":
        vae._encoder = _Sliced(vae._encoder, **kwargs)
        vae._small[part].enabled = False
    else:
        prior: Any = vae.prior
        setattr(prior, f"_{part}", _Sliced(getattr(prior, f"_{part}"), **kwargs))
        prior._small.enabled = False
    return vae


@pytest.mark.parametrize("n", [3, 17, 5000])
def test_a_decoder_returning_too_few_rows_is_a_model_error(digits: np.ndarray, n: int) -> None:
    vae = _broken("decoder")
    with pytest.raises(ModelError, match=r"decoder returned 'image' of shape \[2, 1, 28, 28\]"):
        vae.generate(n, seed=0)
    with pytest.raises(ModelError, match="decoder returned"):
        vae.reconstruct(digits[:3])
    assert vae.generate(2, seed=0).shape == (2, 28, 28)  # the batch it was tried on still works


def test_short_logits_are_a_model_error_not_a_silent_likelihood(digits: np.ndarray) -> None:
    # Before, the missing rows of the logits buffer were left uninitialised and summed into the result.
    vae = _broken("decoder", outputs=("logits",))
    for call in (
        lambda: vae.iw_nll(digits[:3], k=2),
        lambda: vae.iw_nll(digits[:1], k=3),
        lambda: vae.elbo(digits[:3]),
    ):
        with pytest.raises(ModelError, match="'logits' of shape"):
            call()


def test_an_encoder_returning_too_few_rows_is_a_model_error(digits: np.ndarray) -> None:
    vae = _broken("encoder")
    for call in (lambda: vae.encode(digits[:3]), lambda: vae.iw_nll(digits[:3], k=2)):
        with pytest.raises(ModelError, match=r"encoder returned 'mean' of shape \[2, 32\]"):
            call()


@pytest.mark.parametrize("n", [3, 17, 5000])
def test_a_prior_sampler_returning_too_few_rows_is_a_model_error(n: int) -> None:
    vae = _broken("sampler")
    with pytest.raises(ModelError, match=r"prior sampler returned 'z' of shape \[2, 32\]"):
        vae.generate(n, seed=0)
    with pytest.raises(ModelError, match="prior sampler"):
        vae.sample_latents(n, seed=0)


def test_a_prior_density_of_another_shape_is_a_model_error(digits: np.ndarray) -> None:
    vae = _broken("density")
    with pytest.raises(ModelError, match=r"prior density returned 'log_prob' of shape \[2\]"):
        vae.iw_nll(digits[:3], k=2)


@pytest.mark.parametrize("part", ["sampler", "density", "encoder", "decoder"])
def test_an_onnxruntime_failure_at_run_time_is_a_model_error(digits: np.ndarray, part: str) -> None:
    vae = _broken(part, fail=True)
    with pytest.raises(ModelError, match="failed on a batch"):
        if part == "sampler":
            vae.generate(20, seed=0)
        else:
            vae.iw_nll(digits[:3], k=2)


def _replace_decoder(vae: DigitVAE, wrap: Any) -> None:
    """Wrap both of the decoder's sessions (images, and the whole graph for logits), small-batch paths off."""
    whole = vae._whole_decoder()
    vae._decoder = wrap(vae._decoder)
    vae._whole_slot = LazySession.opened(wrap(whole))
    vae._small["decoder"].enabled = False
    vae._small["whole"].enabled = False


class _Poisoned(_Sliced):
    """A session that returns NaN in its first output."""

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        found = [a.copy() for a in self._session.run(names, feeds)]
        found[0][...] = np.nan
        return found


def test_nan_from_the_encoder_or_the_logits_is_a_model_error(digits: np.ndarray) -> None:
    vae = DigitVAE.load()
    vae._encoder = _Poisoned(vae._encoder)
    vae._small["encoder"].enabled = False
    with pytest.raises(ModelError, match="encoder returned NaN"):
        vae.encode(digits[:2])
    vae = DigitVAE.load()
    _replace_decoder(vae, _Poisoned)
    with pytest.raises(ModelError, match="NaN or infinite logits"):
        vae.iw_nll(digits[:2], k=2)


def _crafted_decoder(tmp_path: Path) -> Path:
    """A real ONNX decoder that keeps its first 2 rows: it passes the trial run on a batch of 2."""

    def slice_two(decoder: Any) -> None:
        from onnx import helper, numpy_helper

        graph = decoder.graph
        for out in graph.output:
            raw = out.name + "_raw"
            for node in graph.node:
                node.output[:] = [raw if o == out.name else o for o in node.output]
                node.input[:] = [raw if i == out.name else i for i in node.input]
            ends = out.name + "_ends"
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array([0], np.int64), out.name + "_starts"),
                    numpy_helper.from_array(np.array([2], np.int64), ends),
                ]
            )
            graph.node.append(helper.make_node("Slice", [raw, out.name + "_starts", ends], [out.name]))

    return _with_decoder(tmp_path, slice_two)  # type: ignore[no-any-return]


def test_a_real_graph_slicing_its_batch_fails_with_one_error_line(tmp_path: Path) -> None:
    model = _crafted_decoder(tmp_path)
    vae = DigitVAE.load(model)  # the trial run on 2 rows passes
    with pytest.raises(ModelError, match=r"for a batch of 3"):
        vae.generate(3, seed=0)
    # Before, onnxruntime printed its own [E:onnxruntime...] line beside ours.
    result = _cli("generate", "-n", 5, "--seed", 0, "-o", tmp_path / "x.png", "--model", model)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the decoder returned 'image' of shape [2, 1, 28, 28] for a batch of 5, expected [5, 1, 28, 28] "
        "(the ONNX contract)"
    ]
    assert not (tmp_path / "x.png").exists()


def _with_decoder(tmp_path, edit):  # type: ignore[no-untyped-def]
    """Copy the 2-D model without its prior and apply `edit` to its decoder graph; return the folder."""
    import hashlib

    onnx = pytest.importorskip("onnx")
    model = _model_copy(tmp_path)
    data = json.loads((model / "model.json").read_text())
    data["prior"] = "standard_normal"
    data["variants"] = {"fp32": {role: data["variants"]["fp32"][role] for role in ("encoder", "decoder")}}
    decoder = onnx.load(str(model / "decoder.onnx"))
    edit(decoder)
    blob = decoder.SerializeToString()
    (model / "decoder.onnx").write_bytes(blob)
    data["variants"]["fp32"]["decoder"]["sha256"] = hashlib.sha256(blob).hexdigest()
    (model / "model.json").write_text(json.dumps(data))
    return model


def test_a_decoder_with_its_batch_fixed_to_one_is_refused_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digitvae.runtime import ModelError

    def fix_batch(decoder) -> None:  # type: ignore[no-untyped-def]
        for value in [*decoder.graph.input, *decoder.graph.output]:
            value.type.tensor_type.shape.dim[0].dim_value = 1

    with pytest.raises(ModelError, match="batch"):
        DigitVAE.load(_with_decoder(tmp_path, fix_batch))


def test_a_decoder_computing_another_shape_is_refused_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    numpy_helper = pytest.importorskip("onnx.numpy_helper")  # a runtime-only install has no onnx

    from digitvae.runtime import ModelError

    def flat_image(decoder) -> None:  # type: ignore[no-untyped-def]
        # The graph still declares [N,1,28,28] but reshapes its logits to [N,784,1,1].
        shape = next(t for t in decoder.graph.initializer if t.name == "val_14")
        shape.CopyFrom(numpy_helper.from_array(np.array([-1, 784, 1, 1], np.int64), "val_14"))

    # onnxruntime infers the real shape from the constant; either check names it, at load.
    with pytest.raises(ModelError, match=r"784, 1, 1\]"):
        DigitVAE.load(_with_decoder(tmp_path, flat_image))
