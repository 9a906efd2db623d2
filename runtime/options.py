"""LoadOptions: which model to load and how, as one typed value from the command line to every loader."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import numpy as np

from .errors import InputError, ProviderError
from .folders.locate import DEFAULT_MODEL
from .inference.providers import ProviderSpec, normalize

#: Most intra-op threads accepted: far beyond any machine, and within what onnxruntime takes.
MAX_THREADS = 1024


@dataclass(frozen=True)
class LoadOptions:
    """Which model to load and how; checked when made, and the same wherever a model is loaded.

    `providers` are short names ("cpu", "cuda", "openvino", ...), onnxruntime names or
    "plugin:MODULE", optionally as (name, options) pairs, in order of preference; empty means
    CPU. `strict` makes a requested provider that does not start an error instead of a warning.
    `threads` is onnxruntime's intra-op thread count (None or 0: its default). `prior=False`
    uses N(0, I) instead of a learned prior, for comparison.
    """

    model: str = DEFAULT_MODEL
    variant: str = "fp32"
    providers: tuple[ProviderSpec, ...] = ()
    strict: bool = False
    threads: int | None = None
    prior: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.model, os.PathLike):
            object.__setattr__(self, "model", os.fspath(self.model))
        if not isinstance(self.model, str):
            raise InputError(
                f"model must be a shipped model name or a folder path, got {type(self.model).__name__} {self.model!r}"
            )
        if not isinstance(self.variant, str):
            raise InputError(
                f"variant must be a name such as 'fp32', 'int8' or 'fp16', got {type(self.variant).__name__}"
            )
        threads = self.threads
        if threads is not None:
            if (
                isinstance(threads, bool)
                or not isinstance(threads, (int, np.integer))
                or not 0 <= threads <= MAX_THREADS
            ):
                raise InputError(
                    f"threads must be an integer from 0 (onnxruntime's default) to {MAX_THREADS}, got {threads!r}"
                )
            object.__setattr__(self, "threads", int(threads))
        object.__setattr__(self, "providers", as_provider_specs(self.providers))
        object.__setattr__(self, "strict", bool(self.strict))
        object.__setattr__(self, "prior", bool(self.prior))

    def provider_request(self) -> list[ProviderSpec] | None:
        """Return the providers as the runtime's loaders take them: None for the default (CPU)."""
        return list(self.providers) or None

    def to_dict(self) -> dict[str, Any]:
        """Return the options as plain JSON values (the one place they are serialised)."""
        data = asdict(self)
        data["providers"] = [spec if isinstance(spec, str) else [spec[0], spec[1]] for spec in self.providers]
        return data

    def to_json(self) -> str:
        """Return the options as one line of JSON, for another process."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadOptions:
        """Rebuild options from `to_dict`'s values; unknown keys are an InputError."""
        if not isinstance(data, Mapping):
            raise InputError(f"load options must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown load option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(data)
        providers = values.get("providers")
        if isinstance(providers, list):  # JSON has no tuples: (name, options) pairs come back as lists
            values["providers"] = tuple(tuple(spec) if isinstance(spec, list) else spec for spec in providers)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> LoadOptions:
        """Rebuild options from `to_json`'s line."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InputError(f"load options are not valid JSON ({exc.msg})") from None


def as_provider_specs(providers: ProviderSpec | Sequence[ProviderSpec] | None) -> tuple[ProviderSpec, ...]:
    """Return a provider request as a tuple of specs: None is (), one name or pair a tuple of one.

    None and () ask for the default (CPU); any other empty sequence names no provider, a ProviderError.
    """
    if providers is None or (isinstance(providers, tuple) and not providers):
        return ()
    if isinstance(providers, str) or (
        isinstance(providers, tuple) and len(providers) == 2 and isinstance(providers[1], dict)
    ):
        return (providers,)
    if not isinstance(providers, Sequence):
        raise ProviderError(
            f"providers must be a name, a (name, options) pair or a list of them, got {type(providers).__name__}"
        )
    if not providers:
        normalize(providers)  # raises the loaders' error for a request that names no provider
    return tuple(cast(Sequence[ProviderSpec], providers))
