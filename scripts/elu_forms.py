"""Time a decoder's images-only graph with onnxruntime's Elu against the same graph with ELU as Min/Exp/Sub/Max.

    python scripts/elu_forms.py [--model mnist-vae] [--threads 1] [--rounds 9]

The two sessions take turns in each round, at batches of 1, 16, 128 and 1,024 codes; each
round times a loop of runs, and the figures are the medians over the rounds. Also prints the
largest difference between the two graphs' images. Needs the [train] extra (onnx); nothing in
the model folder changes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort

from digitvae.export.variants import elu_as_min_exp_max
from digitvae.runtime.folders.compose import images_only
from digitvae.runtime.folders.locate import resolve_model_dir

BATCHES = (1, 16, 128, 1024)


def _session(blob: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def _loop(session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int) -> float:
    """Return the mean seconds per run over `runs` runs."""
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feeds)
    return (time.perf_counter() - start) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    source = (resolve_model_dir(args.model) / "decoder.onnx").read_bytes()
    rewritten = onnx.load_from_string(source)
    if not elu_as_min_exp_max(rewritten.graph):
        raise SystemExit(f"{args.model}'s decoder has no Elu of alpha 1")
    elu, kernels = images_only(source), images_only(rewritten.SerializeToString())
    if elu is None or kernels is None:
        raise SystemExit(f"{args.model}'s decoder has no `image` output")
    a, b = _session(elu, args.threads), _session(kernels, args.threads)
    if len(a.get_inputs()) > 1:
        raise SystemExit(f"{args.model} is conditional: this script times unconditional decoders")
    z = np.random.default_rng(0).standard_normal((max(BATCHES), int(a.get_inputs()[0].shape[1]))).astype(np.float32)
    difference = np.abs(a.run(None, {"z": z})[0] - b.run(None, {"z": z})[0]).max()
    print(f"{args.model}, {args.threads} thread(s), {args.rounds} rounds; largest image difference {difference:.2g}")
    for n in BATCHES:
        feeds = {"z": z[:n]}
        runs = max(20, 20_000 // n)
        times: dict[str, list[float]] = {"Elu": [], "Min/Exp/Sub/Max": []}
        for _ in range(args.rounds):
            times["Elu"].append(_loop(a, feeds, runs))
            times["Min/Exp/Sub/Max"].append(_loop(b, feeds, runs))
        ratio = statistics.median(x / y for x, y in zip(times["Elu"], times["Min/Exp/Sub/Max"]))
        figures = ", ".join(f"{name} {1e6 * statistics.median(t):,.1f} us" for name, t in times.items())
        print(f"batch {n:>5}: {figures}; Min/Exp/Sub/Max {ratio:.3f}x as fast")


if __name__ == "__main__":
    main()
