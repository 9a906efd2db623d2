"""The `digitvae data` commands: get the MNIST data set."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


@click.group()
def data() -> None:
    """Get the MNIST data set."""


@data.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to put the files (default: $DIGITVAE_DATA or ~/.cache/digitvae/mnist).",
)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="URL",
    help="Base URL to fetch the files from, tried in order (default: the public mirrors).",
)
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


@data.command()
@click.option(
    "--from",
    "source",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the official files (default: where `digitvae data download` puts them).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the subsets (default: mnist5k beside the official files' default folder).",
)
def subset(source: Path | None, directory: Path | None) -> None:
    """Make train5k and valid5k, the subsets the shipped models were trained on, from the official files.

    train5k: 500 digits of each class from MNIST's training set, in a fixed shuffled order;
    valid5k: the first 5,000 digits of the test set. Both are checked by content before they
    are written; then `digitvae train --data DIR` trains on them.
    """
    from digitvae.runtime.digits.datadir import default_data_dir
    from digitvae.train.subsets import make_subsets

    source = source or default_data_dir()
    directory = directory or default_data_dir().parent / "mnist5k"
    paths = make_subsets(source, directory)
    click.echo(f"train5k and valid5k are in {directory} ({len(paths)} files, checked by content)")
