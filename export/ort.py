"""ORT format files of a model folder, for onnxruntime's minimal and mobile builds.

Each fp32 and int8 ONNX file `X.onnx` that model.json lists becomes `OUT/X.ort`: onnxruntime
itself optimizes the graph and saves it in its flatbuffer format, with the settings of
`python -m onnxruntime.tools.convert_onnx_models_to_ort` (optimization level "all", no NCHWc
layouts, which suit x86 alone). `OUT/required_operators.config`, written by onnxruntime's
`tools.ort_format_model`, names every operator the files use, for a build with
`--minimal_build --include_ops_by_config`; `OUT/ort.json` records each file's sha256 and where
it came from. Needs onnxruntime alone (its tools and their flatbuffers dependency): neither
torch nor onnx.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from digitvae.runtime.atomic import swapped_in
from digitvae.runtime.errors import MissingDependencyError, ModelError, OutputError
from digitvae.runtime.folders.locate import resolve_model_dir
from digitvae.runtime.folders.reading import checked_graph, read_manifest, sha256_file

logger = logging.getLogger(__name__)

MANIFEST_NAME = "ort.json"
FORMAT = "digitvae-ort"
FORMAT_VERSION = 1
CONFIG_NAME = "required_operators.config"
#: The variants converted: fp16 is left out, because onnxruntime's CPU optimizer turns its
#: float16 weights into float32 ones, which doubles the file (docs/edge.md).
VARIANTS = ("fp32", "int8")
#: What convert_onnx_models_to_ort disables for any target but amd64: NCHWc layouts are x86 kernels.
DISABLED_OPTIMIZERS = ["NchwcTransformer"]


@dataclass(frozen=True)
class OrtFile:
    """One .ort file written, and the ONNX file (role of a variant) it was converted from."""

    path: str
    sha256: str
    size: int
    variant: str
    role: str
    onnx_path: str
    onnx_sha256: str
    onnxruntime: str
    #: The ORT format version the file is written in, which decides the onnxruntime releases that read it.
    ort_format: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form ort.json holds."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.size,
            "onnx": {"path": self.onnx_path, "sha256": self.onnx_sha256},
            "onnxruntime": self.onnxruntime,
            "ort_format": self.ort_format,
        }


@dataclass(frozen=True)
class OrtExport:
    """What export_ort wrote: the model, its .ort files per variant and role, the operators they need."""

    model: str
    out_dir: Path
    files: tuple[OrtFile, ...]
    #: (domain, opset) -> operator names, as required_operators.config lists them.
    operators: Mapping[tuple[str, int], tuple[str, ...]]


def ort_name(onnx_name: str) -> str:
    """Return the .ort file name for an ONNX file name: X.onnx -> X.ort."""
    stem = onnx_name[: -len(".onnx")] if onnx_name.lower().endswith(".onnx") else onnx_name
    return f"{stem}.ort"


def ort_tools() -> ModuleType:
    """Return onnxruntime.tools.ort_format_model, or raise MissingDependencyError saying what to install."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    try:
        module: ModuleType = importlib.import_module("onnxruntime.tools.ort_format_model")
    except ImportError as exc:
        raise MissingDependencyError(
            f"writing ORT format files needs onnxruntime's tools.ort_format_model and flatbuffers, which this "
            f"install lacks ({exc}): pip install --force-reinstall onnxruntime flatbuffers"
        ) from None
    finally:
        # Its logger module calls logging.basicConfig on import; the root logger is the application's.
        root.handlers[:] = handlers
    return module


