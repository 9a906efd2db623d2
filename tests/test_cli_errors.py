"""Usage errors on the command line are one `error:` line; a group without a command shows its help."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_clean_failure, invoke
from helpers import run_cli_process as _cli
from mnist_files import VALID_IMAGES

from digitvae.runtime.folders.locate import shipped_models_dir


@pytest.mark.heavy
@pytest.mark.parametrize(
    "plane",
    [
        {"centre": [float("nan")] * 32, "directions": [[1.0] * 32] * 2, "spread": [1.0, 1.0]},
        {"centre": [1e300] * 32, "directions": [[1.0] * 32] * 2, "spread": [1.0, 1.0]},
    ],
)
def test_manifold_refuses_a_plane_of_non_finite_codes_in_one_line(tmp_path: Path, plane: dict[str, Any]) -> None:
    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    data = json.loads((model / "model.json").read_text())
    data["metrics"]["latent_plane"] = plane
    (model / "model.json").write_text(json.dumps(data))
    # A child process: numpy's overflow warning went to the real stderr, beside the error line.
    result = _cli("manifold", "--size", 2, "-o", tmp_path / "m.png", "--model", model)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the principal plane (metrics.latent_plane) gives non-finite codes; recalibrate or pass --data"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "-n", "1.5", "-o", "x.png"),
        ("generate", "-n", "2", "-o", "x.png", "--cols", "0"),
        ("generate", "-n", "2", "-o", "x.png", "--scale", "100000"),
        ("generate", "-n", "2", "-o", "x.png", "--threads", "-1"),
        ("generate", "-n", "2", "-o", "x.png", "--threads", "99999999999"),
        ("generate", "-n", "2", "-o", "x.png", "--seed", "-1"),
        ("generate", "-n", "2", "-o", "x.png", "--digit", "10"),
        ("generate", "-n", "2", "-o", "x.png", "--bogus"),
        ("generate", "-n", "2"),
        ("reconstruct", str(VALID_IMAGES), "-o", "x.png", "--limit", "0"),
        ("interpolate", f"{VALID_IMAGES}:0", f"{VALID_IMAGES}:1", "-o", "x.png", "--mode", "curvy"),
        ("manifold", "-o", "x.png", "--size", "1"),
        ("evaluate", str(VALID_IMAGES), "-k", "0"),
        ("score", str(VALID_IMAGES), "--range", "a", "b"),
        ("info", "--threads", "-1"),
        ("nonsense-command",),
        ("--bogus",),
    ],
)
def test_a_usage_error_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2
    line = assert_clean_failure(result)
    assert "--help" in line and "Usage:" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_group_without_a_command_still_shows_its_help() -> None:
    for args in ((), ("prior",)):
        result = invoke(*args)
        assert "Usage:" in result.output and "error:" not in result.output
