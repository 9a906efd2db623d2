"""Plugin execution providers: EP libraries shipped as Python packages, run through onnxruntime 1.23's device API.

onnxruntime loads such a library with `register_execution_provider_library`; the library then
offers one `OrtEpDevice` per device it can run on (`get_ep_devices`), and a session uses it only
when handed those devices (`SessionOptions.add_provider_for_devices`). Naming the EP in
`providers=` is not enough: onnxruntime warns and runs on its CPU provider instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from ..logs import get_logger

if TYPE_CHECKING:
    import onnxruntime as ort

logger = get_logger(__name__)

#: The first onnxruntime with the plugin EP API.
PLUGIN_API_VERSION = "1.23"
#: The generic form of a plugin provider name: "plugin:MODULE", MODULE a package that has `get_library_path()`.
GENERIC_PREFIX = "plugin:"
#: The session option that makes onnxruntime record which EP runs each node.
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Plugin:
    """A Python package that ships an EP library, and how digitvae picks its device and options."""

    module: str
    #: The EP's name as onnxruntime reports it; None: whatever the package's get_ep_names() says.
    ep_name: str | None = None
    #: The extra that installs the package, named in errors.
    extra: str | None = None
    #: The ep_metadata key that names the device (e.g. OpenVINO's "GPU.1"), matched by `device_type` too.
    device_key: str | None = None
    #: What hardware the EP runs on, for the error when it offers no device here.
    hardware: str | None = None
    #: The options to add for a device unless the caller sets the precision ("precision" or "load_config").
    defaults: Callable[[str], dict[str, str]] | None = None

    @property
    def install(self) -> str:
        """Return the pip command that installs the package."""
        if self.extra:
            from ..extras import install_command

            return install_command(self.extra)
        return f"install the package that provides {self.module}"


def _openvino_f32(device: str) -> dict[str, str]:
    """Return OpenVINO's options for float32 arithmetic on this device."""
    # OpenVINO computes in bf16 on CPUs that have it unless told otherwise: logits then differ
    # from the CPU provider's by about 0.1.
    return {"load_config": json.dumps({device: {"INFERENCE_PRECISION_HINT": "f32"}})}


#: Plugin EPs known by short name.
KNOWN: dict[str, Plugin] = {
    "openvino": Plugin(
        module="onnxruntime_ep_openvino",
        ep_name="OpenVINOExecutionProvider",
        extra="openvino",
        device_key="ov_device",
        hardware="Intel CPUs, GPUs and NPUs only",
        defaults=_openvino_f32,
    ),
}
_PRECISION_KEYS = ("precision", "load_config")

_lock = threading.Lock()
_registered: dict[str, list[str]] = {}  # module -> the EP names its library registered


def find(name: str) -> Plugin | None:
    """Return the plugin a provider name asks for ("openvino", its EP name, or "plugin:MODULE"), or None."""
    key = name.strip()
    if key.lower().startswith(GENERIC_PREFIX):
        module = key[len(GENERIC_PREFIX) :].strip()
        if not _MODULE_NAME.match(module):
            raise ProviderError(
                f"{name!r}: after {GENERIC_PREFIX!r} comes a Python module name, such as onnxruntime_ep_openvino"
            )
        known = next((p for p in KNOWN.values() if p.module == module), None)
        return known or Plugin(module=module)
    for short, plugin in KNOWN.items():
        if key.lower() in (short, (plugin.ep_name or "").lower()):
            return plugin
    return None


def installed(plugin: Plugin) -> bool:
    """Return whether the plugin's package is installed."""
    try:
        return importlib.util.find_spec(plugin.module) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or a module without a spec
        return False


def has_plugin_api() -> bool:
    """Return whether this onnxruntime has the plugin EP API."""
    import onnxruntime as ort

    return all(hasattr(ort, f) for f in ("register_execution_provider_library", "get_ep_devices")) and hasattr(
        ort.SessionOptions, "add_provider_for_devices"
    )


def register(plugin: Plugin) -> list[str]:
    """Register the package's EP library with onnxruntime once per process; return its EP names."""
    import onnxruntime as ort

    if not has_plugin_api():
        upgrade = plugin.install if plugin.extra else f"pip install 'onnxruntime>={PLUGIN_API_VERSION}'"
        raise ProviderError(
            f"{plugin.ep_name or plugin.module} is a plugin execution provider: it needs onnxruntime "
            f"{PLUGIN_API_VERSION} or later, and this is onnxruntime {ort.__version__} ({upgrade})"
        )
    with _lock:
        if plugin.module in _registered:
            return _registered[plugin.module]
        try:
            package = importlib.import_module(plugin.module)
        except ImportError:
            raise ProviderError(f"{plugin.module} is not installed: {plugin.install}") from None
        if not callable(getattr(package, "get_library_path", None)):
            raise ProviderError(f"{plugin.module} has no get_library_path(): it is not a plugin EP package")
        try:
            path = str(package.get_library_path())
        except Exception as exc:  # a broken install: the package says why
            raise ProviderError(f"{plugin.module}: no EP library: {exc}") from None
        names = _ep_names(package, plugin)
        # The application may have registered the library itself (its devices carry the path):
        # registering it again under another name would load it twice.
        if not any(d.ep_metadata.get("library_path") == path for d in ort.get_ep_devices()):
            try:
                ort.register_execution_provider_library(plugin.module, path)
            except Exception as exc:
                # Registered under this name already (by the application, or before a device check).
                if "already registered" not in str(exc):
                    raise ProviderError(
                        f"{plugin.module}: onnxruntime cannot load its EP library {path}: {exc}"
                    ) from None
        _registered[plugin.module] = names
        logger.debug("registered %s (%s) from %s", plugin.module, ", ".join(names), path)
        return names


