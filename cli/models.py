"""The `digitvae models` command: the shipped models, and any model folders given, at a glance."""

from __future__ import annotations

import json
from typing import Any

import click

from digitvae.runtime.folders.locate import list_shipped_models, resolve_model_dir
from digitvae.runtime.folders.reading import read_manifest

from .options import json_option


def describe(model: str) -> dict[str, Any]:
    """Return a model's headline facts from its model.json alone (no session is started)."""
    directory = resolve_model_dir(model)
    manifest = read_manifest(directory)
    metrics = manifest.metrics
    likelihood = (metrics.get("likelihood") or {}).get("fp32") or {}
    quality = metrics.get("sample_quality") or {}
    prior = manifest.prior
    return {
        "model": manifest.name,
        "directory": str(directory),
        "preset": manifest.preset,
        "latent_dim": manifest.latent_dim,
        "conditional": manifest.conditional,
        "prior": f"{prior['kind']}, {prior['classes']} classes" if prior else "standard_normal",
        "variants": list(manifest.variants),
        "iw_nll": likelihood.get("iw_nll"),
        "fid": quality.get("fid"),
        "mean_confidence": quality.get("mean_confidence"),
    }


def _cell(value: Any, format_spec: str) -> str:
    return "-" if value is None else format(value, format_spec)


@click.command("models")
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False))
@json_option
def models(folders: tuple[str, ...], as_json: bool) -> None:
    """List the shipped models (and any model FOLDERS given): variants, prior and headline figures."""
    rows = [describe(name) for name in list_shipped_models()]
    rows += [{**describe(folder), "model": folder} for folder in folders]  # a folder is shown by the path given
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ("model", "preset", "D", "prior", "variants", "IW-NLL", "FID", "confidence")
    table = [header] + [
        (
            r["model"] + (" (conditional)" if r["conditional"] else ""),
            r["preset"] or "-",
            str(r["latent_dim"]),
            r["prior"],
            " ".join(r["variants"]),
            _cell(r["iw_nll"], ".2f"),
            _cell(r["fid"], ".1f"),
            _cell(r["mean_confidence"], ".3f"),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    click.echo(
        "# IW-NLL: nats per digit on the validation digits in model.json (k = 200); FID and confidence of "
        "5,000 samples; more with `digitvae info --model NAME`"
    )
