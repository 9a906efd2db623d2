"""The runtime's speed targets, each as a ratio measured in one run against the plainest thing doing the same work.

- `generate(1)` against `InferenceSession.run` of the decoder on one preallocated code, with
  the same thread count: what the API, the prior included, adds to a decoder run.
- `generate(1, seed=s)`, a new seed every call, against `decode(z)` of one code: what drawing
  a reproducible code costs on top of decoding it.
- fp32 `decode` of 1,024 codes against numpy's float32 GEMM peak over the decoder's FLOPs: how
  near bulk generation comes to the hardware.
- int8 against fp32 `decode` of the same 1,024 codes: what the int8 variant buys.
- `DigitVAE.load()` in a fresh process against `import onnxruntime, numpy` in one: what the
  runtime adds to a start.

Each pair takes turns inside every repeat, so both sides of a ratio ran under the same load; a
ratio is the median of the per-repeat ratios (the bound's: the best decode over the best peak).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from digitvae.runtime.errors import DigitVAEError
from digitvae.runtime.folders.reading import verified_bytes
from digitvae.runtime.inference.model import DigitVAE
from digitvae.runtime.inference.providers import normalize, plan
from digitvae.runtime.inference.sessions import open_session
from digitvae.runtime.options import LoadOptions

from .bounds import decoder_cost
from .coldstart import in_turns

#: Each row's target: (at most, at least).
TARGETS: dict[str, tuple[str, float]] = {
    "generate1": ("at most", 1.05),
    "seeded_generate1": ("at most", 1.5),
    "decode1024_bound": ("at least", 0.85),
    "int8_speedup": ("at least", 3.0),
    "load": ("at most", 1.25),
}
_PLAIN_IMPORT = "import onnxruntime, numpy"


def measure_targets(
    vae: DigitVAE, options: LoadOptions, repeats: int, calls: int, cold_runs: int, gemm_size: int = 2048
) -> dict[str, dict[str, Any]]:
    """Measure the rows of the targets table (the load row only when cold_runs > 0).

    Every row is measured in processes of its own: the report's other contenders, loaded in
    this one, keep thread pools whose spinning would take cores from the pairs.
    """
    rows: dict[str, dict[str, Any]] = json.loads(
        _child([_PAIRS_CHILD, options.to_json(), str(repeats), str(calls)], "latency")
    )
    rows.update(_bulk_rows(vae, options, repeats, gemm_size))
    if cold_runs:
        rows["load"] = _cold(options, cold_runs)
    for key, row in rows.items():
        row["target"], row["limit"] = TARGETS[key]
        row["met"] = row["ratio"] <= row["limit"] if row["target"] == "at most" else row["ratio"] >= row["limit"]
    return rows


#: The child that measures the two latency rows: argv[1] the load options as JSON, then repeats and calls.
_PAIRS_CHILD = """import json, sys
from digitvae.bench.targets import latency_rows
from digitvae.runtime import LoadOptions
print(json.dumps(latency_rows(LoadOptions.from_json(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
"""


def latency_rows(options: LoadOptions, repeats: int, calls: int) -> dict[str, dict[str, Any]]:
    """Time generate(1) against a plain decoder run, and generate(1, seed) against decode(1), in this process."""
    import gc

    import onnxruntime as ort

    vae = DigitVAE.from_options(options)
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
    gc.disable()  # a collection inside a timed call is noise, not the model's cost
    return {
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


#: A child that loads one variant alone and prints the median seconds of `calls` decodes of 1,024 fixed codes.
_DECODE_CHILD = """import statistics, sys, time
import numpy as np
from digitvae.runtime import DigitVAE, LoadOptions
vae = DigitVAE.from_options(LoadOptions.from_json(sys.argv[1]))
z = np.random.default_rng(1).standard_normal((1024, vae.latent_dim), dtype=np.float32)
labels = np.arange(1024, dtype=np.int64) % vae.num_classes if vae.num_classes else None
times = []
for i in range(int(sys.argv[2]) + 3):
    start = time.perf_counter()
    vae.decode(z, labels)
    times.append(time.perf_counter() - start)
print(statistics.median(times[3:]))
"""
#: A child that prints numpy's float32 GEMM peak in FLOP/s on size x size matrices (bounds.gemm_peak).
_GEMM_CHILD = "import sys; from digitvae.bench.bounds import gemm_peak; print(gemm_peak(int(sys.argv[1])))"


def _bulk_rows(vae: DigitVAE, options: LoadOptions, repeats: int, gemm_size: int) -> dict[str, dict[str, Any]]:
    """Time fp32 and int8 decode of 1,024 codes in turns, then numpy's GEMM, each alone in a process of its own.

    Alone, because each loaded model keeps a thread pool whose threads spin for a while after
    every call (and OpenBLAS's after every product): with the variants in one process, one's
    spinning threads took the other's cores (int8 measured 1.2x fp32 so, 2.6x with the spinning
    off). Returns the rows decode1024_bound (where model.json records the decoder's FLOPs) and
    int8_speedup (where the model has an int8 variant).
    """
    variants = ["fp32", *(["int8"] if "int8" in vae.manifest.variants else [])]
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(repeats):
        for kind in variants[r % 2 :] + variants[: r % 2]:
            child = LoadOptions(options.model, kind, options.providers, threads=options.threads)
            seconds[kind].append(float(_child([_DECODE_CHILD, child.to_json(), "15"], f"{kind} decode")))
    # The GEMMs after all the decodes, not between them: on a 2-core VM, decodes right after numpy's
    # 2048^3 GEMM ran slower for a minute or more (int8 4.8 ms against 2.6, fp32 9.3 against 7.6).
    peaks = [float(_child([_GEMM_CHILD, str(gemm_size)], "GEMM")) for _ in range(repeats)]
    rows: dict[str, dict[str, Any]] = {}
    flops = decoder_cost(vae, "flops_per_digit")
    if flops is not None:
        bound = max(peaks) / flops
        rows["decode1024_bound"] = {
            "ours": "fp32 decode, batch 1024, digits/s",
            "plain": f"the GEMM bound (numpy float32 {gemm_size}^3 at its peak / decoder FLOPs; each alone in a process)",
            "ours_us": 1024 / min(seconds["fp32"]),
            "plain_us": bound,
            "unit": "digits/s",
            "ratio": 1024 / min(seconds["fp32"]) / bound,
        }
    if "int8" in seconds:
        rows["int8_speedup"] = {
            "ours": "int8 decode, batch 1024",
            "plain": "fp32 decode, batch 1024 (each alone in a process)",
            "ours_us": statistics.median(seconds["int8"]) * 1e6,
            "plain_us": statistics.median(seconds["fp32"]) * 1e6,
            "ratio": statistics.median(b / a for a, b in zip(seconds["int8"], seconds["fp32"])),
        }
    return rows


def _child(args: list[str], what: str) -> str:
    """Run `python -c ARGS...` and return what it prints; a failure is a DigitVAEError naming `what`."""
    found = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, check=False)
    if found.returncode:
        last = (found.stderr.strip().splitlines() or ["no output"])[-1]
        raise DigitVAEError(f"the {what} child failed with exit status {found.returncode}: {last}")
    return found.stdout


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
    samples = in_turns({"ours": ours, "plain": plain}, runs)
    walls = {name: [wall for wall, _ in values] for name, values in samples.items()}
    return {
        "ours": f'python -c "{code}"',
        "plain": f'python -c "{_PLAIN_IMPORT}"',
        "ours_us": statistics.median(walls["ours"]) * 1e6,
        "plain_us": statistics.median(walls["plain"]) * 1e6,
        "ratio": statistics.median(a / b for a, b in zip(walls["ours"], walls["plain"])),
    }
