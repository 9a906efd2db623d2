"""The `digitvae variants` command: a model folder's int8 and fp16 files, checked against fp32."""

from __future__ import annotations

from pathlib import Path

import click

from .options import require


@click.command("variants")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--valid",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="IDX images: also record every variant's IW-NLL on them in model.json.",
)
@click.option(
    "-k",
    "--k",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="Importance samples per digit for --valid.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N digits of --valid.")
def variants(model_dir: Path, valid: Path | None, k: int, limit: int | None) -> None:
    """Add or refresh a model folder's int8 and fp16 variants in place, checked against fp32."""
    require("onnx")
    from digitvae.export.variants import add_variants

    manifest = add_variants(model_dir, valid=valid, k=k, limit=limit)
    click.echo(f"{manifest.name}: variants {', '.join(manifest.variants)} in {model_dir}")
    for variant, files in manifest.variants.items():
        for role, entry in files.items():
            click.echo(f"  {variant:<5} {role:<8} {entry.path:<20} sha256 {entry.sha256}")
    if valid is not None:
        nll = manifest.metrics["likelihood"]
        figures = ", ".join(f"{v} {nll[v]['iw_nll']:.2f}" for v in manifest.variants)
        first = nll["fp32"]
        click.echo(f"  IW-NLL (k={first['k']}, {first['digits']} digits of {valid.name}): {figures} nats")
