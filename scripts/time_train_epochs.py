"""Time training epochs: one process against torchrun's K, interleaved, on the same digits.

Each run trains a fresh model for --epochs epochs in its own folder; the seconds of each epoch
(validation included, as `digitvae train` prints them) come from the run's last.pt. Runs of one
preset are interleaved (repeat 1: every launch, repeat 2: every launch, ...), so a load that
changes over time weighs on every launch alike. After each repeat the weights of every launch
are compared with those of the first.

    python scripts/time_train_epochs.py --data ~/.cache/digitvae/mnist
    python scripts/time_train_epochs.py --tile train5k-images-idx3-ubyte.gz --times 12 \\
        --valid valid5k-images-idx3-ubyte.gz --launch plain --launch torchrun:2
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from digitvae.runtime.digits.idx import labels_beside, read_idx, write_idx


def tile(images: Path, times: int, folder: Path) -> Path:
    """Write `times` copies of an images file (and its labels) one after the other; return the images file."""
    out = folder / "train-images-idx3-ubyte"
    write_idx(np.concatenate([read_idx(images)] * times), out, compress=False)
    labels = labels_beside(images)
    if labels is not None:
        write_idx(np.concatenate([read_idx(labels)] * times), folder / "train-labels-idx1-ubyte", compress=False)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(launch: str, args: list[str]) -> list[str]:
    """Return the command line of one launch: `plain` or `plain:T` (python -m, T threads), or `torchrun:K`."""
    if launch.startswith("plain"):
        return [sys.executable, "-m", "digitvae.train", *args]
    processes = int(launch.split(":", 1)[1])
    return [
        *(sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"),
        *("--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "digitvae.train", *args),
    ]


def run(launch: str, args: list[str]) -> tuple[list[float], dict[str, torch.Tensor], float, str]:
    """Run one launch; return its epochs' seconds, final weights, the whole command's wall time, its first line."""
    start = time.perf_counter()
    env = {**os.environ, "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    if launch.startswith("plain:"):
        # torch's CPU threads; torchrun gives each of several processes one.
        env["OMP_NUM_THREADS"] = launch.split(":", 1)[1]
    done = subprocess.run(command(launch, args), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{launch} failed:\n{done.stdout}\n{done.stderr}")
    out = Path(args[args.index("-o") + 1])
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    header = done.stdout.splitlines()[0] if done.stdout else ""
    return [float(h["seconds"]) for h in state["history"]], state["model"], wall, header


def difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, float, str]:
    """Return the largest absolute weight difference, that over the largest weight, and the tensor it is in."""
    worst = {k: float((a[k] - b[k]).abs().max()) for k in a}
    name = max(worst, key=worst.__getitem__)
    return worst[name], worst[name] / max(float(a[k].abs().max()) for k in a), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder of MNIST IDX files, as `digitvae train --data`")
    source.add_argument("--tile", type=Path, help="training images to repeat --times times (labels beside them too)")
    parser.add_argument("--times", type=int, default=12, help="copies of --tile (default 12)")
    parser.add_argument("--valid", type=Path, help="validation images (with --tile)")
    parser.add_argument("--preset", action="append", help="preset(s) to time (default: iwae-mix and geron)")
    parser.add_argument(
        "--launch", action="append", help="plain, plain:T (T threads) or torchrun:K (default: plain, torchrun:2)"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    options = parser.parse_args()
    presets = options.preset or ["iwae-mix", "geron"]
    launches = options.launch or ["plain", "torchrun:2"]

    with tempfile.TemporaryDirectory(prefix="digitvae-epochs-") as work:
        folder = Path(work)
        if options.tile is not None:
            if options.valid is None:
                parser.error("--tile needs --valid")
            data = ["--train", str(tile(options.tile, options.times, folder)), "--valid", str(options.valid)]
        else:
            data = ["--data", str(options.data)]
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {options.device}, data {' '.join(data)}")
        for preset in presets:
            seconds: dict[str, list[float]] = {launch: [] for launch in launches}
            for repeat in range(options.repeats):
                weights = {}
                for launch in launches:
                    out = folder / f"{preset}-{launch.replace(':', '')}-{repeat}"
                    args = ["--preset", preset, *data, "--epochs", str(options.epochs), "--device", options.device]
                    epochs, weights[launch], wall, header = run(launch, [*args, "-o", str(out)])
                    if repeat == 0:
                        print(f"{preset:9} {launch:11} {header}")
                    seconds[launch] += epochs
                    shown = " ".join(f"{s:.2f}" for s in epochs)
                    print(f"{preset:9} {launch:11} repeat {repeat + 1}: epochs {shown} s; whole command {wall:.1f} s")
                for launch in launches[1:]:
                    worst, relative, name = difference(weights[launches[0]], weights[launch])
                    print(
                        f"{preset:9} {launch:11} vs {launches[0]}: max |weight difference| {worst:.3g} ({relative:.3g} relative) in {name}"
                    )
            for launch in launches:
                print(f"{preset:9} {launch:11} median {statistics.median(seconds[launch]):.2f} s per epoch")


if __name__ == "__main__":
    main()