def _ep_names(package: Any, plugin: Plugin) -> list[str]:
    """Return the EP names a plugin package provides."""
    if plugin.ep_name:
        return [plugin.ep_name]
    if callable(getattr(package, "get_ep_names", None)):
        return [str(n) for n in package.get_ep_names()]
    if callable(getattr(package, "get_ep_name", None)):
        return [str(package.get_ep_name())]
    raise ProviderError(f"{plugin.module} has neither get_ep_names() nor get_ep_name(): it is not a plugin EP package")


def device_name(plugin: Plugin, device: Any) -> str:
    """Return the name of an EP device: the plugin's own (e.g. OpenVINO's "GPU.1"), else the hardware type."""
    own = device.ep_metadata.get(plugin.device_key) if plugin.device_key else None
    return str(own) if own else str(device.device.type.name)


def select_device(plugin: Plugin, names: list[str], device_type: str, devices: list[Any]) -> Any:
    """Return the first real (not virtual) device of these EPs whose name or hardware type is `device_type`."""
    wanted = device_type.strip().upper()
    offered = [d for d in devices if d.ep_name in names and d.device.metadata.get("is_virtual") != "1"]
    for device in offered:
        if wanted in (device_name(plugin, device).upper(), str(device.device.type.name).upper()):
            return device
    if not offered:
        runs_on = f" (it runs on {plugin.hardware})" if plugin.hardware else ""
        raise ProviderError(f"{', '.join(names)} offers no device on this machine{runs_on}")
    have = ", ".join(sorted({device_name(plugin, d) for d in offered}))
    raise ProviderError(
        f"{', '.join(names)} offers no {device_type} device here; choose one of {have} with the option device_type"
    )


def plugin_options(plugin: Plugin, device: str, options: Mapping[str, Any]) -> dict[str, str]:
    """Return the EP's options as strings: the caller's, less device_type, with the plugin's defaults added."""
    result = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in options.items() if k != "device_type"}
    if plugin.defaults is not None and not any(k in result for k in _PRECISION_KEYS):
        result.update(plugin.defaults(device))
    return result


def built_in_options(plugin: Plugin, options: Mapping[str, Any]) -> dict[str, str]:
    """Return the options for a build with the plugin's EP inside: device_type kept, the plugin's defaults added."""
    # onnxruntime-openvino (OpenVINO built into onnxruntime) takes the same options, device_type too.
    device = str(options.get("device_type", "CPU")).strip().upper()
    result = plugin_options(plugin, device, options)
    if "device_type" in options:
        result["device_type"] = device
    return result


@dataclass(frozen=True)
class Choice:
    """A plugin EP's device and options, chosen once and handed to each session."""

    device: Any  # onnxruntime.OrtEpDevice
    options: dict[str, str]

    @property
    def ep_name(self) -> str:
        """Return the EP's name as sessions report it."""
        return str(self.device.ep_name)

    def add_to(self, opts: ort.SessionOptions) -> None:
        """Hand the device to these session options, and ask onnxruntime to record which nodes it takes."""
        opts.add_provider_for_devices([self.device], self.options)
        opts.add_session_config_entry(RECORD_ASSIGNMENT, "1")


def choose(plugin: Plugin, options: Mapping[str, Any]) -> Choice:
    """Register the plugin and choose its device (`device_type`, CPU by default) and options."""
    import onnxruntime as ort

    names = register(plugin)
    device_type = options.get("device_type", "CPU")
    if not isinstance(device_type, str) or not device_type.strip():
        raise ProviderError(f"device_type must be a device name such as 'CPU', 'GPU' or 'NPU', got {device_type!r}")
    device = select_device(plugin, names, device_type, list(ort.get_ep_devices()))
    return Choice(device, plugin_options(plugin, device_name(plugin, device), options))


def assigned(session: ort.InferenceSession) -> set[str] | None:
    """Return the EPs that onnxruntime assigned nodes to, or None when it did not record them."""
    try:
        return {s.ep_name for s in session.get_provider_graph_assignment_info() if s.get_nodes()}
    except Exception:  # older onnxruntime, or a session made without RECORD_ASSIGNMENT
        return None
