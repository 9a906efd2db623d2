"""One DigitVAE shared by many threads gives exactly the results of the same calls made one after another."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from digitvae.runtime import DigitVAE

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
