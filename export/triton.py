"""A Triton Inference Server model repository for model folders: onnxruntime models and a generate ensemble.

For each model M the repository holds `M-encoder`, `M-decoder` and, where the model has a
learned prior, `M-prior` (the sampler) and `M-generate` (an ensemble: the sampler feeding the
decoder). Each is `REPO/<name>/config.pbtxt` plus `REPO/<name>/1/model.onnx`, the model
folder's file copied byte for byte after its sha256 is checked. The configs are tritonclient's
own `ModelConfig` messages written as protobuf text, so Triton reads exactly what was built.
Needs the `[triton]` extra (tritonclient[grpc]); neither torch nor onnx.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from digitvae.runtime.atomic import swapped_in
from digitvae.runtime.errors import InputError, MissingDependencyError, ModelError, OutputError
from digitvae.runtime.extras import install_command
from digitvae.runtime.folders.locate import resolve_model_dir
from digitvae.runtime.folders.manifest import ROLES
from digitvae.runtime.folders.reading import read_manifest
from digitvae.runtime.inference.loading import open_checked
from digitvae.runtime.inference.sessions import CHUNK

logger = logging.getLogger(__name__)

#: The version folder every model gets; Triton serves the highest number.
VERSION = "1"
CONFIG_NAME = "config.pbtxt"
ONNX_NAME = "model.onnx"
#: The runtime's CHUNK: the most rows it hands onnxruntime at once (bounded working memory).
MAX_BATCH_SIZE = CHUNK
#: About one batch-1 decode on a CPU core (docs/triton.md): a lone request waits at most that
#: long, while under load the requests that arrive meanwhile share one call.
QUEUE_DELAY_US = 100
INSTANCE_KINDS = ("auto", "cpu", "gpu")
#: The generate ensemble's internal tensor: the sampler's codes on their way to the decoder.
DECODER_CODE = "z_for_decoder"
#: Triton model names are folder names and URL path segments: keep them plain.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Tensor:
    """One input or output: its name, Triton data type and shape per item (no batch dimension)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """One step of an ensemble: a model and its tensors mapped to the ensemble's (model's name -> ensemble's)."""

    model: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]


@dataclass(frozen=True)
class RepoModel:
    """One model of the repository: an ONNX file for onnxruntime, or an ensemble of steps."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    onnx: bytes | None = None
    steps: tuple[Step, ...] = field(default_factory=tuple)
    #: Where it came from, written as a comment atop its config.pbtxt.
    source: str = ""


@dataclass(frozen=True)
class Serving:
    """How the onnxruntime models are served: batch limit, batching delay, where instances run."""

    max_batch_size: int = MAX_BATCH_SIZE
    queue_delay_us: int = QUEUE_DELAY_US
    kind: str = "auto"
    instances: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_size <= MAX_BATCH_SIZE:
            raise InputError(f"max batch size must be from 1 to {MAX_BATCH_SIZE}, got {self.max_batch_size}")
        if self.queue_delay_us < 0:
            raise InputError(f"queue delay must be 0 or more microseconds, got {self.queue_delay_us}")
        if self.kind not in INSTANCE_KINDS:
            raise InputError(f"instance kind must be one of {', '.join(INSTANCE_KINDS)}, got {self.kind!r}")
        if self.instances < 1:
            raise InputError(f"instances must be 1 or more, got {self.instances}")


def config_module() -> Any:
    """Return tritonclient's model_config_pb2, or raise MissingDependencyError naming the extra."""
    try:
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError) as exc:  # tritonclient without grpc raises RuntimeError
        raise MissingDependencyError(
            f"writing a Triton model repository needs tritonclient[grpc], which is not installed ({exc}): "
            f"{install_command('triton')}"
        ) from None
    return model_config_pb2


