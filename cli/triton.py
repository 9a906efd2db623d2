"""The `digitvae export-triton` command: a Triton Inference Server model repository for model folders."""

from __future__ import annotations

from pathlib import Path

import click

from digitvae.export.triton import INSTANCE_KINDS, MAX_BATCH_SIZE, QUEUE_DELAY_US

from .options import variant_option


@click.command("export-triton")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option(
    "-o",
    "--output",
    "repo",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The model repository folder to create (give it to tritonserver --model-repository).",
)
@variant_option
@click.option(
    "--max-batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=MAX_BATCH_SIZE,
    show_default=True,
    help="Largest batch Triton hands a model: dynamic batches and single requests alike.",
)
@click.option(
    "--queue-delay-us",
    type=click.IntRange(0, 10_000_000),
    default=QUEUE_DELAY_US,
    show_default=True,
    help="How long the dynamic batcher may hold a request for others to join its batch.",
)
@click.option(
    "--instance-kind",
    type=click.Choice(INSTANCE_KINDS),
    default="auto",
    show_default=True,
    help="Where instances run: auto = on every GPU if there are any, else on the CPU.",
)
@click.option(
    "--instances",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Instances of each model (per GPU on GPUs).",
)
@click.option("--force", is_flag=True, help="Replace an existing repository folder.")
def export_triton(
    models: tuple[str, ...],
    repo: Path,
    variant: str,
    max_batch_size: int,
    queue_delay_us: int,
    instance_kind: str,
    instances: int,
    force: bool,
) -> None:
    """Write a Triton Inference Server model repository for MODEL... (shipped names or model folders).

    Each model M becomes M-encoder and M-decoder (onnxruntime, dynamic batching) and, with a
    learned prior, M-prior and the ensemble M-generate. Needs the [triton] extra.
    """
    from digitvae.export.triton import Serving, export_triton

    serving = Serving(
        max_batch_size=max_batch_size, queue_delay_us=queue_delay_us, kind=instance_kind, instances=instances
    )
    paths = export_triton(models, repo, variant=variant, serving=serving, force=force)
    names = sorted({p.split("/")[0] for p in paths})
    click.echo(f"wrote {len(names)} Triton models ({variant}) to {repo}:")
    for line in tree_lines(paths):
        click.echo(line)
    click.echo(f"serve them with: tritonserver --model-repository={repo.absolute()}")


def tree_lines(paths: list[str]) -> list[str]:
    """Draw sorted relative paths (an empty folder ends in /) as an indented tree."""
    lines: list[str] = []
    shown: set[str] = set()
    for path in paths:
        parts = path.rstrip("/").split("/")
        for depth in range(len(parts)):
            prefix = "/".join(parts[: depth + 1])
            if prefix in shown:
                continue
            shown.add(prefix)
            is_folder = depth < len(parts) - 1 or path.endswith("/")
            lines.append("  " * (depth + 1) + parts[depth] + ("/" if is_folder else ""))
    return lines
