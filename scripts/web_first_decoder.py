"""Write the web page's first-digits files: web/public/first-decoder/<model>.bin.

The page draws its first grid of digits in plain JavaScript (web/src/first.js), before
onnxruntime-web has loaded: the learned prior's Gaussian mixture (prior.onnx's numbers) and the
decoder's MLP (decoder.onnx: Gemm and Elu layers, a sigmoid at the end), its weights as int8 per
output channel with a float32 scale each (docs/web.md measures the digits against fp32's).

A file is a little-endian uint32 header length, a UTF-8 JSON header padded with spaces to a
multiple of 4 bytes, then the arrays the header lists (offset and length in bytes, from the end
of the header). The header records the sha256 of the decoder.onnx and prior.onnx it was made
from; the page refuses a file whose sha256s are not its model.json's (and loads onnxruntime-web
for the first digits instead), so after a model change make the files again with

    python scripts/web_first_decoder.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

from digitvae.runtime.atomic import atomic_write
from digitvae.runtime.errors import DigitVAEError, IntegrityError, ModelError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
OUT = ROOT / "web" / "public" / "first-decoder"
#: The models the page opens with (the default and the conditional one shown in docs/web.md).
DEFAULT_MODELS = ("mnist-vae", "mnist-cvae")
FORMAT = "digitvae-first-decoder"
FORMAT_VERSION = 1
#: The decoder's ops the JavaScript decoder implements: the layers, and the label's one-hot
#: columns of a conditional decoder (concatenated to z before the first layer).
LAYER_OPS = {"Gemm", "Elu", "Reshape", "Sigmoid"}
LABEL_OPS = {"Shape", "Unsqueeze", "Equal", "Cast", "Concat", "Expand"}
PRIOR_OPS = {"Gather", "Unsqueeze", "Less", "Cast", "ArgMax", "MatMul", "Squeeze", "Add"}


class UnsupportedGraph(ModelError):
    """A decoder or prior graph the JavaScript first-digits path does not implement."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def decoder_layers(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Return the decoder's layers [(weight [out, in], bias [out])] and its label classes (0: none)."""
    import onnx  # building the file needs onnx (the [train] extra); reading and decoding it do not
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    ops = [node.op_type for node in graph.node]
    inputs = [i.name for i in graph.input]
    classes = 0
    if "label" in inputs:
        equal = [node for node in graph.node if node.op_type == "Equal"]
        consts = {n.output[0]: numpy_helper.to_array(_attrs(n)["value"]) for n in graph.node if n.op_type == "Constant"}
        arange = [weights.get(name, consts.get(name)) for node in equal for name in node.input]
        arange = [a for a in arange if a is not None]
        if len(arange) != 1 or not np.array_equal(arange[0].ravel(), np.arange(arange[0].size)):
            raise UnsupportedGraph(f"{path}: the label is not one-hot encoded against arange(classes)")
        classes = int(arange[0].size)
        allowed = LAYER_OPS | LABEL_OPS
    else:
        allowed = LAYER_OPS
    if inputs[0] != "z" or not set(ops) <= allowed:
        raise UnsupportedGraph(f"{path}: ops {sorted(set(ops) - allowed)} are not an MLP of Gemm and Elu layers")
    layers = []
    gemms = [node for node in graph.node if node.op_type == "Gemm"]
    for i, node in enumerate(gemms):
        a = _attrs(node)
        if a.get("transB") != 1 or a.get("transA", 0) != 0 or a.get("alpha", 1.0) != 1 or a.get("beta", 1.0) != 1:
            raise UnsupportedGraph(f"{path}: Gemm {node.name} is not x @ W.T + b")
        consumers = [n for n in graph.node if node.output[0] in n.input]
        want = "Reshape" if i == len(gemms) - 1 else "Elu"
        if [n.op_type for n in consumers] != [want] or _attrs(consumers[0]).get("alpha", 1.0) != 1:
            raise UnsupportedGraph(f"{path}: Gemm {node.name} is not followed by {want}")
        layers.append((weights[node.input[1]].astype(np.float32), weights[node.input[2]].astype(np.float32)))
    if "image" not in [o.name for o in graph.output] or ops.count("Sigmoid") != 1:
        raise UnsupportedGraph(f"{path}: no image output through one Sigmoid")
    return layers, classes


def prior_mixture(path: Path) -> dict[str, np.ndarray]:
    """Return prior.onnx's mixture: cumulative_weights [rows, K], means [K, D], cholesky [K, D, D]."""
    import onnx  # building the file needs onnx (the [train] extra); reading and decoding it do not
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    if not ops <= PRIOR_OPS:
        raise UnsupportedGraph(f"{path}: ops {sorted(ops - PRIOR_OPS)} are not the mixture sampler's")
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    mixture = {name: arrays[name].astype(np.float32) for name in ("cumulative_weights", "means", "cholesky")}
    cholesky = mixture["cholesky"]
    if np.any(np.triu(cholesky, 1)):
        raise UnsupportedGraph(f"{path}: the mixture's cholesky factors are not lower triangular")
    return mixture


