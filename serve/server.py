"""Run MLServer with the served models of one or more DigitVAE models, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from digitvae.runtime.errors import DigitVAEError, InputError

from .specs import ROLES, Shape, metadata_inputs, output_specs, served_name

logger = logging.getLogger(__name__)

#: The MLServer runtime class of each role, by import path (inference workers import them).
IMPLEMENTATIONS = {
    "encoder": "digitvae.serve.models.EncoderModel",
    "decoder": "digitvae.serve.models.DecoderModel",
    "generate": "digitvae.serve.models.GenerateModel",
}


class ServerError(DigitVAEError):
    """The server could not start, or stopped on its own (a model failed to load, a port was taken)."""


@dataclass(frozen=True)
class ServedModel:
    """One model to serve: its name, how to load it and the figures its tensors depend on."""

    name: str
    load: dict[str, Any]
    shape: Shape


@dataclass(frozen=True)
class ServerOptions:
    """Where and how to serve: addresses, inference workers, the largest batch."""

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 8001
    metrics_port: int | None = None
    replicas: int = 0
    max_batch: int = 1024


def model_settings(model: ServedModel, max_batch: int) -> list[dict[str, Any]]:
    """Return the MLServer model settings (as model-settings.json holds them) of a model's three roles."""
    return [
        {
            "name": served_name(model.name, role),
            "implementation": IMPLEMENTATIONS[role],
            "platform": "digitvae",
            "inputs": [s.metadata() for s in metadata_inputs(role, model.shape)],
            "outputs": [s.metadata() for s in output_specs(role, model.shape)],
            "parameters": {"extra": {**model.load, "max_batch": max_batch}},
        }
        for role in ROLES
    ]


def serve(models: Sequence[ServedModel], options: ServerOptions) -> None:
    """Serve the models until SIGINT or SIGTERM; raise ServerError if the server stops on its own."""
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError(f"two models share a name ({', '.join(names)}); each is served under its own")
    for port in (options.port, options.grpc_port, options.metrics_port):
        if port is not None:
            _check_free(options.host, port)
    with tempfile.TemporaryDirectory(prefix="digitvae-serve-") as workdir:
        stopped_by = asyncio.run(_run(models, options, workdir))
    if stopped_by is None:
        raise ServerError("the server stopped on its own: a model failed to load or a port is taken (see the log)")
    logger.info("stopped on %s", signal.Signals(stopped_by).name)


async def _run(models: Sequence[ServedModel], options: ServerOptions, workdir: str) -> int | None:
    from mlserver import MLServer, ModelSettings, Settings

    settings = Settings(
        debug=False,  # True would send tracebacks in 500 responses and log every request
        host=options.host,
        http_port=options.port,
        grpc_port=options.grpc_port,
        parallel_workers=options.replicas,
        metrics_endpoint="/metrics" if options.metrics_port else None,
        metrics_port=options.metrics_port or 8082,
        metrics_dir=workdir,
        environments_dir=workdir,
        # An empty repository: the repository API must not load model-settings.json files from the cwd.
        model_repository_root=workdir,
        load_models_at_startup=False,
    )
    from .models import quiet_client_errors

    _quiet_uvicorn()
    server = MLServer(settings)
    quiet_client_errors()  # after MLServer sets its loggers up
    stopped_by: list[int] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Replaces MLServer's own handlers, to know that a signal (not a failure) stopped it.
        loop.add_signal_handler(sig, _stopper(server, sig, stopped_by))
    listing = [ModelSettings.model_validate(s) for m in models for s in model_settings(m, options.max_batch)]
    await server.start(listing)
    return stopped_by[0] if stopped_by else None


def _quiet_uvicorn() -> None:
    """Keep MLServer's HTTP servers from taking SIGINT and SIGTERM for themselves.

    MLServer stops its servers itself and turns uvicorn's signal handling off by overriding
    `install_signal_handlers`, which uvicorn 0.29 and later no longer call: their
    `capture_signals` replaces the process's handlers while a server runs and raises the
    signal again when it stops. With two uvicorn servers (REST and metrics) the handlers are
    restored out of order and the second raise kills the process. Only the signal handlers of
    this server (see `_run`) should stop it.
    """
    from mlserver.metrics import server as metrics_server
    from mlserver.rest import server as rest_server

    for module in (rest_server, metrics_server):
        module._NoSignalServer.capture_signals = _no_capture


@contextlib.contextmanager
def _no_capture(self: Any) -> Iterator[None]:
    yield


def _check_free(host: str, port: int) -> None:
    """Refuse a port that cannot be bound: MLServer would keep running without that server."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InputError(f"--host {host!r} is not an address of this machine: {exc}") from None
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as probe:
        # As uvicorn and gRPC bind: a port in TIME_WAIT after a previous run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _stopper(server: Any, sig: int, stopped_by: list[int]) -> Any:
    def stop() -> None:
        if not stopped_by:
            stopped_by.append(sig)
            asyncio.ensure_future(server.stop(sig=sig))

    return stop
