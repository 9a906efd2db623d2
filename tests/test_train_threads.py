"""Training's thread count: explicit, from OMP_NUM_THREADS, or the cores other work leaves free."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digitvae.runtime.errors import InputError
from digitvae.train import threads


@pytest.mark.parametrize(
    "cores, load, processes, expected",
    [(2, 0.2, 1, 2), (2, 0.6, 1, 1), (2, 1.4, 1, 1), (2, 7.0, 1, 1), (16, 3.0, 1, 13), (16, 0.0, 4, 4), (16, 9, 4, 1)],
)
def test_the_default_takes_the_free_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, load: float, processes: int, expected: int
) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda: round(load))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.resolve_threads(None, processes) == expected


def test_an_explicit_count_wins_and_omp_num_threads_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.resolve_threads(None) is None  # torch reads OMP_NUM_THREADS itself
    assert threads.resolve_threads(3) == 3


@pytest.mark.parametrize("bad", [0, -1, 1025, True, 2.0, "2"])
def test_bad_counts_are_refused(bad: object) -> None:
    with pytest.raises(InputError, match="threads must be an integer from 1 to 1024"):
        threads.resolve_threads(bad)  # type: ignore[arg-type]


@pytest.mark.heavy
def test_train_takes_the_threads_asked_for_and_says_so(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="needs the [train] extra (torch, onnx, onnxscript)")
    from click.testing import CliRunner

    from digitvae.cli.main import cli

    before = torch.get_num_threads()
    try:
        result = CliRunner().invoke(
            cli,
            [
                "train",
                "--preset",
                "geron",
                "--data",
                str(Path(__file__).parent / "data" / "mnist"),
                "--epochs",
                "1",
                "--threads",
                "1",
                "-o",
                str(tmp_path / "run"),
            ],
        )
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[0].endswith(", 1 CPU thread")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_train_refuses_zero_threads_as_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from digitvae.cli.main import cli

    result = CliRunner().invoke(cli, ["train", "--threads", "0", "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--threads" in result.output
    assert not (tmp_path / "run").exists()


def test_busy_cores_is_the_working_share_of_the_cores_over_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc/stat's cpu line: user nice system idle iowait irq softirq steal; 1.5 of 2 cores busy.
    samples = iter([(1000, 600), (1400, 700)])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "SAMPLE_SECONDS", 0)
    assert threads.busy_cores() == 2  # 2 * 300 / 400 = 1.5, rounded to even
    samples = iter([(1000, 600), (1400, 900)])
    assert threads.busy_cores() == 0  # 0.5 -> 0


def test_without_proc_stat_the_load_average_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    assert threads.busy_cores() == 1


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat (Linux)")
def test_busy_cores_reads_this_machine() -> None:
    assert 0 <= threads.busy_cores() <= (os.cpu_count() or 1)
