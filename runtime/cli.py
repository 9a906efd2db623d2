"""The `digitvae` command line; heavy imports happen inside the commands that need them."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ._version import __version__
from .cli_common import (
    load_model, model_option, provider_option, scale_option, standard_prior_option, strict_option, variant_option,
)
from .errors import DigitVAEError, InputError, MissingDependencyError

logger = logging.getLogger(__name__)

#: Commands defined in other modules, imported only when they run (or when help lists them),
#: so that starting `digitvae generate` does not pay for every other command.
_LAZY_COMMANDS = {
    "evaluate": "digitvae.runtime.cli_eval",
    "score": "digitvae.runtime.cli_eval",
    "calibrate": "digitvae.runtime.cli_eval",
    "interpolate": "digitvae.runtime.cli_latent",
    "manifold": "digitvae.runtime.cli_latent",
    "bench": "digitvae.runtime.cli_bench",
    "variants": "digitvae.runtime.cli_bench",
    "quality": "digitvae.train.cli_quality",  # imports no torch until it runs
    "prior": "digitvae.runtime.cli_prior",
}


class _Group(click.Group):
    """A click group that turns our errors into one clean line and a non-zero exit."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in _LAZY_COMMANDS:
            module = importlib.import_module(_LAZY_COMMANDS[name])
            self.add_command(getattr(module, name), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DigitVAEError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", code=130)
        except MemoryError:
            _fail("out of memory; ask for fewer digits at once")
        except Exception as exc:
            if os.environ.get("DIGITVAE_DEBUG"):
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (set DIGITVAE_DEBUG=1 for a traceback)")


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("digitvae")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    root.propagate = False


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"this command needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install 'digitvae[train]'"
        )


threads_option = click.option("--threads", type=click.IntRange(min=0), default=None,
                              help="onnxruntime intra-op threads (default: one per physical core).")
cols_option = click.option("--cols", type=click.IntRange(1, 1000), default=None, help="Digits per row in a PNG grid.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more (-vv for debug).")
@click.version_option(__version__, prog_name="digitvae")
def cli(verbose: int) -> None:
    """Generate, reconstruct, train and export handwritten-digit VAEs."""
    _setup_logging(verbose)


@cli.command()
@click.option("-n", "count", type=int, default=60, show_default=True, help="How many digits.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="OUT.png (grid) or OUT.npy.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed for reproducible digits.")
@click.option("--digit", type=click.IntRange(0, 9), default=None,
              help="Draw only this digit (conditional models, and priors fit per class).")
@click.option("--each-digit", is_flag=True,
              help="Draw the digits 0-9 in turn, so a 10-column grid holds one digit per column.")
@standard_prior_option
@model_option
@variant_option
@provider_option
@strict_option
@threads_option
@cols_option
@scale_option
def generate(count: int, output: str, seed: int | None, digit: int | None, each_digit: bool, standard_prior: bool,
             model: str, variant: str, provider: str | None, strict: bool, threads: int | None, cols: int | None,
             scale: int) -> None:
    """Generate new digits: draw codes from the model's prior and decode them."""
    from .imageio import default_cols, output_kind, tile, write_npy, write_png
    from .inputs import as_count

    kind = output_kind(output)
    count = as_count(count, "-n")
    if each_digit:
        if digit is not None:
            raise InputError("--digit and --each-digit exclude each other")
        import numpy as np

        digit = np.arange(count) % 10
    vae = load_model(model, provider, strict, variant, threads, prior=not standard_prior)
    digits = vae.generate(count, seed=seed, digit=digit)
    if kind == ".png":
        write_png(tile(digits, cols or default_cols(count)), output, scale)
    else:
        write_npy(digits, output)
    click.echo(f"wrote {count} digits to {output}")


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="OUT.png (grid) or OUT.npy.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N digits.")
@model_option
@variant_option
@provider_option
@strict_option
@threads_option
@cols_option
@scale_option
def reconstruct(inputs: tuple[str, ...], output: str, limit: int | None, model: str, variant: str,
                provider: str | None, strict: bool, threads: int | None, cols: int | None, scale: int) -> None:
    """Encode and decode digits from PNG (28x28), .npy or IDX files.

    A PNG output shows each row of originals above its reconstructions.
    """
    from .imageio import default_cols, output_kind, pair_rows, read_digits, tile, write_npy, write_png

    kind = output_kind(output)
    originals = read_digits(inputs, limit)
    rebuilt = load_model(model, provider, strict, variant, threads).reconstruct(originals)
    if kind == ".png":
        c = min(cols or default_cols(len(originals)), len(originals))
        write_png(tile(pair_rows(originals, rebuilt, c), c), output, scale)
    else:
        write_npy(rebuilt, output)
    click.echo(f"wrote {len(rebuilt)} reconstructions to {output}")


