"""The torch eager contender of `digitvae bench`: the same network, rebuilt in PyTorch.

Imported by the benchmark only when it compares with torch; torch, onnx and the training code
are imported only when the network is rebuilt, and nothing else in digitvae.bench imports them.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace
from typing import Any

import numpy as np

from digitvae.runtime.folders.reading import verified_bytes
from digitvae.runtime.inference.model import DigitVAE

logger = logging.getLogger(__name__)


def torch_contender(vae: DigitVAE) -> Any:
    """Return a torch eager twin of the model's fp32 weights, or a sentence saying why there is none."""
    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        return f"not measured: {' and '.join(missing)} not installed"
    if vae.num_classes:
        return "not measured: conditional models are not rebuilt in torch"
    model_config = vae.manifest.training.get("model_config")
    if not isinstance(model_config, dict):
        return "not measured: model.json has no training.model_config to rebuild the network from"
    try:
        return _TorchTwin(vae, model_config)
    except Exception as exc:  # a model the training code cannot rebuild is no reason to stop the benchmark
        logger.debug("torch twin failed", exc_info=True)
        return f"not measured: cannot rebuild the network in torch ({type(exc).__name__}: {exc})"


class _TorchTwin:
    """The model's VAE module with the fp32 ONNX initializers loaded by name."""

    def __init__(self, vae: DigitVAE, model_config: dict[str, Any]) -> None:
        import onnx
        import torch
        from onnx import numpy_helper

        from digitvae.train.config import VAEConfig, from_dict
        from digitvae.train.model import VAE

        # The twin decodes and encodes; a prior learned in training is not part of that.
        module = VAE(replace(from_dict(VAEConfig, model_config), prior_components=0, prior_classes=0))
        weights: dict[str, Any] = {}
        for role in ("encoder", "decoder"):
            entry = vae.manifest.files("fp32")[role]
            graph = onnx.load_from_string(verified_bytes(vae.model_dir, entry)).graph
            weights.update({t.name.removeprefix("vae."): numpy_helper.to_array(t) for t in graph.initializer})
        state = module.state_dict()
        missing = sorted(k for k in state if k not in weights or tuple(weights[k].shape) != tuple(state[k].shape))
        if missing:
            raise KeyError(f"no ONNX initializer matches {', '.join(missing[:3])}")
        module.load_state_dict({k: torch.from_numpy(np.array(weights[k])) for k in state})
        self.module = module.eval()
        self.torch = torch
        self.rng = np.random.default_rng()
        self.d = vae.latent_dim
        # The code bench's other contenders decode at batch 1 (the same seed).
        self.fixed_code = np.random.default_rng(0).standard_normal((1, self.d), dtype=np.float32)

    def generate1(self) -> Any:
        z = self.rng.standard_normal((1, self.d), dtype=np.float32)
        with self.torch.inference_mode():
            return self.torch.sigmoid(self.module.decode(self.torch.from_numpy(z))).numpy().reshape(1, 28, 28)

    def decode1(self) -> Any:
        return self.decode(self.fixed_code, None)

    def decode(self, z: np.ndarray, labels: np.ndarray | None) -> Any:
        with self.torch.inference_mode():
            return self.torch.sigmoid(self.module.decode(self.torch.from_numpy(z))).numpy().reshape(len(z), 28, 28)

    def reconstruct(self, x: np.ndarray, labels: np.ndarray | None) -> Any:
        with self.torch.inference_mode():
            mean, _ = self.module.encode(self.torch.from_numpy(np.ascontiguousarray(x, np.float32)))
            return self.torch.sigmoid(self.module.decode(mean)).numpy().reshape(len(x), 28, 28)
