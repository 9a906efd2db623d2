"""`digitvae export-triton`: the repository's layout, its configs against the ONNX graphs, the ensemble, errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from helpers import assert_clean_failure, invoke, listing, ok

from digitvae.export.triton import Serving, export_triton
from digitvae.runtime import DigitVAE
from digitvae.runtime.errors import IntegrityError, MissingDependencyError, OutputError
from digitvae.runtime.folders.locate import list_shipped_models, shipped_models_dir
from digitvae.runtime.folders.reading import read_manifest

# Triton's own ModelConfig protobuf: the [triton] extra (a runtime-only install has none).
pb: Any = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs the [triton] extra (tritonclient)")

SHIPPED = list_shipped_models()
ONNX_TYPES = {"tensor(float)": pb.TYPE_FP32, "tensor(int64)": pb.TYPE_INT64}
NUMPY_TYPES = {pb.TYPE_FP32: np.float32, pb.TYPE_INT64: np.int64}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a repository of every shipped model, written by the command line."""
    out = tmp_path_factory.mktemp("triton") / "repo"
    result = ok(invoke("export-triton", *SHIPPED, "-o", out))
    assert f"wrote {4 * len(SHIPPED)} Triton models (fp32) to {out}" in result.output
    assert "tritonserver --model-repository=" in result.output
    return out


def read_config(path: Path) -> Any:
    """Parse a config.pbtxt strictly (an unknown field is an error) into tritonclient's ModelConfig."""
    return text_format.Parse(path.read_text(encoding="utf-8"), pb.ModelConfig())


def configs(repo: Path) -> dict[str, Any]:
    return {p.parent.name: read_config(p) for p in sorted(repo.glob("*/config.pbtxt"))}


def model_shape(tensor: Any) -> list[int]:
    """Return the per-item shape the model itself sees: the reshape where there is one."""
    return list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)


# ---------------------------------------------------------------------------------------------------------------
# layout and configs


def test_the_repository_holds_four_models_per_model_folder(repo: Path) -> None:
    expected = []
    for model in SHIPPED:
        for part in ("encoder", "decoder", "prior"):
            expected += [f"{model}-{part}", f"{model}-{part}/1", f"{model}-{part}/1/model.onnx"]
            expected.append(f"{model}-{part}/config.pbtxt")
        # Triton loads no model without a version folder, an ensemble's empty one included.
        expected += [f"{model}-generate", f"{model}-generate/1", f"{model}-generate/config.pbtxt"]
    assert listing(repo) == sorted(expected)
    assert [p.name for p in repo.parent.iterdir()] == ["repo"]  # no temporary folder left beside it


def test_every_config_parses_strictly_and_names_its_folder(repo: Path) -> None:
    found = configs(repo)
    assert len(found) == 4 * len(SHIPPED)
    for name, config in found.items():
        assert config.name == name
        assert config.max_batch_size == 4096
        if name.endswith("-generate"):
            assert config.platform == "ensemble" and not config.backend
            assert not config.instance_group and not config.HasField("dynamic_batching")
        else:
            assert config.backend == "onnxruntime" and not config.platform
            assert config.HasField("dynamic_batching")
            assert list(config.dynamic_batching.preferred_batch_size) == []
            assert config.dynamic_batching.max_queue_delay_microseconds == 100
            [group] = config.instance_group
            assert (group.kind, group.count) == (pb.ModelInstanceGroup.KIND_AUTO, 1)
            assert (repo / name / "1" / "model.onnx").is_file()
    text = (repo / "mnist-vae-decoder" / "config.pbtxt").read_text(encoding="utf-8")
    assert text.startswith("# mnist-vae-decoder: decoder.onnx of model mnist-vae (fp32), sha256 ")


def test_a_stray_field_would_fail_the_strict_parse(repo: Path) -> None:
    # The check above means something only if the parser does refuse what ModelConfig lacks.
    text = (repo / "mnist-vae-decoder" / "config.pbtxt").read_text(encoding="utf-8")
    with pytest.raises(text_format.ParseError):
        text_format.Parse(text + "\nbatch_size_limit: 3\n", pb.ModelConfig())


