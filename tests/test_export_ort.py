"""`digitvae export-ort`: each .ort file against its .onnx file, ort.json, required_operators.config, errors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import assert_clean_failure, invoke, listing, ok
from mnist_files import VALID_IMAGES
from onnxruntime.tools.reduced_build_config_parser import parse_config

import digitvae.export.ort as ort_export
from digitvae.export.ort import CONFIG_NAME, MANIFEST_NAME, export_ort, read_required_operators
from digitvae.runtime.digits.idx import read_mnist_labels
from digitvae.runtime.errors import IntegrityError, MissingDependencyError, ModelError, OutputError
from digitvae.runtime.folders.locate import list_shipped_models, shipped_models_dir
from digitvae.runtime.folders.manifest import PRIOR_ROLES
from digitvae.runtime.folders.reading import read_manifest
from digitvae.runtime.inference.sessions import session_options

SHIPPED = list_shipped_models()
HAVE_ONNX = importlib.util.find_spec("onnx") is not None


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Return the export-ort folder of every shipped model, written by the command line."""
    root = tmp_path_factory.mktemp("ort")
    folders = {}
    for model in SHIPPED:
        out = root / model
        result = ok(invoke("export-ort", model, "-o", out))
        assert f"ORT files of {model} to {out}:" in result.output
        assert f"--include_ops_by_config {out / CONFIG_NAME}" in result.output
        folders[model] = out
    assert sorted(p.name for p in root.iterdir()) == sorted(SHIPPED)  # no temporary folder left beside them
    return folders


def converted(model: str) -> dict[tuple[str, str], str]:
    """Return (variant, role) -> ONNX file name for every fp32 and int8 file model.json lists."""
    manifest = read_manifest(shipped_models_dir() / model)
    return {
        (variant, role): entry.path
        for variant in ("fp32", "int8")
        for role, entry in manifest.variants.get(variant, {}).items()
    }


def feeds(session: ort.InferenceSession, role: str, conditional: bool, digits: np.ndarray) -> dict[str, np.ndarray]:
    """Return inputs for a session: real digits and their labels, seeded codes, noise and uniforms."""
    n = len(digits)
    rng = np.random.default_rng(7)
    labels = read_mnist_labels(VALID_IMAGES.with_name("t10k-labels-idx1-ubyte.gz"))[:n].astype(np.int64)
    if role in PRIOR_ROLES and not conditional:
        labels[::3] = -1  # the prior's "any class" as well as each digit
    out = {}
    for tensor in session.get_inputs():
        if tensor.name == "image":
            out["image"] = (digits.astype(np.float32) / 255.0).reshape(n, 1, 28, 28)
        elif tensor.name in ("z", "noise"):
            out[tensor.name] = rng.standard_normal((n, tensor.shape[1]), dtype=np.float32)
        elif tensor.name == "uniform":
            out["uniform"] = rng.random(n, dtype=np.float32)
        elif tensor.name == "label":
            out["label"] = labels
        else:
            raise AssertionError(f"input {tensor.name!r} of a {role} is not in the contract")
    return out


def ort_format_field(data: bytes) -> str:
    """Return field 0 (ort_version) of an ORT file's root table, read by hand from the flatbuffer."""
    assert data[4:8] == b"ORTM"  # the ORT format's file identifier
    table = int.from_bytes(data[0:4], "little")
    vtable = table - int.from_bytes(data[table : table + 4], "little", signed=True)
    field = table + int.from_bytes(data[vtable + 4 : vtable + 6], "little")
    start = field + int.from_bytes(data[field : field + 4], "little")
    return data[start + 4 : start + 4 + int.from_bytes(data[start : start + 4], "little")].decode("ascii")


