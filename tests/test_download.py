"""Tests for digitvae.train.download against a loopback HTTP server (no real network)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from digitvae.runtime.errors import DownloadError
from digitvae.train import download
from digitvae.train.download import MIRRORS, MNIST_FILES, RemoteFile, default_data_dir, download_mnist, md5_file

CONTENT = {"a.bin": os.urandom(3000), "b.bin": os.urandom(5000)}
FILES = tuple(RemoteFile(name, hashlib.md5(data).hexdigest()) for name, data in CONTENT.items())
FAST = {"timeout": 2.0, "backoff": 0.0}


class _Server:
    """A loopback server whose first path segment chooses the behaviour."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
                pass

            def do_GET(self) -> None:
                with outer.lock:
                    outer.requests.append(self.path)
                mode, _, name = self.path.strip("/").partition("/")
                data = CONTENT.get(name)
                if mode == "error":
                    self.send_error(500)
                    return
                if mode == "missing" or data is None:
                    self.send_error(404)
                    return
                if mode == "corrupt":
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) + (1000 if mode == "truncated" else 0)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if mode == "truncated" else data)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        return f"{self.base}{mode}/"

    def count(self, mode: str) -> int:
        with self.lock:
            return sum(1 for path in self.requests if path.startswith(f"/{mode}/"))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    try:
        yield srv
    finally:
        srv.close()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_constants() -> None:
    assert [f.name for f in MNIST_FILES] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert all(len(f.md5) == 32 for f in MNIST_FILES)
    assert MIRRORS[0].startswith("https://ossci-datasets")
    with pytest.raises(AttributeError):
        MNIST_FILES[0].md5 = "x"  # type: ignore[misc]


def test_success_writes_verified_files_and_reports_progress(server: _Server, tmp_path: Path) -> None:
    target = tmp_path / "deep" / "data"
    calls: list[tuple[str, int, int | None]] = []
    paths = download_mnist(
        target, mirrors=[server.url("good")], files=FILES, progress=lambda *a: calls.append(a), **FAST
    )
    assert paths == [target / "a.bin", target / "b.bin"]
    for remote in FILES:
        assert (target / remote.name).read_bytes() == CONTENT[remote.name]
        assert md5_file(target / remote.name) == remote.md5
        size = len(CONTENT[remote.name])
        mine = [c for c in calls if c[0] == remote.name]
        assert mine[0] == (remote.name, 0, size)
        assert mine[-1] == (remote.name, size, size)
        assert [c[1] for c in mine] == sorted(c[1] for c in mine)
    assert _leftovers(target) == ["a.bin", "b.bin"]


def test_second_run_skips_without_requests(server: _Server, tmp_path: Path) -> None:
    download_mnist(tmp_path, mirrors=[server.url("good")], files=FILES, **FAST)
    before = len(server.requests)
    assert before == 2
    paths = download_mnist(tmp_path, mirrors=[server.url("good")], files=FILES, **FAST)
    assert len(server.requests) == before
    assert paths == [tmp_path / "a.bin", tmp_path / "b.bin"]


def test_existing_bad_file_is_replaced(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"stale")
    download_mnist(tmp_path, mirrors=[server.url("good")], files=FILES[:1], **FAST)
    assert (tmp_path / "a.bin").read_bytes() == CONTENT["a.bin"]


@pytest.mark.parametrize("bad", ["error", "truncated", "corrupt", "missing"])
def test_falls_back_to_next_mirror(server: _Server, tmp_path: Path, bad: str) -> None:
    download_mnist(tmp_path, mirrors=[server.url(bad), server.url("good")], files=FILES, retries=2, **FAST)
    assert _leftovers(tmp_path) == ["a.bin", "b.bin"]
    assert (tmp_path / "b.bin").read_bytes() == CONTENT["b.bin"]
    # Transient failures are retried on the same mirror; a 404 or a bad checksum is not.
    assert server.count(bad) == (4 if bad in ("error", "truncated") else 2)
    assert server.count("good") == 2


def test_all_mirrors_bad_raises_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    mirrors = [server.url("error"), server.url("truncated")]
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path, mirrors=mirrors, files=FILES, retries=3, **FAST)
    message = str(info.value)
    assert "a.bin" in message
    assert "HTTP 500" in message and "truncated body" in message
    assert all(m in message for m in mirrors)
    assert _leftovers(tmp_path) == []
    assert server.count("error") == 3 and server.count("truncated") == 3


def test_wrong_md5_raises_and_mentions_md5(server: _Server, tmp_path: Path) -> None:
    remote = FILES[0]
    with pytest.raises(DownloadError, match=r"md5 mismatch: expected [0-9a-f]{32}, found [0-9a-f]{32}") as info:
        download_mnist(tmp_path, mirrors=[server.url("corrupt")], files=[remote], **FAST)
    assert remote.md5 in str(info.value)
    assert _leftovers(tmp_path) == []


def test_unreachable_host_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="a.bin"):
        download_mnist(tmp_path, mirrors=["http://127.0.0.1:9/"], files=FILES[:1], retries=1, timeout=1.0, backoff=0)
    assert _leftovers(tmp_path) == []


def test_file_url_mirror_and_prefix_without_slash(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name, data in CONTENT.items():
        (source / name).write_bytes(data)
    out = tmp_path / "out"
    download_mnist(out, mirrors=[source.as_uri()], files=FILES, **FAST)
    assert _leftovers(out) == ["a.bin", "b.bin"]


def test_backoff_doubles_between_attempts(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    monkeypatch.setattr(download.time, "sleep", delays.append)
    with pytest.raises(DownloadError):
        download_mnist(tmp_path, mirrors=[server.url("error")], files=FILES[:1], retries=4, timeout=2.0, backoff=0.5)
    assert delays == [0.5, 1.0, 2.0]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        download_mnist("unused", mirrors=[], files=FILES)
    with pytest.raises(ValueError):
        download_mnist("unused", files=FILES, retries=0)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIGITVAE_DATA", str(tmp_path / "explicit"))
    assert default_data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("DIGITVAE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "digitvae" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "digitvae" / "mnist"
