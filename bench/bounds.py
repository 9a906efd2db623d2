"""The hardware bounds a bench report compares with: numpy's GEMM peak and the time to stream the decoder's weights."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from digitvae.runtime.inference.model import DigitVAE


def gemm_peak(size: int) -> float:
    """Return the float32 FLOP/s of numpy's matrix product of two size x size matrices (best of 2)."""
    a = np.ones((size, size), np.float32)
    b = np.full((size, size), 0.5, np.float32)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        np.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def throughput_bound(
    vae: DigitVAE, peaks: list[float], throughput: dict[str, Any], gemm_size: int, task: str
) -> dict[str, Any]:
    """Compare the throughput of `task` (decode at the largest batch) with the decoder's FLOPs at the GEMM peak."""
    peak = max(peaks)
    flops = decoder_cost(vae, "flops_per_digit")
    result: dict[str, Any] = {"gemm_flops_per_s": peak, "gemm": f"numpy float32 {gemm_size}x{gemm_size}"}
    if flops is None:
        result["note"] = "model.json records no decoder FLOPs (metrics.cost); re-export or run `digitvae variants`"
        return result
    bound = peak / flops
    result.update(
        flops_per_digit=flops,
        digits_per_s=bound,
        task=task,
        fraction={name: throughput[task][name] / bound for name in throughput[task]["ratio_to_onnxruntime"]},
    )
    return result


def decoder_cost(vae: DigitVAE, key: str) -> float | None:
    """Return a positive figure from model.json's metrics.cost.decoder, or None."""
    cost = vae.manifest.metrics.get("cost")
    decoder = cost.get("decoder") if isinstance(cost, dict) else None
    value = decoder.get(key) if isinstance(decoder, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return None
    return value


def gemv_seconds(parameters: int, calls: int = 200) -> float:
    """Return the median time of a numpy float32 matrix-vector product over `parameters` weights.

    At batch 1 a decoder reads each weight once and does two FLOPs with it, so streaming the
    weights from wherever they live between calls bounds its latency, not arithmetic.
    """
    cols = 512
    matrix = np.full((-(-parameters // cols), cols), 0.5, np.float32)
    vector = np.ones(cols, np.float32)
    for _ in range(max(1, calls // 10)):
        matrix @ vector
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter_ns()
        matrix @ vector
        times[i] = time.perf_counter_ns() - start
    return float(np.median(times)) / 1e9


def latency_bound(vae: DigitVAE, latency: dict[str, Any], calls: int, repeats: int) -> dict[str, Any]:
    """Compare batch-1 p50 latency with the median time to stream the decoder's float32 weights once.

    That time is the best of `repeats` medians over `calls` matrix-vector products.
    """
    parameters = decoder_cost(vae, "parameters")
    if parameters is None:
        return {"note": "model.json records no decoder parameter count (metrics.cost)"}
    parameters = int(parameters)
    gemv_us = min(gemv_seconds(parameters, calls) for _ in range(repeats)) * 1e6
    names = [name for name in latency if isinstance(latency[name], dict)]
    return {
        "parameters": parameters,
        "weights_mib": parameters * 4 / (1 << 20),
        "gemv_us": gemv_us,
        "gemv": f"numpy float32 matrix-vector product over {parameters:,} weights",
        "fraction": {name: gemv_us / latency[name]["p50"] for name in names},
    }
