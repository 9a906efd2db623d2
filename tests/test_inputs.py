"""Reliability, round two: odd arrays and seeds, bad options, huge codes."""

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


def test_an_empty_model_name_is_not_the_current_folder() -> None:
    with pytest.raises(InputError, match="model is empty"):
        DigitVAE.load("")


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


def test_concurrent_writers_of_model_json_lose_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil
    import subprocess
    import sys

    from digitvae.runtime.folders.locate import shipped_models_dir

    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", model)
    code = (
        "import sys\n"
        "from digitvae.runtime.folders.writing import update_metrics\n"
        "for i in range(25):\n"
        "    update_metrics(sys.argv[1], {'likelihood': {f'{sys.argv[2]}-{i}': {'iw_nll': i}}}, merge='likelihood')\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(model), name]) for name in ("a", "b", "c")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    figures = json.loads((model / "model.json").read_text())["metrics"]["likelihood"]
    for name in ("a", "b", "c"):
        assert all(f"{name}-{i}" in figures for i in range(25)), name
    assert "fp32" in figures  # what was there before is kept too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no lock or temporary file left behind


def _model_copy(tmp_path):  # type: ignore[no-untyped-def]
    import shutil

    from digitvae.runtime.folders.locate import shipped_models_dir

    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", model)
    return model


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["model.json", "decoder.onnx"])
def test_a_fifo_in_a_model_folder_is_refused_not_waited_on(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    import os

    from digitvae.runtime import ModelError

    model = _model_copy(tmp_path)
    (model / name).unlink()
    os.mkfifo(model / name)
    with pytest.raises(ModelError, match="not a regular file"):
        DigitVAE.load(model)


def test_links_to_devices_or_out_of_the_folder_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digitvae.runtime import ModelError

    model = _model_copy(tmp_path)
    outside = tmp_path / "decoder-elsewhere.onnx"
    (model / "decoder.onnx").rename(outside)
    (model / "decoder.onnx").symlink_to(outside)
    with pytest.raises(ModelError, match="leaves the model folder"):
        DigitVAE.load(model)
    (model / "decoder.onnx").unlink()
    (model / "decoder.onnx").symlink_to("/dev/zero")
    with pytest.raises(ModelError, match="leaves the model folder|not a regular file"):
        DigitVAE.load(model)


def test_an_oversized_model_json_is_refused_before_it_is_parsed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digitvae.runtime import ModelError
    from digitvae.runtime.folders.reading import MAX_MANIFEST_BYTES

    model = _model_copy(tmp_path)
    (model / "model.json").write_text("[" + "{}," * (MAX_MANIFEST_BYTES // 3) + "{}]")
    with pytest.raises(ModelError, match="more than the"):
        DigitVAE.load(model)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_a_labels_fifo_is_refused_not_waited_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from digitvae.runtime import DataFormatError
    from digitvae.runtime.digits.idx import read_mnist_labels

    os.mkfifo(tmp_path / "labels-idx1-ubyte")
    with pytest.raises(DataFormatError, match="not a regular file"):
        read_mnist_labels(tmp_path / "labels-idx1-ubyte")


def test_a_full_disk_is_an_output_error_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import errno

    from digitvae.runtime import OutputError, atomic
    from digitvae.runtime.digits.files import write_npy

    target = tmp_path / "digits.npy"
    target.write_bytes(b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_npy(np.zeros((2, 28, 28), np.float32), target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["digits.npy"]


def test_a_read_only_output_is_refused_not_replaced(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from helpers import assert_clean_failure, invoke

    target = tmp_path / "keep.png"
    target.write_bytes(b"mine")
    target.chmod(0o400)
    assert_clean_failure(invoke("generate", "-n", 2, "-o", target), "read-only")
    assert target.read_bytes() == b"mine" and oct(target.stat().st_mode & 0o777) == "0o400"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_batches_beyond_the_count_limit_are_refused_before_any_copy(vae: DigitVAE) -> None:
    huge = np.broadcast_to(np.zeros((1, 28, 28), np.uint8), (10**8, 28, 28))
    for call in (vae.encode, vae.reconstruct, lambda x: vae.iw_nll(x, k=1)):
        with pytest.raises(InputError, match="at most 1,000,000"):
            call(huge)
    with pytest.raises(InputError, match="at most 1,000,000"):
        vae.decode(np.broadcast_to(np.zeros((1, vae.latent_dim), np.float32), (10**8, vae.latent_dim)))
    with pytest.raises(InputError, match="k must be between 1 and 1,000,000"):
        vae.iw_nll(np.zeros((1, 28, 28), np.uint8), k=10**7)


def test_iter_generate_yields_generate_in_blocks(vae: DigitVAE) -> None:
    blocks = list(vae.iter_generate(10_000, seed=4, block=4096))
    assert [len(b) for b in blocks] == [4096, 4096, 1808]
    np.testing.assert_array_equal(np.concatenate(blocks), vae.generate(10_000, seed=4))
    cvae = DigitVAE.load("mnist-cvae")
    # Other block sizes decode at other batch sizes, which onnxruntime rounds a little differently.
    np.testing.assert_allclose(
        np.concatenate(list(cvae.iter_generate(25, seed=1, block=7))), cvae.generate(25, seed=1), atol=1e-5
    )


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


def test_a_model_name_too_long_for_the_file_system_is_not_found(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digitvae.runtime import ModelNotFoundError

    for name in ("x" * 5000, str(tmp_path / ("y" * 300)), "bad\x00name"):
        with pytest.raises(ModelNotFoundError, match="no model"):
            DigitVAE.load(name)


def test_info_and_manifold_survive_metrics_of_the_wrong_types(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil

    from helpers import assert_clean_failure, invoke, ok

    from digitvae.runtime.folders.locate import shipped_models_dir

    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    data = json.loads((model / "model.json").read_text())
    data["metrics"]["likelihood"] = {"fp32": "ninety", "int8": {"iw_nll": "x"}}
    data["metrics"]["valid_neg_elbo"] = "low"
    data["metrics"]["latent_plane"] = {"centre": "middle", "directions": [], "spread": None}
    (model / "model.json").write_text(json.dumps(data))
    text = ok(invoke("info", "--model", model)).stdout
    assert "likelihood   fp32: unreadable in model.json" in text and "valid -ELBO" not in text
    assert_clean_failure(invoke("manifold", "--model", model, "-o", tmp_path / "b.png"), "principal plane")
    assert not (tmp_path / "b.png").exists()


def _with_decoder(tmp_path, edit):  # type: ignore[no-untyped-def]
    """Copy the 2-D model without its prior and apply `edit` to its decoder graph; return the folder."""
    import hashlib
    import json

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
