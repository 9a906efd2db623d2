#!/usr/bin/env python3
"""Measure `digitvae serve`: start-up time, memory, and throughput and latency under concurrent clients.

Starts each server configuration itself on free loopback ports (all of them at once, idle
while another is measured), or measures a running one with --url. A case is one request kind
sent over REST (v2 JSON) or gRPC (tensors as raw bytes, `raw_input_contents`) from C client
threads, each on its own keep-alive connection, for --seconds; it reports digits per second
and the p50 and p99 request latency. Cases and configurations are interleaved (every
configuration measures a case before the next case starts) and the whole round is repeated
--rounds times, so that other load on the machine falls on all configurations alike. The
clients run on the same machine and cost CPU too: compare figures from one run, not across
machines. The CPU model and the load average are printed with the figures.

    python scripts/serve_bench.py                       # batching off and on, 1 and 32 clients
    python scripts/serve_bench.py --server "main=/path/to/other/venv/bin/digitvae serve" --server on=
    python scripts/serve_bench.py --replicas 0,1,2 --cases decoder1,decoder64 --rounds 1 --json bench.json
    python scripts/serve_bench.py --url http://127.0.0.1:8000 --grpc 127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SERVED_ROLES = ("encoder", "decoder", "generate")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def rss_kib(pid: int) -> int:
    """Return the resident memory of a process and all its descendants, KiB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total


def get(url: str, path: str) -> int:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@dataclass
class Server:
    """A server configuration: its label, the command that starts it and, once started, where it listens."""

    label: str
    command: list[str]
    url: str = ""
    grpc: str = ""
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    rss_mib: float = 0.0
    stop_s: float = 0.0


def default_command() -> list[str]:
    script = Path(sys.executable).with_name("digitvae")
    if script.is_file():
        return [str(script), "serve"]
    return [sys.executable, "-c", "from digitvae.cli.main import main; main()", "serve"]


def start(server: Server, model: str) -> None:
    """Start a server configuration and wait until every role of the model is ready."""
    http_port, grpc_port = free_ports(2)
    began = time.perf_counter()
    server.proc = subprocess.Popen(
        [*server.command, "-m", model, "--port", str(http_port), "--grpc-port", str(grpc_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server.url, server.grpc = f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
    for role in SERVED_ROLES:
        while True:
            if server.proc.poll() is not None:
                sys.exit(f"{server.label}: the server exited with {server.proc.returncode}")
            try:
                if get(server.url, f"/v2/models/{model}-{role}/ready") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
    server.startup_s = time.perf_counter() - began


def stop(proc: subprocess.Popen[bytes]) -> float:
    began = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.perf_counter() - began


@dataclass(frozen=True)
class Case:
    """One request kind: its name, the served model it goes to, its inputs and how many digits it asks for."""

    name: str
    role: str
    inputs: dict[str, np.ndarray]
    digits: int


def cases(names: list[str], latent_dim: int) -> list[Case]:
    """Return the request kinds named: decoderR (R codes per request) and generateN (n = N, seeded)."""
    rng = np.random.default_rng(0)
    out = []
    for name in names:
        match = re.fullmatch(r"(decoder|generate)([1-9][0-9]*)", name)
        rows = int(match.group(2)) if match else 0
        if name.startswith("decoder") and rows > 0:
            out.append(Case(name, "decoder", {"z": rng.standard_normal((rows, latent_dim), dtype=np.float32)}, rows))
        elif name.startswith("generate") and rows > 0:
            out.append(Case(name, "generate", {"n": np.array([rows]), "seed": np.array([7])}, rows))
        else:
            sys.exit(f"unknown case {name!r}: decoderR or generateN, e.g. decoder1, generate64")
    return out


def tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    datatype = "INT64" if array.dtype.kind in "iu" else "FP32"
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


def rest_client(url: str, path: str, case: Case) -> Callable[[], Callable[[], bool]]:
    """Return a maker of REST senders: each holds one keep-alive connection and sends the case's request."""
    body = json.dumps({"inputs": [tensor(k, v) for k, v in case.inputs.items()], "outputs": [{"name": "image"}]})
    parts = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/json"}

    def make() -> Callable[[], bool]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

        def send() -> bool:
            conn.request("POST", path, body.encode(), headers)
            response = conn.getresponse()
            response.read()
            return response.status == 200

        return send

    return make


def grpc_client(target: str, model: str, case: Case) -> Callable[[], Callable[[], bool]]:
    """Return a maker of gRPC senders: each holds one channel and sends the case's tensors as raw bytes."""
    import grpc
    from mlserver.grpc import dataplane_pb2 as pb
    from mlserver.grpc import dataplane_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=k, datatype="INT64" if v.dtype.kind in "iu" else "FP32", shape=list(v.shape)
            )
            for k, v in case.inputs.items()
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="image")],
        raw_input_contents=[
            np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<")).tobytes() for v in case.inputs.values()
        ],
    )

    def make() -> Callable[[], bool]:
        # One channel per client: its own connection, as each REST client has.
        channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def send() -> bool:
            try:
                stub.ModelInfer(request, timeout=120)
            except grpc.RpcError:
                return False
            return True

        return send

    return make


