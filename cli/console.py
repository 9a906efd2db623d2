"""How a command line process reports: one `error:` line on stderr and an exit status, and its log."""

from __future__ import annotations

import logging
import os
import signal
import sys
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


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


def handle_sigterm() -> None:
    """Turn SIGTERM into Terminated: without a handler it ends the process at once, leaving temporary files."""
    signal.signal(signal.SIGTERM, _on_sigterm)


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
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except Terminated:
        fail("terminated", code=143)
    except MemoryError:
        fail("out of memory; ask for fewer digits at once")
    except Exception as exc:
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
