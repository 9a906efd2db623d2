"""Every ```python block of README.md and docs/*.md runs as pasted, in order, one namespace per document."""

from __future__ import annotations

import socket
import unittest
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from mnist_files import DATA
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from test_plugins import BUILT_IN_OPENVINO, HAVE_OPENVINO, _built_in_openvino_cpu, _openvino_cpu
from test_serve import HAVE_MLSERVER, start_server, stop_group

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [p for p in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))) if "```python" in p.read_text()]
#: `digitvae serve`'s default HTTP and gRPC ports, the ones its documented clients use.
SERVE_PORTS = (8000, 8001)

SYBIL = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()])


def _busy(port: int) -> bool:
    """Return whether something listens on this loopback port (connections closing on it don't count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextmanager
def _serving(tmp: Path) -> Iterator[None]:
    """Run `digitvae serve` with its defaults (mnist-vae on ports 8000 and 8001) around the block."""
    if not HAVE_MLSERVER:
        pytest.skip("docs/serve.md's clients need `digitvae serve` running: the [serve] extra (MLServer)")
    busy = [port for port in SERVE_PORTS if _busy(port)]
    if busy:
        pytest.skip(f"docs/serve.md's clients use `digitvae serve`'s default ports, and {busy} are taken here")
    server = start_server(tmp, ports=SERVE_PORTS)
    try:
        yield
    finally:
        stop_group(server.proc)


def _openvino_cannot_run() -> str | None:
    """Return why OpenVINO cannot run a model on this machine, or None when it can."""
    if BUILT_IN_OPENVINO:
        return _built_in_openvino_cpu()
    if not HAVE_OPENVINO:
        return "needs the [openvino] extra (onnxruntime-ep-openvino)"
    return _openvino_cpu()


#: What a document's blocks need around them, by file name.
AROUND = {"serve.md": _serving}
#: Names a document's skip conditions read, by file name.
CONDITIONS = {"edge.md": lambda: {"openvino_cannot_run": _openvino_cannot_run()}}


@pytest.mark.heavy
@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run_as_pasted(document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The blocks read MNIST from where `digitvae data download` puts it: $DIGITVAE_DATA, here the test digits.
    monkeypatch.setenv("DIGITVAE_DATA", str(DATA))
    monkeypatch.chdir(tmp_path)  # whatever a block writes lands here
    parsed = SYBIL.parse(document)
    namespace: dict[str, Any] = CONDITIONS.get(document.name, dict)()
    parsed.namespace.update(namespace)
    examples = list(parsed.examples())
    blocks = [e for e in examples if isinstance(e.region.parsed, str)]  # code, not skip directives
    assert blocks, f"{document.name}: no python block found"
    skipped: list[str] = []
    around = AROUND.get(document.name)
    with around(tmp_path) if around else nullcontext():
        for example in examples:
            try:
                example.evaluate()
            except unittest.SkipTest as exc:
                skipped.append(f"line {example.line}: {exc}")
    if skipped:
        pytest.skip(f"ran {len(blocks) - len(skipped)} of {len(blocks)} blocks; skipped " + "; ".join(skipped))
