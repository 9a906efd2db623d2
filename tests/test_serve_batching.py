"""`digitvae serve --batch-size/--batch-delay`: concurrent requests share model calls, each gets its own answer.

The batcher itself is checked with a row-wise stand-in for a model; a real server (REST and
gRPC, with its Prometheus metrics) shows that requests answered in batches get exactly the
digits they get alone, and that one bad request in a batch fails alone.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import free_ports

from digitvae.runtime import DigitVAE
from digitvae.runtime.errors import InputError

HAVE_MLSERVER = importlib.util.find_spec("mlserver") is not None
needs_serve = pytest.mark.skipif(not HAVE_MLSERVER, reason="needs the [serve] extra (MLServer)")
on_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server tests run on Linux")
START_TIMEOUT = 120


# --- the batcher, with a row-wise stand-in for a model ---------------------------------------


class Recorder:
    """A row-wise model: out = x * 10 + kind; refuses a negative x as the runtime refuses bad values."""

    def __init__(self) -> None:
        self.calls: list[tuple[Hashable, int]] = []

    def __call__(self, kind: Hashable, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["x"]
        self.calls.append((kind, len(x)))
        if (x < 0).any():
            raise InputError(f"x must not be negative, got {x.min()}")
        if (x == 999).any():
            raise RuntimeError("the model broke")
        return {"out": x * 10 + int(str(kind)), "sum": x.sum(axis=1, keepdims=True)}


def _batcher(max_rows: int, delay: float) -> tuple[Any, Recorder]:
    from digitvae.serve.batching import Batcher

    model = Recorder()
    observed: list[tuple[int, int]] = []
    batcher = Batcher(model, max_rows, delay, lambda rows, requests: observed.append((rows, requests)))
    batcher.observed = observed
    return batcher, model


async def _gather(batcher: Any, requests: list[tuple[int, np.ndarray]]) -> list[Any]:
    return await asyncio.gather(*(batcher(kind, {"x": x}) for kind, x in requests), return_exceptions=True)


def _requests(count: int, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(1, rng.integers(0, 100, (int(rng.integers(1, 6)), 3))) for _ in range(count)]


@needs_serve
def test_concurrent_requests_share_calls_and_each_gets_its_own_rows() -> None:
    batcher, model = _batcher(max_rows=16, delay=5.0)
    requests = _requests(20)
    results = asyncio.run(_gather(batcher, requests))
    for (kind, x), got in zip(requests, results):
        np.testing.assert_array_equal(got["out"], x * 10 + kind)
        np.testing.assert_array_equal(got["sum"], x.sum(axis=1, keepdims=True))
    sizes = [rows for _, rows in model.calls]
    assert sum(sizes) == sum(len(x) for _, x in requests)
    assert max(sizes) <= 16 and len(sizes) < len(requests) / 3  # batched, within the bound
    assert [rows for rows, _ in batcher.observed] == sizes
    assert sum(n for _, n in batcher.observed) == len(requests)


@needs_serve
def test_a_lone_client_does_not_wait_and_a_busy_one_waits_a_quarter_of_the_delay() -> None:
    batcher, model = _batcher(max_rows=64, delay=0.4)

    async def one() -> float:
        began = time.perf_counter()
        out = await batcher(3, {"x": np.ones((2, 3), np.int64)})
        np.testing.assert_array_equal(out["out"], np.full((2, 3), 13))
        return time.perf_counter() - began

    async def run() -> list[float]:
        lone = []
        for _ in range(3):
            await asyncio.sleep(0.15)  # requests further apart than a quarter of the delay (0.1 s)
            lone.append(await one())
        await _gather(batcher, [(3, np.ones((1, 3), np.int64))] * 4)  # several at once
        after_busy = await one()
        await asyncio.sleep(0.15)
        return [*lone, after_busy, await one()]

    took = asyncio.run(run())
    # Alone, a request runs on the next turn of the loop; after a batch of several, the next one
    # waits until no other request joined for a quarter of the delay, and then, having run alone
    # and arrived apart from it, the one after it does not wait.
    assert max(took[:3]) < 0.09 and 0.1 <= took[3] < 0.39 and took[4] < 0.09, took
    assert [rows for _, rows in model.calls] == [2, 2, 2, 4, 2, 2]


@needs_serve
def test_requests_arriving_close_together_wait_for_each_other() -> None:
    batcher, model = _batcher(max_rows=64, delay=0.4)

    async def run() -> None:
        # One after another, each arriving 20 ms after the one before: within a quarter of the delay.
        tasks = []
        for i in range(5):
            tasks.append(asyncio.ensure_future(batcher(1, {"x": np.full((1, 3), i)})))
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks)

    asyncio.run(run())
    # The first ran at once (nothing came before it); the next four waited for each other.
    assert [rows for _, rows in model.calls] == [1, 4]


@needs_serve
def test_batches_never_pass_max_rows_and_large_requests_run_alone() -> None:
    batcher, model = _batcher(max_rows=8, delay=5.0)
    requests = [(1, np.full((rows, 3), i)) for i, rows in enumerate([3, 3, 3, 12, 5, 2, 8, 1, 1])]
    results = asyncio.run(_gather(batcher, requests))
    for (kind, x), got in zip(requests, results):
        np.testing.assert_array_equal(got["out"], x * 10 + kind)
    # 3+3 (the next 3 would pass 8), 12 alone, 3+5, 8 alone, 2+1+1.
    assert sorted(rows for _, rows in model.calls) == [4, 6, 8, 8, 12]


@needs_serve
def test_kinds_are_never_mixed_in_a_call() -> None:
    batcher, model = _batcher(max_rows=64, delay=5.0)
    rng = np.random.default_rng(3)
    requests = [(i % 3, rng.integers(0, 9, (2, 3))) for i in range(12)]
    results = asyncio.run(_gather(batcher, requests))
    for (kind, x), got in zip(requests, results):
        np.testing.assert_array_equal(got["out"], x * 10 + kind)
    assert sorted(model.calls) == [(0, 8), (1, 8), (2, 8)]


@needs_serve
def test_one_bad_request_fails_alone_and_the_others_get_their_rows() -> None:
    batcher, model = _batcher(max_rows=64, delay=5.0)
    requests = _requests(10, seed=1)
    requests[4] = (1, np.array([[1, -5, 2]]))
    results = asyncio.run(_gather(batcher, requests))
    assert isinstance(results[4], InputError) and "must not be negative" in str(results[4])
    for i, ((kind, x), got) in enumerate(zip(requests, results)):
        if i != 4:
            np.testing.assert_array_equal(got["out"], x * 10 + kind)
    # One batched call that failed, then each request alone.
    assert model.calls[0] == (1, sum(len(x) for _, x in requests)) and len(model.calls) == 11


@needs_serve
def test_requests_with_feeds_of_unequal_rows_never_join_a_batch() -> None:
    from digitvae.serve.batching import Batcher

    calls: list[tuple[int, int]] = []

    def paired(kind: Hashable, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x, label = feeds["x"], feeds["label"]
        calls.append((len(x), len(label)))
        if len(x) != len(label):
            raise InputError(f"label has {len(label)} rows for {len(x)} codes")
        return {"out": x[:, 0] * 10 + label}

    batcher = Batcher(paired, 64, 5.0)
    # Two wrong requests whose rows would add up to a well-formed batch (2+3 codes, 3+2 labels).
    requests = [
        {"x": np.ones((2, 3), np.int64), "label": np.zeros(3, np.int64)},
        {"x": np.ones((3, 3), np.int64), "label": np.zeros(2, np.int64)},
        {"x": np.full((1, 3), 2), "label": np.array([5])},
    ]

    async def run() -> list[Any]:
        return await asyncio.gather(*(batcher(0, r) for r in requests), return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[0], InputError) and isinstance(results[1], InputError)
    np.testing.assert_array_equal(results[2]["out"], [25])
    assert sorted(calls) == [(1, 1), (2, 3), (3, 2)]


@needs_serve
def test_a_failure_of_the_server_itself_fails_the_whole_batch() -> None:
    batcher, _ = _batcher(max_rows=64, delay=5.0)
    requests = _requests(4, seed=2)
    requests[1] = (1, np.array([[999, 1, 1]]))
    results = asyncio.run(_gather(batcher, requests))
    assert all(isinstance(r, RuntimeError) for r in results)


@needs_serve
def test_a_cancelled_request_is_not_computed() -> None:
    batcher, model = _batcher(max_rows=64, delay=5.0)

    async def run() -> Any:
        await _gather(batcher, [(1, np.full((1, 3), 1))] * 3)  # a busy kind: the next batch waits
        gone = asyncio.ensure_future(batcher(1, {"x": np.full((4, 3), 7)}))
        kept = asyncio.ensure_future(batcher(1, {"x": np.full((2, 3), 1)}))
        await asyncio.sleep(0)
        gone.cancel()
        return await kept

    out = asyncio.run(run())
    np.testing.assert_array_equal(out["out"], np.full((2, 3), 11))
    assert model.calls == [(1, 3), (1, 2)]


# --- a real server ---------------------------------------------------------------------------


def _command() -> list[str]:
    script = Path(sys.executable).with_name("digitvae")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from digitvae.cli.main import main; main()"]


class Served:
    """A running `digitvae serve` with batching on and metrics.

    Batches wait up to 20 ms (5 ms without a new request): long enough for gRPC requests, which
    reach the model further apart than REST ones, to be batched on a busy machine too.
    """

    def __init__(self, tmp: Path) -> None:
        self.http, self.grpc, self.metrics = free_ports(3)
        self.log = tmp / "serve.log"
        env = {k: v for k, v in os.environ.items() if k != "DIGITVAE_DEBUG" and not k.startswith("MLSERVER")}
        env["TMPDIR"] = str(tmp)
        args = [
            "--port",
            self.http,
            "--grpc-port",
            self.grpc,
            "--metrics-port",
            self.metrics,
            "--batch-size",
            64,
            "--batch-delay",
            20000,
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*_command(), "serve", "-m", "mnist-vae", "-m", "mnist-cvae", *map(str, args)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        for model in ("mnist-vae", "mnist-cvae"):
            for role in ("encoder", "decoder", "generate"):
                while self.status(f"/v2/models/{model}-{role}/ready") != 200:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.kill()
                        pytest.fail(f"the server did not start:\n{self.log.read_text()[-3000:]}")
                    time.sleep(0.2)

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def post(self, model: str, inputs: dict[str, np.ndarray]) -> tuple[int, Any]:
        body = {"inputs": [_tensor(k, v) for k, v in inputs.items()]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/v2/models/{model}/infer",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def outputs(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        status, reply = self.post(model, inputs)
        assert status == 200, reply
        return {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in reply["outputs"]}

    def batched(self, model: str) -> tuple[float, float]:
        """Return (requests, model calls) the batcher has counted for a served model, from /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as response:
            text = response.read().decode()
        values = {}
        for part in ("sum", "count"):
            pattern = rf'^digitvae_batch_requests_{part}{{[^}}]*model_name="{re.escape(model)}"[^}}]*}} (\S+)$'
            found = re.search(pattern, text, re.MULTILINE)
            values[part] = float(found.group(1)) if found else 0.0
        return values["sum"], values["count"]

    def batched_all(self) -> tuple[float, float]:
        """Return (requests, model calls) the batcher has counted over every served model."""
        counts = [self.batched(f"{m}-{r}") for m in ("mnist-vae", "mnist-cvae") for r in ("decoder", "generate")]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def _tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    datatype = "INT64" if array.dtype.kind in "iu" else "FP32"
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("batching"))
    yield server
    if server.proc.poll() is None:
        server.kill()


