#!/usr/bin/env python3
"""Measure `digitvae serve`: start-up time, memory, and throughput and latency under concurrent clients.

Starts the server itself on free loopback ports (once per --replicas value, one after the other),
or measures a running one with --url. Each case sends v2 JSON requests from C client threads,
each on its own keep-alive connection, for --seconds; it reports digits per second and the
p50 and p99 request latency. The clients run on the same machine and cost CPU too: on a small
machine they compete with the server, so compare figures from one run, not across machines.

    python scripts/serve_bench.py                       # replicas 1, concurrency 1, 8, 32
    python scripts/serve_bench.py --replicas 0,1,2 --seconds 5 --json bench.json
    python scripts/serve_bench.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
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


def start(model: str, replicas: int, extra: list[str]) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start `digitvae serve`; return the process, its URL and the seconds until every role was ready."""
    http_port, grpc_port = free_ports(2)
    script = Path(sys.executable).with_name("digitvae")
    command = (
        [str(script)] if script.is_file() else [sys.executable, "-c", "from digitvae.cli.main import main; main()"]
    )
    began = time.perf_counter()
    proc = subprocess.Popen(
        [*command, "serve", "-m", model, "--port", str(http_port), "--grpc-port", str(grpc_port)]
        + ["--replicas", str(replicas), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{http_port}"
    for role in SERVED_ROLES:
        while True:
            if proc.poll() is not None:
                sys.exit(f"the server exited with {proc.returncode}")
            try:
                if get(url, f"/v2/models/{model}-{role}/ready") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
    return proc, url, time.perf_counter() - began


def stop(proc: subprocess.Popen[bytes]) -> float:
    began = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.perf_counter() - began


def tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    datatype = "INT64" if array.dtype.kind in "iu" else "FP32"
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


def cases(model: str, latent_dim: int) -> list[tuple[str, str, bytes, int]]:
    """Return (case, path, body, digits per request) for each measured request kind."""
    rng = np.random.default_rng(0)
    out = []
    for rows in (1, 64):
        z = rng.standard_normal((rows, latent_dim), dtype=np.float32)
        body = json.dumps({"inputs": [tensor("z", z)], "outputs": [{"name": "image"}]}).encode()
        out.append((f"decoder batch {rows}", f"/v2/models/{model}-decoder/infer", body, rows))
    for rows in (1, 64):
        body = json.dumps({"inputs": [tensor("n", np.array([rows]))], "outputs": [{"name": "image"}]}).encode()
        out.append((f"generate n={rows}", f"/v2/models/{model}-generate/infer", body, rows))
    return out


def load(url: str, path: str, body: bytes, clients: int, seconds: float) -> tuple[list[float], float, int]:
    """Send the request from `clients` threads for `seconds`; return latencies (s), elapsed time, failures."""
    parts = urllib.parse.urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    barrier = threading.Barrier(clients + 1)
    deadline = [float("inf")]  # until every client is warm

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        headers = {"Content-Type": "application/json"}
        conn.request("POST", path, body, headers)  # warm the connection up
        conn.getresponse().read()
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            t0 = time.perf_counter()
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            latencies[i].append(time.perf_counter() - t0)
            failures[i] += response.status != 200
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    for t in threads:
        t.join()
    return [x for xs in latencies for x in xs], time.perf_counter() - began, sum(failures)


def measure(url: str, model: str, latent_dim: int, concurrency: list[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    for case, path, body, digits in cases(model, latent_dim):
        for clients in concurrency:
            lat, elapsed, failed = load(url, path, body, clients, seconds)
            lat_ms = np.asarray(lat) * 1e3
            row = {
                "case": case,
                "concurrency": clients,
                "requests": len(lat),
                "failed": failed,
                "digits_per_s": len(lat) * digits / elapsed,
                "p50_ms": float(np.percentile(lat_ms, 50)),
                "p99_ms": float(np.percentile(lat_ms, 99)),
            }
            rows.append(row)
            print(
                f"  {case:17} c={clients:<3} {row['digits_per_s']:9.0f} digits/s  "
                f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  ({len(lat)} requests, {failed} failed)",
                flush=True,
            )
    return rows


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--url", help="Measure this running server instead of starting one.")
    parser.add_argument("--replicas", default="1", help="Comma-separated --replicas values to start in turn.")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=3.0, help="Seconds per case and concurrency.")
    parser.add_argument("--serve-args", default="", help="More `digitvae serve` options, e.g. '--threads 1'.")
    parser.add_argument("--json", help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    from digitvae.runtime.folders.locate import resolve_model_dir
    from digitvae.runtime.folders.reading import read_manifest

    latent_dim = read_manifest(resolve_model_dir(args.model)).latent_dim
    concurrency = [int(c) for c in args.concurrency.split(",")]
    report: dict[str, Any] = {
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "runs": [],
    }
    print("in process:")
    report["in_process"] = in_process(args.model, min(args.seconds, 2.0))
    if args.url:
        print(f"{args.url}:")
        report["runs"].append(
            {"url": args.url, "rows": measure(args.url, args.model, latent_dim, concurrency, args.seconds)}
        )
    for replicas in [int(r) for r in args.replicas.split(",")] if not args.url else []:
        proc, url, startup = start(args.model, replicas, args.serve_args.split())
        time.sleep(1)  # let the start-up work settle before reading memory
        memory = rss_kib(proc.pid)
        print(f"--replicas {replicas}: ready in {startup:.2f} s, {memory / 1024:.0f} MiB resident (server and workers)")
        try:
            rows = measure(url, args.model, latent_dim, concurrency, args.seconds)
        finally:
            stopped = stop(proc)
        print(f"  stopped in {stopped:.2f} s")
        report["runs"].append(
            {"replicas": replicas, "startup_s": startup, "rss_mib": memory / 1024, "stop_s": stopped, "rows": rows}
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
