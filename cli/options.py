"""What the command modules share: options, model loading and input reading."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from digitvae.runtime.errors import DataFormatError, InputError, MissingDependencyError, PictureError
from digitvae.runtime.folders.locate import DEFAULT_MODEL
from digitvae.runtime.options import LoadOptions, as_provider_specs

if TYPE_CHECKING:
    from digitvae.runtime.inference.model import DigitVAE

logger = logging.getLogger(__name__)

model_option = click.option(
    "--model",
    "-m",
    default=DEFAULT_MODEL,
    show_default=True,
    metavar="NAME|DIR",
    help="A shipped model name or a model folder.",
)
#: Several models, for commands that compare or serve them: `-m A -m B`; none given means the default.
models_option = click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    metavar="NAME|DIR",
    help=f"A shipped model name or a model folder; repeat for several (default {DEFAULT_MODEL}).",
)
provider_option = click.option(
    "--provider",
    "-p",
    default=None,
    metavar="P[,P...]",
    help="Execution providers in order of preference: cpu, cuda, openvino, ... (default cpu).",
)
strict_option = click.option("--strict", is_flag=True, help="Fail if a requested provider is not active.")
variant_option = click.option(
    "--variant",
    default="fp32",
    show_default=True,
    metavar="NAME",
    help="Model variant: fp32, int8, fp16 (those the model ships).",
)
scale_option = click.option(
    "--scale",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Enlarge PNG output (2: each pixel a 2x2 square).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
threads_option = click.option(
    "--threads",
    type=click.IntRange(0, 1024),
    default=None,
    help="onnxruntime intra-op threads (default: one per physical core).",
)
cols_option = click.option("--cols", type=click.IntRange(1, 1000), default=None, help="Digits per row in a PNG grid.")


def provider_list(provider: str | None) -> list[str] | None:
    """Split a --provider value ("cuda,cpu") into provider names; None for the default."""
    return [p for p in provider.split(",") if p.strip()] if provider else None


standard_prior_option = click.option(
    "--standard-prior", is_flag=True, help="Use N(0, I) instead of the model's learned prior (for comparison)."
)


#: The command-line options that make a command's LoadOptions, in LoadOptions' order.
_LOAD_OPTION_NAMES = ("model", "variant", "provider", "strict", "threads")


def load_options(
    model: str, variant: str, provider: str | None, strict: bool, threads: int | None, *, prior: bool = True
) -> LoadOptions:
    """Return the LoadOptions that --model, --variant, --provider, --strict and --threads give."""
    return LoadOptions(model, variant, as_provider_specs(provider_list(provider)), strict, threads, prior)


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the options that choose and load a model, passed to it as `options: LoadOptions`."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = load_options(*(kwargs.pop(name) for name in _LOAD_OPTION_NAMES))
        return command(*args, options=options, **kwargs)

    for option in reversed((model_option, variant_option, provider_option, strict_option, threads_option)):
        wrapper = option(wrapper)
    return wrapper


def load_model(
    model: str,
    provider: str | None,
    strict: bool,
    variant: str = "fp32",
    threads: int | None = None,
    prior: bool = True,
) -> DigitVAE:
    """Load a DigitVAE from separate option values (for commands not yet given `options: LoadOptions`)."""
    from digitvae.runtime.inference.model import DigitVAE

    return DigitVAE.from_options(load_options(model, variant, provider, strict, threads, prior=prior))


labels_option = click.option(
    "--labels",
    "labels_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="IDX labels for a conditional model (default: the labels file beside an IDX input).",
)


def labels_for(vae: DigitVAE, labels: np.ndarray | None) -> np.ndarray | None:
    """Return the labels a model takes: those read for a conditional model, None for the others."""
    if not vae.num_classes:
        return None
    if labels is None:
        raise InputError(
            f"model {vae.name!r} is conditional: its digits need labels (--labels FILE, or an IDX labels file beside the images)"
        )
    return labels


prepare_option = click.option(
    "--prepare",
    is_flag=True,
    help="Each input is a picture of a digit (photo or drawing; PNG, JPEG or .npy, any size; "
    "dark ink on light paper or the reverse): make it MNIST-style first.",
)


#: What a picture given without --prepare is told.
PREPARE_HINT = "add --prepare to make a picture of a digit (PNG or JPEG, any size) MNIST-style first"


def read_digit_batches(
    paths: Sequence[str], prepare: bool = False, limit: int | None = None, warn: bool = True
) -> list[np.ndarray]:
    """Read each digit file as its own batch (read_digit_files); a picture read without --prepare is told of it.

    A refused picture's error names --prepare; 28x28 digits that look like dark ink on light
    paper are read, with one warning (unless `warn` is False: see warn_if_inverted).
    """
    from digitvae.runtime.digits.files import read_digit_files

    try:
        batches = read_digit_files(paths, prepare, limit)
    except PictureError as exc:
        raise PictureError(exc.reason, PREPARE_HINT) from None
    if warn and not prepare:
        warn_if_inverted(paths, batches)
    return batches


def warn_if_inverted(names: Sequence[str], batches: Sequence[np.ndarray]) -> None:
    """Log one warning naming the batches that look like dark ink on light paper, if any do."""
    from digitvae.runtime.digits.files import looks_inverted

    inverted = list(dict.fromkeys(str(name) for name, batch in zip(names, batches) if looks_inverted(batch)))
    if inverted:
        more = f" and {len(inverted) - 1} more files" if len(inverted) > 1 else ""
        logger.warning(
            "%s%s: dark ink on light paper, it seems, but MNIST digits are light ink on black; %s",
            inverted[0],
            more,
            PREPARE_HINT,
        )


def read_digits(paths: Sequence[str], limit: int | None = None, prepare: bool = False, warn: bool = True) -> np.ndarray:
    """Read digits as one float32 [N,28,28] batch (runtime's read_digits, with read_digit_batches' guidance)."""
    batches = read_digit_batches(paths, prepare, limit, warn)
    if not batches:
        raise InputError("no input files given")
    digits = np.concatenate(batches).astype(np.float32, copy=False)
    return digits[:limit] if limit is not None else digits


def read_labelled(
    paths: Sequence[str], limit: int | None, labels_file: str | None, prepare: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read digits, with labels from --labels or an IDX labels file beside a single IDX input."""
    digits = read_digits(paths, limit, prepare)
    return digits, read_labels(paths, len(digits), labels_file)


