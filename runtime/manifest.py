"""model.json: the manifest that describes a model folder, parsed strictly."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import DigitVAEError, InputError, IntegrityError, ModelError, ModelNotFoundError, OutputError

logger = logging.getLogger(__name__)

MANIFEST_NAME = "model.json"
FORMAT = "digitvae-model"
FORMAT_VERSION = 1
ROLES = ("encoder", "decoder")
#: The files of a learned latent prior: its sampler and its log-density. A model without them
#: has the N(0, I) prior. Older folders also list a "generator" (the sampler composed with the
#: decoder): the runtime never loads one, so it is ignored; `digitvae export-generator` builds
#: one on demand for the apps that want it.
PRIOR_ROLES = ("prior", "prior_density")
STANDARD_NORMAL = "standard_normal"
#: Kinds of learned prior this digitvae reads.
PRIOR_KINDS = ("gaussian_mixture",)
_KNOWN_FIELDS = frozenset(
    {
        "format",
        "format_version",
        "name",
        "preset",
        "latent_dim",
        "num_classes",
        "image_shape",
        "likelihood",
        "prior",
        "variants",
        "package_version",
        "training",
        "metrics",
    }
)
DEFAULT_MODEL = "mnist-vae"
#: Largest model.json read: ours hold about 20 kB; 50 MB of small JSON objects would take 1.3 GiB.
MAX_MANIFEST_BYTES = 4 << 20
#: Largest ONNX file read: ours hold 0.2-3 MB.
MAX_ONNX_BYTES = 512 << 20


@dataclass(frozen=True)
class ModelFile:
    """One ONNX file of a model folder and its expected sha256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The parsed contents of a model.json."""

    name: str
    latent_dim: int
    image_shape: tuple[int, int, int]
    variants: Mapping[str, Mapping[str, ModelFile]]
    preset: str = ""
    package_version: str = ""
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    #: Number of classes a conditional model takes as its `label` input; 0 for unconditional models.
    num_classes: int = 0
    #: The learned prior (kind, classes, what it was fit on), or None for N(0, I).
    prior: Mapping[str, Any] | None = None
    #: Top-level fields this version does not model, kept as read so that rewriting loses nothing.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prior_classes(self) -> int:
        """Return how many classes the prior can be asked for (0: none, or no learned prior)."""
        return int(self.prior["classes"]) if self.prior else 0

    @property
    def conditional(self) -> bool:
        """Return whether both ONNX files take a `label` input."""
        return self.num_classes > 0

    def files(self, variant: str = "fp32") -> Mapping[str, ModelFile]:
        """Return the role -> file mapping of one variant."""
        if variant not in self.variants:
            raise ModelError(
                f"model {self.name!r} has no variant {variant!r}; it has: {', '.join(sorted(self.variants))}"
            )
        return self.variants[variant]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form of this manifest."""
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "name": self.name,
            "preset": self.preset,
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "likelihood": "bernoulli",
            "prior": dict(self.prior) if self.prior else STANDARD_NORMAL,
            "variants": {
                variant: {role: {"path": f.path, "sha256": f.sha256} for role, f in files.items()}
                for variant, files in self.variants.items()
            },
            "package_version": self.package_version,
            "training": dict(self.training),
            "metrics": dict(self.metrics),
            **{k: v for k, v in self.extra.items() if k not in _KNOWN_FIELDS},
        }

    def to_json(self) -> str:
        """Return the manifest as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"


def _expect(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ModelError(f"{where}: missing required field {key!r}")
    value = data[key]
    # bool is an int subclass; a manifest saying `"latent_dim": true` is wrong, not 1.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ModelError(f"{where}: field {key!r} must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ModelError(f"{where}: field {key!r} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _parse_file(entry: Any, where: str) -> ModelFile:
    if not isinstance(entry, dict):
        raise ModelError(f"{where}: must be an object with 'path' and 'sha256'")
    path = _expect(entry, "path", str, where)
    sha = _expect(entry, "sha256", str, where)
    # File names only: a manifest must never point outside its own folder.
    # Control characters (NUL above all) are no file name and would escape as ValueError from open().
    if not path or path != os.path.basename(path) or path in (".", "..") or "\\" in path or not path.isprintable():
        raise ModelError(f"{where}: path {path!r} must be a plain file name inside the model folder")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError(f"{where}: sha256 must be 64 lowercase hex digits, got {sha!r}")
    return ModelFile(path=path, sha256=sha)


def parse_manifest(data: Any, source: str = MANIFEST_NAME) -> Manifest:
    """Validate a decoded model.json and return it as a Manifest; unknown fields are ignored."""
    if not isinstance(data, dict):
        raise ModelError(f"{source}: must hold a JSON object")
    fmt = _expect(data, "format", str, source)
    if fmt != FORMAT:
        raise ModelError(f"{source}: format is {fmt!r}, expected {FORMAT!r}")
    version = _expect(data, "format_version", int, source)
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{source}: format_version {version} is not supported (this digitvae reads version "
            f"{FORMAT_VERSION}); upgrade digitvae or re-export the model"
        )
    latent_dim = _expect(data, "latent_dim", int, source)
    if not 1 <= latent_dim <= 4096:
        raise ModelError(f"{source}: latent_dim must be between 1 and 4096, got {latent_dim}")
    num_classes = _expect(data, "num_classes", int, source) if "num_classes" in data else 0
    if num_classes != 0 and not 2 <= num_classes <= 1000:
        raise ModelError(f"{source}: num_classes must be 0 (unconditional) or between 2 and 1000, got {num_classes}")
    shape = _expect(data, "image_shape", list, source)
    # [true, 28, 28] and [1.0, 28, 28] compare equal to [1, 28, 28]; the manifest must hold integers.
    if shape != [1, 28, 28] or any(type(v) is not int for v in shape):
        raise ModelError(f"{source}: image_shape must be [1, 28, 28], got {shape!r}")
    variants_raw = _expect(data, "variants", dict, source)
    if "fp32" not in variants_raw:
        raise ModelError(f"{source}: variants must include 'fp32'")
    variants: dict[str, dict[str, ModelFile]] = {}
    for variant, files in variants_raw.items():
        where = f"{source}: variants.{variant}"
        if not isinstance(files, dict):
            raise ModelError(f"{where}: must be an object with {' and '.join(ROLES)}")
        variants[variant] = {role: _parse_file(_expect(files, role, dict, where), f"{where}.{role}") for role in ROLES}
    # The runtime's likelihoods assume Bernoulli pixels; refuse a model that says otherwise.
    if "likelihood" in data and _expect(data, "likelihood", str, source) != "bernoulli":
        raise ModelError(
            f"{source}: likelihood {data['likelihood']!r} is not supported; this digitvae reads 'bernoulli'"
        )
    prior = _parse_prior(data.get("prior", STANDARD_NORMAL), num_classes, source)
    if prior is not None:
        for variant, files in variants_raw.items():
            where = f"{source}: variants.{variant}"
            for role in PRIOR_ROLES:
                variants[variant][role] = _parse_file(_expect(files, role, dict, where), f"{where}.{role}")
    optional: dict[str, Any] = {}
    for key, kind in (("name", str), ("preset", str), ("package_version", str), ("training", dict), ("metrics", dict)):
        if key in data:
            optional[key] = _expect(data, key, kind, source)
    return Manifest(
        name=optional.pop("name", ""),
        latent_dim=latent_dim,
        image_shape=(1, 28, 28),
        variants=variants,
        format_version=version,
        num_classes=num_classes,
        prior=prior,
        extra={k: v for k, v in data.items() if k not in _KNOWN_FIELDS},
        **optional,
    )


def _parse_prior(value: Any, num_classes: int, source: str) -> dict[str, Any] | None:
    """Return a learned prior's description, or None for N(0, I)."""
    where = f"{source}: prior"
    if value == STANDARD_NORMAL:
        return None
    if not isinstance(value, dict):
        raise ModelError(f"{where} must be {STANDARD_NORMAL!r} or an object describing a learned prior, got {value!r}")
    kind = _expect(value, "kind", str, where)
    if kind not in PRIOR_KINDS:
        raise ModelError(f"{where}: kind {kind!r} is not supported; this digitvae reads {', '.join(PRIOR_KINDS)}")
    check_prior_classes(_expect(value, "classes", int, where), num_classes, where)
    return dict(value)


