"""Downloads that stall, break off or land on a file: a clear error and nothing left behind."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from signals import interrupted_on_return, python_sigint

from digitvae.runtime import (
    DownloadError,
    OutputError,
)
from digitvae.train import download
from digitvae.train.download import RemoteFile, download_mnist

CONTENT = os.urandom(4000)


REMOTE = (RemoteFile("a.bin", hashlib.md5(CONTENT).hexdigest()),)


class _StallingServer:
    """Loopback HTTP server whose first path segment picks a misbehaviour (see the modes below)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
                pass

            def do_GET(self) -> None:
                mode = self.path.strip("/").split("/")[0]
                if mode == "stall-head":
                    outer.release.wait(10)
                    return
                if mode == "not-found":
                    self.send_error(404)
                    return
                self.send_response(200)
                if mode == "huge-length":
                    self.send_header("Content-Length", str(10**12))
                elif mode not in ("no-length", "endless"):
                    self.send_header("Content-Length", str(len(CONTENT)))
                self.end_headers()
                if mode == "good":
                    self.wfile.write(CONTENT)
                    return
                if mode == "endless":
                    try:
                        for _ in range(10_000):  # about 40 MB, far past the client's limit
                            self.wfile.write(CONTENT)
                    except OSError:
                        pass  # the client hung up, as it should
                    return
                self.wfile.write(CONTENT[: len(CONTENT) // 2])
                self.wfile.flush()
                if mode == "stall-body":
                    outer.release.wait(10)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}/"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def stalling() -> Iterator[_StallingServer]:
    server = _StallingServer()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        ("stall-head", "timed out"),
        ("stall-body", "timed out"),
        ("no-length", "md5 mismatch"),
        ("not-found", "HTTP 404"),
        ("endless", "body exceeds the 20000-byte limit"),
        ("huge-length", "Content-Length 1000000000000 exceeds"),
    ],
)
def test_download_failures_are_clear_and_leave_nothing(
    stalling: _StallingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, fragment: str
) -> None:
    monkeypatch.setattr(download, "_MAX_BYTES", 20_000)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=fragment) as info:
        download_mnist(tmp_path, mirrors=[stalling.url(mode)], files=REMOTE, timeout=0.3, retries=2, backoff=0)
    assert "a.bin" in str(info.value) and stalling.url(mode) in str(info.value)
    assert time.monotonic() - start < 5  # the timeout bounds each attempt; nothing waits for the server
    assert os.listdir(tmp_path) == []


def test_download_restarts_over_a_stale_partial_file(stalling: _StallingServer, tmp_path: Path) -> None:
    (tmp_path / "a.bin.part").write_bytes(b"left over from an interrupted run" * 500)
    (tmp_path / "a.bin").write_bytes(CONTENT[:100])  # a short file from a run killed mid-rename
    paths = download_mnist(
        tmp_path,
        mirrors=[stalling.url("stall-body"), stalling.url("good")],
        files=REMOTE,
        timeout=0.3,
        retries=1,
        backoff=0,
    )
    assert paths == [tmp_path / "a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == CONTENT
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]


def test_download_into_a_file_path_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_bytes(b"")
    with pytest.raises(OutputError, match="cannot create data directory"):
        download_mnist(tmp_path / "taken" / "data", mirrors=["http://127.0.0.1:9/"], files=REMOTE)


def test_a_signal_as_the_folders_are_made_leaves_none_of_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The signal held back while the data folders are made is acted on where they are removed again."""
    monkeypatch.setattr(download, "_make_folders", interrupted_on_return(download._make_folders))
    with python_sigint(), pytest.raises(KeyboardInterrupt):
        download_mnist(tmp_path / "new" / "data", mirrors=["http://127.0.0.1:9/"], files=REMOTE)
    assert os.listdir(tmp_path) == []
