"""Data-parallel training: two gloo processes on loopback reach the weights of one process, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import free_ports, invoke, ok
from mnist_files import TRAIN_IMAGES, VALID_IMAGES
from train_extra import needs_torch

pytestmark = [needs_torch, pytest.mark.heavy]  # trains in two processes

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
DATA = ["--train", str(TRAIN_IMAGES), "--valid", str(VALID_IMAGES)]
BATCH = ["--batch-size", "74"]
#: Float tolerance, relative to the largest weight of the run: summing a batch in two halves
#: changes the last bits of each gradient, and Adam carries that on for a few steps.
RELATIVE = 1e-5


def _loopback_env(port: int) -> dict[str, str]:
    # gloo would otherwise pick the interface the host name resolves to.
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo"}


def _rank(rank: int, world_size: int, jobs: list[tuple[int, list[str]]], report: str) -> None:
    """Run each job's `train` arguments as one rank, the way torchrun starts it; record how each ended."""
    from digitvae.cli.train import train
    from digitvae.train.ddp import PeerFailed

    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)})
    outcomes = []
    for port, args in jobs:
        os.environ.update(_loopback_env(port))
        try:
            train.main(args, standalone_mode=False)
            outcomes.append("ok")
        except PeerFailed:
            outcomes.append("peer failed")
        except SystemExit as exc:  # how the command ends a process that stays silent
            outcomes.append(f"exit {exc.code}")
        except Exception as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
    Path(report, f"rank{rank}.json").write_text(json.dumps(outcomes))


def _distributed(jobs: list[list[str]], report: Path, world_size: int = 2) -> list[list[str]]:
    """Run jobs one after the other on world_size gloo processes; return each rank's outcomes."""
    import torch.multiprocessing as mp

    report.mkdir()
    ports = free_ports(len(jobs))
    mp.spawn(_rank, args=(world_size, list(zip(ports, jobs)), str(report)), nprocs=world_size)
    return [json.loads((report / f"rank{r}.json").read_text()) for r in range(world_size)]


def _weights(run: Path) -> dict[str, Any]:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)


def _difference(a: Path, b: Path) -> tuple[float, float, float, int]:
    """Compare two runs' weights.

    Return the largest absolute difference, that over the largest weight, the norm of all the
    differences over the norm of all the weights, and how many weights differ by more than
    1e-5 of the largest weight.
    """
    wa, wb = _weights(a)["model"], _weights(b)["model"]
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    scale = max(float(wa[k].abs().max()) for k in wa)
    norm = sum(float((wa[k].double() - wb[k].double()).square().sum()) for k in wa) ** 0.5
    size = sum(float(wa[k].double().square().sum()) for k in wa) ** 0.5
    apart = sum(int(((wa[k] - wb[k]).abs() > RELATIVE * scale).sum()) for k in wa)
    return worst, worst / scale, norm / size, apart


def test_a_rank_takes_its_contiguous_share_of_every_batch() -> None:
    from digitvae.train.ddp import Processes

    for world_size in (1, 2, 3, 4):
        for size in (0, 1, 2, 5, 74, 75):
            shares = [Processes(rank=r, world_size=world_size).shard(size) for r in range(world_size)]
            covered = [i for s in shares for i in range(size)[s]]
            assert covered == list(range(size)), (world_size, size)
            lengths = [len(range(size)[s]) for s in shares]
            assert max(lengths) - min(lengths) <= 1


def test_a_global_batch_the_processes_cannot_share_is_refused() -> None:
    from digitvae.runtime.errors import InputError
    from digitvae.train.ddp import Processes

    Processes(rank=1, world_size=2).check_batch_size(74)
    with pytest.raises(InputError, match="--batch-size 75 is the global batch .* multiple of the 2 processes"):
        Processes(rank=1, world_size=2).check_batch_size(75)


def _first_297(folder: Path) -> list[str]:
    """Write the first 297 fixture digits with their labels; return the data options naming them.

    In batches of 74 that is four full batches (37 digits a rank) and a last one of a single
    digit: one rank gets it, the other an empty share.
    """
    from digitvae.runtime.digits.idx import read_idx, write_idx

    folder.mkdir()
    labels = TRAIN_IMAGES.with_name("train-labels-idx1-ubyte.gz")
    write_idx(read_idx(TRAIN_IMAGES)[:297], folder / TRAIN_IMAGES.name)
    write_idx(read_idx(labels)[:297], folder / labels.name)
    return ["--train", str(folder / TRAIN_IMAGES.name), "--valid", str(VALID_IMAGES)]


