"""`digitvae serve` under malformed tensors over REST and gRPC, bodies over the cap, and SIGTERM or SIGINT while busy.

Every malformed request is the client's error (REST 4xx, gRPC INVALID_ARGUMENT) with a one-line
message and no traceback in the log; an oversized one is refused before it is read; a signal
stops every configuration promptly with no request answered 500 and no process left. gRPC
clients run in processes of their own: tritonclient.grpc and MLServer register the same protobuf
names, and a test process may have imported either.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_serve import Server, _alive, _descendants, _group, needs_serve, on_linux, start_server, stop_group, tensor

pytestmark = [needs_serve, on_linux, pytest.mark.heavy]  # starts MLServer processes

HUGE = 3e38  # finite float32 that overflows the models
_Z = [0.0] * 32
_SAMPLER = [tensor("uniform", [0.5]), tensor("label", [-1])]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # One worker: requests cross to a worker process and back, the path with the most to go wrong.
    running = start_server(tmp_path_factory.mktemp("hostile"), "--replicas", "1", "-m", "mnist-vae", "-m", "mnist-cvae")
    yield running
    stop_group(running.proc)


# REST: JSON tensors of every malformed kind, and the status each must get.
_REST = {
    "negative dimension": ("mnist-vae-decoder", [{**tensor("z", [_Z]), "shape": [-1, 32]}], 400),
    "2^40 rows": ("mnist-vae-decoder", [{**tensor("z", [_Z]), "shape": [2**40, 32]}], 400),
    "2^40 in a fixed dimension": ("mnist-vae-decoder", [{**tensor("z", [_Z]), "shape": [1, 2**40]}], 400),
    "zero rows": ("mnist-vae-decoder", [{"name": "z", "datatype": "FP32", "shape": [0, 32], "data": []}], 400),
    "no dimension": ("mnist-vae-decoder", [{"name": "z", "datatype": "FP32", "shape": [], "data": [0.0]}], 400),
    "values for another shape": ("mnist-vae-decoder", [{**tensor("z", [_Z]), "shape": [2, 32]}], 400),
    "huge codes": ("mnist-vae-decoder", [tensor("z", np.full((2, 32), HUGE))], 400),
    "huge sampler noise": ("mnist-vae-generate", [tensor("noise", np.full((1, 32), HUGE)), *_SAMPLER], 400),
    "huge noise, conditional": (
        "mnist-cvae-generate",
        [tensor("noise", np.full((1, 16), -HUGE)), tensor("uniform", [0.5]), tensor("label", [3])],
        400,
    ),
    "FP32 beyond float32": ("mnist-vae-decoder", [tensor("z", np.full((1, 32), 1e39))], 400),
    "INT64 beyond int64": ("mnist-vae-generate", [{**tensor("n", [1]), "data": [2**70]}], 400),
    "string data": ("mnist-vae-decoder", [{**tensor("z", [_Z]), "data": "abc"}], 400),
    "BYTES datatype": ("mnist-vae-decoder", [{**tensor("z", [_Z]), "datatype": "BYTES"}], 400),
}


@pytest.mark.parametrize("case", list(_REST))
def test_malformed_json_tensors_are_the_clients_error(server: Server, case: str) -> None:
    model, inputs, expected = _REST[case]
    status, reply = server.post(f"/v2/models/{model}/infer", {"inputs": inputs})
    assert status == expected, (status, reply)
    message = reply.get("error") if isinstance(reply, dict) else None
    assert isinstance(message, str) and "\n" not in message and "Traceback" not in message, reply


# What MLServer's request parser refuses: 400 and one line (FastAPI's own 422 echoed the request back).
_PARSER = {
    "unknown datatype": (b'{"inputs": [{"name": "n", "datatype": "FP99", "shape": [1], "data": [1]}]}', "datatype"),
    "no inputs": (b"{}", "inputs: Field required"),
    "bad JSON": (b'{"inputs": [nope', "the JSON body, at character"),
    "a bare NaN": (b'{"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [NaN]}]}', "malformed"),
    "inputs not a list": (b'{"inputs": 3}', "inputs"),
}


@pytest.mark.parametrize("case", list(_PARSER))
def test_what_the_request_parser_refuses_is_400_in_one_line(server: Server, case: str) -> None:
    body, fragment = _PARSER[case]
    status, reply = server.post("/v2/models/mnist-vae-generate/infer", body)
    assert status == 400, (status, reply)
    message = reply.get("error") if isinstance(reply, dict) else None
    assert isinstance(message, str) and message.startswith("malformed request") and fragment in message, reply
    assert "\n" not in message and len(message) < 500 and "nope" not in message


def _post_as(server: Server, content_type: str | None) -> tuple[int, Any]:
    body = json.dumps({"inputs": [tensor("n", [2]), tensor("seed", [0])], "outputs": [{"name": "z"}]}).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    request = urllib.request.Request(
        server.url + "/v2/models/mnist-vae-generate/infer", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_json_without_its_content_type_is_read_as_json_and_other_types_are_415(server: Server) -> None:
    """curl -d sends application/x-www-form-urlencoded unless told otherwise; a JSON body is what it means."""
    status, expected = _post_as(server, "application/json")
    assert status == 200
    for forgotten in (None, "application/x-www-form-urlencoded"):
        status, reply = _post_as(server, forgotten)
        assert status == 200 and reply["outputs"] == expected["outputs"], reply
    status, reply = _post_as(server, "text/plain")
    assert status == 415 and "Content-Type: application/json" in reply["error"], reply


def _raw_http(server: Server, head: bytes, body: Iterable[bytes] = ()) -> tuple[int | None, bytes, int]:
    """Send a request head, then body pieces until the server stops reading; return status, reply, bytes sent."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        sent = 0
        try:
            for piece in body:
                sock.sendall(piece)
                sent += len(piece)
        except OSError:  # the server answered and closed the connection: the rest was never read
            pass
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
    status = int(reply.split()[1]) if reply.startswith(b"HTTP/1.1 ") else None
    return status, reply, sent


