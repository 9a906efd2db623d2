"""Time a decoder's images-only graph against rewritten forms of it, batch by batch, in turns.

    python scripts/decoder_forms.py --form elu [--model mnist-vae] [--threads 1] [--rounds 9]

Forms (each compared with the images-only graph the runtime decodes with on the CPU):
- elu: each Elu written as Min/Exp/Sub/Max (export.variants.elu_as_min_exp_max).
- sigmoid-first: the Sigmoid moved before the Reshape, so that onnxruntime fuses it into the
  last Gemm (FusedGemm with a Sigmoid activation); the same images to the bit.
- nbits8: every Gemm as onnxruntime's MatMulNBits, 8-bit weights per block of 32 with int8
  arithmetic (accuracy level 4), timed beside the shipped int8 decoder (DynamicQuantizeMatMul).

The sessions take turns in each round, at batches of 1, 16, 128 and 1,024 codes; each round
times a loop of runs, and the figures are the medians over the rounds, with each form's speed
as the median of its per-round ratios to the images-only graph. Also prints each form's largest
image difference from it. Needs the [train] extra (onnx); nothing in the model folder changes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from digitvae.export.variants import elu_as_min_exp_max
from digitvae.runtime.folders.compose import images_only
from digitvae.runtime.folders.locate import resolve_model_dir

BATCHES = (1, 16, 128, 1024)
FORMS = ("elu", "sigmoid-first", "nbits8")


def _session(blob: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def _loop(session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int) -> float:
    """Return the mean seconds per run over `runs` runs."""
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feeds)
    return (time.perf_counter() - start) / runs


def _images_only(model: onnx.ModelProto) -> onnx.ModelProto:
    blob = images_only(model.SerializeToString())
    if blob is None:
        raise SystemExit("the decoder has no `image` output")
    return onnx.load_from_string(blob)


def _elu(model: onnx.ModelProto) -> onnx.ModelProto:
    if not elu_as_min_exp_max(model.graph):
        raise SystemExit("the decoder has no Elu of alpha 1")
    return model


def _sigmoid_first(model: onnx.ModelProto) -> onnx.ModelProto:
    """Compute Sigmoid(x) then Reshape, where the graph had Reshape(x) then Sigmoid."""
    nodes = list(model.graph.node)
    sigmoid = next((n for n in nodes if n.op_type == "Sigmoid"), None)
    reshape = next((n for n in nodes if sigmoid is not None and n.output[0] == sigmoid.input[0]), None)
    if sigmoid is None or reshape is None or reshape.op_type != "Reshape":
        raise SystemExit("the decoder's Sigmoid does not follow a Reshape")
    flat, image = reshape.input[0], sigmoid.output[0]
    squashed = f"{flat}_sigmoid"
    sigmoid.input[0], sigmoid.output[0] = flat, squashed
    reshape.input[0], reshape.output[0] = squashed, image
    order = [n for n in nodes if n is not sigmoid]
    order.insert(order.index(reshape), sigmoid)  # the Sigmoid where the Reshape was, the Reshape after it
    del model.graph.node[:]
    model.graph.node.extend(order)
    # Shapes recorded for the values in between no longer hold: onnxruntime infers them again.
    del model.graph.value_info[:]
    return model


def _nbits8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Quantize every Gemm (as MatMul + Add) to MatMulNBits: 8 bits, blocks of 32, int8 arithmetic."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    weights = {t.name: t for t in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0
        if node.op_type != "Gemm" or attributes.get("transA", 0) or not plain or node.input[1] not in weights:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        w = w.T if attributes.get("transB", 0) else w
        name = node.name or node.output[0]
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), f"{name}_weight"))
        product = f"{name}_product"
        nodes.append(helper.make_node("MatMul", [node.input[0], f"{name}_weight"], [product], name=f"{name}_matmul"))
        nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{name}_add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    quantized: onnx.ModelProto = quantizer.model.model
    return quantized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", choices=FORMS, default="elu")
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    folder = resolve_model_dir(args.model)
    source = onnx.load(folder / "decoder.onnx")
    rewrite = {"elu": _elu, "sigmoid-first": _sigmoid_first, "nbits8": _nbits8}[args.form]
    blobs = {
        "images-only": _images_only(source).SerializeToString(),
        args.form: rewrite(_images_only(source)).SerializeToString(),  # a fresh copy: the rewrite edits it
    }
    if args.form == "nbits8":
        blobs["shipped int8"] = _images_only(onnx.load(folder / "decoder.int8.onnx")).SerializeToString()
    sessions = {name: _session(blob, args.threads) for name, blob in blobs.items()}
    base = sessions["images-only"]
    if len(base.get_inputs()) > 1:
        raise SystemExit(f"{args.model} is conditional: this script times unconditional decoders")
    z = np.random.default_rng(0).standard_normal((max(BATCHES), int(base.get_inputs()[0].shape[1]))).astype(np.float32)
    want = base.run(None, {"z": z})[0]
    differences = ", ".join(
        f"{name} {np.abs(s.run(None, {'z': z})[0] - want).max():.2g}" for name, s in sessions.items() if s is not base
    )
    print(f"{args.model}, {args.threads} thread(s), {args.rounds} rounds; largest image difference: {differences}")
    for n in BATCHES:
        feeds = {"z": z[:n]}
        runs = max(20, 20_000 // n)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for r in range(args.rounds):
            for name in list(sessions)[:: 1 if r % 2 == 0 else -1]:
                times[name].append(_loop(sessions[name], feeds, runs))
        figures = []
        for name, t in times.items():
            speed = statistics.median(a / b for a, b in zip(times["images-only"], t))
            figures.append(
                f"{name} {1e6 * statistics.median(t):,.1f} us"
                + ("" if t is times["images-only"] else f" ({speed:.3f}x)")
            )
        print(f"batch {n:>5}: " + ", ".join(figures))


if __name__ == "__main__":
    main()
