"""The `digitvae` command line; heavy imports happen inside the commands that need them."""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from digitvae.runtime._version import __version__
from digitvae.runtime.arrays import MAX_COUNT
from digitvae.runtime.errors import DigitVAEError
from digitvae.runtime.options import LoadOptions

from .console import (
    VERBOSE_FLAGS,
    SignalSafeCommand,
    Terminated,
    fail_stopped,
    handle_sigterm,
    handled_errors,
    ignore_signals,
    setup_logging,
)
from .options import (
    cols_option,
    json_option,
    labels_for,
    labels_option,
    model_options,
    prepare_option,
    read_labelled,
    scale_option,
    standard_prior_option,
)

if TYPE_CHECKING:
    import numpy.typing as npt

logger = logging.getLogger(__name__)

#: Commands defined in other modules, imported only when they run (or when help lists them),
#: so that starting `digitvae generate` does not pay for every other command.
_LAZY_COMMANDS = {
    "evaluate": ("digitvae.cli.likelihood", "evaluate"),
    "score": ("digitvae.cli.likelihood", "score"),
    "calibrate": ("digitvae.cli.likelihood", "calibrate"),
    "interpolate": ("digitvae.cli.latent", "interpolate"),
    "manifold": ("digitvae.cli.latent", "manifold"),
    "bench": ("digitvae.cli.bench", "bench"),
    "variants": ("digitvae.cli.variants", "variants"),
    "quality": ("digitvae.cli.quality", "quality"),  # imports no torch until it runs
    "prior": ("digitvae.cli.prior", "prior"),
    "train": ("digitvae.cli.train", "train"),
    "export": ("digitvae.cli.export", "export_cmd"),
    "data": ("digitvae.cli.data", "data"),
    "models": ("digitvae.cli.models", "models"),
    "export-triton": ("digitvae.cli.triton", "export_triton"),
    "export-generator": ("digitvae.cli.generator", "export_generator"),
    "parity": ("digitvae.cli.parity", "parity"),
    "export-ort": ("digitvae.cli.ort", "export_ort"),
    "serve": ("digitvae.cli.serve", "serve"),  # needs the [serve] extra (MLServer)
}


