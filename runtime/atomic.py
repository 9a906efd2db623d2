"""Atomic file writes: readers see either the old file or the complete new one, never a partial file."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

logger = logging.getLogger(__name__)

__all__ = ["atomic_write", "swapped_in"]

_WRITE_MODES = frozenset({"w", "wt", "wb"})
_MAX_NAME_TRIES = 100


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


def _remove_quietly(path: Path) -> None:
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
    temp_path, fd = _create_temp(target)
    try:
        if "b" in mode:
            handle: IO[Any] = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding=encoding)
    except BaseException:
        os.close(fd)
        _remove_quietly(temp_path)
        raise
    try:
        try:
            with handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_path, target)
        except OSError as exc:
            # A full disk, a quota, an I/O error: said plainly, and the old file stays as it was.
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        _remove_quietly(temp_path)
        raise
    _fsync_directory(target.parent)
    logger.debug("wrote %s atomically", target)


@contextlib.contextmanager
def swapped_in(
    staging: Path, out_dir: Path, move_aside: Callable[[Path], bool], failed: Callable[[OSError], str]
) -> Iterator[None]:
    """Let the `with` body fill the folder `staging`, then rename it into `out_dir`'s place.

    `move_aside(out_dir)` says whether something stands there to be replaced (raising OutputError
    where it must stay); it is moved aside first and removed once the new folder is in place.
    On any failure `staging` is removed and the previous folder put back, so a reader sees the
    old folder or the complete new one. An OSError becomes an OutputError saying `failed(exc)`.
    """
    old: Path | None = None
    try:
        yield
        if move_aside(out_dir):
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=staging.parent))
            os.replace(out_dir, old / "previous")
        os.replace(staging, out_dir)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not out_dir.exists():
            os.replace(old / "previous", out_dir)
        if isinstance(exc, OSError):
            raise OutputError(failed(exc)) from None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
