"""Commands for speed: `bench` measures a model on this machine, `variants` makes its int8 and fp16 files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from .options import json_option, model_option, provider_list, provider_option, require, threads_option, variant_option


@click.command()
@model_option
@variant_option
@provider_option
@threads_option
@click.option("--quick", is_flag=True, help="Few, short repeats: checks the setup; figures not to be quoted.")
@click.option("--no-torch", is_flag=True, help="Leave out the torch eager comparison.")
@click.option("--no-cold-start", is_flag=True, help="Leave out the fresh-process measurements.")
@json_option
def bench(
    model: str,
    variant: str,
    provider: str | None,
    threads: int | None,
    quick: bool,
    no_torch: bool,
    no_cold_start: bool,
    as_json: bool,
) -> None:
    """Measure latency, throughput, the hardware bound and cold start on this machine."""
    from .benchmark import QUICK, BenchConfig, run_bench

    config = BenchConfig(
        model=model, variant=variant, providers=provider_list(provider), threads=threads, torch=not no_torch
    )
    if quick:
        config = dataclasses.replace(config, **QUICK)
    if no_cold_start:
        config = dataclasses.replace(config, cold_runs=0)
    report = {**run_bench(config), "quick": quick}
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


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


def format_report(report: dict[str, Any]) -> str:
    """Render a bench report as text: header, latency, throughput, bounds, cold start."""
    sections = (_header_lines, _latency_lines, _throughput_lines, _bound_lines, _cold_start_lines)
    return "\n".join(line for section in sections for line in section(report))


def _header_lines(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    lines = [
        f"{report['model']} {report['variant']} on {', '.join(report['providers'])}, threads {report['threads']}; "
        f"{m['cpu']}, {m['cores']} cores; onnxruntime {m['onnxruntime']}; best of {report['repeats']} repeats",
        f"torch: {report['torch']}",
    ]
    if report.get("quick"):
        lines.append("quick run: a setup check with few, short repeats; its figures are not to be quoted")
    return lines


def _latency_lines(report: dict[str, Any]) -> list[str]:
    lat = report["latency"]
    lines = [
        "",
        f"batch-1 generate latency ({lat['calls']} calls a repeat)   p50 us    p99 us   p50 / onnxruntime",
    ]
    for name in _contenders(lat):
        row = lat[name]
        lines.append(f"  {name:<38}{row['p50']:8.1f}  {row['p99']:8.1f}  {row['ratio_to_onnxruntime']:10.2f}")
    dec = report.get("latency_decode")
    if dec:
        lines.append("batch-1 decode latency" + " " * 33 + "generate / decode")
        for name in _contenders(dec):
            row = dec[name]
            lines.append(
                f"  {name:<38}{row['p50']:8.1f}  {row['p99']:8.1f}  {row['ratio_to_onnxruntime']:10.2f}"
                f"  {report['generate_over_decode'][name]:10.2f}"
            )
    return lines


def _throughput_lines(report: dict[str, Any]) -> list[str]:
    thr = report["throughput"]
    names = _contenders(thr[next(k for k in thr if k != "unit")])
    lines = ["", "throughput, digits/s" + " " * 21 + "".join(f"{n:>13}" for n in names) + "   digitvae / onnxruntime"]
    for task, row in thr.items():
        if task == "unit":
            continue
        label = task.replace("_", " batch ")
        ratio = row["ratio_to_onnxruntime"]["digitvae"]
        lines.append(f"  {label:<39}" + "".join(f"{row[n]:13,.0f}" for n in names) + f"   {ratio:10.2f}")
    return lines


def _bound_lines(report: dict[str, Any]) -> list[str]:
    bound = report["bound"]
    lines = [""]
    if "digits_per_s" in bound:
        fraction = bound["fraction"]["digitvae"]
        lines.append(
            f"hardware bound: decoder {bound['flops_per_digit'] / 1e6:.3g} MFLOP/digit at the {bound['gemm']} GEMM peak "
            f"of {bound['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s = {bound['digits_per_s']:,.0f} digits/s; "
            f"{bound['task'].replace('_', ' batch ')} reaches {fraction:.2f} of it"
        )
        if round(fraction, 2) > 1:  # as printed: "reaches 1.00" comes without the note
            why = (
                "a --quick run's small GEMM makes it lower still)" if report.get("quick") else "do not read it as one)"
            )
            lines.append(
                "  (above 1: numpy's GEMM here runs below onnxruntime's kernels, so this bound is not the machine's; "
                + why
            )
    else:
        lines.append(f"hardware bound: {bound['note']}")
    stream = report.get("latency_bound", {})
    if "gemv_us" in stream:
        lines.append(
            f"batch-1 bound: streaming the decoder's {stream['weights_mib']:.1f} MiB of float32 weights once "
            f"({stream['gemv']}) takes {stream['gemv_us']:.1f} us; batch-1 generate p50 is "
            + ", ".join(f"{name} {1 / f:.2f}x" for name, f in stream["fraction"].items())
            + " of it"
        )
    elif stream:
        lines.append(f"batch-1 bound: {stream['note']}")
    return lines


def _cold_start_lines(report: dict[str, Any]) -> list[str]:
    cold = report.get("cold_start")
    if not cold:
        return []
    ours, base = cold["digitvae"], cold["onnxruntime"]
    lines = [
        f"cold start, median of {cold['runs']}: `{cold['command']}` {ours['wall_s']:.3f} s, {_mib(ours)}; "
        f"`{cold['baseline']}` {base['wall_s']:.3f} s, {_mib(base)}; wall ratio {cold['wall_ratio']:.2f}"
    ]
    if cold.get("dont_write_bytecode"):
        lines.append("  (PYTHONDONTWRITEBYTECODE is set: modules without cached bytecode compile on every start)")
    return lines


def _contenders(row: dict[str, Any]) -> list[str]:
    return [k for k in ("digitvae", "onnxruntime", "torch") if k in row]


def _mib(entry: dict[str, Any]) -> str:
    return "peak RSS unknown" if entry["peak_rss_mib"] is None else f"{entry['peak_rss_mib']:.1f} MiB peak RSS"
