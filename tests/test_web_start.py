"""`npm start` in web/: it refuses to start without its packages, and SIGTERM or SIGINT stops it whole.

The signals go to the npm process alone, as a process manager or `kill PID` sends them; no
`node server.js` may outlive it, and its port must be free again. Linux only (reads /proc).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
pytestmark = [
    pytest.mark.heavy,  # starts npm and node
    pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
#: npm without its update check (no network in tests).
ENV = {**os.environ, "PORT": "0", "npm_config_update_notifier": "false", "npm_config_fund": "false"}


def _copy_without_packages(dest: Path, keep: tuple[str, ...] = ()) -> Path:
    """Copy web/ (no node_modules) to dest, linking only the packages named in `keep`."""
    for file in [*WEB.glob("*.js"), WEB / "package.json"]:
        shutil.copy(file, dest / file.name)
    for name in ("public", "src"):
        shutil.copytree(WEB / name, dest / name)
    for package in keep:
        (dest / "node_modules").mkdir(exist_ok=True)
        (dest / "node_modules" / package).symlink_to(WEB / "node_modules" / package)
    return dest


@pytest.mark.parametrize(
    ("keep", "named"),
    [((), "onnxruntime-web and pako are"), (("onnxruntime-web",), "pako is"), (("pako",), "onnxruntime-web is")],
)
def test_npm_start_without_npm_ci_refuses_with_one_line(tmp_path: Path, keep: tuple[str, ...], named: str) -> None:
    if keep and not all((WEB / "node_modules" / p).is_dir() for p in keep):
        pytest.skip("web/node_modules is not installed (run `npm ci` in web/)")
    web = _copy_without_packages(tmp_path, keep)
    run = subprocess.run(["npm", "start"], cwd=web, env=ENV, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "digitvae demo at" not in run.stdout, run.stdout
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert errors == [f"error: {named} not installed in {web}: run `npm ci` there first"], run.stderr


def _children(pid: int) -> list[int]:
    """Return the pids of a process's children (from /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    """Say whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_npm_start_stops_the_server_too(signum: signal.Signals) -> None:
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("web/node_modules is not installed (run `npm ci` in web/)")
    npm = subprocess.Popen(["npm", "start"], cwd=WEB, env=ENV, stdout=subprocess.PIPE, text=True)
    servers: list[int] = []
    try:
        assert npm.stdout is not None
        for line in npm.stdout:  # npm's banner, then "digitvae demo at http://127.0.0.1:PORT/"
            if line.startswith("digitvae demo at "):
                break
        else:
            pytest.fail("npm start ended without serving")
        port = int(line.rsplit(":", 1)[1].strip("/\n"))
        assert not _port_free(port)
        # Every process under npm: a shell (where npm keeps one) and the node server.
        pending = _children(npm.pid)
        while pending:
            pid = pending.pop()
            servers.append(pid)
            pending += _children(pid)
        assert any("server.js" in Path(f"/proc/{pid}/cmdline").read_text() for pid in servers), servers
        npm.send_signal(signum)
        assert npm.wait(timeout=15) != 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (any(_alive(pid) for pid in servers) or not _port_free(port)):
            time.sleep(0.1)
        assert not [pid for pid in servers if _alive(pid)], "a process outlived npm start"
        assert _port_free(port)
    finally:
        npm.kill()
        npm.wait(timeout=10)
        for pid in servers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