def read_labels(paths: Sequence[str], count: int, labels_file: str | None) -> np.ndarray | None:
    """Read the first `count` labels from --labels, or from an IDX labels file beside a single IDX input."""
    from digitvae.runtime.digits.idx import labels_beside, read_mnist_labels

    source = Path(labels_file) if labels_file else (labels_beside(Path(paths[0])) if len(paths) == 1 else None)
    if source is None:
        return None
    labels = read_mnist_labels(source)[:count]
    if len(labels) != count:
        raise DataFormatError(f"{source}: {len(labels)} labels for {count} digits")
    return labels


_INDEXED = re.compile(r"^(?P<path>.+):(?P<index>\d+)$")


def read_one_digit(source: str, prepare: bool = False, warn: bool = True) -> np.ndarray:
    """Read one digit from "FILE.png", or "FILE:INDEX" for an IDX or .npy file; float32 [28,28]."""
    match = _INDEXED.match(source)
    if match and not Path(source).is_file():
        path, index = match["path"], int(match["index"])
        digits = read_digits([path], prepare=prepare, warn=warn)
        if index >= len(digits):
            raise InputError(
                f"{source}: index {index} is out of range; {path} holds {len(digits)} digits (0-{len(digits) - 1})"
            )
        return digits[index]
    digits = read_digits([source], prepare=prepare, warn=warn)
    if len(digits) != 1:
        raise InputError(f"{source}: holds {len(digits)} digits; pick one as {source}:INDEX")
    return digits[0]


def require(*modules: str, extra: str = "train") -> None:
    """Import a command's optional dependencies, or refuse to run it, naming the extra to install.

    They are imported here, with signals held, so that a Ctrl-C cannot land inside an extension
    module's initialisation (see console.signals_held).
    """
    import importlib
    import importlib.util

    from digitvae.runtime.extras import install_command

    from .console import signals_held

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        command = install_command(extra, need_torch="torch" in missing)
        raise MissingDependencyError(f"this command needs {', '.join(missing)}, which {verb} not installed: {command}")
    with signals_held():
        for module in modules:
            importlib.import_module(module)


@contextlib.contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """Yield a callback that moves a progress bar on stderr to `done` of `total`; None when stderr is no terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield lambda done: bar.update(done - bar.pos)
