"""web/server.js under hostile request lines: every one gets a 4xx, and the server keeps serving.

The requests go over raw sockets, so that no client library normalises them first. A 2xx is
allowed only for a file inside the server's folders (its bytes are checked against them);
nothing outside them is ever served.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
#: The folders server.js serves (its MOUNTS).
SERVED = (
    WEB / "public",
    WEB / "src",
    ROOT / "models",
    WEB / "node_modules" / "onnxruntime-web" / "dist",
    WEB / "node_modules" / "pako" / "dist",
)
pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.heavy,
]  # starts node servers

#: Request targets that once stopped the server (TypeError: Invalid URL), and their kin.
MALFORMED_TARGETS = [
    "///",
    "//[",
    "http://[",
    "//a:b",
    "http://a:99999/",
    "//%",
    "//",
    "//localhost/index.html",
    "http://localhost/index.html",
    "https://[::1]:0/",
    "ftp://x/",
    "*",
    "?",
    "#",
    "a",
    ":",
    "[",
    "%",
    "\\",
    "\\\\host\\share",
    "/%",
    "/%zz",
    "/%%30",
    "/%c0%af",
    "/%ff%fe",
    "/%00",
    "/index.html%00.js",
    "/[",
    "/]:@!$&'()*+,;=",
    "/..",
    "/../server.js",
    "/models/../../server.js",
    "/models/%2e%2e/%2e%2e/server.js",
    "/src/..%2f..%2fserver.js",
    "/src/..\\..\\server.js",
    "/ort/../../package.json",
    "/vendor/pako/../../../server.js",
    "/models/mnist-vae/../../README.md",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/./././../server.js",
    "/" + "a" * 5000,
    "/" + "%2e%2e/" * 200 + "etc/passwd",
    "/\u00e9",
]

#: Whole request lines (and worse) that are not a GET of a path.
MALFORMED_LINES = [
    b"GET\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    b"DELETE /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",  # a TLS hello
    b"\r\n\r\nGET\x01 / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """Run `node server.js` on a free loopback port (PORT=0) and yield the port."""
    env = {**os.environ, "PORT": "0"}
    proc = subprocess.Popen(
        ["node", "server.js"], cwd=WEB, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "digitvae demo at http://127.0.0.1:PORT/"
        assert line.startswith("digitvae demo at http://127.0.0.1:"), line
        yield int(line.rsplit(":", 1)[1].strip("/\n"))
        assert proc.poll() is None, "the server exited"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        assert "Error" not in err, err


def _exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read the answer until the server closes the connection (every request asks it to)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the server may answer and close before reading everything
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def _status(answer: bytes) -> tuple[int, bytes]:
    """Return the status code and the body of a raw HTTP/1.1 answer (or raise AssertionError)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].split(b" ")
    assert len(line) >= 2 and line[0] == b"HTTP/1.1" and line[1].isdigit(), answer[:200]
    return int(line[1]), body


def _get(port: int, target: bytes) -> tuple[int, bytes]:
    request = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return _status(_exchange(port, request))


def _served(body: bytes) -> bool:
    """Say whether `body` is the content of some file inside the served folders."""
    digest = hashlib.sha256(body).hexdigest()
    for folder in SERVED:
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size == len(body):
                if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
                    return True
    return False


def _still_serving(port: int) -> None:
    status, body = _get(port, b"/src/prepare.js")
    assert status == 200 and body == (WEB / "src" / "prepare.js").read_bytes()


@pytest.mark.parametrize("target", MALFORMED_TARGETS, ids=range(len(MALFORMED_TARGETS)))
def test_a_hostile_target_is_refused_or_served_from_inside_and_the_server_keeps_serving(port: int, target: str) -> None:
    """A target is a 4xx, or (as "/.." is "/") a 200 with a file from inside the served folders."""
    status, body = _get(port, target.encode("utf-8"))
    assert 400 <= status < 500 or (status == 200 and _served(body)), (target, status, body[:200])
    _still_serving(port)


@pytest.mark.parametrize("target", MALFORMED_TARGETS[:6])
def test_targets_that_are_no_path_are_a_400(port: int, target: str) -> None:
    status, body = _get(port, target.encode("utf-8"))
    assert status == 400 and b"bad request target" in body, (target, status, body[:200])


@pytest.mark.parametrize("line", MALFORMED_LINES, ids=range(len(MALFORMED_LINES)))
def test_a_malformed_request_is_refused_or_served_from_inside_and_the_server_keeps_serving(
    port: int, line: bytes
) -> None:
    status, body = _status(_exchange(port, line))
    assert 400 <= status < 500 or (status == 200 and _served(body)), (line[:60], status, body[:200])
    _still_serving(port)


def test_good_paths_are_served_and_traversal_is_refused(port: int) -> None:
    assert _get(port, b"/")[0] == 200
    assert _get(port, b"/src/prepare.js?v=1#x")[1] == (WEB / "src" / "prepare.js").read_bytes()
    assert _get(port, b"/models/mnist-vae/model.json")[1] == (ROOT / "models" / "mnist-vae" / "model.json").read_bytes()
    for target in (b"/models/../README.md", b"/models/%2e%2e/README.md", b"/src/..%2f..%2fREADME.md"):
        assert _get(port, target)[0] == 404, target


#: Pieces hostile targets are made of: mount prefixes, dots, escapes, schemes and brackets.
_PIECES = st.sampled_from(
    ["/", "//", "\\", ".", "..", "%", "%2e", "%2f", "%5c", "%00", "%zz", "%c0%ae", "[", "]", ":", "@", "?", "#"]
    + ["http:", "models", "src", "ort", "vendor", "pako", "mnist-vae", "model.json", "index.html", "server.js"]
    + ["README.md", "package.json", "etc", "passwd", "~", "*", "'", '"', "<", "\u00e9"]
)
_TARGETS = st.lists(_PIECES, max_size=12).map("".join) | st.text(max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from([b"GET", b"HEAD", b"GET", b"POST", b"get", b"G\x00T"]),
    target=_TARGETS,
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2", b""]),
)
def test_fuzzed_request_lines_get_an_answer_that_leaks_nothing(
    port: int, method: bytes, target: str, version: bytes
) -> None:
    """Every fuzzed request line gets a well-formed answer; a 2xx only for a file inside the served folders."""
    line = method + b" " + target.encode("utf-8", "surrogatepass") + (b" " + version if version else b"")
    status, body = _status(_exchange(port, line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
    assert status in (200, 400, 404, 405, 414, 431, 505), (line, status)
    if status == 200 and method == b"GET":
        assert _served(body), line
    _still_serving(port)