class _Group(SignalSafeCommand, click.Group):
    """A click group that turns our errors into one clean line and a non-zero exit."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # -v/--verbose belongs to the group, but is welcome after the command too: move it in front.
        verbose = [a for a in args if a in VERBOSE_FLAGS]
        return super().parse_args(ctx, [*verbose, *(a for a in args if a not in VERBOSE_FLAGS)])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in _LAZY_COMMANDS:
            module_name, attribute = _LAZY_COMMANDS[name]
            self.add_command(getattr(importlib.import_module(module_name), attribute), name)
        return super().get_command(ctx, name)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with handled_errors():  # a usage error in the group's own options is one line too
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        # Inside: once the command has returned, SignalSafeCommand ignores signals (when main() set
        # the flag); one that comes before that is reported here as "interrupted after writing ...".
        with handled_errors(verbose=bool(ctx.params.get("verbose"))):
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more (-vv for debug).")
@click.version_option(__version__, prog_name="digitvae")
def cli(verbose: int) -> None:
    """Generate, reconstruct, train and export handwritten-digit VAEs."""
    setup_logging(verbose)


@cli.command()
@click.option("-n", "count", type=click.IntRange(1, MAX_COUNT), default=60, show_default=True, help="How many digits.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="OUT.png (grid) or OUT.npy.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed for reproducible digits.")
@click.option(
    "--digit",
    type=click.IntRange(0, 9),
    default=None,
    help="Draw only this digit (conditional models, and priors fit per class).",
)
@click.option(
    "--each-digit", is_flag=True, help="Draw the digits 0-9 in turn, so a 10-column grid holds one digit per column."
)
@standard_prior_option
@model_options
@cols_option
@scale_option
def generate(
    count: int,
    output: str,
    seed: int | None,
    digit: int | None,
    each_digit: bool,
    standard_prior: bool,
    options: LoadOptions,
    cols: int | None,
    scale: int,
) -> None:
    """Generate new digits: draw codes from the model's prior and decode them.

    Without --seed, a seed is drawn and printed, so any run can be repeated.
    """
    from digitvae.runtime.arrays import as_count
    from digitvae.runtime.digits.files import (
        check_grid_size,
        default_cols,
        output_kind,
        tile,
        write_npy_blocks,
        write_png,
    )
    from digitvae.runtime.inference.model import DigitVAE

    kind = output_kind(output)
    count = as_count(count, "-n")
    if kind == ".png":
        check_grid_size(count, cols or default_cols(count), scale, output)
    asked: npt.ArrayLike | None = digit  # one class for every digit, or one per digit
    if each_digit:
        if digit is not None:
            raise click.UsageError("--digit and --each-digit exclude each other")
        import numpy as np

        asked = np.arange(count) % 10
    if seed is None:
        import secrets

        seed = secrets.randbelow(2**32)
    vae = DigitVAE.from_options(replace(options, prior=not standard_prior))
    if kind == ".png":
        write_png(tile(vae.generate(count, seed=seed, digit=asked), cols or default_cols(count)), output, scale)
    else:
        # Block by block: memory stays at one block, however many digits the file holds.
        write_npy_blocks(vae.iter_generate(count, seed=seed, digit=asked), count, output)
    click.echo(f"wrote {_count(count, 'digit')} to {output} (seed {seed})")


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="OUT.png (grid) or OUT.npy.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N digits.")
@labels_option
@prepare_option
@model_options
@cols_option
@scale_option
def reconstruct(
    inputs: tuple[str, ...],
    output: str,
    limit: int | None,
    labels_file: str | None,
    prepare: bool,
    options: LoadOptions,
    cols: int | None,
    scale: int,
) -> None:
    """Encode and decode digits from PNG (28x28), .npy or IDX files.

    With --prepare, each input is a picture of a digit (a photo or drawing, PNG or JPEG of any
    size), made MNIST-style first. A PNG output shows each row of originals (as prepared) above
    its reconstructions.
    """
    from digitvae.runtime.digits.files import (
        check_grid_size,
        default_cols,
        output_kind,
        pair_rows,
        tile,
        write_npy,
        write_png,
    )
    from digitvae.runtime.inference.model import DigitVAE

    kind = output_kind(output)
    vae = DigitVAE.from_options(options)
    originals, labels = read_labelled(inputs, limit, labels_file, prepare)
    if kind == ".png":
        check_grid_size(len(originals), cols or default_cols(len(originals)), scale, output, pairs=True)
    rebuilt = vae.reconstruct(originals, labels_for(vae, labels))
    if kind == ".png":
        c = min(cols or default_cols(len(originals)), len(originals))
        write_png(tile(pair_rows(originals, rebuilt, c), c), output, scale)
    else:
        write_npy(rebuilt, output)
    click.echo(f"wrote {_count(len(rebuilt), 'reconstruction')} to {output}")


@cli.command()
@model_options
@json_option
def info(options: LoadOptions, as_json: bool) -> None:
    """Show a model's manifest and the execution providers."""
    from digitvae.runtime.folders.locate import list_shipped_models
    from digitvae.runtime.inference.model import DigitVAE
    from digitvae.runtime.inference.providers import available_providers

    vae = DigitVAE.from_options(options)
    report = {
        "model": vae.name,
        "directory": str(vae.model_dir),
        "manifest": vae.manifest.to_dict(),
        "shipped_models": list_shipped_models(),
        "available_providers": available_providers(),
        "active_providers": vae.providers,
    }
    click.echo(json.dumps(report, indent=2) if as_json else "\n".join(_info_lines(report, vae.manifest)))


