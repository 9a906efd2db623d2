"""Serve web/ for the browser tests and run its node scripts (web/test/*.mjs) against it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
PACKAGES = ("onnxruntime-web", "pako", "playwright-core")


def load_script(name: str) -> ModuleType:
    """Import scripts/NAME.py, the script that builds a page asset, to call its functions."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def missing() -> str | None:
    """Return why the browser checks cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    absent = [name for name in PACKAGES if not (WEB / "node_modules" / name / "package.json").is_file()]
    if absent:
        return f"web/ lacks npm packages {', '.join(absent)} (run `npm ci` in web/)"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@contextmanager
def served(**env_vars: str) -> Iterator[str]:
    """Serve web/ on a free loopback port (PORT=0), with `env_vars` set, and yield its base URL."""
    env = {**os.environ, **env_vars, "PORT": "0"}
    proc = subprocess.Popen(["node", "server.js"], cwd=WEB, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "digitvae demo at http://127.0.0.1:PORT/"
        assert line.startswith("digitvae demo at http://127.0.0.1:"), line
        yield line.split(" at ")[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_script(script: str, *args: str | Path, result: Path, timeout: float = 300) -> Any:
    """Run `node test/SCRIPT ARGS...` in web/ and return the JSON it wrote to `result`."""
    run = subprocess.run(
        ["node", f"test/{script}", *map(str, args)], cwd=WEB, capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(result.read_text())
