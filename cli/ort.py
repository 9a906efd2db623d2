"""The `digitvae export-ort` command: ORT format files for onnxruntime's minimal and mobile builds."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export-ort")
@click.argument("model", metavar="MODEL")
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to create: the .ort files, ort.json and required_operators.config.",
)
@click.option("--force", is_flag=True, help="Replace an existing folder that holds other files.")
def export_ort(model: str, out_dir: Path, force: bool) -> None:
    """Convert MODEL's fp32 and int8 ONNX files (a shipped name or a model folder) to ORT format.

    Each X.onnx listed in model.json becomes DIR/X.ort, optimized by this onnxruntime, whose
    version range alone reads it; DIR/required_operators.config lists the operators they use,
    for an onnxruntime built with --minimal_build --include_ops_by_config (docs/edge.md).
    """
    from digitvae.export.ort import CONFIG_NAME, MANIFEST_NAME, export_ort

    done = export_ort(model, out_dir, force=force)
    sizes = {f.path: f.size for f in done.files}
    click.echo(f"wrote {len(sizes)} ORT files of {done.model} to {out_dir}:")
    width = max(len(name) for name in sizes)
    for name, size in sorted(sizes.items()):
        uses = ", ".join(f"{f.variant} {f.role}" for f in done.files if f.path == name)
        click.echo(f"  {name:<{width}}  {size:>10,} bytes  {uses}")
    count = sum(len(ops) for ops in done.operators.values())
    domains = ", ".join(sorted({domain for domain, _ in done.operators}))
    click.echo(f"  {CONFIG_NAME}: {count} operators ({domains})")
    click.echo(f"  {MANIFEST_NAME}: each file's sha256 and source")
    formats = ", ".join(sorted({f.ort_format for f in done.files}))
    click.echo(
        f"written by onnxruntime {done.files[0].onnxruntime} in ORT format {formats}: "
        "the app's onnxruntime must read that format"
    )
    click.echo(
        f"build onnxruntime for them with: ./build.sh --config MinSizeRel --minimal_build "
        f"--include_ops_by_config {(out_dir / CONFIG_NAME).absolute()} (docs/edge.md)"
    )
