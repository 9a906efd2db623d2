"""Reduced-precision variants of an exported model (int8, fp16), checked against fp32, and its cost.

Both variants keep the ONNX contract: float32 inputs and outputs (and the int64 `label` of a
conditional model), so the runtime treats every variant alike.

- `int8`: dynamic quantization of every MatMul/Gemm (onnxruntime.quantization), int8 weights per
  output channel in 7 bits (`reduce_range`). Activations are quantized per batch at run time,
  so no calibration data is needed. 7-bit weights avoid the saturation of AVX2's u8 x s8
  multiply-add (VPMADDUBSW), which costs accuracy on CPUs without VNNI. Its ELUs are written
  as Min/Exp/Sub/Max (`elu_as_min_exp_max`), which onnxruntime runs faster than its Elu.
- `fp16`: every float tensor in float16 (onnxruntime's float16 converter, keep_io_types), for
  GPU and NPU providers; on CPU, onnxruntime runs it but gains nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from digitvae.runtime.errors import ExportError, InputError
from digitvae.runtime.folders.manifest import ROLES, Manifest, ModelFile
from digitvae.runtime.folders.reading import read_manifest, verified_bytes
from digitvae.runtime.folders.writing import model_folder_lock, update_metrics
from digitvae.runtime.inference.sessions import open_session, session_options

from .folder import folder_files, variant_file, write_model_folder
from .opset import checked_bytes
from .prior import shared_prior_files, with_prior

logger = logging.getLogger(__name__)

VARIANTS = ("int8", "fp16")
#: Rows of the fixed validation batch each variant is compared on.
CHECK_ROWS = 256
#: Largest accepted difference from fp32, per variant and output: (statistic, bound). "scaled" is
#: max |variant - fp32| / max(1, |fp32|); "mean" is the mean absolute difference. fp16 keeps
#: about 3 significant digits; int8 moves single pixels by up to ~0.1 but not the picture.
TOLERANCES: dict[str, dict[str, tuple[str, float]]] = {
    "fp16": {
        "image": ("scaled", 5e-3),
        "logits": ("scaled", 2e-2),
        "mean": ("scaled", 1e-2),
        "logvar": ("scaled", 1e-2),
    },
    "int8": {"image": ("mean", 1e-2), "logits": ("mean", 0.15), "mean": ("mean", 0.05), "logvar": ("mean", 0.1)},
}
_MATMUL_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


@dataclass(frozen=True)
class VariantBundle:
    """The variant files of a model and what goes into its manifest."""

    files: dict[str, bytes]
    entries: dict[str, dict[str, ModelFile]]
    metrics: dict[str, Any] = field(default_factory=dict)

    def apply(self, manifest: Manifest) -> Manifest:
        """Return the manifest with these variants and their metrics added (or refreshed), without a prior."""
        fp32 = {role: manifest.variants["fp32"][role] for role in ROLES}
        variants = {"fp32": fp32, **self.entries}
        return replace(manifest, variants=variants, metrics={**manifest.metrics, **self.metrics}, prior=None)


def build_variants(fp32: Mapping[str, bytes], manifest: Manifest) -> VariantBundle:
    """Make and check the int8 and fp16 variants of an fp32 encoder/decoder pair."""
    feeds = _check_feeds(fp32, manifest)
    files: dict[str, bytes] = {}
    entries: dict[str, dict[str, ModelFile]] = {}
    checks: dict[str, Any] = {}
    for variant, convert in (("int8", quantize_int8), ("fp16", convert_fp16)):
        entries[variant] = {}
        checks[variant] = {"tolerances": {k: list(v) for k, v in TOLERANCES[variant].items()}}
        for role in ROLES:
            blob = convert(fp32[role])
            diffs = compare(fp32[role], blob, feeds[role])
            _enforce(variant, role, diffs)
            name = variant_file(variant, role)
            files[name] = blob
            entries[variant][role] = ModelFile(name, hashlib.sha256(blob).hexdigest())
            checks[variant].update({f"{role}.{out}": d for out, d in diffs.items()})
    checks["int8"]["method"] = "dynamic, per-channel int8 weights (reduce_range), uint8 activations"
    checks["fp16"]["method"] = "float16 weights and arithmetic, float32 inputs and outputs"
    checks["rows"] = CHECK_ROWS
    cost = {role: model_cost(onnx.load_from_string(fp32[role])) for role in ROLES}
    return VariantBundle(files, entries, {"variants": checks, "cost": cost})


def add_variants(model_dir: Path, *, valid: Path | None = None, k: int = 100, limit: int | None = None) -> Manifest:
    """Add or refresh the int8 and fp16 variants of a model folder in place, atomically.

    With `valid` (an IDX image file), also record each variant's importance-weighted -log p(x)
    with k samples on those digits (the first `limit`) next to fp32's: measured on the new
    folder before it replaces the old one, so the variants and their figures arrive together.
    """
    model_dir = Path(model_dir)
    measure = None
    if valid is not None:
        images = Path(valid)
        measure = lambda folder: {"likelihood": likelihood_figures(folder, images, k=k, limit=limit)}  # noqa: E731
    with model_folder_lock(model_dir):
        return _rewrite_variants(model_dir, measure)


def _rewrite_variants(model_dir: Path, measure: Callable[[Path], Mapping[str, Any]] | None) -> Manifest:
    manifest = read_manifest(model_dir)
    fp32 = {role: verified_bytes(model_dir, f) for role, f in manifest.files("fp32").items()}
    bundle = build_variants(fp32, manifest)
    files = {
        **folder_files(model_dir),
        **{f.path: fp32[role] for role, f in manifest.files("fp32").items()},
        **bundle.files,
    }
    prior = manifest.prior
    manifest = bundle.apply(manifest)
    if prior:
        # Every variant shares the fp32 variant's prior files.
        shared = shared_prior_files(fp32["prior"], fp32["prior_density"])
        files.update(shared.files)
        manifest = with_prior(manifest, shared, prior)
    return write_model_folder(model_dir, files, manifest, force=True, measure=measure)


def record_iw_nll(model_dir: Path, valid: Path, *, k: int = 100, limit: int | None = None) -> Manifest:
    """Measure every variant's -ELBO and IW-NLL on an IDX image file; store them in metrics.likelihood."""
    figures = likelihood_figures(Path(model_dir), Path(valid), k=k, limit=limit)
    return update_metrics(model_dir, {"likelihood": figures}, merge="likelihood")


