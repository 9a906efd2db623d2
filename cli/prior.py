"""The `digitvae prior` commands: fit or refit a model's learned latent prior."""

from __future__ import annotations

from pathlib import Path

import click

from .options import provider_list, provider_option, require, threads_option


@click.group("prior")
def prior() -> None:
    """Fit a model's latent prior to its encoded digits."""


@prior.command("fit")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data",
    "images",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Training images (IDX) to encode.",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Their labels (IDX); default: the labels file beside --data, if there is one.",
)
@click.option("--no-labels", is_flag=True, help="Fit one mixture for all digits (no --digit for this model).")
@click.option(
    "--components",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="Mixture components per class (in all with --no-labels).",
)
@click.option(
    "--samples",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Codes drawn from each digit's posterior.",
)
@click.option(
    "--spread",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Scale of each posterior's sigma for the draws: below 1 trades likelihood for clearer digits.",
)
@click.option("--covariance", type=click.Choice(["full", "diag"]), default="full", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@provider_option
@threads_option
def fit(
    model_dir: Path,
    images: Path,
    labels: Path | None,
    no_labels: bool,
    components: int,
    samples: int,
    spread: float,
    covariance: str,
    seed: int,
    provider: str | None,
    threads: int | None,
) -> None:
    """Fit MODEL_DIR's prior (a Gaussian mixture) to its posterior codes of these digits, in place."""
    # A usage error is the command line's, whatever is installed: it comes first.
    if labels is not None and no_labels:
        raise click.UsageError("--labels and --no-labels exclude each other")
    require("onnx", "sklearn", extra="prior")
    from digitvae.export.prior import PriorConfig, fit_model_prior
    from digitvae.runtime.digits.idx import labels_beside

    if not no_labels and labels is None:
        labels = labels_beside(images)
    config = PriorConfig(components=components, samples=samples, spread=spread, covariance=covariance, seed=seed)
    manifest = fit_model_prior(model_dir, images, labels, config, providers=provider_list(provider), threads=threads)
    assert manifest.prior is not None
    classes = manifest.prior["classes"]
    per = f"{classes} classes" if classes else "no classes"
    click.echo(f"fit a {manifest.prior['components']}-component prior ({per}) on {images.name}; wrote {model_dir}")