def _head(model: str, *headers: str) -> bytes:
    lines = [f"POST /v2/models/{model}/infer HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _rss(pid: int) -> int:
    """Return a process's resident memory in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


_MB100 = 100_000_000


def _pieces(total: int, size: int = 1 << 20, chunked: bool = False) -> Iterator[bytes]:
    piece = b"[" * size
    for _ in range(0, total, size):
        yield b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


def test_a_100_mb_body_is_refused_before_it_is_read(server: Server) -> None:
    before = _rss(server.proc.pid)
    # The length alone decides: 413 before the client sends any of the body.
    status, reply, _ = _raw_http(server, _head("mnist-vae-decoder", f"Content-Length: {_MB100}"))
    assert status == 413 and b"--max-body" in reply, reply[:300]
    # All of it sent (as far as the server lets it): the same answer, none of it kept.
    status, reply, sent = _raw_http(server, _head("mnist-vae-decoder", f"Content-Length: {_MB100}"), _pieces(_MB100))
    assert status in (413, None), reply[:300]  # None: the connection was reset before the answer was read
    assert sent < _MB100
    # Chunked, with no length to go by: refused once past the cap.
    status, reply, sent = _raw_http(
        server, _head("mnist-vae-decoder", "Transfer-Encoding: chunked"), _pieces(_MB100, chunked=True)
    )
    assert status in (413, None), reply[:300]
    assert sent < _MB100
    grown = _rss(server.proc.pid) - before
    assert grown < 100 << 20, f"the server grew by {grown / 2**20:.0f} MiB on refused bodies"
    assert server.get("/v2/models/mnist-vae-decoder/ready")[0] == 200


def test_a_gzip_body_is_capped_once_decompressed(server: Server) -> None:
    bomb = gzip.compress(b" " * _MB100)  # about 100 KB that inflates to 100 MB
    before = _rss(server.proc.pid)
    status, reply, _ = _raw_http(
        server, _head("mnist-vae-decoder", "Content-Encoding: gzip", f"Content-Length: {len(bomb)}") + bomb
    )
    assert status == 413 and b"once decompressed" in reply, reply[:300]
    assert _rss(server.proc.pid) - before < 100 << 20
    broken = b"\x1f\x8b\x08\x00garbage"
    status, reply, _ = _raw_http(
        server, _head("mnist-vae-decoder", "Content-Encoding: gzip", f"Content-Length: {len(broken)}") + broken
    )
    assert status == 400, reply[:300]
    good = gzip.compress(json.dumps({"inputs": [tensor("z", [_Z])]}).encode())
    status, reply, _ = _raw_http(
        server,
        _head("mnist-vae-decoder", "Content-Encoding: gzip", f"Content-Length: {len(good)}", "Connection: close")
        + good,
    )
    assert status == 200, reply[:300]


def test_the_default_cap_takes_the_largest_batch(server: Server) -> None:
    # Faint pixels print long (0.0012345678...: 22 characters a value); MNIST's k/255 take 20.
    images = np.random.default_rng(0).random((1024, 784), dtype=np.float32) * np.float32(0.01)
    body = json.dumps({"inputs": [tensor("image", images)], "outputs": [{"name": "mean"}]}).encode()
    assert len(body) > 16 << 20  # more than a round 16 MiB cap would take
    status, reply = server.post("/v2/models/mnist-vae-encoder/infer", body)
    assert status == 200, reply if status != 200 else ""
    assert reply["outputs"][0]["shape"] == [1024, 32]


# gRPC: each case is (model, inputs as (name, datatype, shape), raw contents or None, typed FP32 contents).
_Z_RAW = np.zeros((1, 32), np.float32).tobytes()
_GRPC: dict[str, tuple[str, list[tuple[str, str, list[int]]], list[bytes] | None, str]] = {
    "raw contents too short": ("mnist-vae-decoder", [("z", "FP32", [1, 32])], [_Z_RAW[:-4]], "INVALID_ARGUMENT"),
    "raw contents too long": ("mnist-vae-decoder", [("z", "FP32", [1, 32])], [_Z_RAW + _Z_RAW[:4]], "INVALID_ARGUMENT"),
    "raw contents not a multiple of 4": (
        "mnist-vae-decoder",
        [("z", "FP32", [1, 32])],
        [_Z_RAW[:-1]],
        "INVALID_ARGUMENT",
    ),
    "empty raw contents": ("mnist-vae-decoder", [("z", "FP32", [1, 32])], [b""], "INVALID_ARGUMENT"),
    "no contents at all": ("mnist-vae-decoder", [("z", "FP32", [1, 32])], None, "INVALID_ARGUMENT"),
    "negative dimension": ("mnist-vae-decoder", [("z", "FP32", [-1, 32])], [_Z_RAW], "INVALID_ARGUMENT"),
    "2^40 rows": ("mnist-vae-decoder", [("z", "FP32", [2**40, 32])], [_Z_RAW], "INVALID_ARGUMENT"),
    "2^40 in a fixed dimension": ("mnist-vae-decoder", [("z", "FP32", [1, 2**40])], [_Z_RAW], "INVALID_ARGUMENT"),
    "2^62 x 2^2 values": ("mnist-vae-decoder", [("z", "FP32", [2**62, 4])], [_Z_RAW], "INVALID_ARGUMENT"),
    "zero rows": ("mnist-vae-decoder", [("z", "FP32", [0, 32])], [b""], "INVALID_ARGUMENT"),
    "no dimension": ("mnist-vae-decoder", [("z", "FP32", [])], [_Z_RAW[:4]], "INVALID_ARGUMENT"),
    "unknown datatype": ("mnist-vae-decoder", [("z", "FP99", [1, 32])], [_Z_RAW], "INVALID_ARGUMENT"),
    "empty datatype": ("mnist-vae-decoder", [("z", "", [1, 32])], [_Z_RAW], "INVALID_ARGUMENT"),
    "BYTES datatype": ("mnist-vae-decoder", [("z", "BYTES", [1, 32])], [_Z_RAW], "INVALID_ARGUMENT"),
    "wrong datatype": ("mnist-vae-decoder", [("z", "INT64", [1, 32])], [_Z_RAW * 2], "INVALID_ARGUMENT"),
    "NaN raw values": (
        "mnist-vae-decoder",
        [("z", "FP32", [1, 32])],
        [np.full((1, 32), np.nan, np.float32).tobytes()],
        "INVALID_ARGUMENT",
    ),
    "huge codes": (
        "mnist-vae-decoder",
        [("z", "FP32", [1, 32])],
        [np.full((1, 32), HUGE, np.float32).tobytes()],
        "INVALID_ARGUMENT",
    ),
    "huge sampler noise": (
        "mnist-vae-generate",
        [("noise", "FP32", [1, 32]), ("uniform", "FP32", [1]), ("label", "INT64", [1])],
        [np.full((1, 32), HUGE, np.float32).tobytes(), np.float32(0.5).tobytes(), np.int64(-1).tobytes()],
        "INVALID_ARGUMENT",
    ),
    "fewer raw entries than inputs": (
        "mnist-cvae-decoder",
        [("z", "FP32", [1, 16]), ("label", "INT64", [1])],
        [_Z_RAW[:64]],
        "INVALID_ARGUMENT",
    ),
    "more raw entries than inputs": (
        "mnist-vae-decoder",
        [("z", "FP32", [1, 32])],
        [_Z_RAW, _Z_RAW],
        "INVALID_ARGUMENT",
    ),
    "INT64 raw of 7 bytes": (
        "mnist-cvae-decoder",
        [("z", "FP32", [1, 16]), ("label", "INT64", [1])],
        [_Z_RAW[:64], b"\0" * 7],
        "INVALID_ARGUMENT",
    ),
    "typed and raw contents": ("mnist-vae-decoder", [("z", "FP32", [1, 32])], [_Z_RAW], "typed"),
    "over the size cap": ("mnist-vae-decoder", [("z", "FP32", [1, 32])], [b"\0" * (21 << 20)], "RESOURCE_EXHAUSTED"),
    "unknown model": ("no-such-model", [("z", "FP32", [1, 32])], [_Z_RAW], "NOT_FOUND"),
    "well formed": ("mnist-vae-decoder", [("z", "FP32", [1, 32])], [_Z_RAW], "OK"),
}

_GRPC_SENDER = """
import json, sys
import grpc
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc.dataplane_pb2_grpc import GRPCInferenceServiceStub

port, cases = int(sys.argv[1]), json.load(sys.stdin)
channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)])
stub = GRPCInferenceServiceStub(channel)
found = {}
for name, (model, inputs, raw, typed) in cases.items():
    request = pb.ModelInferRequest(model_name=model)
    for tensor, datatype, shape in inputs:
        entry = pb.ModelInferRequest.InferInputTensor(name=tensor, datatype=datatype, shape=shape)
        if typed:
            entry.contents.fp32_contents.extend([0.0] * 32)
        request.inputs.append(entry)
    if raw is not None:
        request.raw_input_contents.extend(bytes.fromhex(r) for r in raw)
    try:
        stub.ModelInfer(request, timeout=120)
        found[name] = ["OK", ""]
    except grpc.RpcError as exc:
        found[name] = [exc.code().name, exc.details() or ""]
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def grpc_answers(server: Server) -> dict[str, list[str]]:
    """Send every gRPC case once, from a process of its own; return each case's status code and message."""
    cases = {
        name: [model, inputs, None if raw is None else [r.hex() for r in raw], code == "typed"]
        for name, (model, inputs, raw, code) in _GRPC.items()
    }
    lines_before = len(server.log.read_text().splitlines())
    done = subprocess.run(
        [sys.executable, "-c", _GRPC_SENDER, str(server.grpc_port)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers: dict[str, list[str]] = json.loads(done.stdout)
    answers["log lines"] = server.log.read_text().splitlines()[lines_before:]
    return answers


@pytest.mark.parametrize("case", list(_GRPC))
def test_malformed_grpc_tensors_are_the_clients_error(grpc_answers: dict[str, list[str]], case: str) -> None:
    code, message = grpc_answers[case]
    expected = _GRPC[case][3]
    assert code == ("INVALID_ARGUMENT" if expected == "typed" else expected), (code, message)
    assert "\n" not in message and "Traceback" not in message, message
    if code == "INVALID_ARGUMENT":
        assert message, "a refusal must say what was wrong"


def test_refused_grpc_requests_leave_no_traceback_in_the_log(grpc_answers: dict[str, list[str]]) -> None:
    logged = grpc_answers["log lines"]
    assert not [line for line in logged if "Traceback" in line or "Error" in line], "\n".join(logged)
    assert len(logged) <= len(_GRPC), "\n".join(logged)


def test_refused_rest_requests_leave_no_traceback_in_the_log(server: Server) -> None:
    before = len(server.log.read_text().splitlines())
    for model, inputs, _ in _REST.values():
        server.post(f"/v2/models/{model}/infer", {"inputs": inputs})
    logged = server.log.read_text().splitlines()[before:]
    assert not [line for line in logged if "Traceback" in line or "Error" in line], "\n".join(logged)
    assert len(logged) <= len(_REST), "\n".join(logged)


# Signals under load: REST clients in threads here, gRPC clients in a process of their own.
_GRPC_LOAD = """
import sys, threading, time, collections
import grpc, numpy as np
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc.dataplane_pb2_grpc import GRPCInferenceServiceStub

port, threads = int(sys.argv[1]), int(sys.argv[2])
found = collections.Counter()
lock = threading.Lock()
deadline = time.monotonic() + 240

def client():
    stub = GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    request = pb.ModelInferRequest(model_name="mnist-vae-decoder")
    request.inputs.append(pb.ModelInferRequest.InferInputTensor(name="z", datatype="FP32", shape=[4, 32]))
    request.raw_input_contents.append(np.zeros((4, 32), np.float32).tobytes())
    while time.monotonic() < deadline:
        try:
            stub.ModelInfer(request, timeout=60)
            code = "OK"
        except grpc.RpcError as exc:
            code, details = exc.code().name, (exc.details() or "").replace(chr(10), " ")[:300]
        with lock:
            found[code] += 1
            if code == "OK" and found[code] == 1:
                print("running", flush=True)
            if code not in ("OK", "UNAVAILABLE"):
                print(code, details, flush=True)
        if code == "UNAVAILABLE" and found["OK"]:
            return  # the server is gone

pool = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(dict(found), flush=True)
"""


def _lines(stream: Any, into: list[str]) -> threading.Thread:
    """Collect a stream's lines in a thread."""

    def read() -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _rest_load(
    server: Server, stop: threading.Event, found: Counter[Any], lock: threading.Lock, odd: list[tuple[float, Any]]
) -> None:
    """Send decoder requests until stopped; count the outcomes, and note when each unexpected one came."""
    body = json.dumps({"inputs": [tensor("z", np.zeros((4, 32)))]}).encode()
    while not stop.is_set():
        request = urllib.request.Request(
            server.url + "/v2/models/mnist-vae-decoder/infer", body, {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
                outcome: Any = response.status
        except urllib.error.HTTPError as exc:
            outcome = (exc.code, exc.read()[:300].decode(errors="replace"))
        except (OSError, urllib.error.URLError):
            outcome = "connection closed or refused"
            time.sleep(0.05)
        with lock:
            found[outcome] += 1
            if outcome not in (200, "connection closed or refused") and outcome[0] != 503:
                odd.append((time.monotonic(), outcome))


@pytest.mark.parametrize("replicas", [0, 1, 2])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_under_load_stops_it_promptly_and_cleanly(tmp_path: Path, replicas: int, sig: signal.Signals) -> None:
    running = start_server(tmp_path, "--replicas", str(replicas))
    family = _descendants(running.proc.pid)
    assert len(family) >= replicas
    grpc_clients = subprocess.Popen(
        [sys.executable, "-c", _GRPC_LOAD, str(running.grpc_port), "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    grpc_lines: list[str] = []
    reader = _lines(grpc_clients.stdout, grpc_lines)
    found: Counter[Any] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    odd: list[tuple[float, Any]] = []
    clients = [threading.Thread(target=_rest_load, args=(running, stop, found, lock, odd)) for _ in range(16)]
    try:
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 120
        # Under load from both protocols, however slow the machine is today.
        while (found[200] < 50 or "running" not in grpc_lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found[200] >= 50 and "running" in grpc_lines, (dict(found), grpc_lines)
        running.proc.send_signal(sig)
        signalled = time.monotonic()
        try:
            code = running.proc.wait(45)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 45 s after {sig.name}:\n{running.log.read_text()[-3000:]}")
        took = time.monotonic() - signalled
    finally:
        stop.set()
        stop_group(running.proc)  # whatever is left of it, if it did not stop
        for thread in clients:
            thread.join(90)
        try:
            grpc_clients.wait(120)
        except subprocess.TimeoutExpired:
            grpc_clients.kill()
        reader.join(10)
    log = running.log.read_text()
    assert code == 0, log[-3000:]
    # GRACE (5 s) for requests in flight, then the workers: well under the 45 s waited above.
    assert took < 30, f"{took:.1f} s to stop"
    # 503 or a closed connection, never a 500; when each came (seconds from the signal) and the log say why.
    when = [f"{at - signalled:+.2f} s: {outcome}" for at, outcome in odd]
    assert odd == [], (dict(found), when[:5], when[-5:], log[-3000:])
    assert "Traceback" not in log and "KeyError" not in log, log[-3000:]
    # Besides "running" and the final tally, a line per status other than OK and UNAVAILABLE: only CANCELLED.
    assert grpc_clients.returncode == 0 and grpc_lines[-1].startswith("{"), grpc_lines
    odd = [line for line in grpc_lines[:-1] if line != "running"]
    assert all(line.startswith("CANCELLED") for line in odd), odd
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in family if _alive(p)] == [], "worker processes left behind"
    assert _group(running.proc.pid) == [], "processes of its group left behind"


def test_max_body_is_a_size_with_a_unit(tmp_path: Path) -> None:
    for value, fragment in (("12XB", "not a size"), ("1KiB", "between"), ("3GiB", "between")):
        done = subprocess.run(
            [sys.executable, "-c", "from digitvae.cli.main import main; main()", "serve", "--max-body", value],
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k != "DIGITVAE_DEBUG"},
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert fragment in done.stderr and "--max-body" in done.stderr, done.stderr


def test_a_smaller_max_body_refuses_over_rest_and_grpc(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--max-body", "64KiB")
    try:
        small = {"inputs": [tensor("z", np.zeros((8, 32)))]}
        assert running.post("/v2/models/mnist-vae-decoder/infer", small)[0] == 200
        status, reply = running.post(
            "/v2/models/mnist-vae-decoder/infer", {"inputs": [tensor("z", np.zeros((512, 32)))]}
        )
        assert status == 413 and "65,536 bytes" in reply["error"], reply
        cases = {
            "small": [
                "mnist-vae-decoder",
                [["z", "FP32", [8, 32]]],
                [np.zeros((8, 32), np.float32).tobytes().hex()],
                False,
            ],
            "large": [
                "mnist-vae-decoder",
                [["z", "FP32", [1024, 32]]],
                [np.zeros((1024, 32), np.float32).tobytes().hex()],
                False,
            ],
        }
        done = subprocess.run(
            [sys.executable, "-c", _GRPC_SENDER, str(running.grpc_port)],
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        answers = json.loads(done.stdout)
        assert answers["small"][0] == "OK" and answers["large"][0] == "RESOURCE_EXHAUSTED", answers
    finally:
        stop_group(running.proc)
