"""Compare OpenVINO's CPU plugin with onnxruntime's CPU provider on shipped models, outside onnxruntime.

    pip install openvino   # the OpenVINO release onnxruntime-ep-openvino bundles (2026.4.1 for 1.8.1)
    python scripts/openvino_direct.py [mnist-vae mnist-cvae]

For machines whose CPU the OpenVINO plugin EP does not offer (it offers Intel devices only): the
same OpenVINO CPU plugin, through the `openvino` package, runs in place of the encoder and
decoder sessions of a DigitVAE, in OpenVINO's default precision (bf16 where the CPU has it) and in
f32. Prints the largest absolute differences from the CPU provider (docs/edge.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import openvino

from digitvae.runtime import DigitVAE
from digitvae.runtime.digits.idx import read_mnist_images

DIGITS = Path(__file__).resolve().parent.parent / "tests" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"


class CompiledSession:
    """An OpenVINO compiled model with the part of InferenceSession's interface DigitVAE uses."""

    def __init__(self, core: openvino.Core, path: Path, like: Any, f32: bool) -> None:
        config = {"INFERENCE_PRECISION_HINT": "f32"} if f32 else {}
        self.compiled = core.compile_model(str(path), "CPU", config)
        self.like = like

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.compiled(feeds)
        by_name = {o.get_any_name(): result[o] for o in self.compiled.outputs}
        return [np.asarray(by_name[n]) for n in names]

    def get_inputs(self) -> Any:
        return self.like.get_inputs()

    def get_outputs(self) -> Any:
        return self.like.get_outputs()

    def get_providers(self) -> list[str]:
        return ["OpenVINO"]


def on_openvino(model: str, core: openvino.Core, f32: bool) -> DigitVAE:
    """Return the model with its encoder and decoder compiled by OpenVINO for the CPU."""
    vae = DigitVAE.load(model)
    vae._encoder = CompiledSession(core, vae.model_dir / "encoder.onnx", vae._encoder, f32)  # type: ignore[assignment]
    vae._decoder = CompiledSession(core, vae.model_dir / "decoder.onnx", vae._decoder, f32)  # type: ignore[assignment]
    for runner in vae._small.values():
        runner.enabled = False  # the bound-buffer path belongs to onnxruntime sessions
    return vae


def main(models: list[str]) -> None:
    core = openvino.Core()
    x = read_mnist_images(DIGITS).astype(np.float32) / 255
    print(f"OpenVINO {openvino.__version__}, CPU: {core.get_property('CPU', 'FULL_DEVICE_NAME')}")
    for model in models:
        cpu = DigitVAE.load(model)
        labels = np.arange(len(x)) % 10 if cpu.num_classes else None
        z = np.random.default_rng(0).standard_normal((256, cpu.latent_dim), dtype=np.float32)
        z_labels = np.arange(256) % 10 if cpu.num_classes else None
        for f32 in (True, False):
            ov = on_openvino(model, core, f32)
            diff = {
                "decode": np.abs(ov.decode(z, z_labels) - cpu.decode(z, z_labels)).max(),
                "logits": np.abs(ov.decoder_outputs(z, z_labels)[0] - cpu.decoder_outputs(z, z_labels)[0]).max(),
                "encoder mean": np.abs(ov.encode(x, labels)[0] - cpu.encode(x, labels)[0]).max(),
                "generate": np.abs(ov.generate(64, seed=1) - cpu.generate(64, seed=1)).max(),
                "reconstruct": np.abs(ov.reconstruct(x, labels) - cpu.reconstruct(x, labels)).max(),
                "iw_nll nats": np.abs(ov.iw_nll(x, k=100, labels=labels) - cpu.iw_nll(x, k=100, labels=labels)).max(),
            }
            precision = "f32" if f32 else "default"
            print(f"{model} {precision}: " + ", ".join(f"{k} {float(v):.2g}" for k, v in diff.items()))


if __name__ == "__main__":
    main(sys.argv[1:] or ["mnist-vae", "mnist-cvae"])