def session(source: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(source, sess_options=session_options(1), providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------------------------
# the files


@pytest.mark.parametrize("model", SHIPPED)
def test_every_ort_file_gives_its_onnx_files_outputs_bit_for_bit(
    exported: dict[str, Path], model: str, digits: np.ndarray
) -> None:
    model_dir = shipped_models_dir() / model
    conditional = read_manifest(model_dir).conditional
    for (variant, role), name in converted(model).items():
        onnx_session = session((model_dir / name).read_bytes())
        ort_path = exported[model] / name.replace(".onnx", ".ort")
        assert ort_path.read_bytes()[4:8] == b"ORTM"  # the ORT format's flatbuffer identifier
        ort_session = session(str(ort_path))
        inputs = feeds(onnx_session, role, conditional, digits)
        expected = onnx_session.run(None, inputs)
        found = ort_session.run(None, inputs)
        assert [o.name for o in ort_session.get_outputs()] == [o.name for o in onnx_session.get_outputs()]
        for want, got, out in zip(expected, found, onnx_session.get_outputs()):
            assert got.dtype == want.dtype and got.shape == want.shape, (model, variant, role, out.name)
            assert got.tobytes() == want.tobytes(), (model, variant, role, out.name)


def test_the_folder_holds_the_ort_files_ort_json_and_the_config(exported: dict[str, Path]) -> None:
    for model, out in exported.items():
        names = {name.replace(".onnx", ".ort") for name in converted(model).values()}
        assert listing(out) == sorted([*names, MANIFEST_NAME, CONFIG_NAME])
        assert not any(name.endswith("fp16.ort") for name in names)


def test_ort_json_records_each_files_sha256_source_and_onnxruntime(exported: dict[str, Path]) -> None:
    for model, out in exported.items():
        model_dir = shipped_models_dir() / model
        manifest = read_manifest(model_dir)
        document = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
        assert document["format"] == "digitvae-ort" and document["format_version"] == 1
        assert document["model"] == model and document["latent_dim"] == manifest.latent_dim
        assert document["num_classes"] == manifest.num_classes
        assert document["required_operators"] == CONFIG_NAME
        assert sorted(document["variants"]) == ["fp32", "int8"]
        for (variant, role), name in converted(model).items():
            entry = document["variants"][variant][role]
            assert entry["path"] == name.replace(".onnx", ".ort")
            data = (out / entry["path"]).read_bytes()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
            assert entry["onnx"] == {"path": name, "sha256": manifest.variants[variant][role].sha256}
            assert entry["onnx"]["sha256"] == hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
            assert entry["onnxruntime"] == ort.__version__
            assert entry["ort_format"] == ort_format_field(data)
        assert sum(len(files) for files in document["variants"].values()) == len(converted(model))


def test_the_config_lists_the_operators_of_every_file(exported: dict[str, Path], tmp_path: Path) -> None:
    for model, out in exported.items():
        # onnxruntime's own parser, as its build reads the file: domain -> opset -> operators.
        required, _ = parse_config(str(out / CONFIG_NAME))
        ours = read_required_operators(out / CONFIG_NAME)
        assert {(d, v): tuple(sorted(ops)) for d, opsets in required.items() for v, ops in opsets.items()} == ours
        assert "ai.onnx" in required and "Gemm" in set().union(*required["ai.onnx"].values())
        # int8 files run as onnxruntime's contrib operators.
        assert "DynamicQuantizeMatMul" in set().union(*required["com.microsoft"].values())
        # The config covers all files: the union of what each file alone needs, nothing more.
        union: dict[str, dict[int, set[str]]] = {}
        for ort_file in sorted(out.glob("*.ort")):
            alone = tmp_path / f"{model}-{ort_file.stem}.config"
            ort_export.ort_tools().create_config_from_models([ort_file], alone, False)
            for domain, opsets in parse_config(str(alone))[0].items():
                for opset, ops in opsets.items():
                    union.setdefault(domain, {}).setdefault(opset, set()).update(ops)
        assert union == required
        lines = (out / CONFIG_NAME).read_text(encoding="utf-8").splitlines()
        assert [line[4:] for line in lines if line.startswith("# - ")] == sorted(p.name for p in out.glob("*.ort"))


@pytest.mark.skipif(not HAVE_ONNX, reason="onnxruntime's convert_onnx_models_to_ort imports onnx: the [prior] extra")
def test_the_files_match_what_onnxruntimes_own_converter_writes(exported: dict[str, Path], tmp_path: Path) -> None:
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    model = "mnist-vae"
    source = tmp_path / "onnx"
    source.mkdir()
    for name in set(converted(model).values()):
        shutil.copy(shipped_models_dir() / model / name, source / name)
    convert_onnx_models_to_ort(source, output_dir=tmp_path / "tool", optimization_styles=[OptimizationStyle.Fixed])
    assert parse_config(str(tmp_path / "tool" / CONFIG_NAME))[0] == parse_config(str(exported[model] / CONFIG_NAME))[0]
    # Saving is not byte-for-byte repeatable in onnxruntime, so the graphs are compared by what they compute.
    conditional = read_manifest(shipped_models_dir() / model).conditional
    digits = np.random.default_rng(3).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    for (_, role), name in converted(model).items():
        theirs = session(str(tmp_path / "tool" / name.replace(".onnx", ".ort")))
        ours = session(str(exported[model] / name.replace(".onnx", ".ort")))
        inputs = feeds(theirs, role, conditional, digits)
        for want, got in zip(theirs.run(None, inputs), ours.run(None, inputs)):
            assert got.tobytes() == want.tobytes(), name


def test_the_python_api_reports_what_it_wrote(tmp_path: Path) -> None:
    done = export_ort("mnist-vae-2d", tmp_path / "out")
    assert done.model == "mnist-vae-2d" and done.out_dir == tmp_path / "out"
    assert {(f.variant, f.role) for f in done.files} == set(converted("mnist-vae-2d"))
    assert done.operators == read_required_operators(tmp_path / "out" / CONFIG_NAME)
    for f in done.files:
        assert f.size == (tmp_path / "out" / f.path).stat().st_size and f.onnxruntime == ort.__version__


def test_a_model_folder_takes_the_files_its_manifest_lists(tmp_path: Path) -> None:
    folder = shutil.copytree(shipped_models_dir() / "mnist-vae-2d", tmp_path / "model")
    data = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    del data["variants"]["int8"]  # a folder with fp32 alone
    (folder / "model.json").write_text(json.dumps(data), encoding="utf-8")
    for extra in folder.glob("*.int8.onnx"):
        extra.unlink()
    ok(invoke("export-ort", folder / "model.json", "-o", tmp_path / "out"))
    expected = {entry["path"].replace(".onnx", ".ort") for entry in data["variants"]["fp32"].values()}
    assert listing(tmp_path / "out") == sorted([*expected, MANIFEST_NAME, CONFIG_NAME])
    document = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert list(document["variants"]) == ["fp32"]
    required = parse_config(str(tmp_path / "out" / CONFIG_NAME))[0]
    assert "DynamicQuantizeMatMul" not in set().union(*required["com.microsoft"].values())  # no int8 file


# ---------------------------------------------------------------------------------------------------------------
# replacing a folder


def test_a_previous_export_is_replaced_and_an_unrelated_folder_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok(invoke("export-ort", "mnist-vae-2d", "-o", out))
    before = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    ok(invoke("export-ort", "mnist-vae-2d", "-o", out))  # its own output: replaced without --force
    assert json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))["model"] == before["model"]
    (out / "notes.txt").write_text("mine", encoding="utf-8")  # now it holds a file export-ort did not write
    assert_clean_failure(invoke("export-ort", "mnist-vae-2d", "-o", out), "pass --force")
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    ok(invoke("export-ort", "mnist-vae-2d", "-o", out, "--force"))
    assert not (out / "notes.txt").exists() and (out / "decoder.ort").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_existing_unrelated_folder_is_left_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(OutputError, match="export-ort did not write"):
        export_ort("mnist-vae", out)
    assert_clean_failure(invoke("export-ort", "mnist-vae", "-o", out), "already exists")
    assert listing(out) == ["mine.txt"] and [p.name for p in tmp_path.iterdir()] == ["out"]
    (out / "mine.txt").unlink()
    ok(invoke("export-ort", "mnist-vae-2d", "-o", out))  # an empty folder is no one's work


