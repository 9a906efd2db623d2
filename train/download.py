"""Download the MNIST files from a list of mirrors, verifying each against its official MD5."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from digitvae.runtime._version import __version__
from digitvae.runtime.atomic import remove_quietly, signals_held
from digitvae.runtime.digits.datadir import default_data_dir
from digitvae.runtime.errors import DownloadError, OutputError

logger = logging.getLogger(__name__)

__all__ = ["MIRRORS", "MNIST_FILES", "RemoteFile", "default_data_dir", "download_mnist", "md5_file"]

ProgressCallback = Callable[[str, int, int | None], None]

_CHUNK = 1 << 16
#: No MNIST file is near this size (the largest is 9.9 MB): a mirror sending more is broken or hostile.
_MAX_BYTES = 64 << 20
_PART_SUFFIX = ".part"


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch, with the MD5 hex digest it must have."""

    name: str
    md5: str


MNIST_FILES: tuple[RemoteFile, ...] = (
    RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class _RetryableError(Exception):
    """A failure worth another attempt on the same mirror (network trouble, 5xx, short body)."""


class _MirrorError(Exception):
    """A failure that another attempt on the same mirror would repeat (404, wrong checksum)."""


def md5_file(path: str | os.PathLike[str]) -> str:
    """Return the MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _url_for(mirror: str, name: str) -> str:
    """Join a mirror prefix and a file name."""
    prefix = mirror if mirror.endswith("/") else mirror + "/"
    return prefix + urllib.parse.quote(name)


def _content_length(response: object) -> int | None:
    """Return the declared body length, or None if absent or unparsable."""
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        length = int(value) if value is not None else None
    except ValueError:
        return None
    return length if length is not None and length >= 0 else None


def _read_chunk(response: BinaryIO) -> bytes:
    """Read one chunk of the body, classing network failures as retryable."""
    try:
        return response.read(_CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise _RetryableError(f"connection failed mid-body: {exc!r}") from exc


def _fetch(url: str, part: Path, name: str, timeout: float, progress: ProgressCallback | None) -> str:
    """Stream url into part and return the MD5 of what was received."""
    request = urllib.request.Request(url, headers={"User-Agent": f"digitvae/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        # 408 and 429 are "try again later"; other 4xx will not change on retry.
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise _MirrorError(f"HTTP {exc.code} {exc.reason}") from exc
        raise _RetryableError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):
            # An unknown host stays unknown a second later: no point in retrying it.
            raise _MirrorError(f"cannot resolve the host ({exc.reason.strerror})") from exc
        raise _RetryableError(f"cannot connect: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _RetryableError(f"cannot connect: {exc!r}") from exc
    with response:
        total = _content_length(response)
        if total is not None and total > _MAX_BYTES:
            raise _MirrorError(f"Content-Length {total} exceeds the {_MAX_BYTES}-byte limit for one file")
        digest = hashlib.md5(usedforsecurity=False)
        done = 0
        try:
            out = open(part, "wb")
        except OSError as exc:
            raise OutputError(f"cannot write {part}: {exc.strerror or exc}") from exc
        with out:
            if progress is not None:
                progress(name, 0, total)
            while chunk := _read_chunk(response):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if done > _MAX_BYTES:
                    # Without this a server that never stops sending would fill the disk.
                    raise _MirrorError(f"body exceeds the {_MAX_BYTES}-byte limit for one file")
                if progress is not None:
                    progress(name, done, total)
            if total is not None and done != total:
                raise _RetryableError(f"truncated body: Content-Length {total}, received {done} bytes")
            out.flush()
            os.fsync(out.fileno())
    return digest.hexdigest()


def _download_one(
    remote: RemoteFile,
    directory: Path,
    mirrors: Sequence[str],
    timeout: float,
    retries: int,
    backoff: float,
    progress: ProgressCallback | None,
) -> Path:
    """Fetch one file from the first mirror that serves it intact; raise DownloadError if none does."""
    dest = directory / remote.name
    part = directory / (remote.name + _PART_SUFFIX)
    expected = remote.md5.lower()
    reasons: dict[str, str] = {}
    try:
        for mirror in mirrors:
            url = _url_for(mirror, remote.name)
            for attempt in range(retries):
                if attempt:
                    delay = backoff * 2 ** (attempt - 1)
                    logger.info("retrying %s in %.1fs (attempt %d of %d)", url, delay, attempt + 1, retries)
                    if delay > 0:
                        time.sleep(delay)
                logger.info("downloading %s", url)
                try:
                    found = _fetch(url, part, remote.name, timeout, progress)
                    if found != expected:
                        raise _MirrorError(f"md5 mismatch: expected {expected}, found {found}")
                except _RetryableError as exc:
                    reasons[mirror] = str(exc)
                    logger.info("%s: %s", url, exc)
                    remove_quietly(part)
                    continue
                except _MirrorError as exc:
                    reasons[mirror] = str(exc)
                    logger.info("%s: %s; trying the next mirror", url, exc)
                    remove_quietly(part)
                    break
                try:
                    os.replace(part, dest)
                except OSError as exc:
                    raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc
                logger.info("downloaded %s (md5 %s)", dest, found)
                return dest
    finally:
        # Reached on success too, where the .part is already renamed away.
        remove_quietly(part)
    if len(reasons) > 1 and len(set(reasons.values())) == 1:
        detail = f"{len(reasons)} tried: {next(iter(reasons.values()))}"
    else:
        detail = "; ".join(f"{mirror} {reason}" for mirror, reason in reasons.items())
    raise DownloadError(
        f"could not download {remote.name} from any mirror ({detail}); check the network or pass --mirror URL, "
        "or train on IDX files you already have with `digitvae train --data DIR` (-v shows every attempt)"
    )


def download_mnist(
    directory: str | os.PathLike[str],
    *,
    mirrors: Sequence[str] = MIRRORS,
    files: Sequence[RemoteFile] = MNIST_FILES,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Download and MD5-verify each file into directory, skipping those already present and intact."""
    if not mirrors:
        raise ValueError("download_mnist needs at least one mirror")
    if retries < 1:
        raise ValueError(f"retries must be at least 1, got {retries}")
    if timeout <= 0 or backoff < 0:
        raise ValueError(f"timeout must be > 0 and backoff >= 0, got timeout={timeout}, backoff={backoff}")
    target = Path(directory)
    created: list[Path] = []
    paths: list[Path] = []
    try:
        # A signal held back while the folders are made is acted on here, where they are removed.
        with signals_held():
            created = _make_folders(target)
        for remote in files:
            dest = target / remote.name
            if dest.is_file():
                found = md5_file(dest)
                if found == remote.md5.lower():
                    logger.info("%s already present and verified; skipping", dest)
                    paths.append(dest)
                    continue
                logger.warning("%s has md5 %s, expected %s; downloading it again", dest, found, remote.md5.lower())
            paths.append(_download_one(remote, target, mirrors, timeout, retries, backoff, progress))
    except BaseException:
        _remove_empty(created)
        raise
    return paths


def _make_folders(target: Path) -> list[Path]:
    """Create target and its missing parents; return those created, deepest first."""
    missing = [folder for folder in (target, *target.parents) if not folder.exists()]
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise OutputError(f"cannot create data directory {target}: {exc.strerror or exc}") from exc
    return missing


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders a failed download created, deepest first, as long as they are empty."""
    # A folder holding a file already verified is kept: the next run skips that file.
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return
