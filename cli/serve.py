"""`digitvae serve`: the models over the Open Inference Protocol (KServe v2), on MLServer."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

import click

from digitvae.runtime.errors import InputError
from digitvae.runtime.folders.locate import DEFAULT_MODEL

from .options import (
    load_options,
    models_option,
    provider_option,
    require,
    strict_option,
    variant_option,
)

logger = logging.getLogger(__name__)

_PORT = click.IntRange(1, 65535)
#: Batching's defaults, measured with scripts/serve_bench.py (docs/serve.md).
DEFAULT_BATCH_SIZE = 1
DEFAULT_BATCH_DELAY_US = 400
_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}
#: gRPC takes messages of at most 2 GiB - 1 bytes; below 64 KiB not even one image fits.
_BODY_RANGE = (64 << 10, (2 << 30) - 1)


# ParamType is generic in recent click only: subscripting it fails on the click 8.1 pyproject.toml allows.
class ByteSize(click.ParamType):  # type: ignore[type-arg]
    """A size in bytes: 20000000, 512KiB, 32MiB, 1GiB (K, M, G are binary too)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            self.fail(f"{value!r} is not a size: a number of bytes, or with KiB, MiB or GiB (e.g. 32MiB)", param, ctx)
        size = int(match.group(1)) * _UNITS[unit]
        low, high = _BODY_RANGE
        if not low <= size <= high:
            self.fail(
                f"{value} is {size:,} bytes; it must be between {low:,} (64KiB) and {high:,} (2GiB - 1)", param, ctx
            )
        return size


@click.command()
@models_option
@variant_option
@provider_option
@strict_option
@click.option(
    "--threads",
    type=click.IntRange(0, 1024),
    default=1,
    show_default=True,
    help="onnxruntime intra-op threads per inference process (0: one per physical core). One leaves the "
    "cores to the requests: more speed up large requests but spin beside small ones; scale with --replicas.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=_PORT, default=8000, show_default=True, help="HTTP port (REST, v2 JSON).")
@click.option("--grpc-port", type=_PORT, default=8001, show_default=True, help="gRPC port (v2 gRPC).")
@click.option("--metrics-port", type=_PORT, default=None, help="Serve Prometheus metrics at /metrics on this port.")
@click.option(
    "--replicas",
    type=click.IntRange(0, 64),
    default=0,
    show_default=True,
    help="Inference worker processes, each with its own copy of the models (0: run in the server process, "
    "the fastest for these small models).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 4096),
    default=1024,
    show_default=True,
    help="Most rows (digits or codes) one request may hold.",
)
@click.option(
    "--max-body",
    type=ByteSize(),
    default=None,
    help="Largest request in bytes, REST body (413 beyond it) or gRPC message (RESOURCE_EXHAUSTED), e.g. 32MiB "
    "[default: enough for --max-batch images as JSON, 19.4 MiB at 1,024].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Most rows (digits or codes) one model call gathers from concurrent requests (1: no batching); "
    "a request of this many rows or more runs alone.",
)
@click.option(
    "--batch-delay",
    type=click.IntRange(0, 1_000_000),
    default=DEFAULT_BATCH_DELAY_US,
    show_default=True,
    help="Most microseconds a request waits for others to join its batch.",
)
@click.option(
    "--plain-rest",
    is_flag=True,
    help="Answer REST infer requests through MLServer's FastAPI route too, as before (slower; the same answers).",
)
def serve(
    models: tuple[str, ...],
    variant: str,
    provider: str | None,
    strict: bool,
    threads: int,
    host: str,
    port: int,
    grpc_port: int,
    metrics_port: int | None,
    replicas: int,
    max_batch: int,
    max_body: int | None,
    batch_size: int,
    batch_delay: int,
    plain_rest: bool,
) -> None:
    """Serve models over the Open Inference Protocol (KServe v2 REST and gRPC), as Triton does.

    Each model M is served as M-encoder, M-decoder and M-generate. Stops on Ctrl-C or SIGTERM.
    """
    require("mlserver", extra="serve")
    from digitvae.serve.runtimes import dims_of, load_shared
    from digitvae.serve.server import ServedModel, ServerOptions
    from digitvae.serve.server import serve as run

    ports = [p for p in (port, grpc_port, metrics_port) if p is not None]
    if len(set(ports)) != len(ports):
        raise InputError(f"--port, --grpc-port and --metrics-port must differ, got {', '.join(map(str, ports))}")
    if batch_size > 1:
        threads = _batching_threads(threads)
    served = []
    for model in models or (DEFAULT_MODEL,):
        options = load_options(model, variant, provider, strict, threads)
        # Loaded here first, so a bad model or option is one error line before the server starts.
        vae = load_shared(options)
        served.append(ServedModel(vae.name, replace(options, model=str(vae.model_dir)), dims_of(vae)))
    if replicas:
        load_shared.cache_clear()  # the workers load their own copies
    announcement = (
        f"serving {', '.join(f'{m.name}-{{encoder,decoder,generate}}' for m in served)} "
        f"on http://{host}:{port}/v2 (gRPC {grpc_port}, {replicas} worker{'s' if replicas != 1 else ''}); "
        "Ctrl-C stops"
    )
    server = ServerOptions(
        host,
        port,
        grpc_port,
        metrics_port,
        replicas,
        max_batch,
        max_body,
        batch_size,
        batch_delay / 1e6,
        plain_rest=plain_rest,
    )
    # Announced once the ports are known to be free: a taken port is the only line printed.
    run(served, server, checked=lambda: click.echo(announcement, err=True))


def _batching_threads(threads: int) -> int:
    """Return the onnxruntime threads a batching server runs with: one, so that batched rows equal rows alone.

    With several threads onnxruntime splits a call's work at places that depend on the batch's
    size, and a digit's last bit could then differ between a batch and its request alone.
    """
    if threads != 1:
        raise InputError(
            f"--threads {threads} cannot be used with batching: batched requests run with one onnxruntime "
            "thread so that each gets exactly the digits it would get alone; pass --batch-size 1 to use "
            "more threads without batching"
        )
    return 1