def test_the_model_folder_itself_is_never_the_output(tmp_path: Path) -> None:
    folder = shutil.copytree(shipped_models_dir() / "mnist-vae-2d", tmp_path / "models" / "model")
    before = listing(tmp_path)
    for out in (folder, folder.parent):
        assert_clean_failure(invoke("export-ort", folder, "-o", out, "--force"), "holds the model folder")
    assert listing(tmp_path) == before


def test_a_file_in_the_way_is_refused_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x", encoding="utf-8")
    assert_clean_failure(invoke("export-ort", "mnist-vae", "-o", tmp_path / "out", "--force"), "is a file")
    with pytest.raises(OutputError, match="not a folder"):
        export_ort("mnist-vae", tmp_path / "out", force=True)
    assert (tmp_path / "out").read_text(encoding="utf-8") == "x" and listing(tmp_path) == ["out"]


def test_a_failure_midway_keeps_the_previous_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    export_ort("mnist-vae-2d", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = ort_export.convert, []

    def failing(blob: bytes, target: Path, source: Path) -> None:
        calls.append(source)
        if len(calls) == 3:
            raise ModelError(f"{source}: onnxruntime cannot convert it to ORT format: simulated")
        real(blob, target, source)

    monkeypatch.setattr(ort_export, "convert", failing)
    assert_clean_failure(invoke("export-ort", "mnist-vae-2d", "-o", out, "--force"), "simulated")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# ---------------------------------------------------------------------------------------------------------------
# bad input


def test_an_unknown_model_is_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    assert_clean_failure(invoke("export-ort", "no-such-model", "-o", tmp_path / "out"), "no model 'no-such-model'")
    assert list(tmp_path.iterdir()) == []


def test_a_file_whose_sha256_is_wrong_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder = shutil.copytree(shipped_models_dir() / "mnist-vae", tmp_path / "model")
    blob = bytearray((folder / "decoder.int8.onnx").read_bytes())
    blob[-1] ^= 1
    (folder / "decoder.int8.onnx").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        export_ort(folder, tmp_path / "out")
    assert_clean_failure(invoke("export-ort", folder, "-o", tmp_path / "out"), "decoder.int8.onnx: sha256 mismatch")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_file_onnxruntime_cannot_load_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder = shutil.copytree(shipped_models_dir() / "mnist-vae-2d", tmp_path / "model")
    blob = b"\x08\x07"  # a ModelProto with ir_version 7 and no graph: well-formed, its hash listed
    (folder / "decoder.onnx").write_bytes(blob)
    data = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    data["variants"]["fp32"]["decoder"]["sha256"] = hashlib.sha256(blob).hexdigest()
    (folder / "model.json").write_text(json.dumps(data), encoding="utf-8")
    assert_clean_failure(invoke("export-ort", folder, "-o", tmp_path / "out"), "cannot convert it to ORT format")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("where", ["missing/out", "file/out"])
def test_an_output_folder_that_cannot_be_made_is_one_error_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert_clean_failure(invoke("export-ort", "mnist-vae", "-o", tmp_path / where), "cannot write")
    assert listing(tmp_path) == ["file"]


def test_a_missing_ort_format_tool_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail, as on an onnxruntime build without its tools.
    monkeypatch.setitem(sys.modules, "onnxruntime.tools.ort_format_model", None)
    with pytest.raises(MissingDependencyError, match="tools.ort_format_model"):
        export_ort("mnist-vae", tmp_path / "out")
    assert_clean_failure(invoke("export-ort", "mnist-vae", "-o", tmp_path / "out"), "pip install")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.heavy
def test_the_export_needs_neither_torch_nor_onnx(tmp_path: Path) -> None:
    code = """
        import sys
        sys.modules["torch"] = None
        sys.modules["onnx"] = None
        from digitvae.cli.main import cli
        try:
            cli(["export-ort", "mnist-cvae", "-o", "out"], prog_name="digitvae")
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        assert "torch" not in {m.split(".")[0] for m, v in sys.modules.items() if v is not None}
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "Created config" not in result.stderr  # onnxruntime's tool logs nothing through the root logger
    assert (tmp_path / "out" / "decoder.ort").is_file() and (tmp_path / "out" / CONFIG_NAME).is_file()
