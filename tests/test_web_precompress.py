"""Large files precompressed at brotli 11 (`npm run precompress`), sent by the server in place of brotli 5.

The cache is a folder of files named by the content's sha256 ($DIGITVAE_WEB_CACHE here, a
temporary one); a cached file that does not decompress to the file is not sent.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_web_speed import _unbrotli
from web_page import ROOT, WEB, missing, served

pytestmark = pytest.mark.heavy  # starts node

#: Over 1 MiB (large: brotli 5 on the fly), and quick to compress at 11 (a few seconds).
BIG = ROOT / "models" / "mnist-vae" / "decoder.fp16.onnx"
OTHER = ROOT / "models" / "mnist-vae" / "encoder.fp16.onnx"


def _precompress(cache: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DIGITVAE_WEB_CACHE": str(cache)}
    return subprocess.run(
        ["node", "precompress.mjs", *map(str, files)], cwd=WEB, env=env, capture_output=True, text=True, timeout=300
    )


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
        return response.status, dict(response.headers), response.read()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("web-cache")
    run = _precompress(folder, BIG)
    assert run.returncode == 0, run.stderr
    assert "made in" in run.stdout
    return folder


def _stored(cache: Path, file: Path) -> Path:
    return cache / "brotli" / f"{hashlib.sha256(file.read_bytes()).hexdigest()}.br"


def test_precompress_writes_brotli_11_once(cache: Path) -> None:
    stored = _stored(cache, BIG)
    assert _unbrotli(stored.read_bytes()) == BIG.read_bytes()
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no partial file left
    before = stored.stat().st_mtime_ns
    again = _precompress(cache, BIG)
    assert again.returncode == 0 and "already made" in again.stdout
    assert stored.stat().st_mtime_ns == before
    bad = _precompress(cache, WEB / "no-such-file.wasm")
    assert bad.returncode == 1 and bad.stderr.startswith("error: no such file:")


def test_the_server_sends_the_precompressed_file_and_refuses_a_damaged_one(cache: Path) -> None:
    # A damaged entry for another large file: it must be compressed on the fly instead.
    _stored(cache, OTHER).write_bytes(b"not brotli at all")
    with served(DIGITVAE_WEB_CACHE=str(cache)) as url:
        status, headers, body = _get(url + "models/mnist-vae/decoder.fp16.onnx", **{"Accept-Encoding": "br"})
        assert status == 200 and headers["Content-Encoding"] == "br"
        assert body == _stored(cache, BIG).read_bytes()
        assert headers["ETag"].endswith('-br11"')
        # Smaller than brotli 5 on the fly (the figure without the cache, below).
        with served(DIGITVAE_WEB_CACHE=str(cache / "none")) as plain:
            _, plain_headers, plain_body = _get(
                plain + "models/mnist-vae/decoder.fp16.onnx", **{"Accept-Encoding": "br"}
            )
        assert plain_headers["ETag"].endswith('-br"') and _unbrotli(plain_body) == BIG.read_bytes()
        assert len(body) < len(plain_body)
        request = urllib.request.Request(
            url + "models/mnist-vae/decoder.fp16.onnx",
            headers={"Accept-Encoding": "br", "If-None-Match": headers["ETag"]},
        )
        with pytest.raises(urllib.error.HTTPError) as not_modified:
            urllib.request.urlopen(request, timeout=60)
        assert not_modified.value.code == 304
        status, headers, body = _get(url + "models/mnist-vae/encoder.fp16.onnx", **{"Accept-Encoding": "br"})
        assert headers["ETag"].endswith('-br"') and _unbrotli(body) == OTHER.read_bytes()