def likelihood_figures(model_dir: Path, valid: Path, *, k: int = 100, limit: int | None = None) -> dict[str, Any]:
    """Return every variant's -ELBO and IW-NLL on an IDX image file (the first `limit` digits), by variant."""
    from digitvae.runtime.digits.idx import labels_beside, read_mnist_images, read_mnist_labels
    from digitvae.runtime.inference.model import DigitVAE

    images = read_mnist_images(valid)[:limit]
    labels = None
    manifest = read_manifest(model_dir)
    if manifest.num_classes:
        label_file = labels_beside(valid)
        if label_file is None:
            raise InputError(f"{valid}: a conditional model needs the labels file beside the images")
        labels = read_mnist_labels(label_file)[: len(images)]
    figures: dict[str, Any] = {}
    for variant in manifest.variants:
        vae = DigitVAE.load(model_dir.resolve(), variant=variant)
        figures[variant] = {
            "data": [valid.name],
            "digits": len(images),
            "k": k,
            "seed": 0,
            "neg_elbo": float(-vae.elbo(images, labels).mean()),
            "iw_nll": float(vae.iw_nll(images, k, labels).mean()),
        }
        logger.info("%s: IW-NLL %.3f nats on %s", variant, figures[variant]["iw_nll"], valid.name)
    return figures


def quantize_int8(blob: bytes) -> bytes:
    """Return the model with dynamically quantized int8 MatMul/Gemm weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="digitvae-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(blob)
        # The quantizer advises pre-processing on the root logger; shape inference and graph
        # optimization add nothing to these small MLPs, so the advice is noise here.
        previous = logging.root.manager.disable
        logging.disable(max(previous, logging.WARNING))
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
        finally:
            logging.disable(previous)
        model = onnx.load(dst)
    elu_as_min_exp_max(model.graph)
    return _finish(model, blob)


def elu_as_min_exp_max(graph: onnx.GraphProto) -> int:
    """Rewrite each Elu of alpha 1 as Max(x, Exp(Min(x, 0)) - 1) in place; return how many.

    The same function (e^x - 1 >= x, so Max picks x above 0 and e^x - 1 below), but four
    vectorised elementwise kernels where onnxruntime's Elu is a slow one of its own: at batch
    1,024 on one thread, the int8 decoder's two Elu nodes took 2.05 of its 6.4 ms. In fp32 the
    Elu is fused into the Gemm before it, and the rewrite would move results by up to 3e-7.
    """
    nodes, count = [], 0
    for node in graph.node:
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0)
        if node.op_type != "Elu" or node.domain not in ("", "ai.onnx") or alpha != 1.0:
            nodes.append(node)
            continue
        x, y, count = node.input[0], node.output[0], count + 1
        part = f"{node.name or y}/elu"
        nodes += [
            helper.make_node("Min", [x, "elu_zero"], [f"{part}_negative"], name=f"{part}_min"),
            helper.make_node("Exp", [f"{part}_negative"], [f"{part}_exp"], name=f"{part}_exp"),
            helper.make_node("Sub", [f"{part}_exp", "elu_one"], [f"{part}_expm1"], name=f"{part}_sub"),
            helper.make_node("Max", [x, f"{part}_expm1"], [y], name=f"{part}_max"),
        ]
    if count:
        graph.initializer.extend(
            [numpy_helper.from_array(np.float32(0), "elu_zero"), numpy_helper.from_array(np.float32(1), "elu_one")]
        )
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def convert_fp16(blob: bytes) -> bytes:
    """Return the model in float16 with float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(blob), keep_io_types=True, disable_shape_infer=True)
    # The converter appends its input casts after the nodes that read them.
    _sort_nodes(model.graph)
    return _finish(model, blob)


