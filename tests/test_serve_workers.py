"""`digitvae serve --replicas N` while an inference worker restarts: 503 (gRPC UNAVAILABLE), never a 500."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_serve import HAVE_MLSERVER, _descendants, needs_serve, on_linux, start_server, stop_group, tensor

pytestmark = [needs_serve, on_linux]

DECODER = "/v2/models/mnist-vae-decoder/infer"


def _workers(pid: int) -> list[int]:
    """Return the inference workers below a server process (not multiprocessing's resource tracker)."""
    found = []
    for child in _descendants(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(child)
    return found


@pytest.mark.heavy  # starts MLServer processes
def test_requests_get_503_while_a_killed_worker_restarts_then_200(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--replicas", "1")
    try:
        body = {"inputs": [tensor("z", np.zeros((2, 32)))]}
        assert running.post(DECODER, body)[0] == 200
        (worker,) = _workers(running.proc.pid)
        # Killed while idle: a worker killed as it writes an answer wedges MLServer's shared
        # answer queue (docs/serve.md), which no answer code can undo.
        os.kill(worker, signal.SIGKILL)
        answers: list[tuple[int, object]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answers.append(running.post(DECODER, body))
            if answers[-1][0] == 200:
                break
        assert answers[-1][0] == 200, answers[-3:]
        refused = answers[:-1]
        assert refused, "the first request after the kill was answered: the restart was not seen"
        assert {status for status, _ in refused} == {503}, refused[:3]
        assert all("retry the request" in reply["error"] for _, reply in refused), refused[:3]  # type: ignore[index]
        assert _workers(running.proc.pid) != [worker]
    finally:
        running.proc.send_signal(signal.SIGTERM)
        try:
            code = running.proc.wait(60)
        finally:
            stop_group(running.proc)
    log = running.log.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert log.count("stopped unexpectedly with exit code 9") == 1, log[-3000:]


#: Run in a process of its own: tritonclient.grpc and MLServer's gRPC module register the same
#: protobuf names, and this test process may have imported the other.
_PATCHED = """
import grpc
from mlserver.grpc import utils as grpc_utils
from mlserver.parallel import dispatcher

from digitvae.serve.workers import WorkerStopped, WorkerUnavailable, unavailable_while_restarting

unavailable_while_restarting()
empty = dispatcher.Dispatcher({}, responses=None)
try:
    empty._get_worker()
except WorkerUnavailable as refused:
    assert refused.status_code == 503, refused.status_code
else:
    raise AssertionError("a dispatcher without workers handed one out")
assert dispatcher.WorkerStop is WorkerStopped and WorkerStopped(9).status_code == 503
assert "exit code 9" in str(WorkerStopped(9))
assert grpc_utils.STATUS_CODE_MAPPING[503] == grpc.StatusCode.UNAVAILABLE
print("checked")
"""


@pytest.mark.skipif(not HAVE_MLSERVER, reason="needs the [serve] extra (MLServer)")
def test_no_worker_to_send_to_is_a_503_and_grpc_unavailable() -> None:
    done = subprocess.run([sys.executable, "-c", _PATCHED], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "checked\n"), done.stderr[-3000:]