def _mixed_requests() -> list[tuple[str, dict[str, np.ndarray]]]:
    """Seeded generate requests of 1-8 digits (with and without digits asked for), decoder and sampler requests."""
    rng = np.random.default_rng(8)
    out: list[tuple[str, dict[str, np.ndarray]]] = []
    for i in range(40):
        n = np.array([1 + i % 8])
        seed = np.array([100 + i])
        kind = i % 5
        if kind == 0:
            out.append(("mnist-vae-generate", {"n": n, "seed": seed}))
        elif kind == 1:
            out.append(("mnist-cvae-generate", {"n": n, "seed": seed, "digit": np.array([i % 10])}))
        elif kind == 2:
            out.append(("mnist-vae-decoder", {"z": rng.standard_normal((int(n[0]), 32), dtype=np.float32)}))
        elif kind == 3:
            label = rng.integers(0, 10, int(n[0]))
            out.append(
                ("mnist-cvae-decoder", {"z": rng.standard_normal((int(n[0]), 32), dtype=np.float32), "label": label})
            )
        else:
            m = int(n[0])
            noise = rng.standard_normal((m, 32), dtype=np.float32)
            out.append(
                (
                    "mnist-vae-generate",
                    {"noise": noise, "uniform": rng.random(m, dtype=np.float32), "label": np.full(m, -1)},
                )
            )
    return out


