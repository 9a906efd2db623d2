"""Time `generate(1)` step by step against a plain decoder run, in turns, to show where its overhead goes.

    python scripts/generate_steps.py [--model mnist-vae] [--rounds 9] [--calls 3000]

Each line adds one step of `generate(1)`'s path for an unconditional model with a learned
prior: the small-batch runner's bound run and copy, then taking a code from the prior's pool,
then the NaN check, then the whole public call. The calls take turns in blocks within every
round; a figure is the median over rounds of each block's median, a ratio the median of the
per-round ratios to the plain run. Reads the runtime's private parts: a diagnostic, not an API.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort

from digitvae.runtime import DigitVAE
from digitvae.runtime.arrays import all_finite
from digitvae.runtime.folders.reading import verified_bytes
from digitvae.runtime.inference.sessions import open_session

_IMAGE = ["image"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()

    vae = DigitVAE.load(args.model)
    if vae.num_classes or not vae.manifest.prior:
        raise SystemExit(f"{args.model}: this script follows unconditional models with a learned prior")
    plain = open_session(verified_bytes(vae.model_dir, vae.manifest.files("fp32")["decoder"]), ort.SessionOptions())
    feed = {"z": np.random.default_rng(0).standard_normal((1, vae.latent_dim), dtype=np.float32)}
    vae.generate(1)  # makes the pool of codes and the runner's buffers
    pool, runner = vae._draws.unseeded._codes[-1], vae._small["decoder"]

    def from_pool() -> Any:
        return runner.run(_IMAGE, {"z": pool.take_one(1)})

    def checked() -> Any:
        found = runner.run(_IMAGE, {"z": pool.take_one(1)})
        return all_finite(found[0]) if found is not None else None

    steps: dict[str, Callable[[], Any]] = {
        "plain InferenceSession.run": lambda: plain.run(_IMAGE, feed),
        "bound run and copy": lambda: runner.run(_IMAGE, feed),
        "+ a code from the pool": from_pool,
        "+ the NaN check": checked,
        "generate(1)": lambda: vae.generate(1),
    }
    for call in steps.values():
        for _ in range(300):
            call()
    gc.disable()  # a collection inside a timed call is noise, not the cost of a step
    medians: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        for name in list(steps)[:: 1 if r % 2 == 0 else -1]:
            call, times = steps[name], []
            for _ in range(args.calls):
                start = time.perf_counter_ns()
                call()
                times.append(time.perf_counter_ns() - start)
            medians[name].append(statistics.median(times) / 1000)
    base = medians["plain InferenceSession.run"]
    print(f"{args.model}: {args.rounds} rounds of {args.calls:,} calls per step")
    for name, values in medians.items():
        ratio = statistics.median(a / b for a, b in zip(values, base))
        print(f"  {name:28} {statistics.median(values):6.1f} us  {ratio:.3f}x the plain run")


if __name__ == "__main__":
    main()