def test_two_processes_reach_the_weights_of_one_and_resume(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = _first_297(tmp_path / "data")
    single = {}
    # One thread, as each rank has: the comparison is then of the split alone. With every core, a
    # process on a many-core machine rounds its sums differently, DDP or not (docs/training.md).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for preset in ("geron", "iwae-mix"):
            single[preset] = tmp_path / f"one-{preset}"
            ok(invoke("train", "--preset", preset, *data, *BATCH, "--epochs", "2", "-o", single[preset]))
    finally:
        torch.set_num_threads(threads)
    capfd.readouterr()
    two = {preset: tmp_path / f"two-{preset}" for preset in ("geron", "iwae-mix", "resumed", "odd")}
    outcomes = _distributed(
        [
            # geron: the closed-form KL, no augmentation; iwae-mix: the 3-sample bound, distorted
            # digits and a prior learned per class.
            ["--preset", "geron", *data, *BATCH, "--epochs", "2", "-o", str(two["geron"])],
            ["--preset", "iwae-mix", *data, *BATCH, "--epochs", "2", "-o", str(two["iwae-mix"])],
            ["--preset", "geron", *data, *BATCH, "--epochs", "1", "-o", str(two["resumed"])],
            ["--resume", "--epochs", "2", *data, "-o", str(two["resumed"])],
            ["--preset", "geron", *data, "--batch-size", "75", "--epochs", "1", "-o", str(two["odd"])],
        ],
        tmp_path / "report",
    )
    assert outcomes == [["ok"] * 4 + ["exit 1"]] * 2
    # Rank 0 says why, once; rank 1 leaves quietly with a failure status. Only rank 0 reports epochs.
    printed = capfd.readouterr()
    assert [line for line in printed.err.splitlines() if "error" in line.lower()] == [
        "error: --batch-size 75 is the global batch and must be a multiple of the 2 processes (try 74 or 76)"
    ]
    assert not two["odd"].exists()
    assert len([line for line in printed.out.splitlines() if line.startswith("epoch ")]) == 2 + 2 + 1 + 1

    figures = {name: _difference(single["geron"], two[name]) for name in ("geron", "resumed")}
    figures["iwae-mix"] = _difference(single["iwae-mix"], two["iwae-mix"])
    print("one against two processes (max |difference|, over the largest weight, relative L2, weights apart):", figures)
    assert all(l2 <= RELATIVE for _, _, l2, _ in figures.values()), figures
    # geron's steps are smooth: every weight agrees. iwae-mix adds distortions, samples and a learned
    # prior; Adam turns rounding in a near-zero gradient (a weight of an almost always blank pixel)
    # into a full step of the learning rate, so a handful of its 1.07 million weights may part.
    assert figures["geron"][1] <= RELATIVE and figures["resumed"][1] <= RELATIVE, figures
    assert figures["iwae-mix"][3] <= 10, figures

    for name, reference in (("geron", "geron"), ("resumed", "geron"), ("iwae-mix", "iwae-mix")):
        assert sorted(p.name for p in two[name].iterdir()) == ["best.pt", "last.pt"]
        one, both = _weights(single[reference]), _weights(two[name])
        assert both["epoch"] == 2 and both["train_config"] == one["train_config"]
        # The same random stream after the same draws: a resumed run goes on exactly.
        assert torch.equal(both["generator"], one["generator"])
        for a, b in zip(one["history"], both["history"]):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
            assert (a["valid_loss"] is None) == (b["valid_loss"] is None)
            if a["valid_loss"] is not None:
                assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-5)


def test_torchrun_runs_the_module_with_one_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (port,) = free_ports(1)
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"),
        *("--master_addr=127.0.0.1", f"--master_port={port}", "-m", "digitvae.train"),
        *("--preset", "geron", *DATA, *BATCH, "--epochs", "1", "-o", str(out)),
    ]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "DIGITVAE_DEBUG": ""}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("2 processes (gloo), rank 0 on cpu"), lines
    assert [line.split()[:2] for line in lines[1:]] == [["epoch", "1/1"], ["done", "in"]]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]
    assert _weights(out)["command"].startswith("torchrun --nproc_per_node=2 -m digitvae.train --preset geron")


def _run_module(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run `python -m digitvae.train ARGS` in this process; return its exit status."""
    import logging
    import runpy
    import signal

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["digitvae-train", *args])
    log = logging.getLogger("digitvae")
    saved = (log.handlers[:], log.level, log.propagate, signal.getsignal(signal.SIGTERM))
    try:
        runpy.run_module("digitvae.train", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        log.handlers[:], log.level, log.propagate = saved[:3]
        signal.signal(signal.SIGTERM, saved[3])
    return 0


def test_the_module_without_torchrun_is_digitvae_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--preset", "geron", *DATA, *BATCH, "--epochs", "1"]
    ok(invoke("train", *args, "-o", tmp_path / "command"))
    capsys.readouterr()
    assert _run_module([*args, "-o", str(tmp_path / "module")], monkeypatch) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("training geron on 300 digits")
    a, b = _weights(tmp_path / "command"), _weights(tmp_path / "module")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert b["command"].startswith("python -m digitvae.train --preset geron")

    assert _run_module(["--device", "tpu", *args, "-o", str(tmp_path / "bad")], monkeypatch) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["error: --device 'tpu' is not a device; use cpu, cuda or cuda:N"]
    assert not (tmp_path / "bad").exists()


def test_devices_are_checked_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    from digitvae.runtime.errors import InputError
    from digitvae.train.ddp import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="--device cuda: torch sees no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    # Under torchrun, `cuda` is the GPU of the local rank: rank 1 of a one-GPU machine has none.
    with pytest.raises(InputError, match="needs GPU 1, but torch sees 1"):
        resolve_device("cuda", local_rank=1)
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(InputError, match="each takes the GPU of its local rank; pass --device cuda"):
        resolve_device("cuda:0", local_rank=0)
