"""The `digitvae quality` command: classifier-based sample-quality metrics of model folders.

Importing this module costs no torch: the command imports it when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from digitvae.runtime.folders.locate import DEFAULT_MODEL

from .options import (
    load_model,
    models_option,
    provider_option,
    require,
    standard_prior_option,
    strict_option,
    threads_option,
    variant_option,
)

NOTE = (
    "fid: Frechet distance of the digit classifier's 128 penultimate features, samples vs validation "
    "digits (reference.fid: training vs validation digits); mean_confidence: mean top softmax "
    "probability; class_balance: share predicted as each digit 0-9; class_balance_entropy: entropy "
    "of those shares / ln 10 (1 = uniform)"
)


def _table(real: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """Lay out one column of figures per model, after the real-digit reference."""
    columns = [("real digits", real), *((r["model"], r) for r in results)]
    rows: list[tuple[str, list[str]]] = [
        ("FID vs validation digits", [f"{c['fid']:.3f}" for _, c in columns]),
        ("mean confidence", [f"{c['mean_confidence']:.4f}" for _, c in columns]),
        ("class balance (H / ln 10)", [f"{c['class_balance_entropy']:.4f}" for _, c in columns]),
    ]
    rows += [(f"  predicted as {d}", [f"{c['class_balance'][d]:.1%}" for _, c in columns]) for d in range(10)]
    if any("conditional_accuracy" in r for r in results):
        rows.append(
            (
                "requested digit recognised",
                ["-"]
                + [
                    f"{r['conditional_accuracy']['overall']:.1%}" if "conditional_accuracy" in r else "-"
                    for r in results
                ],
            )
        )
        rows += [
            (
                f"  digit {d}",
                ["-"]
                + [
                    f"{r['conditional_accuracy']['per_class'][d]:.1%}" if "conditional_accuracy" in r else "-"
                    for r in results
                ],
            )
            for d in range(10)
        ]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(name), *(len(cells[i]) for _, cells in rows)) for i, (name, _) in enumerate(columns)]
    lines = [" " * label_width + "".join(f"  {name:>{w}}" for (name, _), w in zip(columns, widths))]
    lines += [
        f"{label:<{label_width}}" + "".join(f"  {cell:>{w}}" for cell, w in zip(cells, widths)) for label, cells in rows
    ]
    return "\n".join(lines)


@click.command("quality")
@models_option
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of labelled train*/valid* IDX files (default: where `digitvae data download` puts them).",
)
@click.option(
    "--classifier",
    "classifier_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Classifier checkpoint: used if present (it must be trained on the same digits), "
    "else trained and saved there [default: runs/classifier-SHA.pt].",
)
@click.option(
    "-n",
    "--n",
    "count",
    type=click.IntRange(10, 1_000_000),
    default=5000,
    show_default=True,
    help="Digits to generate per model.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the generated digits.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@variant_option
@provider_option
@strict_option
@threads_option
@standard_prior_option
@click.option(
    "--write",
    is_flag=True,
    help="Store each model's figures in its model.json under metrics.sample_quality "
    "(metrics.sample_quality_standard_normal with --standard-prior).",
)
def quality(
    models: tuple[str, ...],
    data_dir: Path | None,
    classifier_path: Path | None,
    count: int,
    seed: int,
    as_json: bool,
    variant: str,
    provider: str | None,
    strict: bool,
    threads: int | None,
    standard_prior: bool,
    write: bool,
) -> None:
    """Score generated digits with a digit classifier: FID, confidence, class balance."""
    require("torch")
    from digitvae.train.classifier import classifier_for, labels_of
    from digitvae.train.data import load_splits
    from digitvae.train.quality import real_quality, sample_quality, write_sample_quality

    train, valid = load_splits(data_dir, None, None)
    ckpt, path = classifier_for(classifier_path, train, valid, say=lambda line: click.echo(line, err=True))
    real, reference = real_quality(ckpt.model, valid.images, labels_of(valid)[0], train.images)
    classifier = {"path": str(path), "data": ckpt.data, "valid_accuracy": real["classifier_valid_accuracy"]}
    results = []
    for model in models or (DEFAULT_MODEL,):
        vae = load_model(model, provider, strict, variant, threads, prior=not standard_prior)
        scores = sample_quality(
            vae,
            ckpt.model,
            reference,
            n=count,
            seed=seed,
            train_images=train.images,
            valid_images=valid.images,
            valid_labels=valid.labels,
        )
        result = {**scores, "directory": str(vae.model_dir)}
        if write:
            stored = {k: v for k, v in result.items() if k not in ("model", "directory")}
            key = "sample_quality_standard_normal" if standard_prior and vae.manifest.prior else "sample_quality"
            write_sample_quality(
                vae.model_dir,
                key,
                {
                    **stored,
                    "note": NOTE,
                    "reference": real,
                    "classifier": {"data": ckpt.data, "valid_accuracy": real["classifier_valid_accuracy"]},
                },
            )
        results.append(result)
    if as_json:
        click.echo(json.dumps({"classifier": classifier, "reference": real, "models": results}, indent=2))
        return
    click.echo(
        f"classifier {path}: {real['classifier_valid_accuracy']:.2%} accurate on {valid.images_path.name}; "
        f"real digits: {train.images_path.name} against {valid.images_path.name}; "
        f"models: {count} digits each, seed {seed}"
    )
    click.echo(_table(real, results))
    if write:
        click.echo(f"wrote the figures into {len(results)} model.json file(s)")
