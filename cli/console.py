"""How a command line process reports: one `error:` line on stderr and an exit status, and its log."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from digitvae.runtime.errors import DigitVAEError

#: -v/--verbose and how much each one asks for.
VERBOSE_FLAGS = {"-v": 1, "-vv": 2, "-vvv": 3, "--verbose": 1}


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` on stderr and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every temporary file is cleaned up on the way out."""


#: The signals this process has been sent (SIGINT, SIGTERM), in order, once handle_sigterm is called.
_received: list[int] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Terminated


def _on_sigint(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def handle_sigterm() -> None:
    """Turn SIGTERM into Terminated: without a handler it ends the process at once, leaving temporary files.

    SIGINT still raises KeyboardInterrupt; both are noted, so that a library that turns either
    into an error of its own (an extension module's import fails) is still reported as a signal.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first that came.

    For imports of extension modules: one whose initialisation calls back into Python (onnx's
    nanobind enums) cannot pass an exception out, so a Ctrl-C raised there aborts the process
    with a C++ message and a traceback in place of the one-line report.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set handlers, and only it runs them
        return
    held: list[int] = []
    names = [name for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)]
    before = {name: signal.signal(getattr(signal, name), lambda signum, frame: held.append(signum)) for name in names}
    try:
        yield
    finally:
        for name, handler in before.items():
            signal.signal(getattr(signal, name), handler)
        if held:
            # Sent again to whatever handles it now: our handlers raise, an ignored signal stays ignored.
            signal.raise_signal(held[0])


def ignore_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on: the command has cleaned up and is saying how it ended."""
    # A second signal would otherwise break off the report, or Python's exit, with a traceback.
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


class SignalSafeCommand(click.Command):
    """A click command (or, ahead of click.Group in its bases, a group) that ignores signals once it has returned.

    Only when run as a program of its own: its `main()` sets the flag, in-process callers such
    as click's CliRunner do not. A group must list this class first, so that the whole of
    click.Group.invoke, its subcommand included, comes before the signals are ignored.
    """

    #: Set by the program's main().
    ignore_signals_when_done = False

    def invoke(self, ctx: click.Context) -> Any:
        result = super().invoke(ctx)
        if self.ignore_signals_when_done:
            # Finished, and said how: a signal from here on would reach click's own handler, which
            # prints "Aborted!" and exits 1 after a complete run.
            ignore_signals()
        return result


def stopped(what: str) -> str:
    """Return the error line's text for a command stopped by a signal: what it wrote, and what it left as it was."""
    from digitvae.runtime.atomic import write_outcomes

    outcomes = write_outcomes()
    written = [str(path) for path, done in outcomes.items() if done]
    kept = [str(path) for path, done in outcomes.items() if not done]
    if written:
        what += f" after writing {', '.join(written)} (complete, in place)"
    if kept:
        what += f"; {', '.join(kept)} not written (left as it was)"
    return what


def fail_stopped(exc: BaseException) -> NoReturn:
    """Report a command stopped by SIGINT (exit status 130) or SIGTERM (143) in one line, and exit."""
    ignore_signals()
    if isinstance(exc, KeyboardInterrupt):
        fail(stopped("interrupted"), code=130)
    fail(stopped("terminated"), code=143)


def _fail_if_signalled() -> None:
    """Report the first signal received, if any, in place of the error it turned into on its way out."""
    if _received:
        fail_stopped(KeyboardInterrupt() if _received[0] == signal.SIGINT else Terminated())


#: A group run without a command shows its help (click 8.2 and later raise this for it).
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def usage_line(exc: click.UsageError) -> str:
    """Return a usage error as one line: what was wrong, and where the help is."""
    message = " ".join(exc.format_message().split())
    return f"{message} (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else message


@contextmanager
def handled_errors(verbose: bool = False) -> Iterator[None]:
    """Turn our errors, usage errors, interrupts and anything unexpected into one `error:` line and an exit status."""
    try:
        with warnings.catch_warnings():
            if not verbose:
                # numpy's notes on arithmetic (overflow, NaN) would print raw lines beside the one
                # result or error line; what they warn of is checked and reported as an error.
                warnings.simplefilter("ignore", RuntimeWarning)
            yield
    except click.UsageError as exc:  # an unknown command, a bad option value, a missing argument
        if isinstance(exc, _NO_ARGS):
            raise
        fail(usage_line(exc), code=exc.exit_code)
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except DigitVAEError as exc:
        _fail_if_signalled()
        fail(str(exc))
    except (KeyboardInterrupt, Terminated) as exc:
        fail_stopped(exc)
    except MemoryError:
        _fail_if_signalled()
        fail("out of memory; ask for fewer digits at once")
    except Exception as exc:
        _fail_if_signalled()
        if os.environ.get("DIGITVAE_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (set DIGITVAE_DEBUG=1 for a traceback)")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def setup_logging(verbose: int) -> None:
    """Send the package's log to stderr: warnings, or more with each -v."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("digitvae")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    root.propagate = False