@cli.command()
@model_option
@provider_option
@strict_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(model: str, provider: str | None, strict: bool, as_json: bool) -> None:
    """Show a model's manifest and the execution providers."""
    from .manifest import list_shipped_models
    from .providers import available_providers

    vae = load_model(model, provider, strict)
    report = {
        "model": vae.name,
        "directory": str(vae.model_dir),
        "manifest": vae.manifest.to_dict(),
        "shipped_models": list_shipped_models(),
        "available_providers": available_providers(),
        "active_providers": vae.providers,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    m = vae.manifest
    metrics = m.metrics
    lines = [
        f"model        {m.name} ({vae.model_dir})",
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
    if metrics.get("valid_neg_elbo") is not None:
        lines.append(f"valid -ELBO  {metrics['valid_neg_elbo']:.2f} nats/digit (training-time estimate)")
    for variant, figures in (metrics.get("likelihood") or {}).items():
        if isinstance(figures, dict) and {"iw_nll", "neg_elbo", "k"} <= figures.keys():
            lines.append(
                f"likelihood   {variant}: -ELBO {figures['neg_elbo']:.2f}, IW-NLL {figures['iw_nll']:.2f} nats/digit "
                f"(k={figures['k']}, {figures.get('digits', '?')} digits of {', '.join(figures.get('data', []))})"
            )
    if isinstance(metrics.get("score"), dict):
        from .scoring import Calibration

        try:
            calibration = Calibration.from_metrics(metrics)
        except DigitVAEError as exc:
            lines.append(f"score range  unusable: {exc}")
        else:
            for check, (low, high) in calibration.ranges.items():
                lines.append(f"score range  {check} (k={calibration.k}) in [{low:.1f}, {high:.1f}] nats")
            if calibration.reference is not None:
                lines.append(f"score ref    {calibration.reference['model']}")
    if m.training.get("command"):
        lines.append(f"trained with {m.training['command']}")
    lines += [
        f"shipped      {', '.join(report['shipped_models'])}",
        f"available    {', '.join(report['available_providers'])}",
        f"active       {', '.join(vae.providers)}",
    ]
    click.echo("\n".join(lines))


def _describe_prior(prior: Any) -> str:
    if not prior:
        return "N(0, I)"
    fit = prior.get("fit", {})
    classes = f"{prior['classes']} classes (--digit works)" if prior["classes"] else "no classes"
    data = fit.get("data", {}).get("file", "?")
    return f"{prior['kind']}, {prior.get('components', '?')} components, {classes}; fit on {data}"


@cli.command()
@click.option("--preset", default="iwae-mix", show_default=True,
              help="Named model and training configuration: iwae-mix, iwae-aug, geron, cvae, vae-2d (see README).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of IDX files (default: where `digitvae data download` puts them).")
@click.option("--train", "train_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Training images IDX file (overrides --data).")
@click.option("--valid", "valid_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Validation images IDX file (overrides --data).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (preset default).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (preset default).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Adam learning rate.")
@click.option("--latent-dim", type=click.IntRange(min=1), default=None, help="Latent size D.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (preset default 0).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/vae"),
              show_default=True, help="Folder for last.pt and best.pt.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
def train(preset: str, data_dir: Path | None, train_file: Path | None, valid_file: Path | None,
          epochs: int | None, batch_size: int | None, lr: float | None, latent_dim: int | None,
          seed: int | None, out: Path, resume: bool) -> None:
    """Train a VAE on MNIST IDX files, keeping the best-validation checkpoint."""
    _require("torch")
    from digitvae.train.config import get_preset, with_overrides
    from digitvae.train.data import load_splits
    from digitvae.train.loop import BEST, EpochStats
    from digitvae.train.loop import train as run_training

    if resume:
        # A resumed run keeps the configs saved in its checkpoint; only --epochs may extend it.
        ctx = click.get_current_context()
        fixed = [f"--{name.replace('_', '-')}" for name in ("preset", "batch_size", "lr", "latent_dim", "seed")
                 if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if fixed:
            raise InputError(f"{', '.join(fixed)} cannot change when resuming; the run keeps its saved settings (only --epochs may be given)")
    chosen = get_preset(preset)
    model_config = with_overrides(chosen.model, latent_dim=latent_dim)
    train_config = with_overrides(chosen.train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    train_split, valid_split = load_splits(data_dir, train_file, valid_file)
    click.echo(
        f"training {preset} on {len(train_split.images)} digits ({train_split.images_path.name}), "
        f"validating on {len(valid_split.images)} ({valid_split.images_path.name})"
    )

    def show(stats: EpochStats) -> None:
        mark = "  *best" if stats.is_best else ""
        valid = "       -" if stats.valid_loss is None else f"{stats.valid_loss:8.2f}"
        click.echo(
            f"epoch {stats.epoch:>3}/{stats.epochs}  train {stats.train_loss:8.2f}  "
            f"valid {valid}  nats/digit  {stats.seconds:5.1f}s{mark}"
        )

    import shlex  # only training records its command line

    # Recorded in the checkpoint and the exported manifest; argv is ours only when run as `digitvae`.
    ran_as_script = Path(sys.argv[0]).name == "digitvae"
    command = shlex.join(["digitvae", *sys.argv[1:]]) if ran_as_script else "digitvae train"
    try:
        ckpt = run_training(
            train_split, valid_split, out, model_config=model_config, train_config=train_config,
            preset=preset, resume=resume, epochs=epochs, command=command, on_epoch=show,
        )
    except KeyboardInterrupt:
        _fail(f"interrupted; the last complete epoch is in {out / 'last.pt'}: continue with --resume", code=130)
    click.echo(
        f"done in {ckpt.seconds:.1f}s; best valid -ELBO {ckpt.best.get('valid_loss', float('nan')):.2f} "
        f"at epoch {ckpt.best.get('epoch')} -> {out / BEST}"
    )


@cli.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to create (e.g. models/my-vae).")
@click.option("--name", default=None, help="Model name in model.json (default: the folder's name).")
@click.option("--force", is_flag=True, help="Replace an existing model folder.")
@click.option("--prior-data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Images (IDX) to fit the latent prior on; labels beside them fit it per class "
                   "[default: the training images].")
@click.option("--no-prior", is_flag=True, help="Keep the N(0, I) prior.")
def export_cmd(checkpoint: Path, output: Path, name: str | None, force: bool, prior_data: Path | None,
               no_prior: bool) -> None:
    """Export a checkpoint (or a training folder's best.pt) to ONNX files and model.json, with a fitted prior."""
    _require("torch", "onnx", "onnxscript", *(() if no_prior else ("sklearn",)))
    from digitvae.export.onnx import TOLERANCE, export_checkpoint

    if no_prior and prior_data is not None:
        raise InputError("--prior-data and --no-prior exclude each other")
    result = export_checkpoint(checkpoint, output, name=name, force=force, prior=not no_prior, prior_data=prior_data)
    worst = max(d["max_abs_diff"] for d in result.parity.values())
    click.echo(
        f"exported {result.manifest.name} to {result.directory}; "
        f"max |onnxruntime - torch| {worst:.2g} over {len(result.parity)} outputs (tolerance {TOLERANCE:g})"
    )


@cli.group()
def data() -> None:
    """Get the MNIST data set."""


@data.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the files (default: $DIGITVAE_DATA or ~/.cache/digitvae/mnist).")
@click.option("--mirror", "mirrors", multiple=True, metavar="URL",
              help="Base URL to fetch the files from, tried in order (default: the public mirrors).")
def download(directory: Path | None, mirrors: tuple[str, ...]) -> None:
    """Download the four official MNIST files, verified against their MD5 sums."""
    from digitvae.train.download import MIRRORS, default_data_dir, download_mnist

    directory = directory or default_data_dir()
    bars: dict[str, Any] = {}

    def progress(name: str, done: int, total: int | None) -> None:
        if name not in bars:
            for bar in bars.values():
                bar.render_finish()
            bars[name] = click.progressbar(length=total or 0, label=name, file=sys.stderr, show_pos=False)
        bar = bars[name]
        bar.update(done - bar.pos)

    try:
        paths = download_mnist(directory, mirrors=mirrors or MIRRORS, progress=progress)
    finally:
        for bar in bars.values():
            bar.render_finish()
    click.echo(f"MNIST is in {directory} ({len(paths)} files verified)")


def main() -> None:
    """Run the command line."""
    cli(prog_name="digitvae")
