"""The runtime path never imports torch (or onnx): it must work where neither is installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_runtime_generate_imports_neither_torch_nor_onnx(tmp_path: Path) -> None:
    result = _run(
        """
        import sys
        from digitvae.runtime import DigitVAE
        vae = DigitVAE.load()
        assert vae.generate(2, seed=0).shape == (2, 28, 28)
        vae.reconstruct(vae.generate(2))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript"))
        assert not heavy, heavy
        print("ok")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_generate_runs_with_torch_unimportable(tmp_path: Path) -> None:
    # A None entry in sys.modules makes `import torch` fail, as on a machine without it.
    result = _run(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["onnx"] = None
        from digitvae.cli.main import cli
        try:
            cli(["generate", "-n", "4", "-o", "out.png", "--seed", "1"], prog_name="digitvae")
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.png").stat().st_size > 100
