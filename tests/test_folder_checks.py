"""Every writer of a model folder or repository checks what it wrote with the readers' rules before replacing anything."""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_clean_failure, invoke
from mnist_files import TRAIN_IMAGES
from signals import snapshot

from digitvae.runtime.errors import ModelError, OutputError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.reading import read_manifest
from digitvae.runtime.folders.writing import update_metrics


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """Return a copy of a shipped model folder, alone in its parent folder."""
    folder = tmp_path / "models" / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", folder)
    return folder


def _one_class_labels(path: Path, count: int = 300) -> Path:
    path.write_bytes(struct.pack(">II", 0x801, count) + bytes(count))
    return path


@pytest.mark.heavy
def test_a_prior_fit_on_labels_of_one_class_is_refused_with_the_readers_rule(model: Path, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("onnx")
    before = snapshot(model.parent)
    labels = _one_class_labels(tmp_path / "zeros-labels")
    line = assert_clean_failure(
        invoke("prior", "fit", model, "--data", TRAIN_IMAGES, "--labels", labels, "--components", "1")
    )
    assert "only class 0" in line
    assert "classes must be 0 (none) or between 2 and 1000, got 1" in line  # the reader's own words
    assert "--no-labels" in line
    assert snapshot(model.parent) == before


@pytest.mark.heavy
def test_a_prior_the_reader_would_refuse_is_never_written(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sklearn")
    from digitvae.export import prior as P

    # Without the early check, the one-class prior is fit and built: the folder check stops it.
    monkeypatch.setattr(P, "check_prior_classes", lambda classes, num_classes: None)
    before = snapshot(model.parent)
    config = P.PriorConfig(components=1, samples=1)
    with pytest.raises(ModelError) as caught:
        P.fit_model_prior(model, TRAIN_IMAGES, _one_class_labels(tmp_path / "zeros-labels"), config)
    message = str(caught.value)
    assert message.startswith(f"{model} not written: ")
    assert "classes must be 0 (none) or between 2 and 1000, got 1" in message
    assert ".m." not in message  # the hidden new folder is not named: the folder it was for is
    assert snapshot(model.parent) == before


def test_a_model_folder_whose_files_do_not_match_its_manifest_is_never_written(model: Path) -> None:
    pytest.importorskip("onnx")  # the model-folder writer stamps opsets with onnx
    from digitvae.export.folder import folder_files, write_model_folder

    manifest = read_manifest(model)
    files = folder_files(model)
    wrong = {
        variant: {role: replace(f, sha256="0" * 64) if role == "decoder" else f for role, f in entries.items()}
        for variant, entries in manifest.variants.items()
    }
    before = snapshot(model.parent)
    with pytest.raises(ModelError, match="not written: the new model folder would not load: .*sha256 mismatch"):
        write_model_folder(model, files, replace(manifest, variants=wrong), force=True)
    assert snapshot(model.parent) == before
    # Into a new folder: nothing at all is left.
    with pytest.raises(ModelError, match="sha256 mismatch"):
        write_model_folder(model.parent / "new", files, replace(manifest, variants=wrong), force=False)
    assert snapshot(model.parent) == before


def test_a_manifest_of_non_json_numbers_is_never_written(model: Path) -> None:
    pytest.importorskip("onnx")  # the model-folder writer stamps opsets with onnx
    from digitvae.export.folder import folder_files, write_model_folder

    manifest = read_manifest(model)
    broken = replace(manifest, metrics={**manifest.metrics, "valid_neg_elbo": float("nan")})
    before = snapshot(model.parent)
    with pytest.raises(ModelError, match="holds NaN, which is no JSON number"):
        write_model_folder(model, folder_files(model), broken, force=True)
    assert snapshot(model.parent) == before


@pytest.mark.heavy
def test_variants_that_would_not_load_are_never_written(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    from digitvae.export import variants as V

    real = V.build_variants

    def misrecorded(fp32: dict[str, bytes], manifest: Any) -> V.VariantBundle:
        # A slip in the writer's bookkeeping: the fp16 decoder is recorded with the encoder's sha256.
        bundle = real(fp32, manifest)
        fp16 = {
            **bundle.entries["fp16"],
            "decoder": replace(bundle.entries["fp16"]["decoder"], sha256=bundle.entries["fp16"]["encoder"].sha256),
        }
        return replace(bundle, entries={**bundle.entries, "fp16": fp16})

    monkeypatch.setattr(V, "build_variants", misrecorded)
    before = snapshot(model.parent)
    line = assert_clean_failure(invoke("variants", model), f"{model} not written: the new model folder would not load")
    assert "decoder.fp16.onnx: sha256 mismatch" in line
    assert snapshot(model.parent) == before


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        # calibrate: a range with low above high, and a principal plane of the wrong size
        ({"score": {"k": 50, "checks": {"nll": {"low": 90.0, "high": 80.0}}}}, "low < high"),
        ({"latent_plane": {"centre": [0.0], "directions": [[1.0], [0.0]], "spread": [1.0, 1.0]}}, "does not match"),
        # evaluate --write, quality --write: a figure JSON cannot hold
        ({"likelihood": {"fp32": {"iw_nll": float("inf")}}}, "holds Infinity"),
        ({"sample_quality": {"fp32": {"classes": {1, 2}}}}, "cannot be written as JSON"),
    ],
    ids=["score-range", "latent-plane", "infinite-figure", "not-json"],
)
def test_metrics_a_reader_would_refuse_are_never_written(
    model: Path, entries: dict[str, object], fragment: str
) -> None:
    before = snapshot(model.parent)
    with pytest.raises(ModelError) as caught:
        update_metrics(model, entries)
    assert str(caught.value).startswith(f"{model / 'model.json'} not written: ")
    assert fragment in str(caught.value)
    assert snapshot(model.parent) == before


def test_metrics_the_readers_accept_are_written(model: Path) -> None:
    plane = {"centre": [0.0, 0.0], "directions": [[1.0, 0.0], [0.0, 1.0]], "spread": [1.0, 2.0]}
    manifest = update_metrics(model, {"latent_plane": plane})
    assert manifest.metrics["latent_plane"] == plane
    assert json.loads((model / "model.json").read_text())["metrics"]["latent_plane"] == plane


def test_a_triton_repository_triton_would_refuse_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tritonclient.grpc")
    from digitvae.export import triton as T

    repo = tmp_path / "repo"
    T.export_triton(["mnist-vae-2d"], repo)
    before = snapshot(tmp_path)
    real = T.repository_files

    def misnamed(*args: object, **kwargs: object) -> dict[str, bytes]:
        files = real(*args, **kwargs)  # type: ignore[arg-type]
        path = "mnist-vae-2d-decoder/config.pbtxt"
        files[path] = files[path].replace(b'name: "mnist-vae-2d-decoder"', b'name: "another"')
        return files

    monkeypatch.setattr(T, "repository_files", misnamed)
    with pytest.raises(OutputError, match="not written: .*names model 'another', not its folder's name"):
        T.export_triton(["mnist-vae-2d"], repo, force=True)
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
