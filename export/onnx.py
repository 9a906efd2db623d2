"""Export a checkpoint's encoder and decoder to ONNX, checked against PyTorch, with a manifest."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from digitvae.runtime._version import __version__
from digitvae.runtime.digits.idx import labels_beside
from digitvae.runtime.errors import ExportError, OutputError
from digitvae.runtime.folders.manifest import Manifest, ModelFile
from digitvae.runtime.folders.reading import sha256_file
from digitvae.train.checkpoint import Checkpoint, load_checkpoint
from digitvae.train.config import to_dict
from digitvae.train.loop import BEST
from digitvae.train.model import VAE, export_halves

from .folder import folder_files, write_model_folder
from .opset import BUILD_OPSET, checked_bytes
from .prior import PriorConfig, fit_model_prior
from .variants import build_variants, cpu_session, differences

logger = logging.getLogger(__name__)

#: Largest |onnxruntime - torch| / max(1, |torch|) accepted on any output at export time:
#: an absolute 1e-5 for values in [-1, 1] (image, most means), and 1e-5 relative beyond,
#: because logits reach |30| where one float32 ulp is already 1.9e-6 and torch's own float32
#: result differs from its float64 result by about 1e-5.
TOLERANCE = 1e-5
PARITY_BATCHES = (1, 37)
#: What export does, in order, as its progress callback hears it ("prior" only when it fits one).
EXPORT_STEPS = ("encoder", "decoder", "variants", "prior")


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how closely onnxruntime matched torch."""

    directory: Path
    manifest: Manifest
    #: "encoder.mean" etc. -> {"max_abs_diff", "max_scaled_diff"} against torch.
    parity: dict[str, dict[str, float]]


def resolve_checkpoint(path: Path) -> Path:
    """Accept a checkpoint file or a training folder (whose best.pt is used)."""
    path = Path(path)
    return path / BEST if path.is_dir() else path


def _export(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str]
) -> onnx.ModelProto:
    batch = torch.export.Dim("N", min=1, max=1 << 20)
    # The exporter's chatter (deprecations, "torchvision is not installed") is not the user's concern.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            example,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=tuple({0: batch} for _ in example),
            opset_version=BUILD_OPSET,
            dynamo=True,
            verbose=False,
            optimize=True,
        )
    registration.setLevel(level)
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    model = program.model_proto
    # Name the dynamic batch dimension "N" on every input and output, as documented.
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def _annotate(model: onnx.ModelProto, role: str, ckpt: Checkpoint) -> bytes:
    props = {
        "digitvae.role": role,
        "digitvae.latent_dim": str(ckpt.model_config.latent_dim),
        "digitvae.num_classes": str(ckpt.model_config.num_classes),
        "digitvae.preset": ckpt.preset,
        "digitvae.version": __version__,
        "digitvae.format_version": "1",
    }
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    # The exporter notes each node's Python stack trace (with this machine's paths and line
    # numbers): debugging aids that would make the file depend on where and how the code sits.
    for node in model.graph.node:
        del node.metadata_props[:]
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        del info.metadata_props[:]
    model.doc_string = f"digitvae {role} (preset {ckpt.preset}, latent_dim {ckpt.model_config.latent_dim})"
    return checked_bytes(model, f"{role}: the exported model")


def _parity(
    module: torch.nn.Module, data: bytes, make_inputs: Any, input_names: list[str]
) -> dict[str, dict[str, float]]:
    """Run torch and onnxruntime on the same batches; return each output's worst differences."""
    session = cpu_session(data)
    names = [o.name for o in session.get_outputs()]
    worst = {name: {"max_abs_diff": 0.0, "max_scaled_diff": 0.0} for name in names}
    for n in PARITY_BATCHES:
        feeds = make_inputs(n)
        with torch.no_grad():
            expected = [t.numpy() for t in module(*(torch.from_numpy(a) for a in feeds))]
        found = session.run(names, dict(zip(input_names, feeds)))
        for name, want, got in zip(names, expected, found):
            if want.shape != got.shape:
                raise ExportError(f"{name}: onnxruntime gives shape {got.shape}, torch {want.shape} (batch {n})")
            found_now = differences(want, got)
            entry = worst[name]
            for key in entry:
                entry[key] = max(entry[key], found_now[key])
    return worst


