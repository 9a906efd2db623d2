"""`digitvae serve` runs on what suits many small requests: uvloop, httptools, one onnxruntime thread."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mlserver") is None, reason="needs the [serve] extra (MLServer)"),
    pytest.mark.skipif(sys.platform == "win32", reason="the extra installs no uvloop on Windows"),
]


#: Runs `digitvae serve ARGS` in a fresh process (MLServer's protos clash with tritonclient's, which
#: other tests import) with load_options replaced, and prints the threads it was asked for.
_ASK = """
import sys
from click.testing import CliRunner
from digitvae.cli import serve
from digitvae.cli.main import cli

def load_options(model, variant, provider, strict, threads):
    print("threads", threads)
    raise SystemExit(0)

serve.load_options = load_options
result = CliRunner().invoke(cli, ["serve", *sys.argv[1:]])
print(result.output, end="")
"""


def _threads_asked(*args: str) -> int:
    ended = subprocess.run([sys.executable, "-c", _ASK, *args], capture_output=True, text=True, timeout=120)
    assert ended.returncode == 0, ended.stderr
    lines = [line for line in ended.stdout.splitlines() if line.startswith("threads ")]
    assert len(lines) == 1, ended.stdout
    return int(lines[0].split()[1])


def test_the_server_loop_is_uvloop() -> None:
    from digitvae.serve.server import _run_loop

    async def on_uvloop() -> bool:
        return type(asyncio.get_running_loop()).__module__.startswith("uvloop")

    assert _run_loop(on_uvloop()) is True


def test_rest_parses_http_with_httptools() -> None:
    import uvicorn

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("never called")

    config = uvicorn.Config(app)  # MLServer leaves `http` at uvicorn's "auto"
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"


def test_one_onnxruntime_thread_by_default() -> None:
    assert _threads_asked() == 1


@pytest.mark.parametrize(("given", "threads"), [("0", 0), ("2", 2)])
def test_threads_as_asked_without_batching(given: str, threads: int) -> None:
    assert _threads_asked("--threads", given) == threads


def test_batching_with_the_default_threads_runs_one() -> None:
    assert _threads_asked("--batch-size", "64") == 1
