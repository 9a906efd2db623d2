"""model.json: the manifest that describes a model folder, parsed strictly (no file access here)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError

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
