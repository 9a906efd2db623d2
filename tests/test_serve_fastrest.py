"""REST infer requests skip FastAPI's route and get byte for byte the answers the route gives (`--plain-rest`)."""

from __future__ import annotations

import gzip
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_serve import HAVE_MLSERVER, Server, start_server, stop_group

pytestmark = [
    pytest.mark.heavy,  # starts MLServer processes
    pytest.mark.skipif(not HAVE_MLSERVER, reason="needs the [serve] extra (MLServer)"),
]

JSON = {"Content-Type": "application/json"}
Z = [0.25] * 32
DECODE = {"id": "r1", "inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 32], "data": Z}]}
GENERATE = {
    "id": "g1",
    "inputs": [
        {"name": "n", "datatype": "INT64", "shape": [1], "data": [3]},
        {"name": "seed", "datatype": "INT64", "shape": [1], "data": [5]},
    ],
}

#: (method, path, body, headers): what the infer routes take and refuse, and their neighbours.
CASES = {
    "decode": ("POST", "/v2/models/mnist-vae-decoder/infer", json.dumps(DECODE), JSON),
    "one output": (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        json.dumps({**DECODE, "outputs": [{"name": "image"}]}),
        JSON,
    ),
    "gzip answer": (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        json.dumps(DECODE),
        {**JSON, "Accept-Encoding": "gzip"},
    ),
    "gzip request": (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        gzip.compress(json.dumps(DECODE).encode()),
        {**JSON, "Content-Encoding": "gzip"},
    ),
    "no content type": ("POST", "/v2/models/mnist-vae-decoder/infer", json.dumps(DECODE), {}),
    "parameters": (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        json.dumps({**DECODE, "parameters": {"content_type": "np", "custom": 1}}),
        JSON,
    ),
    "generate": ("POST", "/v2/models/mnist-vae-generate/infer", json.dumps(GENERATE), JSON),
    "conditional": (
        "POST",
        "/v2/models/mnist-cvae-decoder/infer",
        json.dumps(
            {
                "id": "c",
                "inputs": [
                    {"name": "z", "datatype": "FP32", "shape": [2, 16], "data": [0.5] * 32},
                    {"name": "label", "datatype": "INT64", "shape": [2], "data": [3, 7]},
                ],
            }
        ),
        JSON,
    ),
    "versioned": ("POST", "/v2/models/mnist-vae-decoder/versions/1/infer", json.dumps(DECODE), JSON),
    "unknown model": ("POST", "/v2/models/nope/infer", json.dumps(DECODE), JSON),
    "wrong shape": (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        json.dumps({"id": "w", "inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 31], "data": Z[:31]}]}),
        JSON,
    ),
    "overflow": (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        json.dumps({"id": "o", "inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 32], "data": [1e39] * 32}]}),
        JSON,
    ),
    "truncated JSON": ("POST", "/v2/models/mnist-vae-decoder/infer", '{"inputs": [', JSON),
    "bare NaN": (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        '{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 32], "data": [NaN]}]}',
        JSON,
    ),
    "unknown datatype": (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        '{"inputs": [{"name": "z", "datatype": "FP99", "shape": [1], "data": [1]}]}',
        JSON,
    ),
    "no inputs": ("POST", "/v2/models/mnist-vae-decoder/infer", '{"id": "x"}', JSON),
    "GET": ("GET", "/v2/models/mnist-vae-decoder/infer", None, {}),
    "generate route": ("POST", "/v2/models/mnist-vae-decoder/generate", json.dumps(DECODE), JSON),
    "metadata": ("GET", "/v2/models/mnist-vae-decoder", None, {}),
}


def _answer(server: Server, method: str, path: str, body: str | bytes | None, headers: dict[str, str]) -> tuple:
    """Return status, headers (less Date) and body, gzip undone (its header holds a time)."""
    parts = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    got = [(k.lower(), v) for k, v in response.getheaders() if k.lower() != "date"]
    if ("content-encoding", "gzip") in got:
        data = gzip.decompress(data)
    return response.status, got, data


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    models = ("-m", "mnist-vae", "-m", "mnist-cvae")
    fast = start_server(tmp_path_factory.mktemp("fast"), *models)
    try:
        plain = start_server(tmp_path_factory.mktemp("plain"), *models, "--plain-rest")
    except BaseException:
        stop_group(fast.proc)
        raise
    yield fast, plain
    stop_group(fast.proc)
    stop_group(plain.proc)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_answer_as_fastapis_route(servers: tuple[Server, Server], case: str) -> None:
    fast, plain = servers
    got, want = _answer(fast, *CASES[case]), _answer(plain, *CASES[case])
    assert got[0] == want[0], f"status {got[0]}, FastAPI's {want[0]}: {got[2][:300]!r}"
    assert got[1] == want[1]
    assert got[2] == want[2]


def test_a_request_without_an_id_gets_a_new_one(servers: tuple[Server, Server]) -> None:
    fast, _ = servers
    body = json.dumps({"inputs": DECODE["inputs"]})
    ids = {
        json.loads(_answer(fast, "POST", "/v2/models/mnist-vae-decoder/infer", body, JSON)[2])["id"] for _ in range(2)
    }
    assert len(ids) == 2 and all(len(i) == 36 for i in ids)  # uuid4s, as MLServer makes them


def test_the_model_metrics_count_requests_on_the_fast_path(tmp_path: Path) -> None:
    from helpers import free_ports

    (metrics_port,) = free_ports(1)
    running = start_server(tmp_path, "--metrics-port", str(metrics_port))
    try:
        for _ in range(3):
            assert _answer(running, *CASES["decode"])[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        stop_group(running.proc)
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("model_infer_request_success") and 'model="mnist-vae-decoder"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) == 3.0, counted or text[:2000]
