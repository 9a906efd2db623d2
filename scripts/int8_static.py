"""Static int8 against the shipped dynamic int8 and fp32: decode speed at batch 1,024 and IW-NLL.

Builds statically quantized encoders and decoders (QDQ and QOperator formats, int8 weights per output channel,
uint8 activations calibrated on training digits: the encoder on the digits, the decoder on
their posterior codes and on prior draws), puts them in a copy of the model folder as its
int8 variant, and compares the three in one run:

- decode of the same 1,024 codes, the variants taking turns in each of the repeats;
- IW-NLL (k samples, seed 0) on validation digits, with each variant's encoder and decoder.

    python scripts/int8_static.py --data ~/.cache/digitvae/mnist5k [--model mnist-vae] [--digits 500] [--k 100]

Needs the [train] extra (onnx, onnxruntime.quantization); nothing in the model folder changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from digitvae.runtime import DigitVAE
from digitvae.runtime.digits.idx import read_idx


class _Batches(CalibrationDataReader):
    """Hand onnxruntime's calibrator one input in batches of 100 rows."""

    def __init__(self, name: str, rows: np.ndarray) -> None:
        self._batches = iter([{name: rows[i : i + 100]} for i in range(0, len(rows), 100)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _quantize(source: Path, dest: Path, name: str, rows: np.ndarray, fmt: QuantFormat) -> None:
    quantize_static(
        str(source),
        str(dest),
        _Batches(name, rows),
        quant_format=fmt,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=["MatMul", "Gemm"],
    )


def _static_folder(model: DigitVAE, train: np.ndarray, into: Path, fmt: QuantFormat) -> Path:
    """Copy the model folder with statically quantized int8 files in place of its int8 variant's."""
    folder = Path(shutil.copytree(model.model_dir, into / f"{model.name}-{fmt.name}"))
    mean, logvar = model.encode(train)
    rng = np.random.default_rng(0)
    posterior = mean + np.exp(logvar / 2) * rng.standard_normal(mean.shape, dtype=np.float32)
    codes = np.concatenate([mean, posterior, model.sample_latents(len(train), seed=0)]).astype(np.float32)
    manifest = json.loads((folder / "model.json").read_text())
    for role, name, rows in (("encoder", "image", train.reshape(-1, 1, 28, 28)), ("decoder", "z", codes)):
        target = folder / manifest["variants"]["int8"][role]["path"]
        _quantize(folder / manifest["variants"]["fp32"][role]["path"], target, name, rows, fmt)
        manifest["variants"]["int8"][role]["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (folder / "model.json").write_text(json.dumps(manifest, indent=2))
    return folder


def _decode_speed(models: dict[str, DigitVAE], repeats: int) -> dict[str, float]:
    """Return each model's median seconds per decode of 1,024 codes, taking turns in every repeat."""
    z = np.random.default_rng(1).standard_normal((1024, next(iter(models.values())).latent_dim), dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.decode(z)
    for r in range(repeats):
        names = list(models)[r % len(models) :] + list(models)[: r % len(models)]
        for name in names:
            start = time.perf_counter()
            for _ in range(5):
                models[name].decode(z)
            times[name].append((time.perf_counter() - start) / 5)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train5k and valid5k IDX files")
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--digits", type=int, default=500, help="validation digits for IW-NLL")
    parser.add_argument("--k", type=int, default=100, help="importance samples per digit")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    train = read_idx(args.data / "train5k-images-idx3-ubyte.gz")[:1000].astype(np.float32) / 255
    valid = read_idx(args.data / "valid5k-images-idx3-ubyte.gz")[: args.digits].astype(np.float32) / 255
    fp32 = DigitVAE.load(args.model, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "fp32": fp32,
            "int8 dynamic (shipped)": DigitVAE.load(args.model, variant="int8", threads=args.threads),
        }
        for fmt in (QuantFormat.QDQ, QuantFormat.QOperator):
            folder = _static_folder(fp32, train, Path(tmp), fmt)
            models[f"int8 static ({fmt.name})"] = DigitVAE.load(folder, variant="int8", threads=args.threads)
        seconds = _decode_speed(models, args.repeats)
        nll = {name: float(model.iw_nll(valid, k=args.k, seed=0).mean()) for name, model in models.items()}
    print(
        f"{args.model}, decode batch 1024 (median of {args.repeats} turns), IW-NLL k={args.k} on {len(valid)} valid5k digits"
    )
    for name in models:
        print(
            f"  {name:<24} {1024 / seconds[name]:>10,.0f} digits/s  x{seconds['fp32'] / seconds[name]:.2f} fp32   "
            f"IW-NLL {nll[name]:.3f} nats ({nll[name] - nll['fp32']:+.3f})"
        )


if __name__ == "__main__":
    main()