def test_config_tensors_match_the_onnx_graphs(repo: Path) -> None:
    checked = 0
    for name, config in configs(repo).items():
        if config.platform == "ensemble":
            continue
        session = ort.InferenceSession(str(repo / name / "1" / "model.onnx"))
        for declared, graph in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
            assert sorted(t.name for t in declared) == sorted(a.name for a in graph), name
            by_name = {a.name: a for a in graph}
            for tensor in declared:
                arg = by_name[tensor.name]
                assert tensor.data_type == ONNX_TYPES[arg.type], (name, tensor.name)
                # The batch dimension is the graph's first, symbolic, and left out of dims.
                assert not isinstance(arg.shape[0], int), (name, tensor.name, arg.shape)
                assert model_shape(tensor) == list(arg.shape[1:]), (name, tensor.name, arg.shape)
                # Triton forbids empty dims: a scalar per item is [1] for clients, reshaped to [].
                assert list(tensor.dims) == (list(arg.shape[1:]) or [1])
                checked += 1
    assert checked == sum(12 if "cvae" in model else 10 for model in SHIPPED)


def test_onnx_files_are_the_model_folders_files_byte_for_byte(repo: Path) -> None:
    for model in SHIPPED:
        folder = shipped_models_dir() / model
        files = read_manifest(folder).files("fp32")
        for part in ("encoder", "decoder", "prior"):
            copied = (repo / f"{model}-{part}" / "1" / "model.onnx").read_bytes()
            assert copied == (folder / files[part].path).read_bytes()
            assert hashlib.sha256(copied).hexdigest() == files[part].sha256


def test_a_conditional_model_takes_labels_and_the_others_do_not(repo: Path) -> None:
    found = configs(repo)
    for model in SHIPPED:
        for part in ("encoder", "decoder"):
            inputs = {t.name: t for t in found[f"{model}-{part}"].input}
            assert ("label" in inputs) == (read_manifest(shipped_models_dir() / model).num_classes > 0)
    label = {t.name: t for t in found["mnist-cvae-decoder"].input}["label"]
    assert (label.data_type, list(label.dims), label.HasField("reshape"), list(label.reshape.shape)) == (
        pb.TYPE_INT64,
        [1],
        True,
        [],
    )
    [step_decoder] = [s for s in found["mnist-cvae-generate"].ensemble_scheduling.step if "decoder" in s.model_name]
    assert dict(step_decoder.input_map) == {"z": "z_for_decoder", "label": "label"}


# ---------------------------------------------------------------------------------------------------------------
# the generate ensemble


def test_ensemble_steps_wire_tensors_that_exist(repo: Path) -> None:
    found = configs(repo)
    for name, ensemble in found.items():
        if ensemble.platform != "ensemble":
            continue
        # What Triton checks at load: every tensor a step reads exists by then, with the same type
        # and dims; every input of a step's model is mapped once; every output is produced.
        tensors = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
        produced: set[str] = set()
        for step in ensemble.ensemble_scheduling.step:
            model = found[step.model_name]
            assert model.platform != "ensemble" and 0 < ensemble.max_batch_size <= model.max_batch_size
            inputs = {t.name: t for t in model.input}
            assert sorted(step.input_map) == sorted(inputs), (name, step.model_name)
            for key, value in step.input_map.items():
                assert tensors[value] == (inputs[key].data_type, list(inputs[key].dims)), (name, key)
            outputs = {t.name: t for t in model.output}
            for key, value in step.output_map.items():
                assert value not in tensors, (name, value)
                tensors[value] = (outputs[key].data_type, list(outputs[key].dims))
                produced.add(value)
        outputs_named = {t.name for t in ensemble.output}
        assert produced >= outputs_named
        for out in ensemble.output:
            assert tensors[out.name] == (out.data_type, list(out.dims)), (name, out.name)
        used = {v for step in ensemble.ensemble_scheduling.step for v in step.input_map.values()}
        assert used >= {t.name for t in ensemble.input}
        assert produced - outputs_named <= used  # an internal tensor is read by a later step
        # Triton drops the step making an output a request leaves out: no step may read an output.
        assert not used & {t.name for t in ensemble.output}, name


def pruned_steps(ensemble: Any, requested: set[str]) -> list[Any]:
    """Return the steps Triton runs for a request of some outputs (its ensemble scheduler's pruning).

    Triton walks back from each output left out of the request: a step none of whose outputs
    is wanted is dropped, and so, in turn, is the step making a tensor no remaining step reads.
    It does not ask whether a dropped output is also another step's input.
    """
    steps = list(ensemble.ensemble_scheduling.step)
    readers = {i: {v for v in step.input_map.values()} for i, step in enumerate(steps)}
    maker = {v: i for i, step in enumerate(steps) for v in step.output_map.values()}
    wanted_outputs = {i: len(step.output_map) for i, step in enumerate(steps)}
    dropped: set[int] = set()
    ignored = {t.name for t in ensemble.output} - requested
    while ignored:
        following: set[str] = set()
        for tensor in ignored:
            if tensor not in maker:
                continue  # an ensemble input
            i = maker[tensor]
            wanted_outputs[i] -= 1
            if wanted_outputs[i] == 0:
                dropped.add(i)
                for value in readers[i]:
                    if all(value not in readers[j] for j in range(len(steps)) if j not in dropped):
                        following.add(value)
        ignored = following
    return [step for i, step in enumerate(steps) if i not in dropped]


