"""Commands that score digits by likelihood: evaluate, score, calibrate."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from digitvae.runtime.errors import InputError
from digitvae.runtime.folders.writing import update_metrics
from digitvae.runtime.options import LoadOptions

from .options import (
    json_option,
    labels_for,
    labels_option,
    load_options,
    model_options,
    prepare_option,
    progress_bar,
    provider_option,
    read_digit_batches,
    read_labelled,
    read_labels,
    standard_prior_option,
    strict_option,
    threads_option,
)

_PIXELS = 784
inputs_argument = click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False))
#: `--data FILE` is still read where the files are now arguments, so older command lines keep working.
old_data_option = click.option("--data", "data_paths", multiple=True, type=click.Path(dir_okay=False), hidden=True)


def k_option(default: int | None, help: str) -> Callable[[Any], Any]:
    """Return the -k/--k option: importance samples per digit."""
    return click.option(
        "-k", "--k", "k", type=click.IntRange(1, 100_000), default=default, show_default=default is not None, help=help
    )


limit_option = click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N digits.")
seed_option = click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the posterior samples."
)


def _scoring_options(command: Any) -> Any:
    """Add the options that evaluate and score share, in help order."""
    for option in reversed((limit_option, seed_option, model_options, json_option)):
        command = option(command)
    return command


def _named_digits(paths: tuple[str, ...], limit: int | None, prepare: bool) -> tuple[np.ndarray, list[str]]:
    """Read digits once, naming each: the file's name for a single image, NAME:INDEX within a set."""
    batches = read_digit_batches(paths, prepare, limit)
    if not batches:
        raise InputError("no input files given")
    names = []
    for path, batch in zip(paths, batches):
        base = Path(path).name
        names += [base] if len(batch) == 1 else [f"{base}:{i}" for i in range(len(batch))]
    digits = np.concatenate(batches).astype(np.float32, copy=False)[:limit]
    return digits, names[: len(digits)]


def _inputs(inputs: tuple[str, ...], data_paths: tuple[str, ...]) -> tuple[str, ...]:
    files = (*inputs, *data_paths)
    if not files:
        raise click.UsageError("give the digits to read: one or more IDX, .npy or PNG files")
    return files


def _bits_per_dim(nats: float) -> float:
    return nats / (_PIXELS * math.log(2))


@click.command()
@inputs_argument
@old_data_option
@labels_option
@prepare_option
@k_option(200, "Importance samples per digit.")
@_scoring_options
@standard_prior_option
@click.option(
    "--write",
    is_flag=True,
    help="Also store the figures in the model's model.json (metrics.likelihood, "
    "or metrics.likelihood_standard_normal with --standard-prior).",
)
def evaluate(
    inputs: tuple[str, ...],
    data_paths: tuple[str, ...],
    labels_file: str | None,
    prepare: bool,
    k: int,
    limit: int | None,
    seed: int,
    options: LoadOptions,
    as_json: bool,
    standard_prior: bool,
    write: bool,
) -> None:
    """Print -ELBO and the importance-weighted NLL of digits (IDX, .npy or PNG files), from the ONNX files alone."""
    from digitvae.runtime.inference.model import DigitVAE

    data_paths = _inputs(inputs, data_paths)
    variant = options.variant
    vae = DigitVAE.from_options(dataclasses.replace(options, prior=not standard_prior))
    digits, labels = read_labelled(data_paths, limit, labels_file, prepare)
    labels = labels_for(vae, labels)
    neg_elbo = float(-vae.elbo(digits, labels, seed=seed).mean())
    with progress_bar(len(digits), f"IW-NLL, k={k}") as progress:
        nll = float(vae.iw_nll(digits, k, labels, seed=seed, progress=progress).mean())
    report: dict[str, Any] = {
        "model": vae.name,
        "variant": variant,
        "prior": vae.prior.kind,
        "digits": int(len(digits)),
        "data": [Path(p).name for p in data_paths],
        "k": k,
        "seed": seed,
        "neg_elbo": neg_elbo,
        "neg_elbo_bits_per_dim": _bits_per_dim(neg_elbo),
        "iw_nll": nll,
        "iw_nll_bits_per_dim": _bits_per_dim(nll),
    }
    if write:
        likelihood = {key: report[key] for key in ("data", "digits", "k", "seed", "neg_elbo", "iw_nll")}
        key = "likelihood_standard_normal" if standard_prior and vae.manifest.prior else "likelihood"
        update_metrics(vae.model_dir, {key: {variant: likelihood}}, merge=key)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"model    {vae.name} ({variant}, {vae.prior.kind} prior) on {len(digits)} digits from {', '.join(report['data'])}"
    )
    click.echo(f"-ELBO    {neg_elbo:8.2f} nats/digit  {report['neg_elbo_bits_per_dim']:.4f} bits/dim")
    click.echo(f"IW-NLL   {nll:8.2f} nats/digit  {report['iw_nll_bits_per_dim']:.4f} bits/dim  (k={k})")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@labels_option
