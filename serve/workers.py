"""Answer 503 (gRPC UNAVAILABLE) while an inference worker restarts, instead of a 500 and a traceback.

With `--replicas N`, MLServer sends each request to a worker process in turn. When a worker
dies (killed by the out-of-memory killer, say), MLServer starts another and reloads the
models into it, which takes about a second. Until then:

- requests the dead worker held fail with MLServer's `WorkerStop`, a 500;
- new requests find no worker to send to: its round robin is empty (`StopIteration`) or names
  the dead worker (`KeyError`), each a 500 with a traceback in the log, about a thousand a second
  under load.

Neither is the server failing for good, nor the client's fault: both are now 503 with a
one-line JSON error, which a client or a load balancer retries, and the log keeps MLServer's one
warning that the worker stopped.
"""

from __future__ import annotations

import functools
from typing import Any

from mlserver.errors import MLServerError

#: What a request gets while no worker can take it: retry later.
UNAVAILABLE = 503


class WorkerUnavailable(MLServerError):  # type: ignore[misc]
    """No inference worker can take the request right now: one stopped and another is starting."""

    def __init__(self, why: str) -> None:
        super().__init__(f"{why}; retry the request", status_code=UNAVAILABLE)


class WorkerStopped(WorkerUnavailable):
    """The worker holding the request stopped before it answered (MLServer's `WorkerStop`, as a 503)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"the inference worker stopped unexpectedly (exit code {exit_code}) and is restarting")


@functools.cache
def unavailable_while_restarting() -> None:
    """Make MLServer's dispatcher answer 503 where no worker can take a request (once per process)."""
    import grpc
    from mlserver.grpc import utils as grpc_utils
    from mlserver.parallel import dispatcher

    get_worker = dispatcher.Dispatcher._get_worker

    def _get_worker(self: Any) -> Any:
        try:
            return get_worker(self)
        except (StopIteration, KeyError):
            raise WorkerUnavailable("no inference worker is ready: one stopped and another is starting") from None

    dispatcher.Dispatcher._get_worker = _get_worker
    dispatcher.WorkerStop = WorkerStopped  # what AsyncResponses.cancel raises in each request the worker held
    grpc_utils.STATUS_CODE_MAPPING.setdefault(UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