def training_images(ckpt: Checkpoint) -> Path:
    """Return the training images a checkpoint was trained on, checked against their recorded sha256."""
    train = ckpt.data.get("train", {})
    path = Path(train["path"]) if train.get("path") else None
    if path is None or not path.is_file():
        raise ExportError(
            f"cannot find the training digits ({train.get('file', 'not recorded')}) to fit the prior on: "
            "pass --prior-data FILE (training images; labels beside them fit one prior per class), or --no-prior"
        )
    if sha256_file(path) != train.get("sha256"):
        raise ExportError(
            f"{path} is not the file this model was trained on (its sha256 differs); pass --prior-data FILE"
        )
    return path


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    name: str | None = None,
    force: bool = False,
    prior: bool = True,
    prior_data: Path | None = None,
    prior_config: PriorConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export encoder.onnx, decoder.onnx and model.json into out_dir, or fail leaving nothing.

    With `prior` (the default), also fit the latent prior to the encoded training digits
    (`prior_data`, by default the checkpoint's training file, with the labels beside it).
    `progress`, if given, is told each step as it finishes: one of EXPORT_STEPS.
    """
    done = progress or (lambda step: None)
    ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise OutputError(f"{out_dir} already exists and is not empty; pass --force to replace it")
    if prior:
        prior_data = Path(prior_data) if prior_data is not None else training_images(ckpt)
    model = VAE(ckpt.model_config)
    model.load_state_dict(ckpt.model_state)
    model.eval()
    blobs: dict[str, bytes] = {}
    parity: dict[str, dict[str, float]] = {}
    for half in _halves(model):
        blobs[half.role], checked = _export_checked(half, ckpt)
        parity.update({f"{half.role}.{output}": diff for output, diff in checked.items()})
        done(half.role)
    manifest = _manifest(ckpt, name or out_dir.resolve().name, blobs, parity)
    bundle = build_variants(blobs, manifest)
    manifest = bundle.apply(manifest)
    files = {**{f"{role}.onnx": blob for role, blob in blobs.items()}, **bundle.files}
    done("variants")
    if prior and prior_data is not None:
        files, manifest = _with_prior(files, manifest, prior_data, prior_config or PriorConfig())
        done("prior")
    write_model_folder(out_dir, files, manifest, force=force)
    logger.info("exported %s to %s", manifest.name, out_dir)
    return ExportResult(out_dir, manifest, parity)


@dataclass(frozen=True)
class _Half:
    """One half of the VAE to export: its module, ONNX input and output names, and test inputs."""

    role: str
    module: torch.nn.Module
    inputs: list[str]
    outputs: list[str]
    #: Batch size -> the module's inputs (image or z, then labels for a conditional model).
    make_inputs: Callable[[int], tuple[np.ndarray, ...]]


def _halves(model: VAE) -> list[_Half]:
    """Return the encoder and the decoder of a model, with random inputs of the right kind."""
    d, classes = model.config.latent_dim, model.config.num_classes
    rng = np.random.default_rng(0)
    label = ["label"] if classes else []

    def with_label(first: np.ndarray) -> tuple[np.ndarray, ...]:
        return (first, rng.integers(0, classes, len(first), dtype=np.int64)) if classes else (first,)

    def images(n: int) -> tuple[np.ndarray, ...]:
        return with_label(rng.random((n, 1, 28, 28), dtype=np.float32))

    def codes(n: int) -> tuple[np.ndarray, ...]:
        return with_label(rng.standard_normal((n, d), dtype=np.float32))

    encoder, decoder = export_halves(model)
    return [
        _Half("encoder", encoder, ["image", *label], ["mean", "logvar"], images),
        _Half("decoder", decoder, ["z", *label], ["logits", "image"], codes),
    ]


def _export_checked(half: _Half, ckpt: Checkpoint) -> tuple[bytes, dict[str, dict[str, float]]]:
    """Export one half and check it against torch; return its bytes and each output's differences."""
    example = tuple(torch.from_numpy(a) for a in half.make_inputs(2))
    blob = _annotate(_export(half.module, example, half.inputs, half.outputs), half.role, ckpt)
    checked = _parity(half.module, blob, half.make_inputs, half.inputs)
    for output, diff in checked.items():
        logger.info("%s.%s: max |onnxruntime - torch| = %.3g", half.role, output, diff["max_abs_diff"])
        if not diff["max_scaled_diff"] <= TOLERANCE:
            raise ExportError(
                f"{half.role} output {output!r}: onnxruntime differs from torch by {diff['max_abs_diff']:.3g} "
                f"(scaled {diff['max_scaled_diff']:.3g}, allowed {TOLERANCE:g}); nothing written"
            )
    return blob, checked


def _with_prior(
    files: dict[str, bytes], manifest: Manifest, prior_data: Path, config: PriorConfig
) -> tuple[dict[str, bytes], Manifest]:
    """Fit the prior through the runtime on the exported files, in a scratch copy; return both updated."""
    with tempfile.TemporaryDirectory(prefix="digitvae-export-") as tmp:
        staged = Path(tmp) / "model"
        write_model_folder(staged, files, manifest, force=False)
        manifest = fit_model_prior(staged, prior_data, labels_beside(prior_data), config)
        return folder_files(staged), manifest


def _manifest(ckpt: Checkpoint, name: str, blobs: dict[str, bytes], parity: dict[str, dict[str, float]]) -> Manifest:
    files = {role: ModelFile(f"{role}.onnx", hashlib.sha256(blob).hexdigest()) for role, blob in blobs.items()}
    return Manifest(
        name=name,
        latent_dim=ckpt.model_config.latent_dim,
        num_classes=ckpt.model_config.num_classes,
        image_shape=(1, 28, 28),
        variants={"fp32": files},
        preset=ckpt.preset,
        package_version=__version__,
        training={
            "preset": ckpt.preset,
            "command": ckpt.command,
            "data": {split: {k: v for k, v in entry.items() if k != "path"} for split, entry in ckpt.data.items()},
            "epochs": ckpt.epoch,
            "best_epoch": ckpt.best.get("epoch"),
            "seconds": round(ckpt.seconds, 1),
            "model_config": to_dict(ckpt.model_config),
            "train_config": to_dict(ckpt.train_config),
        },
        metrics={
            "valid_neg_elbo": ckpt.best.get("valid_loss"),
            "train_neg_elbo": ckpt.best.get("train_loss"),
            "note": "nats per digit, -ELBO with one posterior sample, at the best validation epoch",
            "parity": {"batches": list(PARITY_BATCHES), "tolerance": TOLERANCE, **parity},
        },
    )
