"""Concurrency: one DigitVAE shared by many threads gives serial results; writers of a model folder take turns."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from mnist_files import TRAIN_IMAGES, VALID_IMAGES

from digitvae.runtime import DigitVAE
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.writing import model_folder_lock

THREADS = 8
CALLS = 1000


def call(vae: DigitVAE, digits: np.ndarray, i: int) -> np.ndarray:
    """Make call number i: a mix of generate, reconstruct and encode on small batches."""
    kind = i % 3
    if kind == 0:
        return vae.generate(1 + i % 2, seed=i)
    if kind == 1:
        return vae.reconstruct(digits[i % 99 : i % 99 + 2])
    return np.concatenate(vae.encode(digits[i % 100 : i % 100 + 1]), axis=1)


@pytest.mark.heavy
def test_threads_share_one_model_and_get_serial_results(digits: np.ndarray) -> None:
    # One onnxruntime thread per call: the Python threads supply the parallelism, and the
    # serial reference runs quickly.
    vae = DigitVAE.load(threads=1)
    expected = [call(vae, digits, i) for i in range(CALLS)]
    start = threading.Barrier(THREADS)

    def worker(seed: int) -> list[tuple[int, np.ndarray]]:
        # Each thread makes all the calls in its own order, so that different kinds overlap.
        order = np.random.default_rng(seed).permutation(CALLS)
        start.wait()
        return [(int(i), call(vae, digits, int(i))) for i in order]

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))  # re-raises any exception from a thread

    assert len(results) == THREADS
    for done in results:
        assert sorted(i for i, _ in done) == list(range(CALLS))
        mismatched = [i for i, got in done if got.shape != expected[i].shape or not np.array_equal(got, expected[i])]
        assert mismatched == [], f"{len(mismatched)} threaded calls differ from serial ones, e.g. call {mismatched[:5]}"


# Every command that rewrites a model folder, with what it needs: each must wait for the folder's lock.
WRITERS = {
    "evaluate --write": lambda m: [
        "evaluate",
        str(VALID_IMAGES),
        "--limit",
        "5",
        "-k",
        "2",
        "--write",
        "--model",
        str(m),
    ],
    "calibrate": lambda m: ["calibrate", str(m), str(VALID_IMAGES), "--no-reference", "-k", "2"],
    "prior fit": lambda m: ["prior", "fit", str(m), "--data", str(TRAIN_IMAGES), "--components", "2"],
    "variants": lambda m: ["variants", str(m), "--valid", str(VALID_IMAGES), "--limit", "5", "-k", "2"],
}
_NEEDS = {"prior fit": ("onnx", "sklearn"), "variants": ("onnx",)}


def _waiting_on_a_lock(pid: int) -> bool:
    """Return whether process pid is blocked on a file lock (Linux: a `->` line of /proc/locks)."""
    with open("/proc/locks", encoding="utf-8") as fh:
        return any(line.split()[1] == "->" and line.split()[5] == str(pid) for line in fh if len(line.split()) > 5)


@pytest.mark.heavy
@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="needs Linux's /proc/locks to see a waiting writer")
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_writer_of_a_model_folder_waits_for_its_lock(tmp_path: Path, writer: str) -> None:
    for module in _NEEDS.get(writer, ()):
        pytest.importorskip(module)
    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", model)
    before = (model / "model.json").read_bytes()
    command = [sys.executable, "-c", "from digitvae.cli.main import main; main()", *WRITERS[writer](model)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with model_folder_lock(model):
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 300
        while not _waiting_on_a_lock(child.pid) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, f"{writer} finished without waiting for the lock: {child.communicate()[1]}"
        assert _waiting_on_a_lock(child.pid), f"{writer} never waited for the folder's lock"
        assert (model / "model.json").read_bytes() == before
    assert child.wait(timeout=300) == 0, child.communicate()[1]
    assert (model / "model.json").read_bytes() != before
