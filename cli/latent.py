"""Commands that walk the latent space: interpolate and manifold."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import numpy as np

from digitvae.runtime.errors import InputError
from digitvae.runtime.options import LoadOptions

from .options import (
    model_options,
    prepare_option,
    read_labelled,
    read_one_digit,
    scale_option,
    warn_if_inverted,
)

if TYPE_CHECKING:
    from digitvae.runtime.inference.model import DigitVAE

output_option = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="OUT.png (picture) or OUT.npy (float32 digits).",
)
digit_option = click.option(
    "--digit", type=click.IntRange(0, 9), default=None, help="Class to encode and draw with, for a conditional model."
)


def _write(images: np.ndarray, output: str, cols: int, scale: int) -> None:
    from digitvae.runtime.digits.files import output_kind, tile, write_npy, write_png

    if output_kind(output) == ".png":
        write_png(tile(images, cols), output, scale)
    else:
        write_npy(images, output)


def _labels(vae: DigitVAE, digit: int | None, n: int) -> np.ndarray | None:
    if vae.num_classes and digit is None:
        raise InputError("this model is conditional: choose the class to draw with --digit")
    return None if digit is None else np.full(n, digit)


@click.command()
@click.argument("start", metavar="A")
@click.argument("end", metavar="B")
@output_option
@click.option(
    "--steps", type=click.IntRange(2, 100), default=10, show_default=True, help="Digits per row, ends included."
)
@click.option(
    "--mode",
    type=click.Choice(["both", "linear", "spherical"]),
    default="both",
    show_default=True,
    help="Straight line, great-circle arc, or one row of each.",
)
@digit_option
@prepare_option
@model_options
@scale_option
def interpolate(
    start: str,
    end: str,
    output: str,
    steps: int,
    mode: str,
    digit: int | None,
    prepare: bool,
    options: LoadOptions,
    scale: int,
) -> None:
    """Morph digit A into digit B through the latent space.

    A and B are 28x28 PNG files, or FILE:INDEX for a digit of an IDX or .npy file. Each row
    decodes codes between the posterior means of A and B.
    """
    from digitvae.runtime.digits.files import output_kind
    from digitvae.runtime.inference.latent import MODES
    from digitvae.runtime.inference.latent import interpolate as path
    from digitvae.runtime.inference.model import DigitVAE

    output_kind(output)
    vae = DigitVAE.from_options(options)
    pair = np.stack([read_one_digit(start, prepare, warn=False), read_one_digit(end, prepare, warn=False)])
    if not prepare:
        warn_if_inverted([start, end], [pair[:1], pair[1:]])
    labels = _labels(vae, digit, 2)
    means, _ = vae.encode(pair, labels)
    modes = MODES if mode == "both" else (mode,)
    codes = np.concatenate([path(means[0], means[1], steps, m) for m in modes])
    rows = vae.decode(codes, _labels(vae, digit, len(codes)))
    _write(rows, output, steps, scale)
    as_class = f"; both ends encoded and drawn as {digit}" if digit is not None else ""
    click.echo(f"wrote {len(modes)} x {steps} interpolated digits ({', '.join(modes)}) to {output}{as_class}")


@click.command()
@output_option
@click.option("--size", type=click.IntRange(2, 100), default=20, show_default=True, help="Digits per side of the grid.")
@click.option(
    "--data",
    "data_paths",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Digits whose encodings define the plane of a >2-D latent (default: the model's calibration).",
)
@digit_option
@prepare_option
@model_options
@scale_option
def manifold(
    output: str,
    size: int,
    data_paths: tuple[str, ...],
    digit: int | None,
    prepare: bool,
    options: LoadOptions,
    scale: int,
) -> None:
    """Draw the latent manifold: a grid of decoded codes.

    A 2-D latent is walked over prior quantiles; a larger one over the plane of the two
    leading principal directions of encoded validation digits.
    """
    from digitvae.runtime.digits.files import check_grid_size, output_kind
    from digitvae.runtime.inference.latent import manifold_codes, principal_plane
    from digitvae.runtime.inference.model import DigitVAE

    if output_kind(output) == ".png":
        check_grid_size(size * size, size, scale, output)
    vae = DigitVAE.from_options(options)
    plane = None
    if data_paths:
        digits, labels = read_labelled(data_paths, None, None, prepare)
        if vae.num_classes and labels is None:
            labels = np.full(len(digits), 0 if digit is None else digit)
        plane = principal_plane(vae.encode(digits, labels if vae.num_classes else None)[0])
    elif vae.latent_dim != 2:
        plane = vae.manifest.metrics.get("latent_plane")
    codes = manifold_codes(vae.latent_dim, size, plane)
    _write(vae.decode(codes, _labels(vae, digit, len(codes))), output, size, scale)
    how = "prior quantiles" if plane is None else "the two leading principal directions"
    click.echo(f"wrote a {size}x{size} latent grid over {how} to {output}")


__all__ = ["interpolate", "manifold"]