def plan_models(model: str | os.PathLike[str], variant: str = "fp32") -> list[RepoModel]:
    """Return the repository models for one model folder, its ONNX files read and checked against model.json."""
    model_dir = resolve_model_dir(model)
    manifest = read_manifest(model_dir)
    name = manifest.name
    if not _SAFE_NAME.match(name):
        raise ModelError(
            f"{model_dir}: model name {name!r} cannot name a Triton model; it may hold letters, digits, '_', '.' "
            "and '-' (set `name` in model.json)"
        )
    files = manifest.files(variant)
    roles = (*ROLES, "prior") if manifest.prior else ROLES
    # The configs below are written from the contract: refuse files that do not follow it,
    # or that cannot run a batch of more than one (max_batch_size > 0 needs that).
    _, blobs = open_checked(model_dir, manifest, {role: files[role] for role in roles}, {role: 1 for role in roles})

    d = manifest.latent_dim
    image = (1, 28, 28)

    def source(role: str) -> str:
        return f"{files[role].path} of model {name} ({variant}), sha256 {files[role].sha256}"

    label = (Tensor("label", "TYPE_INT64", ()),) if manifest.conditional else ()
    encoder = RepoModel(
        f"{name}-encoder",
        (Tensor("image", "TYPE_FP32", image), *label),
        (Tensor("mean", "TYPE_FP32", (d,)), Tensor("logvar", "TYPE_FP32", (d,))),
        blobs["encoder"],
        source=source("encoder"),
    )
    decoder = RepoModel(
        f"{name}-decoder",
        (Tensor("z", "TYPE_FP32", (d,)), *label),
        (Tensor("logits", "TYPE_FP32", image), Tensor("image", "TYPE_FP32", image)),
        blobs["decoder"],
        source=source("decoder"),
    )
    if "prior" not in blobs:
        logger.info("%s has the N(0, I) prior: no sampler, no generate ensemble (send the noise as z)", name)
        return [encoder, decoder]
    draws = (Tensor("noise", "TYPE_FP32", (d,)), Tensor("uniform", "TYPE_FP32", ()), Tensor("label", "TYPE_INT64", ()))
    prior = RepoModel(f"{name}-prior", draws, (Tensor("z", "TYPE_FP32", (d,)),), blobs["prior"], source=source("prior"))
    # One `label` feeds both models: a conditional model's prior has its classes, so the digit
    # asked of the sampler is the digit the decoder draws (as DigitVAE.generate does).
    # The sampler runs twice, once for the `z` output and once for the decoder: Triton prunes
    # the step that makes an output a request leaves out, even when another step reads that
    # tensor, so a request for `image` alone would otherwise never run the decoder. The sampler
    # is small (a gather and a D x D product per row) and its rows do not depend on the batch.
    feeds = {t.name: t.name for t in draws}
    generate = RepoModel(
        f"{name}-generate",
        draws,
        (Tensor("z", "TYPE_FP32", (d,)), Tensor("image", "TYPE_FP32", image)),
        steps=(
            Step(prior.name, feeds, {"z": "z"}),
            Step(prior.name, feeds, {"z": DECODER_CODE}),
            Step(decoder.name, {"z": DECODER_CODE, **{t.name: t.name for t in label}}, {"image": "image"}),
        ),
        source=f"{prior.name} feeding {decoder.name}; clients send the random numbers (docs/triton.md)",
    )
    return [encoder, decoder, prior, generate]


def model_config(model: RepoModel, serving: Serving) -> Any:
    """Return the tritonclient ModelConfig message of one repository model."""
    pb = config_module()
    config = pb.ModelConfig(name=model.name, max_batch_size=serving.max_batch_size)
    for tensor in model.inputs:
        _tensor(config.input.add(), tensor, pb, reshape=not model.steps)
    for tensor in model.outputs:
        _tensor(config.output.add(), tensor, pb, reshape=not model.steps)
    if model.steps:
        # An ensemble has no instances or batcher of its own: its steps' models batch.
        config.platform = "ensemble"
        for step in model.steps:
            entry = config.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
            entry.input_map.update(step.inputs)
            entry.output_map.update(step.outputs)
        return config
    config.backend = "onnxruntime"
    # No preferred sizes: onnxruntime runs every batch size with the same kernels (docs/triton.md).
    config.dynamic_batching.max_queue_delay_microseconds = serving.queue_delay_us
    group = config.instance_group.add(count=serving.instances)
    group.kind = pb.ModelInstanceGroup.Kind.Value(f"KIND_{serving.kind.upper()}")
    return config


def _tensor(entry: Any, tensor: Tensor, pb: ModuleType, *, reshape: bool) -> None:
    """Fill a ModelInput or ModelOutput; a scalar per item is dims [1], reshaped to [] for the model."""
    entry.name = tensor.name
    entry.data_type = pb.DataType.Value(tensor.dtype)
    entry.dims.extend(tensor.shape or (1,))
    # Triton forbids empty dims; the ONNX graph wants [N], not [N, 1]. An ensemble passes its
    # tensors to its steps as Triton sees them ([N, 1]), so only the onnxruntime models reshape.
    if not tensor.shape and reshape:
        entry.reshape.SetInParent()


def repository_files(
    models: Sequence[str | os.PathLike[str]], variant: str = "fp32", serving: Serving | None = None
) -> dict[str, bytes]:
    """Return every file of the repository for these model folders: relative path -> bytes."""
    from google.protobuf import text_format

    serving = serving or Serving()
    config_module()  # fail on a missing extra before any model is read
    if not models:
        raise InputError("give at least one model: a shipped model name (such as 'mnist-vae') or a model folder")
    files: dict[str, bytes] = {}
    owners: dict[str, str] = {}
    for model in models:
        for repo_model in plan_models(model, variant):
            if repo_model.name in owners:
                raise InputError(
                    f"models {owners[repo_model.name]!r} and {os.fspath(model)!r} both make a Triton model named "
                    f"{repo_model.name!r}; give each model a different name in its model.json"
                )
            owners[repo_model.name] = os.fspath(model)
            text = _header(repo_model, serving) + text_format.MessageToString(model_config(repo_model, serving))
            files[f"{repo_model.name}/{CONFIG_NAME}"] = text.encode("utf-8")
            if repo_model.onnx is not None:
                files[f"{repo_model.name}/{VERSION}/{ONNX_NAME}"] = repo_model.onnx
    return files