def check_prior_classes(classes: int, num_classes: int, where: str = f"{MANIFEST_NAME}: prior") -> None:
    """Raise ModelError unless a prior of `classes` classes is one a model of `num_classes` may have."""
    if classes != 0 and not 2 <= classes <= 1000:
        raise ModelError(f"{where}: classes must be 0 (none) or between 2 and 1000, got {classes}")
    if num_classes and classes != num_classes:
        raise ModelError(f"{where}: a conditional model's prior must have its {num_classes} classes, got {classes}")


def read_manifest(model_dir: Path) -> Manifest:
    """Read and validate model_dir/model.json."""
    path = model_dir / MANIFEST_NAME
    if not path.exists():
        raise ModelError(
            f"{model_dir}: no {MANIFEST_NAME} (a model folder holds {MANIFEST_NAME}, encoder.onnx, decoder.onnx)"
        )
    manifest = parse_manifest(_read_json(model_dir), str(path))
    if not manifest.name:
        manifest = replace(manifest, name=model_dir.name)
    return manifest


def _read_json(model_dir: Path) -> Any:
    """Return model_dir/model.json decoded: UTF-8 (a leading BOM is allowed), no key given twice."""
    path = model_dir / MANIFEST_NAME
    try:
        text = read_model_file(model_dir, MANIFEST_NAME, MAX_MANIFEST_BYTES).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ModelError(f"{path}: not valid JSON (nested too deeply)") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # an integer of thousands of digits, beyond Python's conversion limit
        raise ModelError(f"{path}: not a usable manifest ({exc})") from None
    except _DuplicateKey as exc:
        # Parsers disagree on which of two values wins; a manifest that says two things says neither.
        raise ModelError(f"{path}: key {exc.args[0]!r} appears twice in one object") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"it holds {name}, which is no JSON number (a figure that could not be measured?)")


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def shipped_models_dir() -> Path:
    """Return the folder that holds the models installed with the package."""
    import importlib

    models = importlib.import_module("digitvae.models")
    return Path(str(models.__file__)).resolve().parent


