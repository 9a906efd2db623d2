"""int8 and fp16 variants: made at export or in place, listed with sha256, selected, and close to fp32."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import assert_clean_failure, invoke, ok
from mnist_files import VALID_IMAGES
from train_extra import HAVE_TORCH, needs_torch

from digitvae.runtime import DigitVAE, ExportError, IntegrityError, ModelError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.reading import read_manifest

pytestmark = needs_torch  # making variants needs onnx (the [train] extra); loading them does not

if HAVE_TORCH:
    import onnx
    from onnx import TensorProto, helper

    from digitvae.export import variants as V

ROLES = ("encoder", "decoder")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a copy of the shipped model with its variants added in place."""
    folder = tmp_path_factory.mktemp("variants") / "mnist-vae"
    shutil.copytree(shipped_models_dir() / "mnist-vae", folder)
    V.add_variants(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> dict[str, DigitVAE]:
    return {v: DigitVAE.load(model_dir, variant=v) for v in ("fp32", "int8", "fp16")}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_variants_are_listed_with_their_sha256(model_dir: Path) -> None:
    manifest = read_manifest(model_dir)
    assert sorted(manifest.variants) == ["fp16", "fp32", "int8"]
    for variant, files in manifest.variants.items():
        for role in ROLES:
            entry = files[role]
            assert entry.path == (f"{role}.onnx" if variant == "fp32" else f"{role}.{variant}.onnx")
            assert _sha(model_dir / entry.path) == entry.sha256
    shipped = read_manifest(shipped_models_dir() / "mnist-vae").files("fp32")
    assert all(manifest.files("fp32")[r].sha256 == shipped[r].sha256 for r in ROLES)  # fp32 untouched


def test_variants_keep_the_contract_and_shrink_the_files(model_dir: Path) -> None:
    manifest = read_manifest(model_dir)
    for role in ROLES:
        fp32 = model_dir / manifest.files("fp32")[role].path
        int8 = model_dir / manifest.files("int8")[role].path
        fp16 = model_dir / manifest.files("fp16")[role].path
        assert int8.stat().st_size < 0.3 * fp32.stat().st_size
        assert fp16.stat().st_size < 0.55 * fp32.stat().st_size
        for path in (int8, fp16):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            assert {a.type for a in [*session.get_inputs(), *session.get_outputs()]} == {"tensor(float)"}
            ops = {n.op_type for n in onnx.load(path).graph.node}
            assert ("MatMulInteger" in ops) == (path == int8)


def _within(variant: str, output: str, got: np.ndarray, want: np.ndarray) -> None:
    stat, bound = V.TOLERANCES[variant][output]
    diff = np.abs(got.astype(np.float64) - want)
    found = (diff / np.maximum(1.0, np.abs(want))).max() if stat == "scaled" else diff.mean()
    assert found <= bound, f"{variant} {output}: {stat} difference {found:.3g} > {bound:g}"


@pytest.mark.parametrize("variant", ["int8", "fp16"])
def test_variant_outputs_match_fp32_within_the_stated_tolerances(
    loaded: dict[str, DigitVAE], digits: np.ndarray, variant: str
) -> None:
    ref, vae = loaded["fp32"], loaded[variant]
    z = ref.sample_latents(300, seed=5)
    _within(variant, "image", vae.decode(z), ref.decode(z))
    for output, got, want in zip(("mean", "logvar"), vae.encode(digits), ref.encode(digits)):
        _within(variant, output, got, want)
    # The variants are different networks, not the fp32 files again.
    assert not np.array_equal(vae.decode(z), ref.decode(z))
    # Reconstructions stay recognisable: each one is nearest to its own digit.
    rebuilt = vae.reconstruct(digits)
    x = digits.astype(np.float32) / 255
    cross = np.abs(rebuilt[:, None] - x[None]).mean(axis=(2, 3))
    assert (cross.argmin(axis=1) == np.arange(len(x))).mean() > 0.95


def test_variant_selection_runs_that_file(model_dir: Path, loaded: dict[str, DigitVAE]) -> None:
    z = loaded["fp32"].sample_latents(4, seed=1)
    for variant, vae in loaded.items():
        path = model_dir / vae.manifest.files(variant)["decoder"].path
        direct = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["image"], {"z": z})[0]
        np.testing.assert_array_equal(vae.decode(z), direct.reshape(4, 28, 28))


def test_unknown_variant_names_the_ones_that_exist(model_dir: Path) -> None:
    with pytest.raises(ModelError, match="no variant 'int4'.*fp16, fp32, int8"):
        DigitVAE.load(model_dir, variant="int4")
    assert_clean_failure(
        invoke("generate", "-n", 1, "-o", model_dir.parent / "x.png", "--model", model_dir, "--variant", "int4"),
        "fp16, fp32, int8",
    )


def test_a_modified_variant_file_is_refused(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    with open(folder / "decoder.int8.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match="decoder.int8.onnx"):
        DigitVAE.load(folder, variant="int8")
    DigitVAE.load(folder)  # fp32 is unaffected


def test_cli_generate_and_reconstruct_take_variant_and_threads(model_dir: Path, tmp_path: Path) -> None:
    ok(
        invoke(
            "generate",
            "-n",
            2,
            "--seed",
            3,
            "-o",
            tmp_path / "a.npy",
            "--model",
            model_dir,
            "--variant",
            "int8",
            "--threads",
            1,
        )
    )
    want = DigitVAE.load(model_dir, variant="int8").generate(2, seed=3)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), want)
    ok(
        invoke(
            "reconstruct",
            VALID_IMAGES,
            "--limit",
            3,
            "-o",
            tmp_path / "r.npy",
            "--model",
            model_dir,
            "--variant",
            "fp16",
            "--threads",
            2,
        )
    )
    assert np.load(tmp_path / "r.npy").shape == (3, 28, 28)


