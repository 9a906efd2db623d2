"""Speed on this machine: latency, throughput, the hardware bound and cold start of a model.

Every figure compares the public API (DigitVAE) with a plain onnxruntime.InferenceSession
made with default options on the same ONNX file, and with torch eager when torch is installed.
The contenders take turns inside each repeat, so their ratios come from the same conditions;
each figure is the best of the repeats, each ratio the median of the per-repeat ratios.
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from digitvae.runtime.folders.locate import DEFAULT_MODEL
from digitvae.runtime.folders.reading import verified_bytes
from digitvae.runtime.inference.model import DigitVAE
from digitvae.runtime.inference.providers import normalize, plan
from digitvae.runtime.inference.sessions import open_session
from digitvae.runtime.options import LoadOptions

from .bounds import gemm_peak, latency_bound, throughput_bound
from .coldstart import BASELINE, cold_start
from .targets import measure_targets

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how often."""

    model: str = DEFAULT_MODEL
    variant: str = "fp32"
    providers: list[str] | None = None
    threads: int | None = None
    repeats: int = 7
    latency_calls: int = 300
    batches: tuple[int, ...] = (1, 64, 1024)
    reconstruct_batch: int = 1024
    gemm_size: int = 2048
    #: Seconds each contender spends on each throughput task in each repeat.
    slot_s: float = 0.3
    cold_runs: int = 7
    torch: bool = True

    @property
    def load_options(self) -> LoadOptions:
        """Return how every contender and cold-start run loads the model."""
        return LoadOptions(self.model, self.variant, tuple(self.providers or ()), threads=self.threads)


class QuickSettings(TypedDict):
    """The BenchConfig fields that a quick run changes."""

    repeats: int
    latency_calls: int
    batches: tuple[int, ...]
    reconstruct_batch: int
    gemm_size: int
    slot_s: float
    cold_runs: int


#: A configuration that runs in a few seconds: the same report, not to be quoted.
QUICK: QuickSettings = {
    "repeats": 2,
    "latency_calls": 20,
    "batches": (1, 64, 256),
    "reconstruct_batch": 256,
    "gemm_size": 512,
    "slot_s": 0.005,
    "cold_runs": 1,
}


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Measure everything and return the report as JSON-ready data."""
    vae = DigitVAE.from_options(config.load_options)
    contenders = {"digitvae": _PublicAPI(vae), BASELINE: _PlainSessions(vae, config.variant)}
    torch_note = "not measured (left out)"
    if config.torch:
        from .torch_twin import torch_contender

        twin = torch_contender(vae)
        if isinstance(twin, str):
            torch_note = twin
        else:
            contenders["torch"], torch_note = twin, "torch eager, float32 weights"
            if vae.manifest.prior:
                torch_note += "; its generate decodes N(0, I) draws (the learned prior is not rebuilt in torch)"
    report: dict[str, Any] = {
        "machine": _machine(),
        "model": vae.name,
        "variant": config.variant,
        "providers": vae.providers,
        "threads": config.threads or "default",
        "repeats": config.repeats,
        "torch": torch_note,
    }
    gc.collect()
    gc.disable()  # a collection inside a timed call is noise, not the model's cost
    try:
        latency = _latency(contenders, config)
        report["latency"], report["latency_decode"] = latency["generate1"], latency["decode1"]
        # The median over repeats of each repeat's generate p50 / decode p50, measured back to back.
        report["generate_over_decode"] = latency["generate_over_decode"]
        report["throughput"], peaks = _throughput(contenders, vae, config)
    finally:
        gc.enable()
    task = f"decode_{max(config.batches)}"
    report["bound"] = throughput_bound(vae, peaks, report["throughput"], config.gemm_size, task)
    calls = max(20, config.latency_calls // 2)
    report["latency_bound"] = latency_bound(vae, report["latency"], calls, config.repeats)
    if config.cold_runs:
        report["cold_start"] = cold_start(config.load_options, config.cold_runs)
    # Every row is timed in child processes of its own (targets.measure_targets).
    report["targets"] = measure_targets(
        vae, config.load_options, config.repeats, config.latency_calls * 10, config.cold_runs, config.gemm_size
    )
    return report


class _PublicAPI:
    """The contender `digitvae`: the public API, DigitVAE's own calls."""

    def __init__(self, vae: DigitVAE) -> None:
        self.vae = vae

    def generate1(self) -> Any:
        return self.vae.generate(1)

    def decode1(self) -> Any:
        return self.vae.decode(_FIXED_CODES[self.vae.latent_dim], _labels(self.vae, 1))

    def decode(self, z: np.ndarray, labels: np.ndarray | None) -> Any:
        return self.vae.decode(z, labels)

    def reconstruct(self, x: np.ndarray, labels: np.ndarray | None) -> Any:
        return self.vae.reconstruct(x, labels)


