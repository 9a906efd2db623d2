"""The `digitvae export-generator` command: one ONNX graph that draws digits, built on demand."""

from __future__ import annotations

from pathlib import Path

import click

from digitvae.runtime.errors import InputError

from .options import require, variant_option


@click.command("export-generator")
@click.argument("model", metavar="MODEL")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The ONNX file to write (FILE.onnx).",
)
@variant_option
def export_generator(model: str, output: Path, variant: str) -> None:
    """Write MODEL's prior sampler and decoder composed into one graph (noise, uniform, label -> z, image).

    MODEL is a shipped name or a model folder with a learned prior. The model folders do not
    store this graph (it repeats the decoder's weights); apps and servers that want generation
    in one run build it here. Needs onnx (the [prior] extra).
    """
    require("onnx", extra="prior")
    from digitvae.export.prior import generator_bytes
    from digitvae.runtime.atomic import atomic_write
    from digitvae.runtime.folders.locate import resolve_model_dir

    if output.suffix != ".onnx":
        raise InputError(f"{output}: the generator is an ONNX file; give a name ending in .onnx")
    blob = generator_bytes(resolve_model_dir(model), variant)
    with atomic_write(output) as handle:
        handle.write(blob)
    click.echo(f"wrote {output} ({len(blob) / 1e6:.1f} MB): {model}'s prior sampler feeding its {variant} decoder")