def list_shipped_models() -> list[str]:
    """Return the names of the models installed with the package."""
    root = shipped_models_dir()
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_NAME).is_file())


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """Turn a shipped model name or a folder path into an existing model folder."""
    if not isinstance(model, (str, os.PathLike)):
        raise InputError(f"model must be a shipped model name or a folder path, got {type(model).__name__} {model!r}")
    text = os.fspath(model)
    if not text:
        raise InputError("model is empty: give a shipped model name (such as 'mnist-vae') or a folder path")
    try:
        if text and os.sep not in text and "/" not in text and text not in (".", ".."):
            shipped = shipped_models_dir() / text
            if (shipped / MANIFEST_NAME).is_file():
                return shipped
        path = Path(text).expanduser()
        if path.is_file() and path.name == MANIFEST_NAME:
            path = path.parent
        if path.is_dir():
            return path
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte, ...
        raise ModelNotFoundError(f"no model {text[:80]!r}: {getattr(exc, 'strerror', None) or exc}") from None
    names = ", ".join(list_shipped_models()) or "none installed"
    raise ModelNotFoundError(f"no model {text!r}: not a shipped model name ({names}) and not a model folder")


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_model_file(model_dir: Path, name: str, limit: int) -> bytes:
    """Read a file of a model folder: a regular file inside the folder, at most `limit` bytes.

    A FIFO or device would block or never end, and a symlink could point anywhere: each is a
    ModelError, as is a file over the limit (checked before it is read whole).
    """
    path = Path(model_dir) / name
    real = path.resolve()
    if real.parent != Path(model_dir).resolve():
        raise ModelError(f"{path}: a link that leaves the model folder (to {real}); model files must lie inside it")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing (listed in {MANIFEST_NAME})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)  # checked before fdopen, which refuses a directory with its own error
        raise ModelError(
            f"{path}: not a regular file (a directory, FIFO, device or socket); model files must be plain files"
        )
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > limit:
            raise ModelError(f"{path}: {info.st_size:,} bytes, more than the {limit:,} a model file may have")
        # The size just read, plus one byte to notice a file that grows while it is read.
        data = fh.read(info.st_size + 1)
    if len(data) > limit:
        raise ModelError(f"{path}: more than the {limit:,} bytes a model file may have")
    return data