def run_ensemble(
    repo: Path, name: str, request: dict[str, np.ndarray], requested: set[str] | None = None
) -> dict[str, np.ndarray]:
    """Run an ensemble as Triton would: the steps it keeps for the requested outputs, each model's reshapes applied."""
    ensemble = read_config(repo / name / "config.pbtxt")
    for tensor in ensemble.input:  # what a client must send: [batch, *dims]
        assert request[tensor.name].shape[1:] == tuple(tensor.dims), tensor.name
        assert request[tensor.name].dtype == NUMPY_TYPES[tensor.data_type], tensor.name
    requested = requested or {t.name for t in ensemble.output}
    tensors = dict(request)
    # Triton runs a step once its inputs exist; in declared order that is the same here.
    for step in pruned_steps(ensemble, requested):
        if not all(value in tensors for value in step.input_map.values()):
            pytest.fail(f"{name}: step {step.model_name} would wait forever for {dict(step.input_map)}")
        model = read_config(repo / step.model_name / "config.pbtxt")
        session = ort.InferenceSession(str(repo / step.model_name / "1" / "model.onnx"))
        feeds = {}
        for tensor in model.input:
            value = tensors[step.input_map[tensor.name]]
            feeds[tensor.name] = value.reshape(len(value), *model_shape(tensor))
        wanted = list(step.output_map)
        for key, value in zip(wanted, session.run(wanted, feeds)):
            [declared] = [t for t in model.output if t.name == key]
            tensors[step.output_map[key]] = value.reshape(len(value), *declared.dims)
    missing = requested - set(tensors)
    assert not missing, f"{name}: Triton would answer 'unexpected deadlock': {sorted(missing)} never made"
    return {t: tensors[t] for t in sorted(requested)}


def drawn_like_the_runtime(model: str, n: int, seed: int, digit: int | None = None) -> dict[str, np.ndarray]:
    """Return the generate request for DigitVAE.generate(n, seed, digit): noise, then uniform, from one generator."""
    manifest = read_manifest(shipped_models_dir() / model)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, manifest.latent_dim), dtype=np.float32)
    uniform = rng.random(n, dtype=np.float32)
    if digit is not None:
        label = np.full(n, digit, np.int64)
    elif manifest.num_classes:
        label = np.arange(n, dtype=np.int64) % manifest.num_classes  # generate cycles the classes
    else:
        label = np.full(n, -1, np.int64)  # any class
    return {"noise": noise, "uniform": uniform[:, None], "label": label[:, None]}


@pytest.mark.parametrize("model", SHIPPED)
@pytest.mark.parametrize("n", [1, 5, 37])
def test_the_ensemble_reproduces_generate_bit_for_bit(repo: Path, model: str, n: int) -> None:
    vae = DigitVAE.load(model)
    out = run_ensemble(repo, f"{model}-generate", drawn_like_the_runtime(model, n, seed=11))
    assert out["image"].shape == (n, 1, 28, 28)
    np.testing.assert_array_equal(out["image"].reshape(n, 28, 28), vae.generate(n, seed=11))
    np.testing.assert_array_equal(out["z"], vae.sample_latents(n, seed=11))


@pytest.mark.parametrize("model", ["mnist-vae", "mnist-cvae"])
def test_a_request_for_one_output_still_gets_it(repo: Path, model: str) -> None:
    vae = DigitVAE.load(model)
    request = drawn_like_the_runtime(model, 7, seed=9)
    image = run_ensemble(repo, f"{model}-generate", request, {"image"})
    np.testing.assert_array_equal(image["image"].reshape(7, 28, 28), vae.generate(7, seed=9))
    z = run_ensemble(repo, f"{model}-generate", request, {"z"})
    np.testing.assert_array_equal(z["z"], vae.sample_latents(7, seed=9))
    assert list(z) == ["z"]


