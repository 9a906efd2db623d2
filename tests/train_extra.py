"""Whether the [train] extra (torch, onnx, onnxscript) is installed, and the files its export writes."""

from __future__ import annotations

import importlib.util

import pytest

#: What `export` writes into a model folder, sorted: three variants of each half, the prior, model.json.
EXPORTED_FILES = sorted(
    [f"{role}{suffix}.onnx" for role in ("encoder", "decoder") for suffix in ("", ".int8", ".fp16")]
    + ["prior.onnx", "prior_density.onnx", "model.json"]
)

HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "onnx", "onnxscript"))
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs the [train] extra (torch, onnx, onnxscript)")
