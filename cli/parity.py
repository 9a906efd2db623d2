"""The `digitvae parity` command: does an execution provider compute what the CPU provider computes?"""

from __future__ import annotations

import json
from dataclasses import replace

import click

from digitvae.runtime.errors import ProviderError
from digitvae.runtime.options import LoadOptions

from .options import json_option, model_options


@click.command("parity")
@model_options
@click.option("-n", "count", type=click.IntRange(1, 4096), default=64, show_default=True, help="Digits and codes fed.")
@click.option("-k", type=click.IntRange(1, 5000), default=50, show_default=True, help="Samples per digit for iw_nll.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
def parity(options: LoadOptions, count: int, k: int, seed: int, as_json: bool) -> None:
    """Run the model on --provider and on the CPU provider with the same inputs, and compare.

    decode, encode, reconstruct, generate and iw_nll must agree within 1e-4 (pixels and codes)
    and 1e-3 nats; fp16 within 1e-2 and 0.1 nats. The provider must really run the sessions (as
    with --strict); the exit status is 1 when any output differs by more.
    """
    from digitvae.runtime.inference.model import DigitVAE
    from digitvae.runtime.inference.parity import compare, tolerances

    if not options.providers:
        raise ProviderError("parity compares a provider with the CPU provider: name one with --provider (e.g. cuda)")
    candidate = DigitVAE.from_options(replace(options, strict=True))
    reference = DigitVAE.from_options(
        replace(options, model=str(candidate.model_dir), providers=("cpu",), strict=False)
    )
    found = compare(candidate, reference, count, k, seed, tolerances(options.variant))
    if as_json:
        rows = [{"output": d.output, "max_abs_diff": d.max_abs, "tolerance": d.tolerance} for d in found]
        click.echo(
            json.dumps({"providers": candidate.providers, "variant": options.variant, "outputs": rows}, indent=2)
        )
    else:
        click.echo(f"{candidate.name} ({options.variant}) on {', '.join(candidate.providers)} vs CPUExecutionProvider:")
        for d in found:
            click.echo(f"  {d.output:20s} max |diff| {d.max_abs:.3g} (allowed {d.tolerance:g})")
    bad = [d for d in found if not d.ok]
    if bad:
        worst = ", ".join(f"{d.output} by {d.max_abs:.3g} (allowed {d.tolerance:g})" for d in bad)
        raise ProviderError(f"{', '.join(candidate.providers)} differs from the CPU provider: {worst}")