def verified_bytes(model_dir: Path, entry: ModelFile) -> bytes:
    """Read one model file and check it against its sha256; return its bytes."""
    path = model_dir / entry.path
    data = read_model_file(model_dir, entry.path, MAX_ONNX_BYTES)
    found = hashlib.sha256(data).hexdigest()
    if found != entry.sha256:
        raise IntegrityError(
            f"{path}: sha256 mismatch (model.json says {entry.sha256[:16]}..., file has "
            f"{found[:16]}...); the file was modified or corrupted"
        )
    return data


def update_metrics(model_dir: Path, entries: Mapping[str, Any], merge: str | None = None) -> Manifest:
    """Store entries under `metrics` in model_dir/model.json, atomically; return the new manifest.

    This is the one writer of figures into an existing model folder. The JSON is edited as
    read, so fields this version does not model are kept, and each entry replaces its key
    (the entry named by `merge` is merged one level deep: metrics.likelihood.<variant>).
    """
    from .atomic import atomic_write

    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_NAME
    with model_folder_lock(model_dir):
        read_manifest(model_dir)  # refuse to edit anything that is not a valid manifest
        data = _read_json(model_dir)
        metrics = data.setdefault("metrics", {})
        if not isinstance(metrics, dict):
            raise ModelError(f"{path}: field 'metrics' must be an object")
        for key, value in entries.items():
            if key == merge and isinstance(metrics.get(key), dict):
                metrics[key].update(value)
            else:
                metrics[key] = value
        try:
            text = json.dumps(data, indent=2) + "\n"
        except (TypeError, ValueError) as exc:  # a figure that JSON cannot hold
            raise ModelError(f"{path} not written: its metrics cannot be written as JSON ({exc})") from None
        check_manifest_text(text, model_dir)
        with atomic_write(path, "w") as fh:
            fh.write(text)
    logger.info("wrote metrics %s to %s", ", ".join(entries), path)
    return read_manifest(model_dir)


def check_manifest_text(text: str, model_dir: Path, *, target: Path | None = None) -> Manifest:
    """Read a model.json about to be written into model_dir by the readers' rules; raise ModelError if one would refuse it.

    The error says that `target` (model_dir/model.json unless given) was not written, and why.

    The rules are those of `read_manifest`, of the readers of the figures that commands read
    back (`metrics.score`: score, OutlierDetector; `metrics.latent_plane`: manifold), and of
    strict JSON: NaN and Infinity, which Python reads, stop the browser's `response.json()`.
    """
    from .latent import manifold_codes
    from .scoring import Calibration

    path = model_dir / MANIFEST_NAME
    try:
        manifest = parse_manifest(json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_not_json), str(path))
        if isinstance(manifest.metrics.get("score"), Mapping):
            Calibration.from_metrics(manifest.metrics)
        if manifest.metrics.get("latent_plane") is not None:
            manifold_codes(manifest.latent_dim, 2, manifest.metrics["latent_plane"])
    except (DigitVAEError, ValueError, _DuplicateKey) as exc:
        raise ModelError(f"{target or path} not written: the new {MANIFEST_NAME} would not load: {exc}") from None
    return manifest


@contextlib.contextmanager
def model_folder_lock(model_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of a model folder, across processes.

    The lock is taken on the folder's parent directory, which outlives the folder being
    replaced by a rename, and leaves no file behind. Without fcntl (Windows) it does nothing.
    Once it is held, what a writer killed outright left beside the folder is tidied (and a
    folder it had moved aside put back) before the folder is read: see atomic.recover_leftovers.
    """
    from .atomic import recover_leftovers

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    parent = Path(model_dir).resolve().parent
    try:
        fd = os.open(parent, os.O_RDONLY)
    except OSError as exc:
        raise OutputError(f"cannot lock {parent} to update {model_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        recover_leftovers(model_dir)
        yield
    finally:
        os.close(fd)