def test_refreshing_variants_is_repeatable_and_keeps_other_files(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "NOTES.txt").write_text("kept\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = ok(invoke("variants", folder))
    assert (
        "decoder.int8.onnx" in result.stdout and read_manifest(folder).files("int8")["decoder"].sha256 in result.stdout
    )
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after == before  # quantization and conversion are deterministic
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_variant_beyond_tolerance_fails_and_writes_nothing(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setitem(V.TOLERANCES, "int8", {**V.TOLERANCES["int8"], "image": ("mean", 1e-9)})
    with pytest.raises(ExportError, match="int8 decoder output 'image'"):
        V.add_variants(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.heavy
def test_export_makes_the_variants_and_records_the_cost(tiny_model: Path) -> None:
    manifest = read_manifest(tiny_model)
    assert sorted(manifest.variants) == ["fp16", "fp32", "int8"]
    for variant in manifest.variants:
        vae = DigitVAE.load(tiny_model, variant=variant)
        assert vae.generate(2, seed=0).shape == (2, 28, 28)
    checks = manifest.metrics["variants"]
    assert checks["int8"]["decoder.image"]["mean_abs_diff"] <= V.TOLERANCES["int8"]["image"][1]
    assert checks["fp16"]["encoder.mean"]["max_scaled_diff"] <= V.TOLERANCES["fp16"]["mean"][1]
    # geron: decoder 20-500-500-784, encoder 784-500-500 and two 500-20 heads; 2 FLOPs per multiply-add.
    assert manifest.metrics["cost"]["decoder"]["flops_per_digit"] == 2 * (20 * 500 + 500 * 500 + 500 * 784)
    assert manifest.metrics["cost"]["encoder"]["flops_per_digit"] == 2 * (784 * 500 + 500 * 500 + 2 * 500 * 20)
    assert manifest.metrics["cost"]["decoder"]["parameters"] == 20 * 500 + 500 + 500 * 500 + 500 + 500 * 784 + 784


def test_iw_nll_of_the_variants_is_recorded(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    manifest = V.record_iw_nll(folder, VALID_IMAGES, k=8, limit=40)
    stored = json.loads((folder / "model.json").read_text())["metrics"]
    nll = {v: stored["likelihood"][v]["iw_nll"] for v in ("fp32", "int8", "fp16")}
    assert stored["likelihood"] == manifest.metrics["likelihood"] and "iw_nll" not in stored  # each figure once
    assert all((stored["likelihood"][v]["digits"], stored["likelihood"][v]["k"]) == (40, 8) for v in nll)
    assert stored["likelihood"]["fp32"]["data"] == [VALID_IMAGES.name]
    assert 60 < nll["fp32"] < 200
    assert abs(nll["int8"] - nll["fp32"]) < 1.0 and abs(nll["fp16"] - nll["fp32"]) < 0.1
    DigitVAE.load(folder, variant="int8")  # the rewritten model.json still verifies


def test_cost_counts_convolutions_and_batched_matmuls() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 28, 10])
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 1, 3, 3], np.zeros(72, np.float32))
    m = helper.make_tensor("m", TensorProto.FLOAT, [28, 10], np.zeros(280, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("MatMul", ["c", "m"], ["y"])],
        "g",
        [x],
        [y],
        [w, m],
    )
    cost = V.model_cost(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert cost["flops_per_digit"] == 2 * (8 * 28 * 28 * 9) + 2 * (8 * 28 * 10 * 28)
    assert cost["parameters"] == 72 + 280 and cost["unsized_nodes"] == []


def test_a_conditional_model_keeps_its_int64_label_input() -> None:
    # decoder: z [N,4] and label [N] -> one-hot embedding added to a 4->784 layer.
    nodes = [
        helper.make_node("Gather", ["emb", "label"], ["e"]),
        helper.make_node("Gemm", ["z", "w"], ["h"]),
        helper.make_node("Add", ["h", "e"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["image"]),
    ]
    rng = np.random.default_rng(0)
    inits = [
        helper.make_tensor("emb", TensorProto.FLOAT, [10, 784], rng.normal(size=7840).astype(np.float32)),
        helper.make_tensor("w", TensorProto.FLOAT, [4, 784], rng.normal(size=3136).astype(np.float32)),
        helper.make_tensor("shape", TensorProto.INT64, [4], np.array([-1, 1, 28, 28])),
    ]
    out = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1, 28, 28]) for n in ("logits", "image")]
    ins = [
        helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4]),
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
    ]
    blob = helper.make_model(
        helper.make_graph(nodes, "d", ins, out, inits), opset_imports=[helper.make_opsetid("", 18)]
    ).SerializeToString()
    feeds = {"z": rng.standard_normal((5, 4), dtype=np.float32), "label": np.arange(5, dtype=np.int64)}
    for convert in (V.quantize_int8, V.convert_fp16):
        converted = convert(blob)
        session = ort.InferenceSession(converted, providers=["CPUExecutionProvider"])
        assert {i.name: i.type for i in session.get_inputs()} == {"z": "tensor(float)", "label": "tensor(int64)"}
        diffs = V.compare(blob, converted, feeds)
        assert diffs["image"]["mean_abs_diff"] < 0.02
    assert V.model_cost(onnx.load_from_string(blob))["flops_per_digit"] == 2 * 4 * 784
