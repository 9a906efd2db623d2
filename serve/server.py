"""Run MLServer with the served models of one or more DigitVAE models, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from digitvae.runtime.errors import DigitVAEError, InputError
from digitvae.runtime.options import LoadOptions

from .limits import BodyLimit, default_max_body, grpc_options, validation_message
from .signatures import SERVED_ROLES, ModelDims, metadata_inputs, output_tensors, served_name
from .tensors import attach_raw

logger = logging.getLogger(__name__)

#: Seconds the requests in flight get to finish after SIGINT or SIGTERM; then they are cancelled
#: (the client sees its connection close) and the workers stop.
GRACE = 5

#: The MLServer runtime class of each role, by import path (inference workers import them).
IMPLEMENTATIONS = {
    "encoder": "digitvae.serve.runtimes.EncoderModel",
    "decoder": "digitvae.serve.runtimes.DecoderModel",
    "generate": "digitvae.serve.runtimes.GenerateModel",
}


class ServerError(DigitVAEError):
    """The server could not start, or stopped on its own (a model failed to load, a port was taken)."""


@dataclass(frozen=True)
class ServedModel:
    """One model to serve: its name, how to load it and the dimensions its tensors depend on."""

    name: str
    load_options: LoadOptions
    dims: ModelDims


@dataclass(frozen=True)
class ServerOptions:
    """Where and how to serve: addresses, inference workers, the largest batch and request."""

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 8001
    metrics_port: int | None = None
    replicas: int = 0
    max_batch: int = 1024
    #: The largest request body (REST) or message (gRPC) in bytes; None: enough for max_batch images.
    max_body: int | None = None
    #: Most rows one batched model call gathers from concurrent requests (1: no batching).
    batch_size: int = 1
    #: Most seconds a request waits for others to join its batch.
    batch_delay: float = 0.0
    #: Answer every REST request through MLServer's FastAPI routes (else infer requests skip them).
    plain_rest: bool = False


def model_settings(
    model: ServedModel, max_batch: int, batch_size: int = 1, batch_delay: float = 0.0
) -> list[dict[str, Any]]:
    """Return the MLServer model settings (as model-settings.json holds them) of a model's three roles."""
    batching = {"batch_size": batch_size, "batch_delay": batch_delay} if batch_size > 1 else {}
    return [
        {
            "name": served_name(model.name, role),
            "implementation": IMPLEMENTATIONS[role],
            "platform": "digitvae",
            "inputs": [t.metadata() for t in metadata_inputs(role, model.dims)],
            "outputs": [t.metadata() for t in output_tensors(role, model.dims)],
            "parameters": {"extra": {**model.load_options.to_dict(), "max_batch": max_batch, **batching}},
        }
        for role in SERVED_ROLES
    ]


def serve(models: Sequence[ServedModel], options: ServerOptions, checked: Callable[[], None] | None = None) -> None:
    """Serve the models until SIGINT or SIGTERM; raise ServerError if the server stops on its own.

    `checked` is called once the names and ports are checked, before the server starts: the
    place to announce it, so that a taken port is reported before anything says "serving".
    """
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError(f"two models share a name ({', '.join(names)}); each is served under its own")
    for port in (options.port, options.grpc_port, options.metrics_port):
        if port is not None:
            _check_free(options.host, port)
    if checked is not None:
        checked()
    with tempfile.TemporaryDirectory(prefix="digitvae-serve-") as workdir:
        stopped_by = _run_loop(_run(models, options, workdir))
    if stopped_by is None:
        raise ServerError("the server stopped on its own: a model failed to load or a port is taken (see the log)")
    logger.info("stopped on %s", signal.Signals(stopped_by).name)


def _run_loop(main: Coroutine[Any, Any, int | None]) -> int | None:
    """Run the server on uvloop where it is installed (as MLServer's own CLI does), else on asyncio's loop.

    Every request's parsing, answering and handing over between REST, gRPC and the model runs on
    this one loop, so its speed is the server's under many small requests.
    """
    try:
        import uvloop
    except ImportError:  # Windows: uvloop has no build there
        return asyncio.run(main)
    return uvloop.run(main)


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
    from .runtimes import quiet_client_errors
    from .workers import unavailable_while_restarting

    _quiet_uvicorn()
    _raw_contents_as_bytes()
    unavailable_while_restarting()
    server = MLServer(settings)
    quiet_client_errors()  # after MLServer sets its loggers up
    if not options.plain_rest:
        _fast_infer(server, settings)
    _cap_requests(server, options.max_body or default_max_body(options.max_batch))
    stopped_by: list[tuple[int, asyncio.Future[None]]] = []
    loop = asyncio.get_running_loop()
    sig: int
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Replaces MLServer's own handlers, to know that a signal (not a failure) stopped it.
        loop.add_signal_handler(sig, _stopper(server, sig, stopped_by))
    listing = [
        ModelSettings.model_validate(s)
        for m in models
        for s in model_settings(m, options.max_batch, options.batch_size, options.batch_delay)
    ]
    await server.start(listing)
    if not stopped_by:
        return None
    sig, stopping = stopped_by[0]
    # start() returns once REST and gRPC have stopped; the workers stop after them, and the
    # process must not exit before: a worker left running keeps a reader thread waiting on it.
    await stopping
    return sig


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


