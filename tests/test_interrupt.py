"""Ctrl-C leaves no half-written file: `digitvae train` keeps its last complete checkpoint, and --resume continues from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import invoke, ok
from mnist_files import TRAIN_IMAGES, VALID_IMAGES
from train_extra import needs_torch

pytestmark = pytest.mark.heavy  # trains in child processes

EPOCHS_BEFORE_SIGINT = 1


def _command() -> list[str]:
    """Return the installed `digitvae` script, or the same entry point through this interpreter."""
    script = Path(sys.executable).with_name("digitvae")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from digitvae.cli.main import main; main()"]


@needs_torch
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT cannot be sent to a child process on Windows")
def test_sigint_keeps_the_last_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    from digitvae.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    data = ["--train", str(TRAIN_IMAGES), "--valid", str(VALID_IMAGES)]
    env = {k: v for k, v in os.environ.items() if k != "DIGITVAE_DEBUG"}
    env["PYTHONUNBUFFERED"] = "1"
    # One torch thread: on a busy machine spinning thread pools slow each epoch tenfold.
    env["OMP_NUM_THREADS"] = "1"
    # stderr goes to a file: a pipe nobody reads until the end could fill up and block the child.
    stderr_file = (tmp_path / "stderr.txt").open("w+")
    proc = subprocess.Popen(
        [*_command(), "train", "--preset", "geron", *data, "--epochs", "1000", "-o", str(run)],
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        env=env,
        cwd=tmp_path,
        # A test run started in the background (`cmd &` in a script) ignores SIGINT, and children
        # inherit that; the user's terminal delivers it, so give the child the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    enough = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if sum(s.startswith("epoch") for s in lines) >= EPOCHS_BEFORE_SIGINT:
                enough.set()
        enough.set()  # the process ended: stop waiting

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        assert enough.wait(60), "training printed no epoch line within 60 s"
        assert proc.poll() is None, f"training ended early:\n{''.join(lines)}"
        # last.pt of each printed epoch is complete: the line is printed after the checkpoint is written.
        assert (run / "last.pt").is_file()
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stderr_file.seek(0)
            pytest.fail(
                f"training ignored SIGINT for 60 s; stdout ends {lines[-3:]}, stderr: {stderr_file.read()[-2000:]}"
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    stderr_file.seek(0)
    stderr = stderr_file.read()
    stderr_file.close()

    assert code == 130, f"exit {code}\n{stderr}"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "--resume" in errors[0], stderr
    assert sorted(os.listdir(run)) == ["best.pt", "last.pt"], "an interrupted save left a temporary file"

    ckpt = load_checkpoint(run / "last.pt")
    printed = sum(line.startswith("epoch") for line in lines)
    assert ckpt.epoch >= printed >= EPOCHS_BEFORE_SIGINT
    assert [h["epoch"] for h in ckpt.history] == list(range(1, ckpt.epoch + 1))
    assert load_checkpoint(run / "best.pt").epoch <= ckpt.epoch

    final = ckpt.epoch + 1
    result = ok(invoke("train", *data, "--epochs", final, "-o", run, "--resume"))
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 1 and epoch_lines[0].split()[1] == f"{final}/{final}", result.stdout
    resumed = load_checkpoint(run / "last.pt")
    assert resumed.epoch == final
    assert [h["epoch"] for h in resumed.history] == list(range(1, final + 1))
    assert resumed.history[: ckpt.epoch] == ckpt.history
    assert sorted(os.listdir(run)) == ["best.pt", "last.pt"]


def _interrupt_after_writing_half(real_size: int) -> object:
    """Return a stand-in for a save function that writes part of a file, then is interrupted."""

    def save(*args: Any, **kwargs: object) -> None:
        # np.save takes (file, array), torch.save (obj, file).
        handle = next(a for a in args if hasattr(a, "write"))
        handle.write(b"\0" * (real_size // 2))
        raise KeyboardInterrupt

    return save


def test_interrupted_npy_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from digitvae.runtime.digits.files import write_npy

    out = tmp_path / "digits.npy"
    write_npy(np.zeros((2, 28, 28), np.float32), out)
    before = out.read_bytes()
    monkeypatch.setattr(np, "save", _interrupt_after_writing_half(len(before)))
    with pytest.raises(KeyboardInterrupt):
        write_npy(np.ones((2, 28, 28), np.float32), out)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["digits.npy"]


@needs_torch
def test_interrupted_checkpoint_save_keeps_the_previous_checkpoint(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from digitvae.train.checkpoint import load_checkpoint, save_checkpoint

    last = tmp_path / "last.pt"
    last.write_bytes((tiny_run / "last.pt").read_bytes())
    before = last.read_bytes()
    ckpt = load_checkpoint(last)
    ckpt.epoch += 1
    monkeypatch.setattr(torch, "save", _interrupt_after_writing_half(len(before)))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, last)
    monkeypatch.undo()
    assert last.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pt"]
    assert load_checkpoint(last).epoch == ckpt.epoch - 1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM cannot be caught on Windows")
def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    import time

    proc = subprocess.Popen(
        [*_command(), "generate", "-n", "300000", "--seed", "1", "-o", str(tmp_path / "big.npy")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    # Wait until the write is well under way (past the first blocks), then stop it.
    while not any(p.name.startswith(".big.npy") and p.stat().st_size > 20 << 20 for p in tmp_path.iterdir()):
        assert proc.poll() is None, "the command ended before it had written much"
        assert time.monotonic() < deadline, "no temporary file grew"
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    # The one line says what the signal left: here, no file where the output was to be.
    assert stderr.strip().splitlines()[-1] == f"error: terminated; {tmp_path / 'big.npy'} not written (left as it was)"
    assert list(tmp_path.iterdir()) == []
