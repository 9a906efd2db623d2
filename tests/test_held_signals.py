"""A signal that lands while a command imports its optional dependencies waits for the import to finish.

Some extension modules cannot pass an exception out of their initialisation (onnx's nanobind
enums call back into Python, and an exception there ends in std::terminate), so `require`
imports them with SIGINT and SIGTERM held, and delivers the first one after. Each case runs in a
child process, whose signal handlers are its own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM cannot be sent to oneself on Windows")

#: A module that signals its own process halfway through its import, then keeps running Python.
SELF_SIGNALLING_MODULE = """
import os, signal
os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
total = sum(range(100_000))  # the handler runs here, between bytecodes, unless the signal is held
print("import finished", flush=True)
"""


def _run(code: str, tmp_path: Path, signal_name: str = "SIGINT") -> subprocess.CompletedProcess[str]:
    (tmp_path / "self_signalling.py").write_text(SELF_SIGNALLING_MODULE)
    script = textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "SIGNAL": signal_name, "PATH": "/usr/bin:/bin"},
        timeout=120,
        # A test run started in the background (`cmd &`) ignores SIGINT, and children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize(("signal_name", "raised"), [("SIGINT", "KeyboardInterrupt"), ("SIGTERM", "Terminated")])
def test_require_finishes_the_import_then_delivers_the_signal(tmp_path: Path, signal_name: str, raised: str) -> None:
    ended = _run(
        """
        from digitvae.cli import console
        from digitvae.cli.options import require
        console.handle_sigterm()
        try:
            require("self_signalling")
        except (KeyboardInterrupt, console.Terminated) as exc:
            import sys
            print("raised", type(exc).__name__, "module loaded:", "self_signalling" in sys.modules)
        else:
            print("nothing raised")
        """,
        tmp_path,
        signal_name,
    )
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.splitlines() == ["import finished", f"raised {raised} module loaded: True"]


def test_without_holding_the_signal_lands_inside_the_import(tmp_path: Path) -> None:
    """The case that holding prevents: the interrupt is raised in the middle of the module's code."""
    ended = _run(
        """
        from digitvae.cli import console
        console.handle_sigterm()
        try:
            import self_signalling
        except KeyboardInterrupt:
            print("raised inside the import")
        """,
        tmp_path,
    )
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.splitlines() == ["raised inside the import"]


def test_an_ignored_signal_stays_ignored_after_the_hold(tmp_path: Path) -> None:
    ended = _run(
        """
        from digitvae.cli import console
        console.ignore_signals()
        with console.signals_held():
            import self_signalling
        print("went on")
        """,
        tmp_path,
    )
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.splitlines() == ["import finished", "went on"]


def test_the_handlers_in_place_before_are_back_after(tmp_path: Path) -> None:
    ended = _run(
        """
        import signal
        from digitvae.cli import console
        console.handle_sigterm()
        before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        with console.signals_held():
            pass
        print(before == (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))
        """,
        tmp_path,
    )
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.strip() == "True"