def _finish(model: onnx.ModelProto, source: bytes) -> bytes:
    """Carry over the source's metadata, stamp its lowest versions, check it, return its bytes."""
    original = onnx.load_from_string(source)
    del model.metadata_props[:]
    model.metadata_props.extend(original.metadata_props)
    model.doc_string = original.doc_string
    return checked_bytes(model, "a converted model")


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Order a graph's nodes topologically, keeping the original order where it is valid."""
    ready = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        for i, node in enumerate(pending):
            if all(name in ready for name in node.input):
                ordered.append(pending.pop(i))
                ready.update(node.output)
                break
        else:
            raise ExportError(f"graph {graph.name!r} has a cycle or an undefined input")
    del graph.node[:]
    graph.node.extend(ordered)


def cpu_session(blob: bytes) -> Any:
    """Return an onnxruntime CPU session on a model's bytes, with the runtime's session options."""
    return open_session(blob, session_options())


def differences(want: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Return max |got - want|, its mean, and max |got - want| / max(1, |want|)."""
    diff = np.abs(want.astype(np.float64) - got)
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_scaled_diff": float((diff / np.maximum(1.0, np.abs(want))).max()),
    }


def _check_feeds(fp32: Mapping[str, bytes], manifest: Manifest) -> dict[str, dict[str, np.ndarray]]:
    """Return fixed inputs for both roles: prior codes, and the digits fp32 decodes from them."""
    rng = np.random.default_rng(0)
    extra: dict[str, np.ndarray] = {}
    if manifest.num_classes:
        extra["label"] = np.arange(CHECK_ROWS, dtype=np.int64) % manifest.num_classes
    z = rng.standard_normal((CHECK_ROWS, manifest.latent_dim), dtype=np.float32)
    # Decoded digits look like real ones, so the encoder is checked on its real input range.
    images = cpu_session(fp32["decoder"]).run(["image"], {"z": z, **extra})[0]
    return {"decoder": {"z": z, **extra}, "encoder": {"image": images, **extra}}


def compare(reference: bytes, candidate: bytes, feeds: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Run two models on the same inputs; return each output's max, mean and scaled differences."""
    ref, cand = cpu_session(reference), cpu_session(candidate)
    names = [o.name for o in ref.get_outputs()]
    return {
        name: differences(want, got)
        for name, want, got in zip(names, ref.run(names, dict(feeds)), cand.run(names, dict(feeds)))
    }


def _enforce(variant: str, role: str, diffs: Mapping[str, Mapping[str, float]]) -> None:
    for output, d in diffs.items():
        stat, bound = TOLERANCES[variant][output]
        found = d["max_scaled_diff" if stat == "scaled" else "mean_abs_diff"]
        if not found <= bound:  # also refuses NaN
            raise ExportError(
                f"{variant} {role} output {output!r} differs from fp32 by {found:.3g} ({stat}; allowed {bound:g}); "
                "nothing written"
            )


def model_cost(model: onnx.ModelProto) -> dict[str, Any]:
    """Return the FLOPs per digit of a model's matrix products (2 per multiply-add) and its size.

    Shapes come from ONNX shape inference with the batch dimension set to 1.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    inferred = shape_inference.infer_shapes(model, data_prop=True).graph
    shapes: dict[str, list[int | None]] = {t.name: list(t.dims) for t in inferred.initializer}
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        shapes[value.name] = [
            d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim
        ]
    flops, unknown = 0, []
    for node in inferred.node:
        if node.op_type in _MATMUL_OPS:
            count = _node_flops(node, shapes)
            if count is None:
                unknown.append(node.name or node.op_type)
            else:
                flops += count
    params = sum(
        math.prod(t.dims) for t in inferred.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)
    )
    if unknown:
        logger.warning("cannot size %s; FLOPs per digit leave them out", ", ".join(unknown))
    return {"flops_per_digit": flops, "parameters": params, "unsized_nodes": unknown}


def _node_flops(node: onnx.NodeProto, shapes: Mapping[str, list[int | None]]) -> int | None:
    """Return 2 x the multiply-adds of one matrix-product node, or None when a shape is unknown."""
    ins = [_known(shapes.get(name)) for name in node.input[:2]]
    out = _known(shapes.get(node.output[0]))
    if out is None or None in ins:
        return None
    a, b = (shape or [] for shape in ins)
    if node.op_type == "MatMul":
        return 2 * math.prod(out) * a[-1]
    if node.op_type == "Gemm":
        trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
        return 2 * math.prod(out) * (a[0] if trans_a else a[-1])
    if node.op_type == "Conv":  # weight [C_out, C_in / groups, *kernel]
        return 2 * math.prod(out) * math.prod(b[1:])
    # ConvTranspose: every input pixel meets the whole kernel, weight [C_in, C_out / groups, *kernel].
    return 2 * math.prod(a) * math.prod(b[1:])


def _known(shape: list[int | None] | None) -> list[int] | None:
    """Return a shape whose every dimension is known, or None."""
    if shape is None:
        return None
    dims = [d for d in shape if d is not None]
    return dims if len(dims) == len(shape) else None