@pytest.mark.heavy
@needs_serve
@on_linux
def test_concurrent_rest_requests_get_exactly_their_digits_alone(served: Served) -> None:
    requests = _mixed_requests()
    alone = [served.outputs(model, inputs) for model, inputs in requests]  # one at a time: batches of one
    before = served.batched("mnist-vae-generate")
    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(lambda r: served.outputs(*r), requests * 3))
    for i, got in enumerate(together):
        expected = alone[i % len(requests)]
        assert got.keys() == expected.keys()
        for name in got:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"request {i % len(requests)}: {name}")
    # Seeded digits are the runtime's, with the one onnxruntime thread the server runs with.
    vae, cvae = DigitVAE.load("mnist-vae", threads=1), DigitVAE.load("mnist-cvae", threads=1)
    for (model, inputs), got in zip(requests, together):
        if model.endswith("generate") and "seed" in inputs:
            runtime = vae if model.startswith("mnist-vae") else cvae
            digit = int(inputs["digit"][0]) if "digit" in inputs else None
            expected_image = runtime.generate(int(inputs["n"][0]), seed=int(inputs["seed"][0]), digit=digit)
            np.testing.assert_array_equal(got["image"], expected_image)
    # The concurrent requests were answered in batches: fewer model calls than requests.
    after = served.batched("mnist-vae-generate")
    requests_seen, calls = after[0] - before[0], after[1] - before[1]
    assert requests_seen == sum(3 for m, _ in requests if m == "mnist-vae-generate")
    assert calls < requests_seen, (requests_seen, calls)


