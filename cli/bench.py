"""The `digitvae bench` command: a model's speed on this machine."""

from __future__ import annotations

import dataclasses
import json

import click

from .options import json_option, model_option, provider_list, provider_option, threads_option, variant_option


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
    from digitvae.bench.benchmark import QUICK, BenchConfig, run_bench
    from digitvae.bench.report import format_report

    config = BenchConfig(
        model=model, variant=variant, providers=provider_list(provider), threads=threads, torch=not no_torch
    )
    if quick:
        config = dataclasses.replace(config, **QUICK)
    if no_cold_start:
        config = dataclasses.replace(config, cold_runs=0)
    report = {**run_bench(config), "quick": quick}
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
