"""The `digitvae train` command, also run as `python -m digitvae.train` (by torchrun too)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digitvae.runtime.errors import DigitVAEError, InputError

from .console import (
    VERBOSE_FLAGS,
    SignalSafeCommand,
    Terminated,
    fail,
    handle_sigterm,
    handled_errors,
    ignore_signals,
    setup_logging,
)
from .options import require

if TYPE_CHECKING:
    from digitvae.train.ddp import Processes
    from digitvae.train.loop import EpochStats


@click.command(cls=SignalSafeCommand)
@click.option(
    "--preset",
    default="iwae-mix",
    show_default=True,
    help="Named model and training configuration: iwae-mix, iwae-aug, geron, cvae, vae-2d (see docs/training.md).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of IDX files (default: where `digitvae data download` puts them).",
)
@click.option(
    "--train",
    "train_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Training images IDX file (overrides --data).",
)
@click.option(
    "--valid",
    "valid_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Validation images IDX file (overrides --data).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (preset default).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (preset default).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Adam learning rate.")
@click.option("--latent-dim", type=click.IntRange(min=1), default=None, help="Latent size D.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (preset default 0).")
@click.option(
    "-o",
    "--output",
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/vae"),
    show_default=True,
    help="Folder for last.pt and best.pt (--out is the older name).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last.pt.")
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu, cuda or cuda:N. Under torchrun, cuda is each process's own GPU (by local rank) and the processes talk over nccl.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 1024),
    default=None,
    help="torch's CPU threads (default: the cores other work leaves free, or OMP_NUM_THREADS when set; torchrun sets 1).",
)
def train(
    preset: str,
    data_dir: Path | None,
    train_file: Path | None,
    valid_file: Path | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    latent_dim: int | None,
    seed: int | None,
    out: Path,
    resume: bool,
    device: str,
    threads: int | None,
) -> None:
    """Train a VAE on MNIST IDX files, keeping the best-validation checkpoint.

    Started by torchrun (`torchrun --nproc_per_node=K -m digitvae.train ...`), K processes share
    each batch (DistributedDataParallel) and reach the weights one process would; rank 0 writes
    the run folder and reports.
    """
    require("torch")
    from digitvae.train import ddp

    try:
        processes = ddp.start(device)
        _set_threads(threads, processes)
        _train_with(
            processes, preset, data_dir, train_file, valid_file, epochs, batch_size, lr, latent_dim, seed, out, resume
        )
    except ddp.PeerFailed:
        ddp.settle()  # the process that failed says why, before torchrun stops the others
        sys.exit(1)
    except DigitVAEError as exc:
        if not ddp.joined():
            raise
        rank = ddp.rank()
        click.echo(f"error: {exc}" if rank == 0 else f"error: process {rank}: {exc}", err=True)
        ddp.settle()
        sys.exit(1)
    except (KeyboardInterrupt, Terminated) as exc:
        # Ctrl-C reaches every process, and torchrun stops the others when one fails: rank 0 speaks.
        if ddp.rank() == 0:
            raise
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 143)
    finally:
        ddp.stop()


def _train_with(
    processes: Processes,
    preset: str,
    data_dir: Path | None,
    train_file: Path | None,
    valid_file: Path | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    latent_dim: int | None,
    seed: int | None,
    out: Path,
    resume: bool,
) -> None:
    """Train as one process of `processes`: every rank reads the data, rank 0 reports."""
    from digitvae.train.config import get_preset, with_overrides
    from digitvae.train.data import load_splits
    from digitvae.train.loop import BEST
    from digitvae.train.loop import train as run_training

    say = click.echo if processes.is_main else _silent
    if not processes.is_main:
        logging.getLogger("digitvae").setLevel(logging.ERROR)
    error: DigitVAEError | None = None
    try:
        if resume:
            _refuse_changed_settings()
        chosen = get_preset(preset)
        model_config = with_overrides(chosen.model, latent_dim=latent_dim)
        train_config = with_overrides(chosen.train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        if not resume:  # a resumed run's batch size is in its checkpoint, checked once it is read
            processes.check_batch_size(train_config.batch_size)
        train_split, valid_split = load_splits(data_dir, train_file, valid_file)
    except DigitVAEError as exc:
        error = exc
    # A file missing on one machine fails every process, and one of them says why.
    processes.agree(error)
    # On resume the preset is the checkpoint's, not the option's default.
    what = f"resuming {out / 'last.pt'}" if resume else f"training {preset}"
    say(
        f"{what} on {len(train_split.images)} digits ({train_split.images_path.name}), "
        f"validating on {len(valid_split.images)} ({valid_split.images_path.name}){_where(processes)}"
    )
    try:
        ckpt = run_training(
            train_split,
            valid_split,
            out,
            model_config=model_config,
            train_config=train_config,
            preset=preset,
            resume=resume,
            epochs=epochs,
            command=_command_line(),
            on_epoch=_show_epoch,
            processes=processes,
        )
    except KeyboardInterrupt:
        if not processes.is_main:
            raise
        fail(f"interrupted; the last complete epoch is in {out / 'last.pt'}: continue with --resume", code=130)
    say(
        f"done in {ckpt.seconds:.1f}s; best valid -ELBO {ckpt.best.get('valid_loss', float('nan')):.2f} "
        f"at epoch {ckpt.best.get('epoch')} -> {out / BEST}"
    )


def _set_threads(requested: int | None, processes: Processes) -> None:
    """Give torch the thread count asked for, or the cores other work leaves free (see train/threads.py)."""
    import torch

    from digitvae.train.threads import resolve_threads

    count = resolve_threads(requested, processes.world_size if processes.distributed else 1)
    if count is not None:
        torch.set_num_threads(count)


def _where(processes: Processes) -> str:
    """Say where training runs: the processes, the GPU, or the CPU threads of a plain single process."""
    if processes.distributed:
        count = f"{processes.world_size} process{'es' if processes.world_size > 1 else ''}"
        return f", {count} ({processes.backend}), rank 0 on {processes.device}"
    if processes.device.type == "cpu":
        import torch

        threads = torch.get_num_threads()
        return f", {threads} CPU thread{'s' if threads > 1 else ''}"
    return f", on {processes.device}"


def _silent(*args: object, **kwargs: object) -> None:
    """Print nothing: only rank 0 reports."""


def _refuse_changed_settings() -> None:
    """A resumed run keeps the configs saved in its checkpoint; only --epochs may extend it."""
    ctx = click.get_current_context()
    fixed = [
        f"--{name.replace('_', '-')}"
        for name in ("preset", "batch_size", "lr", "latent_dim", "seed")
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    ]
    if fixed:
        raise InputError(
            f"{', '.join(fixed)} cannot change when resuming; the run keeps its saved settings (only --epochs may be given)"
        )


def _show_epoch(stats: EpochStats) -> None:
    mark = "  *best" if stats.is_best else ""
    valid = "       -" if stats.valid_loss is None else f"{stats.valid_loss:8.2f}"
    click.echo(
        f"epoch {stats.epoch:>3}/{stats.epochs}  train {stats.train_loss:8.2f}  "
        f"valid {valid}  nats/digit  {stats.seconds:5.1f}s{mark}"
    )


def _command_line() -> str:
    """Return the command as typed, recorded in the checkpoint and model.json (argv is ours only as a command)."""
    import shlex

    from digitvae.train.ddp import launched_by_torchrun

    ran = Path(sys.argv[0])
    as_module = ran.name == "__main__.py" and ran.parent.name == "train"
    if ran.name != "digitvae" and not as_module:
        return "digitvae train"
    program = ["-m", "digitvae.train"] if as_module else [ran.name]
    if launched_by_torchrun():
        nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
        per_node = os.environ.get("LOCAL_WORLD_SIZE", "1")
        launcher = ["torchrun", *([f"--nnodes={nodes}"] if nodes > 1 else []), f"--nproc_per_node={per_node}"]
    else:
        launcher = ["python"] if as_module else []
    return shlex.join([*launcher, *program, *sys.argv[1:]])


def main(argv: list[str] | None = None) -> None:
    """Run `python -m digitvae.train`: the train command as `digitvae train` runs it."""
    args = sys.argv[1:] if argv is None else argv
    handle_sigterm()
    setup_logging(sum(VERBOSE_FLAGS.get(a, 0) for a in args))
    train.ignore_signals_when_done = True
    try:
        with handled_errors():
            train.main([a for a in args if a not in VERBOSE_FLAGS], prog_name="python -m digitvae.train")
    finally:
        ignore_signals()  # finished and said how, as `digitvae`'s main does