_GRPC_CLIENT = """
import json, sys, threading
from concurrent.futures import ThreadPoolExecutor
import grpc
import numpy as np
from mlserver.grpc import dataplane_pb2 as pb, dataplane_pb2_grpc as pb_grpc

requests = json.load(sys.stdin)
local = threading.local()

def send(spec):
    if not hasattr(local, "stub"):  # a channel per client thread, as separate clients have
        channel = grpc.insecure_channel("127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        local.stub = pb_grpc.GRPCInferenceServiceStub(channel)
    stub = local.stub
    model, inputs = spec
    arrays = {{k: np.asarray(v, np.int64 if k in ("n", "seed", "digit", "label") else np.float32) for k, v in inputs.items()}}
    tensors = [pb.ModelInferRequest.InferInputTensor(name=k, datatype="INT64" if a.dtype == np.int64 else "FP32", shape=list(a.shape))
               for k, a in arrays.items()]
    request = pb.ModelInferRequest(model_name=model, inputs=tensors, raw_input_contents=[a.astype(a.dtype.newbyteorder("<")).tobytes() for a in arrays.values()])
    try:
        reply = stub.ModelInfer(request, timeout=60)
    except grpc.RpcError as exc:
        return {{"error": exc.code().name, "details": exc.details()}}
    out = {{}}
    for i, o in enumerate(reply.outputs):
        if reply.raw_output_contents:
            values = np.frombuffer(reply.raw_output_contents[i], "<f4")
        else:
            values = np.asarray(o.contents.fp32_contents, np.float32)
        out[o.name] = values.reshape(list(o.shape)).tolist()
    return out

alone = [send(r) for r in requests]
with ThreadPoolExecutor(32) as pool:
    together = list(pool.map(send, requests * 3))
json.dump({{"alone": alone, "together": together}}, sys.stdout)
"""


