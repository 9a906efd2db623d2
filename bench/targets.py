"""The runtime's speed targets, each as a ratio measured in one run against the plainest thing doing the same work.

- `generate(1)` against `InferenceSession.run` of the decoder on one preallocated code, with
  the same thread count: what the API, the prior included, adds to a decoder run.
- `generate(1, seed=s)`, a new seed every call, against `decode(z)` of one code: what drawing
  a reproducible code costs on top of decoding it.
- int8 against fp32 `decode` of the same 1,024 codes: what the int8 variant buys.
- `DigitVAE.load()` in a fresh process against `import onnxruntime, numpy` in one: what the
  runtime adds to a start.

The fraction of the GEMM bound at batch 1,024 comes from the throughput part of the report.
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
from digitvae.runtime.inference.model import DigitVAE
from digitvae.runtime.inference.providers import normalize, plan
from digitvae.runtime.inference.sessions import open_session
from digitvae.runtime.options import LoadOptions

from .coldstart import _run_process

#: Each row's target: (at most, at least).
TARGETS: dict[str, tuple[str, float]] = {
    "generate1": ("at most", 1.05),
    "seeded_generate1": ("at most", 1.5),
    "decode1024_bound": ("at least", 0.85),
    "int8_speedup": ("at least", 3.0),
    "load": ("at most", 1.25),
}
_PLAIN_IMPORT = "import onnxruntime, numpy"
_BULK = 1024


def measure_targets(
    vae: DigitVAE,
    options: LoadOptions,
    repeats: int,
    calls: int,
    cold_runs: int,
    bound: tuple[int, float | None],
) -> dict[str, dict[str, Any]]:
    """Measure the rows of the targets table (the load row only when cold_runs > 0).

    `bound` is the largest decode batch of the throughput part and the fraction of the GEMM
    bound it reached (None where the model records no decoder FLOPs).
    """
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
    batch, fraction = bound
    if fraction is not None:
        rows["decode1024_bound"] = {
            "ours": f"decode, batch {batch}",
            "plain": "the GEMM bound (see hardware bound)",
            "ratio": fraction,
        }
    int8 = _int8_speedup(vae, options, repeats)
    if int8 is not None:
        rows["int8_speedup"] = int8
    if cold_runs:
        rows["load"] = _cold(options, cold_runs)
    for key, row in rows.items():
        row["target"], row["limit"] = TARGETS[key]
        row["met"] = row["ratio"] <= row["limit"] if row["target"] == "at most" else row["ratio"] >= row["limit"]
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
        for side in (0, 1) if r % 2 == 0 else (1, 0):
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
    }


def _int8_speedup(vae: DigitVAE, options: LoadOptions, repeats: int) -> dict[str, Any] | None:
    """Time int8 and fp32 `decode` of the same 1,024 codes in turns; None where the model has no int8 variant."""
    if "int8" not in vae.manifest.variants:
        return None
    models = {
        v: DigitVAE.from_options(LoadOptions(options.model, v, options.providers, threads=options.threads))
        for v in ("int8", "fp32")
    }
    z = np.random.default_rng(1).standard_normal((_BULK, vae.latent_dim), dtype=np.float32)
    labels = np.arange(_BULK, dtype=np.int64) % vae.num_classes if vae.num_classes else None
    row = _pair(
        ("int8 decode, batch 1024", lambda: models["int8"].decode(z, labels)),
        ("fp32 decode, batch 1024", lambda: models["fp32"].decode(z, labels)),
        repeats,
        9,
    )
    row["ratio"] = 1 / row["ratio"]  # a speed-up: fp32 time over int8 time
    return row


def load_code(options: LoadOptions) -> str:
    """Return the Python a fresh process runs to load the model as `options` say (argv[1]: them as JSON)."""
    if options == LoadOptions():
        return "from digitvae.runtime import DigitVAE; DigitVAE.load()"
    return (
        "import sys; from digitvae.runtime import DigitVAE, LoadOptions; "
        "DigitVAE.from_options(LoadOptions.from_json(sys.argv[1]))"
    )


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
    }