class _PlainSessions:
    """The contender `onnxruntime`: plain InferenceSessions with default options on the same files, as a user would write."""

    def __init__(self, vae: DigitVAE, variant: str) -> None:
        files = vae.manifest.files(variant)
        # The providers the model really runs on, plugin EPs included, with default session options.
        chosen = plan(normalize(vae.providers), strict=True)
        self.encoder, self.decoder = (
            open_session(verified_bytes(vae.model_dir, files[role]), None, chosen) for role in ("encoder", "decoder")
        )
        # With a learned prior, generating is a run of its sampler, then of the decoder.
        self.prior = (
            open_session(verified_bytes(vae.model_dir, files["prior"]), None, chosen) if vae.manifest.prior else None
        )
        self.rng = np.random.default_rng()
        self.d, self.classes = vae.latent_dim, vae.num_classes

    def _feeds(self, key: str, value: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
        return {key: value} if labels is None else {key: value, "label": labels}

    def generate1(self) -> Any:
        z = self.rng.standard_normal((1, self.d), dtype=np.float32)
        labels = np.zeros(1, np.int64) if self.classes else None
        if self.prior is not None:
            label = np.zeros(1, np.int64) if self.classes else np.full(1, -1, np.int64)
            feeds = {"noise": z, "uniform": self.rng.random(1, dtype=np.float32), "label": label}
            z = self.prior.run(["z"], feeds)[0]
        return self.decoder.run(["image"], self._feeds("z", z, labels))[0].reshape(1, 28, 28)

    def decode1(self) -> Any:
        labels = np.zeros(1, np.int64) if self.classes else None
        return self.decode(_FIXED_CODES[self.d], labels)

    def decode(self, z: np.ndarray, labels: np.ndarray | None) -> Any:
        return self.decoder.run(["image"], self._feeds("z", z, labels))[0].reshape(len(z), 28, 28)

    def reconstruct(self, x: np.ndarray, labels: np.ndarray | None) -> Any:
        mean = self.encoder.run(["mean"], self._feeds("image", x.reshape(len(x), 1, 28, 28), labels))[0]
        return self.decode(mean, labels)


class _FixedCodes(dict[int, np.ndarray]):
    """A fixed code [1, D] per latent size, made on first use."""

    def __missing__(self, d: int) -> np.ndarray:
        self[d] = np.random.default_rng(0).standard_normal((1, d), dtype=np.float32)
        return self[d]


_FIXED_CODES = _FixedCodes()


def _latency(contenders: dict[str, Any], config: BenchConfig) -> dict[str, dict[str, Any]]:
    """Time batch-1 generate and decode call by call; p50 and p99 in microseconds.

    Each contender times both calls in each repeat, so generate / decode is a paired ratio too.
    """
    methods = ("generate1", "decode1")
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {m: {name: [] for name in contenders} for m in methods}
    for repeat in range(config.repeats):
        for name in _rotated(contenders, repeat):
            for method in methods:
                fn = getattr(contenders[name], method)
                for _ in range(max(3, config.latency_calls // 10)):
                    fn()
                times = np.empty(config.latency_calls)
                for i in range(config.latency_calls):
                    start = time.perf_counter_ns()
                    fn()
                    times[i] = time.perf_counter_ns() - start
                runs[method][name].append(
                    (float(np.percentile(times, 50)) / 1e3, float(np.percentile(times, 99)) / 1e3)
                )
    tables: dict[str, dict[str, Any]] = {}
    for method, by_name in runs.items():
        table: dict[str, Any] = {"calls": config.latency_calls, "unit": "us"}
        for name, values in by_name.items():
            table[name] = {
                "p50": min(v[0] for v in values),
                "p99": min(v[1] for v in values),
                "ratio_to_onnxruntime": _paired_ratio([v[0] for v in values], [v[0] for v in by_name[BASELINE]]),
            }
        tables[method] = table
    tables["generate_over_decode"] = {
        name: _paired_ratio([v[0] for v in runs["generate1"][name]], [v[0] for v in runs["decode1"][name]])
        for name in contenders
    }
    return tables


def _throughput(contenders: dict[str, Any], vae: DigitVAE, config: BenchConfig) -> tuple[dict[str, Any], list[float]]:
    """Return digits/s per task and contender, and the GEMM peaks measured between repeats."""
    rng = np.random.default_rng(0)
    tasks: dict[str, tuple[str, np.ndarray, np.ndarray | None]] = {}
    for b in config.batches:
        tasks[f"decode_{b}"] = ("decode", rng.standard_normal((b, vae.latent_dim), dtype=np.float32), _labels(vae, b))
    n = config.reconstruct_batch
    digits = vae.decode(rng.standard_normal((n, vae.latent_dim), dtype=np.float32), _labels(vae, n))
    tasks[f"reconstruct_{n}"] = ("reconstruct", digits, _labels(vae, n))
    seconds: dict[str, dict[str, list[float]]] = {t: {c: [] for c in contenders} for t in tasks}
    peaks = []
    for repeat in range(config.repeats):
        peaks.append(gemm_peak(config.gemm_size))
        for task, (method, data, labels) in tasks.items():
            for name in _rotated(contenders, repeat):
                fn = getattr(contenders[name], method)
                start = time.perf_counter()
                fn(data, labels)  # warm-up, and a first estimate of how many calls fill the time slot
                calls = int(min(256, max(1, config.slot_s / (time.perf_counter() - start))))
                start = time.perf_counter()
                for _ in range(calls):
                    fn(data, labels)
                seconds[task][name].append((time.perf_counter() - start) / calls / len(data))
    result: dict[str, Any] = {"unit": "digits/s"}
    for task, per in seconds.items():
        result[task] = {name: 1.0 / min(times) for name, times in per.items()}
        result[task]["ratio_to_onnxruntime"] = {
            name: _paired_ratio(per[BASELINE], times) for name, times in per.items()
        }
    return result, peaks


def _labels(vae: DigitVAE, n: int) -> np.ndarray | None:
    return np.arange(n, dtype=np.int64) % vae.num_classes if vae.num_classes else None


def _rotated(contenders: dict[str, Any], repeat: int) -> list[str]:
    """Return the contenders' names in an order that moves by one each repeat."""
    names = list(contenders)
    k = repeat % len(names)
    return names[k:] + names[:k]


def _paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def _machine() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
