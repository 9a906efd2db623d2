"""Atomic writes of files and folders: readers see the old one or the complete new one, never a partial one.

SIGINT and SIGTERM are held back across each rename and its cleanup (in the main thread, where
Python runs signal handlers), so a signal leaves the old output or the complete new one, never
a half-made swap; `write_outcomes` then tells what this process has written and what it has not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError
from .logs import get_logger

logger = get_logger(__name__)

__all__ = ["atomic_write", "remove_quietly", "signals_held", "swapped_in", "write_outcomes"]

_WRITE_MODES = frozenset({"w", "wt", "wb"})
_MAX_NAME_TRIES = 100
_HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))
#: Each output this process began to replace: True once the new one is in place, False when a
#: failure or a signal left the old one. What a command reports when it is stopped.
_outcomes: dict[Path, bool] = {}


def write_outcomes() -> dict[Path, bool]:
    """Return every output this process began to write: True if it was written, False if it was left as it was."""
    return dict(_outcomes)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, then act on them as their handlers would.

    Only the main thread runs Python's signal handlers, and only it may replace them; elsewhere
    no handler can interrupt the block anyway. Swapping the Python-level handler (rather than
    masking the signal) also covers a signal delivered to another thread, such as onnxruntime's.
    """
    if threading.current_thread() is not threading.main_thread() or not _HELD_SIGNALS:
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append(signum)

    previous: dict[int, Any] = {}
    try:
        for signum in _HELD_SIGNALS:
            if signal.getsignal(signum) is not None:  # None: a handler set outside Python, not restorable
                previous[signum] = signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def _check_destination(target: Path) -> None:
    """Raise OutputError if the file cannot be created where it was asked for."""
    directory = target.parent
    if "\0" in str(target):
        raise OutputError(f"cannot write {str(target)!r}: a file name cannot hold a NUL byte")
    try:
        if not directory.exists():
            raise OutputError(f"cannot write {target}: directory {directory} does not exist")
        if not directory.is_dir():
            raise OutputError(f"cannot write {target}: {directory} is not a directory")
        if target.is_dir():
            raise OutputError(f"cannot write {target}: it is an existing directory")
        # A read-only file says "keep me": it is refused, not replaced by a writable copy. A
        # symbolic link is itself replaced (what it points to is left alone), so its own entry counts.
        info = target.lstat() if os.path.lexists(target) else None
    except OSError as exc:  # a name too long for the file system, a path through a file, ...
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    if info is not None and stat.S_ISREG(info.st_mode) and not info.st_mode & 0o222:
        raise OutputError(f"cannot write {target}: it is read-only; make it writable or choose another name")


def _create_temp(target: Path) -> tuple[Path, int]:
    """Create and open a fresh temporary file next to the target."""
    directory = target.parent
    for _ in range(_MAX_NAME_TRIES):
        # A hidden name keeps half-written files out of globs such as "*.gz".
        candidate = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            # Mode 0o666 lets the umask decide permissions, as a plain open() would;
            # mkstemp would force 0o600 on the final file.
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc} (in directory {directory})") from exc
        return candidate, fd
    raise OutputError(f"cannot write {target}: could not find a free temporary name in {directory}")


def remove_quietly(path: Path) -> None:
    """Delete a file, ignoring its absence or any error (cleanup must not mask the real failure)."""
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            logger.warning("could not remove temporary file %s: %s", path, exc)


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry to disk, where the platform supports it."""
    # Without this, a crash right after os.replace may lose the rename on some filesystems.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Yield a file on a temporary path; move it onto ``path`` only if the block finishes cleanly."""
    if mode not in _WRITE_MODES:
        raise ValueError(f"atomic_write mode must be one of {sorted(_WRITE_MODES)}, not {mode!r}")
    target = Path(path)
    _check_destination(target)
    written = False
    temp_path: Path | None = None
    try:
        try:
            # A signal held back here is acted on as the block ends: inside this try, with
            # temp_path set, so the file is removed.
            with signals_held():
                temp_path, fd = _create_temp(target)
                try:
                    if "b" in mode:
                        handle: IO[Any] = os.fdopen(fd, "wb")
                    else:
                        handle = os.fdopen(fd, "w", encoding=encoding)
                except BaseException:
                    os.close(fd)
                    raise
            with handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            with signals_held():
                os.replace(temp_path, target)
                _outcomes[target] = written = True
        except OSError as exc:
            # A full disk, a quota, an I/O error: said plainly, and the old file stays as it was.
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        if not written:  # a signal held back during the rename is raised after it: the file is in place
            with signals_held():
                if temp_path is not None:
                    remove_quietly(temp_path)
                _outcomes[target] = False
        raise
    _fsync_directory(target.parent)
    logger.debug("wrote %s atomically", target)


