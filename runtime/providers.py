"""Execution providers: short names, availability, and the check that they really started."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from .errors import ProviderError

logger = logging.getLogger(__name__)

#: Short names accepted wherever a provider is asked for, mapped to onnxruntime's names.
ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
    "cann": "CANNExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "azure": "AzureExecutionProvider",
}

ProviderSpec = str | tuple[str, dict[str, Any]]


def all_provider_names() -> list[str]:
    """Return every provider name onnxruntime knows, available here or not."""
    import onnxruntime as ort

    return list(ort.get_all_providers())


def available_providers() -> list[str]:
    """Return the providers this onnxruntime build can use on this machine."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def canonical_name(name: str) -> str:
    """Map a short or full provider name to onnxruntime's full name."""
    if not isinstance(name, str) or not name.strip():
        raise ProviderError(f"provider name must be a non-empty string, got {name!r}")
    key = name.strip()
    if key.lower() in ALIASES:
        return ALIASES[key.lower()]
    known = all_provider_names()
    for full in known:
        if key.lower() == full.lower() or key.lower() + "executionprovider" == full.lower():
            return full
    short = ", ".join(sorted(set(ALIASES)))
    raise ProviderError(f"unknown execution provider {name!r}; use a short name ({short}) or an onnxruntime name")


def normalize(providers: ProviderSpec | Sequence[ProviderSpec] | None) -> list[tuple[str, dict[str, Any]]]:
    """Turn a user's provider request into [(full_name, options)], CPU when none is given."""
    if providers is None:
        return [("CPUExecutionProvider", {})]
    if isinstance(providers, (str, tuple)):
        providers = [providers]
    if not isinstance(providers, Sequence):
        raise ProviderError(
            f"providers must be a name, a (name, options) pair or a list of them, got {type(providers).__name__}"
        )
    result: list[tuple[str, dict[str, Any]]] = []
    for spec in providers:
        if isinstance(spec, tuple):
            if len(spec) != 2 or not isinstance(spec[1], dict):
                raise ProviderError(f"provider with options must be (name, dict), got {spec!r}")
            name, options = canonical_name(str(spec[0])), dict(spec[1])
        else:
            name, options = canonical_name(cast(str, spec)), {}
        if name not in (n for n, _ in result):
            result.append((name, options))
    if not result:
        raise ProviderError("providers must name at least one execution provider")
    return result


def session_providers(
    requested: list[tuple[str, dict[str, Any]]], *, strict: bool
) -> tuple[list[str], list[dict[str, Any]]]:
    """Return the names and options to hand onnxruntime, dropping (or refusing) unavailable ones."""
    available = available_providers()
    names: list[str] = []
    options: list[dict[str, Any]] = []
    for name, opts in requested:
        if name in available:
            names.append(name)
            options.append(opts)
            continue
        message = (
            f"execution provider {name} is not available in this onnxruntime build (available: {', '.join(available)})"
        )
        if strict:
            raise ProviderError(message)
        logger.warning("%s; skipping it", message)
    # CPU always backs the others: onnxruntime needs it for nodes they cannot run.
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
        options.append({})
    return names, options


def check_active(started: Sequence[str], active: Sequence[str], *, strict: bool) -> None:
    """Warn or raise when a provider handed to onnxruntime did not start (it falls back silently)."""
    missing = [name for name in started if name not in active]
    if not missing:
        return
    message = f"execution provider(s) {', '.join(missing)} failed to start; running on {', '.join(active)}"
    if strict:
        raise ProviderError(message)
    logger.warning(message)