@pytest.mark.heavy
@needs_serve
@on_linux
def test_concurrent_grpc_raw_requests_get_exactly_their_digits_alone(served: Served) -> None:
    # One kind of request, so that they reach the same batcher often enough to be batched: gRPC
    # requests reach the models further apart than REST ones. And a few of every other kind.
    requests = [("mnist-vae-generate", {"n": np.array([1 + i % 8]), "seed": np.array([200 + i])}) for i in range(40)]
    requests += _mixed_requests()[:10]
    specs = [(model, {k: v.tolist() for k, v in inputs.items()}) for model, inputs in requests]
    before = served.batched_all()
    # In a process of its own, as the other gRPC client tests: protobuf names are registered once per process.
    done = subprocess.run(
        [sys.executable, "-c", _GRPC_CLIENT.format(port=served.grpc)],
        input=json.dumps(specs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    replies = json.loads(done.stdout)
    assert not any("error" in r for r in replies["alone"]), replies["alone"]
    for i, got in enumerate(replies["together"]):
        expected = replies["alone"][i % len(requests)]
        assert got.keys() == expected.keys()
        for name in got:
            a, b = np.asarray(got[name], np.float32), np.asarray(expected[name], np.float32)
            np.testing.assert_array_equal(a, b, err_msg=f"request {i % len(requests)}: {name}")
    # And what REST answers alone, bit for bit.
    for (model, inputs), got in zip(requests, replies["alone"]):
        rest = served.outputs(model, inputs)
        np.testing.assert_array_equal(np.asarray(got["image"], np.float32), rest["image"])
    after = served.batched_all()
    assert after[1] - before[1] < after[0] - before[0], (before, after)  # batched: fewer calls than requests


@pytest.mark.heavy
@needs_serve
@on_linux
def test_a_bad_request_in_a_batch_fails_alone(served: Served) -> None:
    rng = np.random.default_rng(4)
    good = [{"z": rng.standard_normal((3, 32), dtype=np.float32), "label": rng.integers(0, 10, 3)} for _ in range(31)]
    # Well formed, so it reaches the model with the others; the decoder refuses the label 12.
    bad = {"z": rng.standard_normal((2, 32), dtype=np.float32), "label": np.array([3, 12])}
    requests = [*good[:15], bad, *good[15:]]
    expected = [served.outputs("mnist-cvae-decoder", inputs) for inputs in good]
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda inputs: served.post("mnist-cvae-decoder", inputs), requests))
    status, reply = replies.pop(15)
    assert status == 400 and "label" in reply["error"], reply
    for (status, reply), want in zip(replies, expected):
        assert status == 200, reply
        got = {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in reply["outputs"]}
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    assert served.status("/v2/health/ready") == 200


@pytest.mark.heavy
@needs_serve
@on_linux
def test_several_onnxruntime_threads_with_batching_is_one_error_line() -> None:
    done = subprocess.run(
        [*_command(), "serve", "--threads", "2", "--batch-size", "64"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--batch-size 1" in errors[0], done.stderr


@pytest.mark.heavy
@needs_serve
@on_linux
def test_sigterm_still_drains_a_batching_server(served: Served) -> None:
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(served.post, "mnist-vae-generate", {"n": np.array([4])}) for _ in range(64)]
        time.sleep(0.05)
        assert served.stop() == 0
        statuses = [f.result()[0] if not f.exception() else None for f in futures]
    # Every request was answered 200 or refused at the door (connection error), never 500.
    assert 500 not in statuses and statuses.count(200) > 0, statuses
