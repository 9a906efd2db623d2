"""The runtime's own overhead: three calls, each against the plainest thing that does its work.

- `generate(1)` against `InferenceSession.run` of the decoder on one preallocated code, with
  the same thread count: what the API adds to a decoder run.
- `generate(1, seed=s)`, a new seed every call, against `decode(z)` of one code: what drawing
  a reproducible code costs on top of decoding it.
- `DigitVAE.load()` in a fresh process against `import onnxruntime, numpy` in one: what the
  runtime adds to a start.

Each pair takes turns inside every repeat; a ratio is the median of the per-repeat ratios of
medians, so both sides of it ran under the same load.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digitvae.runtime.folders.reading import verified_bytes
from digitvae.runtime.inference.providers import normalize, plan
from digitvae.runtime.inference.model import DigitVAE
from digitvae.runtime.inference.sessions import open_session
from digitvae.runtime.options import LoadOptions

from .coldstart import _run_process

#: The ratio each row aims at.
TARGETS = {"generate1": 1.05, "seeded_generate1": 1.5, "load": 1.25}
_PLAIN_IMPORT = "import onnxruntime, numpy"


def runtime_overhead(
    vae: DigitVAE, options: LoadOptions, repeats: int, calls: int, cold_runs: int
) -> dict[str, dict[str, Any]]:
    """Measure the three overhead rows (the load row only when cold_runs > 0)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if options.threads:
        opts.intra_op_num_threads = options.threads
    data = verified_bytes(vae.model_dir, vae.manifest.files(options.variant)["decoder"])
    plain = open_session(data, opts, plan(normalize(vae.providers), strict=True))
    d = vae.latent_dim
    feed: dict[str, np.ndarray] = {"z": np.random.default_rng(0).standard_normal((1, d), dtype=np.float32)}
    labels = np.zeros(1, np.int64) if vae.num_classes else None
    if labels is not None:
        feed["label"] = labels
    seeds = iter(range(1 << 62))
    rows = {
        "generate1": _pair(
            ("generate(1)", lambda: vae.generate(1)),
            ("InferenceSession.run, decoder, one preallocated code", lambda: plain.run(["image"], feed)),
            repeats,
            calls,
        ),
        "seeded_generate1": _pair(
            ("generate(1, seed=s), a new s each call", lambda: vae.generate(1, seed=next(seeds))),
            ("decode(z), one code", lambda: vae.decode(feed["z"], labels)),
            repeats,
            calls,
        ),
    }
    if cold_runs:
        rows["load"] = _cold(options, cold_runs)
    for key, row in rows.items():
        row["target"] = TARGETS[key]
    return rows


def _pair(
    ours: tuple[str, Callable[[], Any]], plain: tuple[str, Callable[[], Any]], repeats: int, calls: int
) -> dict[str, Any]:
    """Time two calls in turns, call by call; return their p50s (median over repeats) and the paired ratio."""
    for _, call in (ours, plain):
        for _ in range(max(10, calls // 10)):  # warm-up: first-run buffers, caches
            call()
    medians: dict[int, list[float]] = {0: [], 1: []}
    for r in range(repeats):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for side in order:
            call = (ours, plain)[side][1]
            times = []
            for _ in range(calls):
                start = time.perf_counter_ns()
                call()
                times.append(time.perf_counter_ns() - start)
            medians[side].append(statistics.median(times) / 1000)
    return {
        "ours": ours[0],
        "plain": plain[0],
        "ours_us": statistics.median(medians[0]),
        "plain_us": statistics.median(medians[1]),
        "ratio": statistics.median(a / b for a, b in zip(medians[0], medians[1])),
        "repeats": repeats,
        "calls": calls,
    }


def load_code(options: LoadOptions) -> str:
    """Return the Python a fresh process runs to load the model as `options` say (argv[1]: them as JSON)."""
    if options == LoadOptions():
        return "from digitvae.runtime import DigitVAE; DigitVAE.load()"
    return "import sys; from digitvae.runtime import DigitVAE, LoadOptions; DigitVAE.from_options(LoadOptions.from_json(sys.argv[1]))"


def _cold(options: LoadOptions, runs: int) -> dict[str, Any]:
    """Time fresh processes that load the model against ones that import onnxruntime and numpy, in turns."""
    code = load_code(options)
    ours = [sys.executable, "-c", code, options.to_json()]
    plain = [sys.executable, "-c", _PLAIN_IMPORT]
    walls: dict[int, list[float]] = {0: [], 1: []}
    with tempfile.TemporaryDirectory(prefix="digitvae-bench-") as tmp:
        for i in range(runs + 1):  # the first pair warms the file cache
            for side in (0, 1) if i % 2 == 0 else (1, 0):
                wall, _ = _run_process((ours, plain)[side], Path(tmp))
                if i:
                    walls[side].append(wall)
    return {
        "ours": f'python -c "{code}"',
        "plain": f'python -c "{_PLAIN_IMPORT}"',
        "ours_us": statistics.median(walls[0]) * 1e6,
        "plain_us": statistics.median(walls[1]) * 1e6,
        "ratio": statistics.median(a / b for a, b in zip(walls[0], walls[1])),
        "repeats": runs,
        "calls": 1,
    }