def _raw_contents_as_bytes() -> None:
    """Have MLServer's gRPC servicer hand raw_input_contents to the models as bytes, unread.

    MLServer unpacks them into Python lists with `struct` before any model sees the request,
    trusting the request's datatype and shape: contents of the wrong length, an unknown
    datatype or a negative dimension then fail inside it (INTERNAL, with a traceback), and a
    huge claimed shape sizes its work. Attached as bytes, they are decoded by `read_tensor`
    after the shape is checked, as REST's values are, and every such request is INVALID_ARGUMENT.
    """
    from mlserver.errors import InferenceError
    from mlserver.grpc import servicers
    from mlserver.grpc.converters import (
        InferInputTensorConverter,
        InferRequestedOutputTensorConverter,
        ModelInferRequestConverter,
        ParametersConverter,
    )
    from mlserver.types import InferenceRequest

    class RawAsBytes(ModelInferRequestConverter):  # type: ignore[misc]
        @classmethod
        def to_types(cls, pb_object: Any) -> InferenceRequest:
            request = InferenceRequest.model_construct(
                id=pb_object.id,
                parameters=ParametersConverter.to_types(pb_object.parameters),
                inputs=[InferInputTensorConverter.to_types(i) for i in pb_object.inputs],
            )
            if pb_object.outputs:
                request.outputs = [InferRequestedOutputTensorConverter.to_types(o) for o in pb_object.outputs]
            try:
                attach_raw(request.inputs, pb_object.raw_input_contents)
            except InputError as exc:
                raise InferenceError(str(exc)) from None
            return request

    servicers.ModelInferRequestConverter = RawAsBytes


def _cap_requests(server: Any, max_body: int) -> None:
    """Refuse REST bodies (413) and gRPC messages (RESOURCE_EXHAUSTED) larger than max_body bytes.

    Also answer what MLServer's request parser refuses with 400 and one line: FastAPI's own 422
    echoes the whole request back, however large.
    """
    from fastapi.exceptions import RequestValidationError
    from starlette.responses import JSONResponse

    async def refused(request: Any, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return JSONResponse({"error": validation_message(list(errors))}, status_code=400)

    app = server._rest_server._app
    app.add_exception_handler(RequestValidationError, refused)
    app.add_middleware(BodyLimit, limit=max_body)
    grpc_server = server._grpc_server
    options = grpc_server._get_options
    grpc_server._get_options = lambda: grpc_options(options(), max_body)


def _fast_infer(server: Any, settings: Any) -> None:
    """Answer REST infer requests through MLServer's data plane, skipping FastAPI's route.

    Added before the body limit, so that it runs just inside it: outside MLServer's gzip
    middleware, whose work it then does itself. With HTTP metrics or CORS on it runs innermost,
    inside their middlewares, which then see every request as before.
    """
    from starlette.middleware import Middleware

    from .fastrest import FastInfer

    app = server._rest_server._app
    if settings.metrics_endpoint or settings.cors_settings is not None:
        app.user_middleware.append(Middleware(FastInfer, plane=server._data_plane))
    else:
        app.add_middleware(FastInfer, plane=server._data_plane, gzip=settings.gzip_enabled)


def _stopper(server: Any, sig: int, stopped_by: list[tuple[int, asyncio.Future[None]]]) -> Any:
    def stop() -> None:
        if not stopped_by:
            stopped_by.append((sig, asyncio.ensure_future(_stop(server, sig))))

    return stop


async def _stop(server: Any, sig: int) -> None:
    """Stop MLServer front to back: no request may reach a worker that has stopped.

    MLServer's own `stop` closes the inference workers first, while the REST and gRPC servers
    still take requests: a new request then finds no worker (`KeyError: <pid>`, a 500), one in
    flight waits forever for an answer from a stopped worker, and uvicorn, which waits for
    requests in flight with no time limit, never exits. Here REST and gRPC stop taking requests
    first (new connections are refused, idle ones closed), those in flight get GRACE seconds to
    finish before they are cancelled, and only then do the workers and the metrics server stop.
    """
    rest, grpc_server = server._rest_server, server._grpc_server
    while not (hasattr(rest, "_server") and hasattr(grpc_server, "_server")):
        await asyncio.sleep(0.05)  # a signal during start-up: the servers are being made
    rest._server.config.timeout_graceful_shutdown = GRACE
    rest._server.handle_exit(sig=sig, frame=None)
    await asyncio.gather(grpc_server._server.stop(grace=GRACE), _drained(rest._server, GRACE + 1))
    if server._inference_pool_registry is not None:
        await _stop_workers(server._inference_pool_registry)
        await server._inference_pool_registry.close()
    if server._metrics_server is not None:
        await server._metrics_server.stop(sig)


async def _stop_workers(registry: Any) -> None:
    """Ask every inference worker to stop, then wait for them together (MLServer waits for one at a time).

    Waiting happens in threads: MLServer's own `close` joins each worker inside the event loop,
    up to parallel_workers_timeout (5 s) apiece, and kills those still running; here they have
    all had that time at once, so its joins return at once.
    """
    # As MLServer's close does first: its SIGCHLD handler would reap the workers, or restart them.
    signal.signal(signal.SIGCHLD, registry._original_sigchld_handler)
    workers = [w for pool in (registry._default_pool, *registry._pools.values()) for w in pool._workers.values()]
    for worker in workers:
        await worker.stop()
    await asyncio.gather(*(asyncio.to_thread(worker.join, GRACE) for worker in workers))


async def _drained(uvicorn_server: Any, timeout: float) -> None:
    """Wait until a stopping uvicorn server has no connection or request left (it cancels them after GRACE)."""
    state = uvicorn_server.server_state
    deadline = asyncio.get_running_loop().time() + timeout
    while (state.connections or state.tasks) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