def test_the_pruning_model_catches_an_ensemble_whose_output_feeds_a_step(repo: Path) -> None:
    # The design this replaced: one sampler step whose `z` is both an output and the decoder's input.
    ensemble = read_config(repo / "mnist-vae-generate" / "config.pbtxt")
    del ensemble.ensemble_scheduling.step[1]
    ensemble.ensemble_scheduling.step[1].input_map["z"] = "z"
    kept = [s.model_name for s in pruned_steps(ensemble, {"image"})]
    assert kept == ["mnist-vae-decoder"]  # the sampler is dropped: Triton's "unexpected deadlock"
    assert [s.model_name for s in pruned_steps(ensemble, {"z", "image"})] == ["mnist-vae-prior", "mnist-vae-decoder"]


def test_the_ensemble_draws_a_digit_asked_of_a_prior_fit_per_class(repo: Path) -> None:
    vae = DigitVAE.load("mnist-vae")
    out = run_ensemble(repo, "mnist-vae-generate", drawn_like_the_runtime("mnist-vae", 12, seed=4, digit=7))
    np.testing.assert_array_equal(out["image"].reshape(12, 28, 28), vae.generate(12, seed=4, digit=7))
    # ... and another seed draws other digits: the request's numbers are what decides them.
    assert not np.array_equal(out["image"].reshape(12, 28, 28), vae.generate(12, seed=5, digit=7))


# ---------------------------------------------------------------------------------------------------------------
# variants, the N(0, I) prior, options


def test_a_variant_exports_its_own_files_under_the_same_names(tmp_path: Path) -> None:
    written = export_triton(["mnist-cvae"], tmp_path / "repo", variant="int8")
    assert "mnist-cvae-decoder/1/model.onnx" in written
    folder = shipped_models_dir() / "mnist-cvae"
    for part, file in (("encoder", "encoder.int8.onnx"), ("decoder", "decoder.int8.onnx"), ("prior", "prior.onnx")):
        assert (tmp_path / "repo" / f"mnist-cvae-{part}" / "1" / "model.onnx").read_bytes() == (
            folder / file
        ).read_bytes()
    vae = DigitVAE.load("mnist-cvae", variant="int8")
    out = run_ensemble(tmp_path / "repo", "mnist-cvae-generate", drawn_like_the_runtime("mnist-cvae", 9, seed=2))
    np.testing.assert_array_equal(out["image"].reshape(9, 28, 28), vae.generate(9, seed=2))


def standard_normal_copy(tmp_path: Path) -> Path:
    """Return a copy of mnist-vae without its learned prior (model.json says standard_normal)."""
    folder = tmp_path / "plain-vae"
    folder.mkdir()
    data = json.loads((shipped_models_dir() / "mnist-vae" / "model.json").read_text(encoding="utf-8"))
    data["name"], data["prior"] = "plain-vae", "standard_normal"
    for files in data["variants"].values():
        for role in ("prior", "prior_density"):
            del files[role]
        for entry in files.values():
            shutil.copy(shipped_models_dir() / "mnist-vae" / entry["path"], folder / entry["path"])
    (folder / "model.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_a_model_with_the_standard_normal_prior_gets_no_ensemble(tmp_path: Path) -> None:
    written = export_triton([standard_normal_copy(tmp_path)], tmp_path / "repo")
    assert written == [
        "plain-vae-decoder/1/model.onnx",
        "plain-vae-decoder/config.pbtxt",
        "plain-vae-encoder/1/model.onnx",
        "plain-vae-encoder/config.pbtxt",
    ]
    # Its generate is the decoder fed N(0, I) noise as z: what DigitVAE.generate does for it.
    vae = DigitVAE.load(tmp_path / "plain-vae")
    noise = np.random.default_rng(3).standard_normal((6, vae.latent_dim), dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "repo" / "plain-vae-decoder" / "1" / "model.onnx"))
    np.testing.assert_array_equal(session.run(["image"], {"z": noise})[0].reshape(6, 28, 28), vae.generate(6, seed=3))


def test_serving_options_reach_every_onnxruntime_config(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    ok(
        invoke(
            "export-triton", "mnist-vae-2d", "-o", out, "--max-batch-size", 64, "--queue-delay-us", 0,
            "--instance-kind", "cpu", "--instances", 2,
        )
    )  # fmt: skip
    for name, config in configs(out).items():
        assert config.max_batch_size == 64
        if config.platform != "ensemble":
            assert config.dynamic_batching.max_queue_delay_microseconds == 0
            assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 2)], name
            assert "KIND_CPU" in (out / name / "config.pbtxt").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# errors