def load(make: Callable[[], Callable[[], bool]], clients: int, seconds: float) -> tuple[list[float], float, int]:
    """Send from `clients` threads for `seconds`; return latencies (s), elapsed time and failures."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    barrier = threading.Barrier(clients + 1)
    deadline = [float("inf")]  # until every client is warm

    def client(i: int) -> None:
        send = make()
        send()  # warm the connection up
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            t0 = time.perf_counter()
            ok = send()
            latencies[i].append(time.perf_counter() - t0)
            failures[i] += not ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    for t in threads:
        t.join()
    return [x for xs in latencies for x in xs], time.perf_counter() - began, sum(failures)


def measure(
    servers: list[Server], model: str, kinds: list[Case], protocols: list[str], concurrency: list[int], args: Any
) -> list[dict[str, Any]]:
    """Measure every case on every server, interleaved, --rounds times; return one row per measurement."""
    rows = []
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_} (load average {_loadavg()})", flush=True)
        for case in kinds:
            for protocol in protocols:
                for clients in concurrency:
                    for server in servers:
                        name = f"{model}-{case.role}"
                        if protocol == "rest":
                            make = rest_client(server.url, f"/v2/models/{name}/infer", case)
                        else:
                            make = grpc_client(server.grpc, name, case)
                        lat, elapsed, failed = load(make, clients, args.seconds)
                        lat_ms = np.asarray(lat) * 1e3
                        row = {
                            "round": round_,
                            "server": server.label,
                            "case": case.name,
                            "protocol": protocol,
                            "concurrency": clients,
                            "requests": len(lat),
                            "failed": failed,
                            "digits_per_s": len(lat) * case.digits / elapsed,
                            "p50_ms": float(np.percentile(lat_ms, 50)),
                            "p99_ms": float(np.percentile(lat_ms, 99)),
                            "loadavg": _loadavg(),
                        }
                        rows.append(row)
                        print(
                            f"  {server.label:>10} {case.name:11} {protocol:4} c={clients:<3} "
                            f"{row['digits_per_s']:9.0f} digits/s  p50 {row['p50_ms']:7.2f} ms  "
                            f"p99 {row['p99_ms']:7.2f} ms  ({len(lat)} requests, {failed} failed)",
                            flush=True,
                        )
    return rows


def summary(rows: list[dict[str, Any]], servers: list[Server]) -> None:
    """Print each case's medians over the rounds per server, and its digits/s ratio to the first server.

    The ratio is the median of the ratios within each round, where the servers were measured
    one after the other under the same load from the rest of the machine.
    """
    print("\nmedians over rounds: digits/s (p50 / p99 ms), and x the first configuration's digits/s in the same round:")
    keys = sorted({(r["case"], r["protocol"], r["concurrency"]) for r in rows})
    for key in keys:
        mine = [r for r in rows if (r["case"], r["protocol"], r["concurrency"]) == key]
        first = {r["round"]: r["digits_per_s"] for r in mine if r["server"] == servers[0].label}
        parts = []
        for server in servers:
            own = [r for r in mine if r["server"] == server.label]
            if not own:
                continue
            rate = float(np.median([r["digits_per_s"] for r in own]))
            p50 = float(np.median([r["p50_ms"] for r in own]))
            p99 = float(np.median([r["p99_ms"] for r in own]))
            ratio = float(np.median([r["digits_per_s"] / first[r["round"]] for r in own if first.get(r["round"])]))
            parts.append(f"{server.label} {rate:,.0f} ({p50:.2f} / {p99:.2f}) x{ratio:.2f}")
        print(f"  {key[0]:11} {key[1]:4} c={key[2]:<3} " + " | ".join(parts))


def in_process(model: str, seconds: float) -> list[dict[str, Any]]:
    """The runtime called directly, one thread: what serving adds to."""
    from digitvae.runtime import DigitVAE

    vae = DigitVAE.load(model)
    rng = np.random.default_rng(0)
    rows = []
    for rows_per_call in (1, 64):
        z = rng.standard_normal((rows_per_call, vae.latent_dim), dtype=np.float32)
        lat = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            vae.decode(z)
            lat.append(time.perf_counter() - t0)
        lat_ms = np.asarray(lat) * 1e3
        rows.append(
            {
                "case": f"DigitVAE.decode batch {rows_per_call} (in process)",
                "digits_per_s": rows_per_call * len(lat) / float(np.sum(lat)),
                "p50_ms": float(np.percentile(lat_ms, 50)),
                "p99_ms": float(np.percentile(lat_ms, 99)),
            }
        )
        print(f"  {rows[-1]['case']}: {rows[-1]['digits_per_s']:.0f} digits/s, p50 {rows[-1]['p50_ms']:.3f} ms")
    return rows


def configurations(specs: list[str], replicas: list[int]) -> list[Server]:
    """Return the servers to start: each --server LABEL=COMMAND (empty: this `digitvae serve`), per --replicas."""
    servers = []
    for spec in specs or ["off=--batch-size 1", "on="]:
        label, _, rest = spec.partition("=")
        words = shlex.split(rest)
        # A spec's words are the whole command if it names one, else options to this digitvae serve.
        command = words if words and not words[0].startswith("-") else [*default_command(), *words]
        for r in replicas:
            suffix = f" r{r}" if len(replicas) > 1 else ""
            servers.append(Server(label + suffix, [*command, "--replicas", str(r)]))
    return servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--url", help="Measure this running server (REST) instead of starting one.")
    parser.add_argument("--grpc", help="With --url: its gRPC address, host:port.")
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        help="A configuration, LABEL=COMMAND or LABEL=OPTIONS (options to this `digitvae serve`); repeat. "
        "Default: off='--batch-size 1' and on='' (the defaults).",
    )
    parser.add_argument("--replicas", default="0", help="Comma-separated --replicas values, each with every --server.")
    parser.add_argument("--cases", default="decoder1,generate1", help="decoderR and generateN request kinds.")
    parser.add_argument("--protocols", default="rest,grpc")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="Seconds per case, protocol, concurrency and server."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Times the whole interleaved set is measured.")
    parser.add_argument("--json", help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    from digitvae.runtime.folders.locate import resolve_model_dir
    from digitvae.runtime.folders.reading import read_manifest

    latent_dim = read_manifest(resolve_model_dir(args.model)).latent_dim
    concurrency = [int(c) for c in args.concurrency.split(",")]
    protocols = args.protocols.split(",")
    kinds = cases(args.cases.split(","), latent_dim)
    print(f"CPU: {_cpu()} ({os.cpu_count()} logical cores); load average {_loadavg()}")
    report: dict[str, Any] = {
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join([Path(sys.argv[0]).name, *map(shlex.quote, sys.argv[1:])]),
        "loadavg_start": _loadavg(),
    }
    print("in process:")
    report["in_process"] = in_process(args.model, min(args.seconds, 2.0))
    if args.url:
        servers = [Server("url", [], url=args.url, grpc=args.grpc or "")]
        if not args.grpc:
            protocols = ["rest"]
    else:
        servers = configurations(args.server, [int(r) for r in args.replicas.split(",")])
    try:
        for server in servers:
            if server.proc is None and server.command:
                start(server, args.model)
                time.sleep(1)  # let the start-up work settle before reading memory
                server.rss_mib = rss_kib(server.proc.pid) / 1024 if server.proc else 0.0
                print(
                    f"{server.label}: {shlex.join(server.command)}: ready in {server.startup_s:.2f} s, "
                    f"{server.rss_mib:.0f} MiB resident (server and workers)"
                )
        rows = measure(servers, args.model, kinds, protocols, concurrency, args)
    finally:
        for server in servers:
            if server.proc is not None:
                server.stop_s = stop(server.proc)
    summary(rows, servers)
    print(f"load average at the end {_loadavg()}")
    report["loadavg_end"] = _loadavg()
    report["servers"] = [
        {"label": s.label, "command": s.command, "startup_s": s.startup_s, "rss_mib": s.rss_mib, "stop_s": s.stop_s}
        for s in servers
    ]
    report["rows"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def _cpu() -> str:
    """Return the CPU's model name, as lscpu gives it."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
