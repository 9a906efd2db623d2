"""scripts/arm64_outputs.py, which the arm64 check writes and compares its outputs with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.heavy  # runs scripts/arm64_outputs.py in child processes

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "arm64_outputs.py"


def _compare(host: Path, arm: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "compare", str(host), str(arm), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def sides(tmp_path: Path) -> tuple[Path, Path]:
    host, arm = tmp_path / "host", tmp_path / "arm"
    host.mkdir()
    arm.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        array = rng.random((3, 28, 28), dtype=np.float32)
        np.save(host / f"{name}.npy", array)
        np.save(arm / f"{name}.npy", array)
    return host, arm


def test_agreeing_outputs_pass_and_name_the_largest_difference(sides: tuple[Path, Path]) -> None:
    host, arm = sides
    b = np.load(arm / "b.npy")
    b[1, 2, 3] += 4e-6
    np.save(arm / "b.npy", b)
    result = _compare(host, arm)
    assert result.returncode == 0, result.stdout
    last = result.stdout.splitlines()[-1]
    assert last.startswith("arm64 check: 2 arrays agree within 1e-05")
    assert "b.npy" in last


def test_a_difference_over_the_tolerance_fails_in_one_line(sides: tuple[Path, Path]) -> None:
    host, arm = sides
    a = np.load(arm / "a.npy")
    a[0, 0, 0] += 2e-5
    np.save(arm / "a.npy", a)
    result = _compare(host, arm)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1
    assert "a.npy differs between x86-64 and arm64 by 2e-05 (> 1e-05)" in failed[0]
    assert _compare(host, arm, "--atol", "1e-4").returncode == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda arm: (arm / "b.npy").unlink(), "b.npy was written on the host but not in the arm64 rootfs"),
        (lambda arm: np.save(arm / "b.npy", np.zeros((3, 784), np.float32)), "b.npy is float32[3, 28, 28] on the host"),
        (lambda arm: np.save(arm / "b.npy", np.full((3, 28, 28), np.nan, np.float32)), "b.npy differs"),
    ],
    ids=["missing", "shape", "nan"],
)
def test_missing_reshaped_or_nan_outputs_fail(sides: tuple[Path, Path], change, message: str) -> None:
    host, arm = sides
    change(arm)
    result = _compare(host, arm)
    assert result.returncode == 1
    assert message in result.stdout


def test_no_outputs_at_all_fail(tmp_path: Path) -> None:
    result = _compare(tmp_path, tmp_path)
    assert result.returncode == 1
    assert "no .npy outputs" in result.stdout