def _leftover_pattern(out_dir: Path) -> re.Pattern[str]:
    """Match the hidden folders that a write of out_dir makes beside it: `.NAME.PID.XXXXXXXX`, `.NAME.old.PID.XXXXXXXX`."""
    return re.compile(rf"\.{re.escape(out_dir.name)}\.(old\.)?([0-9]+)\.[a-z0-9_]{{8}}")


def _alive(pid: int) -> bool:
    """Return whether process pid may still be running (True where that cannot be told)."""
    if pid == os.getpid() or os.name != "posix":  # on Windows os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def recover_leftovers(out_dir: Path) -> list[Path]:
    """Tidy what a write of out_dir killed outright (SIGKILL, power loss) left beside it; return what it removed.

    A folder moved aside before the new one was in place is put back where out_dir is missing;
    the rest (half-filled new folders, old folders not yet removed) is removed. Folders of a
    process still running are left alone: it may be writing right now.
    """
    out_dir = Path(out_dir)
    parent = out_dir.absolute().parent
    pattern = _leftover_pattern(out_dir)
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return []
    removed = []
    with signals_held():
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match is None or not entry.is_dir() or entry.is_symlink() or _alive(int(match[2])):
                continue
            previous = entry / "previous"
            if match[1] and previous.is_dir() and not os.path.lexists(out_dir):
                try:
                    os.replace(previous, out_dir)
                except OSError as exc:
                    raise OutputError(f"cannot put back {out_dir} from {previous}: {exc.strerror or exc}") from None
                logger.warning("put back %s, which a write killed before it finished had moved aside", out_dir)
            shutil.rmtree(entry, ignore_errors=True)
            logger.warning("removed %s, left by a write of %s that was killed before it finished", entry, out_dir)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def swapped_in(out_dir: Path, move_aside: Callable[[Path], bool], failed: Callable[[OSError], str]) -> Iterator[Path]:
    """Yield a new hidden folder beside `out_dir` for the `with` body to fill, then rename it into `out_dir`'s place.

    `move_aside(out_dir)` says whether something stands there to be replaced (raising OutputError
    where it must stay); it is moved aside first and removed once the new folder is in place.
    On any failure the new folder is removed and the previous one put back, so a reader sees the
    old folder or the complete new one. An OSError becomes an OutputError saying `failed(exc)`.
    Signals are held back from the first rename to the end of the cleanup: a signal during the
    body leaves the old folder, one during the swap is acted on once the new folder is in place.
    Leftovers of a write that was killed outright are tidied first (`recover_leftovers`).
    """
    out_dir = Path(out_dir)
    parent = out_dir.absolute().parent
    prefix = f".{out_dir.name}.{os.getpid()}."
    written = False
    staging: Path | None = None
    recover_leftovers(out_dir)
    try:
        # A signal held back here is acted on as the block ends, inside this try: staging is removed.
        with signals_held():
            staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        yield staging
        with signals_held():
            old: Path | None = None
            try:
                if move_aside(out_dir):
                    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.{os.getpid()}.", dir=parent))
                    os.replace(out_dir, old / "previous")
                os.replace(staging, out_dir)
            except BaseException:
                if old is not None:
                    if not os.path.lexists(out_dir):
                        # Should this fail too, `old` stays for recover_leftovers to put back.
                        os.replace(old / "previous", out_dir)
                    shutil.rmtree(old, ignore_errors=True)
                raise
            _outcomes[out_dir] = written = True
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            _fsync_directory(parent)
    except BaseException as exc:
        if not written:
            with signals_held():
                if staging is not None:
                    shutil.rmtree(staging, ignore_errors=True)
                _outcomes[out_dir] = False
        if isinstance(exc, OSError):
            raise OutputError(failed(exc)) from None
        raise