def _header(model: RepoModel, serving: Serving) -> str:
    """Return the comment lines atop a config.pbtxt: what the model is, and defaults the text leaves out."""
    from digitvae.runtime._version import __version__

    lines = [f"{model.name}: {model.source}", f"written by digitvae {__version__} export-triton"]
    if model.onnx is not None and serving.kind == "auto":
        # proto3 text leaves out a field at its default, here kind: KIND_AUTO.
        lines.append("instance_group kind: KIND_AUTO (on every GPU where there are GPUs, else on the CPU)")
    return "".join(f"# {line}\n" for line in lines)


def export_triton(
    models: Sequence[str | os.PathLike[str]],
    repo: str | os.PathLike[str],
    *,
    variant: str = "fp32",
    serving: Serving | None = None,
    force: bool = False,
) -> list[str]:
    """Write a Triton model repository for these model folders; return its files' paths, relative to it.

    The repository is built in a temporary folder beside `repo` and renamed into place: a
    reader sees no repository, the old one, or the complete new one. An existing `repo` is
    refused unless `force`. An empty version folder (an ensemble's) is listed as `NAME/1/`.
    """
    repo = Path(repo)
    if repo.exists() and not force:
        raise OutputError(f"{repo} already exists; pass --force to replace it")
    files = repository_files(models, variant, serving)
    # Triton loads no model without a version folder: an ensemble gets an empty one.
    folders = sorted({f"{path.split('/')[0]}/{VERSION}" for path in files})
    _write_folder(repo, files, folders, force=force)
    logger.info("wrote %d files to %s", len(files), repo)
    return sorted([*files, *(f"{folder}/" for folder in folders if not any(p.startswith(f"{folder}/") for p in files))])


def _write_folder(out_dir: Path, files: Mapping[str, bytes], folders: Sequence[str], *, force: bool) -> None:
    """Write folders and files (relative path -> bytes) into a temporary sibling folder, then swap it into place."""

    def move_aside(existing: Path) -> bool:
        if not (existing.exists() or existing.is_symlink()):
            return False
        if not force:
            raise OutputError(f"{existing} already exists; pass --force to replace it")
        if not existing.is_dir() or existing.is_symlink():
            raise OutputError(f"{existing} exists and is not a folder; --force replaces only a folder")
        return True

    failed = f"cannot write {out_dir}"
    with swapped_in(
        out_dir, move_aside, lambda exc: f"{failed}: {exc.strerror or exc} (in {out_dir.absolute().parent})"
    ) as staging:
        for relative in folders:
            (staging / relative).mkdir(parents=True, exist_ok=True)
        for relative, blob in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
        for folder in (staging, *{(staging / r).parent for r in files}, *(staging / f for f in folders)):
            os.chmod(folder, 0o755)  # mkdtemp makes 0o700; a server in a container may run as another user
        check_repository(staging, out_dir)


def check_repository(repo: Path, out_dir: Path) -> None:
    """Read a new repository back as Triton would; raise OutputError if a model in it would not load.

    Triton wants each model folder's config.pbtxt to parse as a ModelConfig naming that folder,
    a version folder, and for an onnxruntime model its model.onnx there.
    """
    from google.protobuf import text_format

    pb = config_module()
    for folder in sorted(p for p in repo.iterdir() if p.is_dir()):
        where = f"{out_dir / folder.name / CONFIG_NAME}"
        try:
            config = text_format.Parse((folder / CONFIG_NAME).read_text(encoding="utf-8"), pb.ModelConfig())
        except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
            raise OutputError(f"{out_dir} not written: {where} would not load: {exc}") from None
        if config.name != folder.name:
            raise OutputError(f"{out_dir} not written: {where} names model {config.name!r}, not its folder's name")
        if not (folder / VERSION).is_dir():
            raise OutputError(f"{out_dir} not written: {out_dir / folder.name} has no version folder {VERSION}/")
        if config.platform != "ensemble" and not (folder / VERSION / ONNX_NAME).is_file():
            raise OutputError(f"{out_dir} not written: {out_dir / folder.name / VERSION} has no {ONNX_NAME}")
        missing = sorted({s.model_name for s in config.ensemble_scheduling.step} - {p.name for p in repo.iterdir()})
        if missing:
            raise OutputError(f"{out_dir} not written: {where} runs models the repository lacks: {', '.join(missing)}")