def _info_lines(report: dict[str, Any], m: Any) -> list[str]:
    """Lay out `info`'s report as aligned text lines."""
    metrics = m.metrics
    lines = [
        f"model        {m.name} ({report['directory']})",
        f"preset       {m.preset or '-'}",
        f"latent size  {m.latent_dim}",
        f"image        {list(m.image_shape)} float32 in [0, 1], Bernoulli pixels",
        f"prior        {_describe_prior(m.prior)}",
    ]
    for variant, files in m.variants.items():
        for role, f in files.items():
            lines.append(f"file         {variant}/{role}: {f.path} sha256 {f.sha256}")
    if m.conditional:
        lines.append(f"conditional  label input, {m.num_classes} classes")
    if isinstance(metrics.get("valid_neg_elbo"), (int, float)):
        lines.append(f"valid -ELBO  {metrics['valid_neg_elbo']:.2f} nats/digit (training-time estimate)")
    likelihood = metrics.get("likelihood")
    for variant, figures in likelihood.items() if isinstance(likelihood, dict) else ():
        try:
            lines.append(
                f"likelihood   {variant}: -ELBO {figures['neg_elbo']:.2f}, IW-NLL {figures['iw_nll']:.2f} nats/digit "
                f"(k={figures['k']}, {figures.get('digits', '?')} digits of {', '.join(map(str, figures.get('data', [])))})"
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            lines.append(f"likelihood   {variant}: unreadable in model.json")
    lines += _score_lines(metrics)
    lines += _training_lines(m.training)
    return lines + [
        f"shipped      {', '.join(report['shipped_models'])}",
        f"available    {', '.join(report['available_providers'])}",
        f"active       {', '.join(report['active_providers'])}",
    ]


def _training_lines(training: Any) -> list[str]:
    """Say what a model was trained on, in terms a user can act on, and the command (its data folder as DIR)."""
    import re

    lines = []
    data = training.get("data")
    train = data.get("train") if isinstance(data, dict) else None
    train = train if isinstance(train, dict) else {}
    subset = str(train.get("file", "")).startswith("train5k-")
    if train.get("file"):
        how = " (`digitvae data subset` makes it from MNIST)" if subset else ""
        lines.append(
            f"trained on   {train['file']}, {train.get('digits', '?')} digits, sha256 {str(train.get('sha256'))[:16]}...{how}"
        )
    if training.get("command"):
        # The folder the data was in names a machine the user has not got: what matters is what it held.
        command = re.sub(r"(--data[ =])(\S+)", lambda match: match[1] + "DIR", str(training["command"]))
        if command != training["command"]:
            command += f" (DIR: {'where `digitvae data subset` writes' if subset else 'the folder that held the data'})"
        lines.append(f"trained with {command}")
    return lines


def _score_lines(metrics: Any) -> list[str]:
    """Describe a model's calibrated score ranges, if it has any."""
    if not isinstance(metrics.get("score"), dict):
        return []
    from digitvae.runtime.outliers.scoring import Calibration

    try:
        calibration = Calibration.from_metrics(metrics)
    except DigitVAEError as exc:
        return [f"score range  unusable: {exc}"]
    lines = [
        f"score range  {check} (k={calibration.k}) in [{low:.1f}, {high:.1f}] nats"
        for check, (low, high) in calibration.ranges.items()
    ]
    if calibration.reference is not None:
        lines.append(f"score ref    {calibration.reference['model']}")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _describe_prior(prior: Any) -> str:
    if not prior:
        return "N(0, I)"
    fit = prior.get("fit") if isinstance(prior.get("fit"), dict) else {}
    classes = f"{prior['classes']} classes (--digit works)" if prior["classes"] else "no classes"
    data = fit.get("data", {}).get("file", "?") if isinstance(fit.get("data"), dict) else "?"
    return f"{prior['kind']}, {prior.get('components', '?')} components, {classes}; fit on {data}"


def main() -> None:
    """Run the command line."""
    try:
        handle_sigterm()  # inside: a signal the moment the handler is set is reported like any other
        cli.ignore_signals_when_done = True
        cli(prog_name="digitvae")
    except (KeyboardInterrupt, Terminated) as exc:  # between two of click's steps, outside the command's handling
        fail_stopped(exc)
    finally:
        # The command has finished and said how: a signal now would only garble its exit.
        ignore_signals()