def convert(blob: bytes, target: Path, source: Path) -> None:
    """Optimize one ONNX model held in blob and save it as an ORT format file at target."""
    import onnxruntime as ort

    from digitvae.runtime.inference.sessions import session_options

    options = session_options(1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry("session.save_model_format", "ORT")
    # As convert_onnx_models_to_ort for any target but arm: QDQ int8 is not assumed to be fast.
    options.add_session_config_entry("session.qdqisint8allowed", "0")
    try:
        ort.InferenceSession(
            blob, sess_options=options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
        )
        # Read back at once: a file this onnxruntime cannot load is not written at all.
        ort.InferenceSession(str(target), sess_options=session_options(1), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for bad models
        raise ModelError(f"{source}: onnxruntime cannot convert it to ORT format: {exc}") from None


def ort_format_version(path: Path) -> str:
    """Return the ORT format version an .ort file declares, read with onnxruntime's flatbuffer bindings."""
    fbs = ort_tools().ort_model_processor.fbs
    data = path.read_bytes()
    if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(data, 0):
        raise ModelError(f"{path}: not an ORT format file")
    version = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(data, 0).OrtVersion()
    return version.decode("ascii") if isinstance(version, bytes) else str(version)


def write_required_operators(ort_files: list[Path], config: Path) -> dict[tuple[str, int], tuple[str, ...]]:
    """Write onnxruntime's required_operators.config for these .ort files; return what it lists."""
    tools = ort_tools()
    tools.create_config_from_models(ort_files, config, False)
    # The header names each model by the path it was read from (a temporary folder): keep the file name.
    lines = config.read_text(encoding="utf-8").splitlines()
    lines = [f"# - {Path(line[4:]).name}" if line.startswith("# - ") else line for line in lines]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return read_required_operators(config)


def read_required_operators(config: Path) -> dict[tuple[str, int], tuple[str, ...]]:
    """Return (domain, opset) -> operator names from a required_operators.config without type reduction."""
    found: dict[tuple[str, int], tuple[str, ...]] = {}
    for line in config.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        domain, opsets, ops = line.split(";")
        for opset in opsets.split(","):
            found[(domain, int(opset))] = tuple(sorted({*found.get((domain, int(opset)), ()), *ops.split(",")}))
    return found


def export_ort(model: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, force: bool = False) -> OrtExport:
    """Write the fp32 and int8 ONNX files of a model folder as .ort files into out_dir, whole or not at all.

    The folder is built beside out_dir and renamed into place. An empty out_dir, or one that a
    previous export_ort wrote (and nothing else), is replaced; any other existing out_dir is
    refused unless `force`, and a file or link there is always refused.
    """
    import onnxruntime as ort

    from digitvae.runtime._version import __version__

    ort_tools()  # fail on a missing dependency before any model is read
    out_dir = Path(out_dir)
    # Normalised, so that "." or "runs/.." names the folder itself rather than an entry inside it.
    where = Path(os.path.abspath(out_dir))
    if where == where.parent:
        raise OutputError(f"cannot write {out_dir}: give a folder to create, not the file system's root")
    _check_target(where, force)  # before any work; checked again at the swap
    model_dir = resolve_model_dir(model)
    if where.resolve() in (model_dir.resolve(), *model_dir.resolve().parents):
        raise OutputError(f"cannot write {out_dir}: it holds the model folder {model_dir}; choose another folder")
    manifest = read_manifest(model_dir)
    # Each ONNX file once (prior.onnx serves both variants), checked against model.json before use.
    sources: dict[str, tuple[str, bytes]] = {}
    targets: dict[str, str] = {}
    for variant in (v for v in VARIANTS if v in manifest.variants):
        for entry in manifest.variants[variant].values():
            if entry.path in sources:
                if sources[entry.path][0] != entry.sha256:
                    raise ModelError(f"{model_dir}: model.json lists {entry.path} with two different sha256 sums")
                continue
            name = ort_name(entry.path)
            if targets.get(name, entry.path) != entry.path:
                raise ModelError(f"{model_dir}: {targets[name]} and {entry.path} would both become {name}")
            targets[name] = entry.path
            sources[entry.path] = (entry.sha256, checked_graph(model_dir, entry))

    def failed(exc: OSError) -> str:
        return f"cannot write {out_dir}: {exc.strerror or exc} (in {where.parent})"

    files: list[OrtFile] = []
    with swapped_in(where, lambda existing: _check_target(existing, force), failed) as staging:
        written: dict[str, tuple[str, int, str]] = {}
        for path, (_, blob) in sources.items():
            target = staging / ort_name(path)
            convert(blob, target, model_dir / path)
            written[path] = (sha256_file(target), target.stat().st_size, ort_format_version(target))
        for variant in (v for v in VARIANTS if v in manifest.variants):
            for role, entry in manifest.variants[variant].items():
                sha, size, version = written[entry.path]
                files.append(
                    OrtFile(
                        ort_name(entry.path),
                        sha,
                        size,
                        variant,
                        role,
                        entry.path,
                        entry.sha256,
                        ort.__version__,
                        version,
                    )
                )
        operators = write_required_operators(sorted(staging / ort_name(p) for p in sources), staging / CONFIG_NAME)
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": manifest.name,
            "latent_dim": manifest.latent_dim,
            "num_classes": manifest.num_classes,
            "required_operators": CONFIG_NAME,
            "digitvae": __version__,
            "variants": {
                variant: {f.role: f.to_dict() for f in files if f.variant == variant}
                for variant in dict.fromkeys(f.variant for f in files)
            },
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        for staged in staging.iterdir():
            os.chmod(staged, 0o644)
        os.chmod(staging, 0o755)  # mkdtemp makes 0o700; an app bundle's build may run as another user
    logger.info("wrote %d ORT files of %s to %s", len(sources), manifest.name, out_dir)
    return OrtExport(manifest.name, out_dir, tuple(files), operators)


def _check_target(existing: Path, force: bool) -> bool:
    """Return whether a folder stands at the output path to be replaced; raise OutputError where it must stay."""
    try:
        if not (existing.exists() or existing.is_symlink()):
            return False
        if existing.is_symlink() or not existing.is_dir():
            raise OutputError(f"{existing} exists and is not a folder; export-ort replaces only a folder")
        if not force and not _replaceable(existing):
            raise OutputError(
                f"{existing} already exists and holds files that export-ort did not write; pass --force to replace it"
            )
    except (OSError, ValueError) as exc:  # a name too long, a path through a file, a NUL byte, ...
        raise OutputError(f"cannot write {existing}: {getattr(exc, 'strerror', None) or exc}") from None
    return True


def _replaceable(folder: Path) -> bool:
    """Return whether a folder is empty or holds a previous export_ort's files and nothing else."""
    names = {p.name for p in folder.iterdir()}
    if not names:
        return True
    try:
        document = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            return False
        listed = {entry["path"] for files in document["variants"].values() for entry in files.values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return names <= {MANIFEST_NAME, CONFIG_NAME, *(name for name in listed if isinstance(name, str))}