def quantize(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return weight [out, in] as int8 per output channel (symmetric) and the float32 scale of each."""
    peak = np.abs(weight).max(axis=1)
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    q = np.clip(np.rint(weight / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def first_decoder(model: str, models: Path = MODELS) -> bytes:
    """Return the first-digits file of a shipped model folder."""
    folder = models / model
    manifest = json.loads((folder / "model.json").read_text())
    files = manifest["variants"]["fp32"]
    decoder = folder / files["decoder"]["path"]
    if _sha256(decoder) != files["decoder"]["sha256"]:
        raise IntegrityError(f"{decoder}: sha256 differs from model.json")
    layers, classes = decoder_layers(decoder)
    latent = int(manifest["latent_dim"])
    if layers[0][0].shape[1] != latent + classes or layers[-1][0].shape[0] != 784:
        raise UnsupportedGraph(f"{decoder}: the layers do not map {latent} latents (+{classes} classes) to 784 pixels")
    arrays: list[tuple[str, np.ndarray]] = []
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": manifest["name"],
        "latent_dim": latent,
        "num_classes": classes,
        "decoder": {"path": decoder.name, "sha256": files["decoder"]["sha256"]},
        "prior": None,
        "layers": [],
        "arrays": {},
    }
    for i, (weight, bias) in enumerate(layers):
        q, scale = quantize(weight)
        arrays += [(f"w{i}", q), (f"s{i}", scale), (f"b{i}", bias)]
        last = i == len(layers) - 1
        header["layers"].append(
            {"in": int(weight.shape[1]), "out": int(weight.shape[0]), "activation": "sigmoid" if last else "elu"}
        )
    if manifest["prior"] != "standard_normal":
        prior = folder / files["prior"]["path"]
        if _sha256(prior) != files["prior"]["sha256"]:
            raise IntegrityError(f"{prior}: sha256 differs from model.json")
        mixture = prior_mixture(prior)
        k, d, _ = mixture["cholesky"].shape
        rows, cols = np.tril_indices(d)
        arrays += [
            ("cumulative", mixture["cumulative_weights"]),
            ("means", mixture["means"]),
            ("cholesky", mixture["cholesky"][:, rows, cols]),  # lower triangles, row by row
        ]
        header["prior"] = {
            "path": prior.name,
            "sha256": files["prior"]["sha256"],
            "rows": int(mixture["cumulative_weights"].shape[0]),
            "components": int(k),
        }
    body = bytearray()
    for name, array in arrays:
        while len(body) % 4:
            body.append(0)
        header["arrays"][name] = {"dtype": str(array.dtype), "offset": len(body), "length": int(array.nbytes)}
        body += np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    return struct.pack("<I", len(text)) + text + bytes(body)


def read(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return a first-digits file's header and its arrays."""
    (length,) = struct.unpack("<I", data[:4])
    header = json.loads(data[4 : 4 + length])
    body = data[4 + length :]
    arrays = {}
    for name, entry in header["arrays"].items():
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        arrays[name] = np.frombuffer(body, dtype, entry["length"] // dtype.itemsize, entry["offset"])
    return header, arrays


def decode(data: bytes, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Return a first-digits file's pixels [N, 784] for codes z in float64, as web/src/first.js computes them."""
    header, arrays = read(data)
    x = np.asarray(z, np.float64)
    if header["num_classes"]:
        if labels is None:
            raise ValueError(f"{header['model']} is conditional: pass labels")
        x = np.concatenate([x, np.eye(header["num_classes"])[labels]], axis=1)
    for i, layer in enumerate(header["layers"]):
        q = arrays[f"w{i}"].astype(np.float64).reshape(layer["out"], layer["in"])
        x = (x @ q.T) * arrays[f"s{i}"] + arrays[f"b{i}"]  # the int8 products, then the channel's scale
        x = np.where(x > 0, x, np.expm1(x)) if layer["activation"] == "elu" else 1 / (1 + np.exp(-x))
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS), help="shipped model names")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the folder to write <model>.bin to (default {OUT})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        if not (MODELS / model / "model.json").is_file():
            sys.exit(f"error: {model} is not a shipped model: no {MODELS / model / 'model.json'}")
        try:
            data = first_decoder(model)
        except DigitVAEError as err:
            sys.exit(f"error: {err}")
        with atomic_write(args.out / f"{model}.bin", "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