@prepare_option
@click.option(
    "--range",
    "score_range",
    type=(float, float),
    default=None,
    metavar="LOW HIGH",
    help="Typical IW-NLL range (default: the model's calibration on validation digits).",
)
@k_option(None, "Importance samples per digit (default: the calibration's; a calibrated model takes only that).")
@_scoring_options
def score(
    inputs: tuple[str, ...],
    labels_file: str | None,
    prepare: bool,
    score_range: tuple[float, float] | None,
    k: int | None,
    limit: int | None,
    seed: int,
    options: LoadOptions,
    as_json: bool,
) -> None:
    """Score digits by IW-NLL (nats) and flag those outside the typical ranges of real digits."""
    from digitvae.runtime.outliers.detector import OutlierDetector

    detector = OutlierDetector.from_options(options, score_range)
    vae, calibration = detector.vae, detector.calibration
    if k is not None and k != calibration.k:
        if "score" in vae.manifest.metrics:
            raise InputError(
                f"model {vae.name!r} was calibrated with k={calibration.k}: its ranges hold for that k only; "
                f"score with -k {calibration.k}, or recalibrate with `digitvae calibrate MODEL_DIR VALID_IDX -k {k}`"
            )
        detector.calibration = calibration = dataclasses.replace(calibration, k=k)
    digits, names = _named_digits(inputs, limit, prepare)
    labels = read_labels(inputs, len(digits), labels_file)
    passes = 2 if detector.reference is not None else 1
    with progress_bar(passes * len(digits), "scoring") as progress:
        scores = detector.scores(digits, labels_for(vae, labels), seed=seed, progress=progress)
    marks = detector.flags(scores)
    outliers = sum(bool(m) for m in marks)
    ranges = {name: {"low": low, "high": high} for name, (low, high) in calibration.ranges.items()}
    reference = calibration.reference["model"] if calibration.reference else None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": vae.name,
                    "k": calibration.k,
                    "checks": ranges,
                    "reference": reference,
                    "outliers": outliers,
                    "scores": [
                        {
                            "index": i,
                            "image": names[i],
                            "score": float(scores["nll"][i]),
                            "flag": mark,
                            "checks": {name: float(values[i]) for name, values in scores.items()},
                        }
                        for i, mark in enumerate(marks)
                    ],
                },
                indent=2,
            )
        )
        return
    bounds = ", ".join(f"{name} [{r['low']:.1f}, {r['high']:.1f}]" for name, r in ranges.items())
    click.echo(
        f"# IW-NLL (k={calibration.k}) in nats; typical ranges: {bounds}"
        + (f"; reference {reference}" if reference else "")
    )
    width = max(len(name) for name in names)
    for name, s, m in zip(names, scores["nll"], marks):
        click.echo(f"{name:<{width}} {s:9.2f}" + (f"  outlier ({m})" if m else ""))
    click.echo(f"# {outliers} of {len(marks)} outside the typical ranges")


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@inputs_argument
@old_data_option
@labels_option
@prepare_option
@click.option(
    "--reference",
    default=None,
    metavar="NAME|DIR",
    help="A second model, trained differently, for the likelihood-ratio check (e.g. mnist-vae-geron); "
    "default: the one the model's current calibration uses.",
)
@click.option("--no-reference", is_flag=True, help="Calibrate without the likelihood-ratio check.")
@click.option(
    "--false-alarm",
    type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
    default=0.01,
    show_default=True,
    help="Fraction of the validation digits the checks may flag together.",
)
@k_option(None, "Importance samples per digit for scores (default 50).")
@limit_option
@seed_option
@provider_option
@strict_option
@threads_option
def calibrate(
    model_dir: Path,
    inputs: tuple[str, ...],
    data_paths: tuple[str, ...],
    labels_file: str | None,
    prepare: bool,
    reference: str | None,
    no_reference: bool,
    false_alarm: float,
    k: int | None,
    limit: int | None,
    seed: int,
    provider: str | None,
    strict: bool,
    threads: int | None,
) -> None:
    """Store MODEL_DIR's typical score ranges and latent principal plane, from validation digits (INPUT files)."""
    data_paths = _inputs(inputs, data_paths)
    from digitvae.runtime.inference.latent import principal_plane
    from digitvae.runtime.inference.model import DigitVAE
    from digitvae.runtime.outliers.detector import fp32_hashes, reference_entry, score_images
    from digitvae.runtime.outliers.scoring import DEFAULT_K
    from digitvae.runtime.outliers.scoring import calibrate as calibrate_scores

    k = k or DEFAULT_K
    if reference is not None and no_reference:  # before any model is read
        raise click.UsageError("--reference and --no-reference exclude each other")
    options = load_options(str(model_dir), "fp32", provider, strict, threads)
    vae = DigitVAE.from_options(options)
    kept = ((vae.manifest.metrics.get("score") or {}).get("reference") or {}).get("model")
    if reference is None and not no_reference and kept:
        reference = str(kept)
        click.echo(
            f"keeping the reference model of the current calibration: {reference} (--no-reference drops it)", err=True
        )
    ref_vae, ref_entry = None, None
    if reference is not None:
        ref_vae = DigitVAE.from_options(dataclasses.replace(options, model=reference))
        ref_entry = reference_entry(reference, ref_vae)
        if ref_entry["sha256"] == fp32_hashes(vae.manifest):
            raise InputError(
                f"--reference {reference} is the model itself; the ratio check needs a model trained differently"
            )
        if ref_vae.num_classes:
            raise InputError(
                f"--reference {reference} is conditional; the ratio check needs a reference that scores images alone"
            )
    digits, labels = read_labelled(data_paths, limit, labels_file, prepare)
    labels = labels_for(vae, labels)
    names = ", ".join(Path(p).name for p in data_paths)
    with progress_bar((2 if ref_vae is not None else 1) * len(digits), "calibrating") as progress:
        scores = score_images(vae, ref_vae, digits, labels, k, seed, progress)
    s = calibrate_scores(scores, k, names, false_alarm, ref_entry)
    plane = principal_plane(vae.encode(digits, labels)[0]) | {"data": names}
    update_metrics(model_dir, {"score": s, "latent_plane": plane})
    nll = s["checks"]["nll"]
    click.echo(
        f"calibrated {model_dir} ({vae.name}) on {len(digits)} digits: typical IW-NLL (k={k}) in [{nll['low']:.1f}, {nll['high']:.1f}] nats; "
        f"checks {', '.join(s['checks'])} flag {s['flagged']:.1%} of them"
    )
