"""The `digitvae export` command: a trained checkpoint to ONNX files and model.json (the [train] extra)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import progress_bar, require


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model folder to create (e.g. models/my-vae).",
)
@click.option("--name", default=None, help="Model name in model.json (default: the folder's name).")
@click.option("--force", is_flag=True, help="Replace an existing model folder.")
@click.option(
    "--prior-data",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Images (IDX) to fit the latent prior on; labels beside them fit it per class [default: the training images].",
)
@click.option("--no-prior", is_flag=True, help="Keep the N(0, I) prior.")
def export_cmd(
    checkpoint: Path, output: Path, name: str | None, force: bool, prior_data: Path | None, no_prior: bool
) -> None:
    """Export a checkpoint (or a training folder's best.pt) to ONNX files and model.json, with a fitted prior."""
    if no_prior and prior_data is not None:  # the command line's error, whatever is installed
        raise click.UsageError("--prior-data and --no-prior exclude each other")
    require("torch", "onnx", "onnxscript", *(() if no_prior else ("sklearn",)))
    from digitvae.export.onnx import EXPORT_STEPS, TOLERANCE, export_checkpoint

    steps = EXPORT_STEPS if not no_prior else EXPORT_STEPS[:-1]
    with progress_bar(len(steps), "exporting") as tick:
        result = export_checkpoint(
            checkpoint,
            output,
            name=name,
            force=force,
            prior=not no_prior,
            prior_data=prior_data,
            progress=None if tick is None else (lambda step: tick(steps.index(step) + 1)),
        )
    worst = max(d["max_scaled_diff"] for d in result.parity.values())
    prior = result.manifest.prior
    fitted = f"; prior: {prior['components']} components, {prior['classes']} classes" if prior else "; prior: N(0, I)"
    click.echo(
        f"exported {result.manifest.name} to {result.directory}; max |onnxruntime - torch| / max(1, |torch|) "
        f"{worst:.2g} over {len(result.parity)} outputs (tolerance {TOLERANCE:g}){fitted}"
    )
