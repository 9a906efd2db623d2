"""Run `digitvae` in a child process and stop it with a signal: at a given moment, or at a step of a folder swap."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Run before the command in the child: `STEP` (a test's choice) sends the child `SIGNAL` at one
#: step of runtime.atomic's folder swap, through stand-ins for the os and shutil it calls, or
#: ("closing") as click closes the command's context, once the command has finished.
_AT_STEP = """
import os, shutil, signal, sys, tempfile
import click
from digitvae.runtime import atomic
try:  # the folder writers need onnx; a file write (generate, evaluate --write) does not
    from digitvae.export import folder, triton
except ImportError:
    folder = triton = None

step, sig, entry = sys.argv.pop(1), getattr(signal, sys.argv.pop(1)), sys.argv.pop(1)
replaced = []

def hit():
    os.kill(os.getpid(), sig)

class Stand:
    def __init__(self, module, **names):
        self.module = module
        self.__dict__.update(names)
    def __getattr__(self, name):
        return getattr(self.module, name)

def replace(src, dst):
    replaced.append(dst)
    if step == f"replace{len(replaced)}":
        hit()
    result = os.replace(src, dst)
    if step == f"after-replace{len(replaced)}":
        hit()
    return result

def rmtree(path, *args, **kwargs):
    if step == "remove-old" and ".old." in os.path.basename(str(path)):
        hit()
    return shutil.rmtree(path, *args, **kwargs)

def mkdtemp(*args, **kwargs):
    made = tempfile.mkdtemp(*args, **kwargs)
    if step == "create" and ".old." not in os.path.basename(made):
        hit()
    return made

def checked(real):
    def check(*args, **kwargs):
        if step == "check":
            hit()
        return real(*args, **kwargs)
    return check

def closing(real):
    def close(self):
        if step == "closing" and self.parent is None:
            hit()
        return real(self)
    return close

click.Context.close = closing(click.Context.close)
atomic.os = Stand(os, replace=replace)
atomic.shutil = Stand(shutil, rmtree=rmtree)
atomic.tempfile = Stand(tempfile, mkdtemp=mkdtemp)
if folder is not None:
    folder.check_loadable = checked(folder.check_loadable)
    triton.check_repository = checked(triton.check_repository)
if entry == "train":  # python -m digitvae.train, which runs the train command without the group
    from digitvae.cli.train import main
else:
    from digitvae.cli.main import main
sys.argv[0] = "digitvae"
main()
"""

#: Steps of a swap where a signal can be sent: as the new folder is made; in the body, while it is
#: checked; as the old folder is moved aside; as the new one is renamed into place; while the old
#: one is removed.
STEPS = ("create", "check", "replace1", "replace2", "after-replace2", "remove-old")


def command() -> list[str]:
    """Return the installed `digitvae` script, or the same entry point through this interpreter."""
    script = Path(sys.executable).with_name("digitvae")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from digitvae.cli.main import main; main()"]


def at_step_command(step: str, signum: int, entry: str = "digitvae") -> list[str]:
    """Return a command line that runs `digitvae` and sends itself `signum` at `step` of a folder swap.

    entry "train" runs `python -m digitvae.train`'s main instead: the arguments then are train's.
    """
    return [sys.executable, "-c", _AT_STEP, step, signal.Signals(signum).name, entry]


def child_env() -> dict[str, str]:
    """Return the environment of a child: no debug tracebacks, one thread per pool on a shared machine."""
    env = {k: v for k, v in os.environ.items() if k != "DIGITVAE_DEBUG"}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def handles_sigterm(pid: int) -> bool:
    """Return whether process pid has a SIGTERM handler (Linux: its SigCgt mask): the command has begun."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            caught = next(line.split()[1] for line in fh if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


@dataclass(frozen=True)
class Ended:
    """How a child ended: its exit status, output, and how long it ran after it began the command."""

    code: int
    stdout: str
    stderr: str
    seconds: float


def run(args: list[str], cwd: Path, *, signum: int | None = None, after: float = 0.0, timeout: float = 120) -> Ended:
    """Run a command; with signum, send it that signal `after` seconds once it has begun (its SIGTERM handler is set)."""
    # Files, not pipes: a pipe nobody reads until the end could fill up and block the child.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    try:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=err,
            text=True,
            env=child_env(),
            cwd=cwd,
            # A test run in the background ignores SIGINT, and children inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + timeout
            while not handles_sigterm(proc.pid) and proc.poll() is None:
                assert time.monotonic() < deadline, "the command never began"
                time.sleep(0.002)
            began = time.monotonic()
            if signum is not None:
                while proc.poll() is None and time.monotonic() - began < after:
                    time.sleep(0.001)
                if proc.poll() is None:
                    proc.send_signal(signum)
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        seconds = time.monotonic() - began
        out.seek(0)
        err.seek(0)
        return Ended(code, out.read(), err.read(), seconds)
    finally:
        out.close()
        err.close()


def snapshot(folder: Path) -> dict[str, str]:
    """Return every file below a folder (relative path -> sha256), hidden ones included."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@contextlib.contextmanager
def python_sigint() -> Iterator[None]:
    """Give SIGINT Python's usual handler (KeyboardInterrupt) for the block: a test run in the background starts with it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupted_on_return(real: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a function so that it sends this process SIGINT once it has made what it makes."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return made

    return wrapped
