"""What the command-line tests share: running the CLI in-process, checking its results, PNG grids, model copies."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from PIL import Image

from digitvae.cli.main import cli
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.reading import read_manifest

GAP = 2
STEP = 28 + GAP
#: Latent size of the shipped default model.
D = read_manifest(shipped_models_dir() / "mnist-vae").latent_dim


#: The PNG --scale of the commands that write digit grids.
DEFAULT_SCALE = 2


def grid_size(cols: int, rows: int, scale: int = DEFAULT_SCALE) -> tuple[int, int]:
    """Return PIL's (width, height) of a grid of cols x rows digits, written at `scale` (the default unless told)."""
    return scale * (cols * STEP - GAP), scale * (rows * STEP - GAP)


def invoke(*args: object) -> Result:
    """Run the CLI in-process, leaving the global "digitvae" logger as it was found."""
    log = logging.getLogger("digitvae")
    saved = (log.handlers[:], log.level, log.propagate)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args], env={"DIGITVAE_DEBUG": None})
    finally:
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]


def ok(result: Result) -> Result:
    """Assert a command succeeded; return its result."""
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output
    return result


def assert_clean_failure(result: Result, fragment: str | None = None) -> str:
    """Assert a handled failure: non-zero exit, exactly one `error:` line, no traceback; return that line."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "error:" not in result.stdout
    if fragment is not None:
        assert fragment.lower() in errors[0].lower(), errors[0]
    return errors[0]


def listing(directory: Path) -> list[str]:
    """Every entry below a folder, hidden temporaries included."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def read_grid(path: Path, scale: int = DEFAULT_SCALE) -> np.ndarray:
    """Read a PNG grid written at `scale` (the default unless told): check it is enlarged so, return it at scale 1."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode == "L"
        pixels = np.asarray(image).copy()
    assert pixels.shape[0] % scale == 0 and pixels.shape[1] % scale == 0, pixels.shape
    small = pixels[::scale, ::scale]
    np.testing.assert_array_equal(np.repeat(np.repeat(small, scale, axis=0), scale, axis=1), pixels)
    return small


def cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    return grid[row * STEP : row * STEP + 28, col * STEP : col * STEP + 28]


def write_png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, format="PNG")
    return path


def copy_shipped_model(dest: Path) -> Path:
    shutil.copytree(shipped_models_dir() / "mnist-vae", dest)
    return dest


def copy_2d_model(tmp_path: Path, edit: Callable[[Path], None] | None = None) -> Path:
    """Copy the shipped 2-D model to tmp_path/m, apply `edit` to the copy if given; return the copy."""
    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", model)
    if edit is not None:
        edit(model)
    return model


def run_cli_process(*args: object) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process: onnxruntime's own log lines go to the real stderr."""
    env = {k: v for k, v in os.environ.items() if k != "DIGITVAE_DEBUG"}
    code = "from digitvae.cli.main import main; main()"
    command = [sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