def test_an_unknown_model_is_one_clean_error(tmp_path: Path) -> None:
    assert_clean_failure(invoke("export-triton", "no-such-model", "-o", tmp_path / "repo"), "no model 'no-such-model'")
    assert_clean_failure(invoke("export-triton", "mnist-vae", "-o", tmp_path / "repo", "--variant", "int4"), "int4")
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_onnx_file_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder = shutil.copytree(shipped_models_dir() / "mnist-vae", tmp_path / "model")
    blob = bytearray((folder / "decoder.onnx").read_bytes())
    blob[-1] ^= 1
    (folder / "decoder.onnx").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        export_triton([folder], tmp_path / "repo")
    assert_clean_failure(invoke("export-triton", folder, "-o", tmp_path / "repo"), "sha256 mismatch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_two_models_of_one_name_are_refused(tmp_path: Path) -> None:
    assert_clean_failure(invoke("export-triton", "mnist-vae", "mnist-vae", "-o", tmp_path / "repo"), "both make")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_repository_is_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    out.mkdir()
    (out / "mine.txt").write_text("keep", encoding="utf-8")
    assert_clean_failure(invoke("export-triton", "mnist-vae-2d", "-o", out), "already exists; pass --force")
    assert listing(out) == ["mine.txt"]
    ok(invoke("export-triton", "mnist-vae-2d", "-o", out, "--force"))
    assert "mine.txt" not in listing(out) and "mnist-vae-2d-generate/config.pbtxt" in listing(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="not a folder"):
        export_triton(["mnist-vae-2d"], tmp_path / "file", force=True)
    assert (tmp_path / "file").read_text(encoding="utf-8") == "x"


def _refuses_writes(directory: Path) -> bool:
    try:
        (directory / ".probe").mkdir()
    except OSError:
        return True
    (directory / ".probe").rmdir()
    return False


def test_an_unwritable_output_is_one_clean_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("", encoding="utf-8")
    assert_clean_failure(invoke("export-triton", "mnist-vae-2d", "-o", tmp_path / "plain" / "repo"), "cannot write")
    assert_clean_failure(invoke("export-triton", "mnist-vae-2d", "-o", tmp_path / "missing" / "repo"), "cannot write")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        # Root writes through permission bits; sysfs refuses new folders even to root.
        target = locked if _refuses_writes(locked) else Path("/sys")
        if not _refuses_writes(target):
            pytest.fail("found no folder that refuses writes to test with")
        assert_clean_failure(invoke("export-triton", "mnist-vae-2d", "-o", target / "digitvae-repo"), "cannot write")
        assert listing(locked) == []
    finally:
        locked.chmod(0o755)


def test_a_failure_while_writing_leaves_the_old_repository_and_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "repo"
    export_triton(["mnist-vae-2d"], out)
    before = {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()}
    real = Path.write_bytes
    calls = []

    def fail_third(self: Path, data: bytes) -> int:
        calls.append(self)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fail_third)
    with pytest.raises(OutputError, match="No space left on device"):
        export_triton(["mnist-vae"], out, force=True)
    monkeypatch.undo()
    assert {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_a_missing_tritonclient_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail, as on an install without the extra.
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    with pytest.raises(MissingDependencyError, match=r"pip install .*\[triton\]"):
        export_triton(["mnist-vae"], tmp_path / "repo")
    assert_clean_failure(invoke("export-triton", "mnist-vae", "-o", tmp_path / "repo"), "[triton]")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.heavy
def test_the_export_needs_neither_torch_nor_onnx(tmp_path: Path) -> None:
    code = """
        import sys
        sys.modules["torch"] = None
        sys.modules["onnx"] = None
        from digitvae.cli.main import cli
        try:
            cli(["export-triton", "mnist-cvae", "-o", "repo"], prog_name="digitvae")
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo" / "mnist-cvae-generate" / "config.pbtxt").is_file()


def test_serving_settings_out_of_range_are_input_errors() -> None:
    from digitvae.runtime.errors import InputError

    for bad in ({"max_batch_size": 0}, {"max_batch_size": 4097}, {"kind": "tpu"}, {"instances": 0}):
        with pytest.raises(InputError):
            Serving(**bad)  # type: ignore[arg-type]


def test_a_model_name_that_cannot_name_a_triton_model_is_refused(tmp_path: Path) -> None:
    folder = shutil.copytree(shipped_models_dir() / "mnist-vae-2d", tmp_path / "model")
    data = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    data["name"] = "my vae/2"
    (folder / "model.json").write_text(json.dumps(data), encoding="utf-8")
    assert_clean_failure(invoke("export-triton", folder, "-o", tmp_path / "repo"), "cannot name a triton model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
