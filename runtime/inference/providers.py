"""Execution providers: short names, availability, and the check that they really started."""

from __future__ import annotations

import contextlib
import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ..errors import ProviderError
from ..logs import get_logger
from . import plugins

logger = get_logger(__name__)

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

#: Built-in providers that need CUDA's libraries (and cuDNN's) when their first session starts.
CUDA_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})

#: The CUDA provider's options that digitvae sets unless the caller does. `use_tf32` (onnxruntime
#: 1.18 and later) is on by default: from Ampere on, float32 GEMMs then round their operands to
#: 10-bit mantissas, and a float32 model's pixels move by 1e-3 from the CPU's (measured on an
#: H200; docs/edge.md, "CUDA"). Off, they agree within 4e-6; the model is too small to gain speed.
CUDA_DEFAULTS = {"use_tf32": "0"}


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
    if key.lower().startswith(plugins.GENERIC_PREFIX):
        plugin = plugins.find(key)
        assert plugin is not None  # find() takes every name with the prefix, or raises
        return plugins.GENERIC_PREFIX + plugin.module
    if key.lower() in ALIASES:
        return ALIASES[key.lower()]
    known = all_provider_names()
    for full in known:
        if key.lower() == full.lower() or key.lower() + "executionprovider" == full.lower():
            return full
    short = ", ".join(sorted(set(ALIASES)))
    raise ProviderError(
        f"unknown execution provider {name!r}; use a short name ({short}), an onnxruntime name "
        f"or {plugins.GENERIC_PREFIX}MODULE for a plugin EP package"
    )


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


@dataclass
class Plan:
    """The providers every session of a model gets: built-in ones by name, plugin EPs by device."""

    names: list[str] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)
    plugins: list[plugins.Choice] = field(default_factory=list)
    #: Whether sessions record which EP runs each node (for a built-in EP that may take none).
    record_assignment: bool = False

    @property
    def started(self) -> list[str]:
        """Return the providers the sessions should report active, in order of preference."""
        return [c.ep_name for c in self.plugins] + self.names


def plan(requested: list[tuple[str, dict[str, Any]]], *, strict: bool) -> Plan:
    """Decide what to hand onnxruntime, dropping (or refusing) providers that cannot run here."""
    available = available_providers()
    result = Plan()
    for name, opts in requested:
        plugin = plugins.find(name)
        # A registered plugin EP is listed as available, but naming it in `providers=` runs the CPU
        # provider instead: it goes in by device. A build with the EP inside (no package) goes by name,
        # with the options the plugin would get (OpenVINO's float32).
        if name in available and (plugin is None or not plugins.installed(plugin)):
            result.names.append(name)
            if name == "CUDAExecutionProvider" and _has_use_tf32():
                opts = {**CUDA_DEFAULTS, **opts}
            result.options.append(opts if plugin is None else plugins.built_in_options(plugin, opts))
            result.record_assignment = result.record_assignment or plugin is not None
            continue
        try:
            if plugin is None:
                raise ProviderError(
                    f"execution provider {name} is not available in this onnxruntime build (available: {', '.join(available)})"
                )
            result.plugins.append(plugins.choose(plugin, opts))
        except ProviderError as exc:
            if strict:
                raise
            logger.warning("%s; skipping it", exc)
    if CUDA_PROVIDERS.intersection(result.names):
        preload_cuda_libraries()
    # CPU always backs the others: onnxruntime needs it for nodes they cannot run.
    if "CPUExecutionProvider" not in result.names:
        result.names.append("CPUExecutionProvider")
        result.options.append({})
    return result


def _has_use_tf32() -> bool:
    """Return whether this onnxruntime's CUDA provider takes `use_tf32` (older ones refuse it)."""
    import onnxruntime as ort

    try:
        major, minor = (int(part) for part in ort.__version__.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (1, 18)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@functools.cache
def preload_cuda_libraries() -> None:
    """Load CUDA's and cuDNN's libraries from NVIDIA's pip packages, once, where onnxruntime can.

    onnxruntime-gpu's CUDA provider looks for libcublas and the rest on the loader's search path
    only, which the nvidia-* packages of `pip install onnxruntime-gpu[cuda,cudnn]` are not on:
    without this its sessions quietly start on the CPU. `onnxruntime.preload_dlls` (1.21 and
    later) loads them from those packages, else by name from the system's CUDA. It prints what it
    could not load; that goes to the log instead of standard output, which may carry a PNG.
    """
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            preload()
    except Exception as exc:  # noqa: BLE001 - a failed preload leaves the provider to fail visibly
        logger.warning("could not preload CUDA's libraries: %s", exc)
    for line in _ANSI.sub("", printed.getvalue()).splitlines():
        if line.strip():
            logger.warning("onnxruntime: %s", line.strip())


def check_active(started: Sequence[str], active: Sequence[str], *, strict: bool) -> None:
    """Warn or raise when a provider handed to onnxruntime did not start (it falls back silently)."""
    missing = [name for name in started if name not in active]
    if not missing:
        return
    message = f"execution provider(s) {', '.join(missing)} failed to start; running on {', '.join(active)}"
    if strict:
        raise ProviderError(message)
    logger.warning(message)
