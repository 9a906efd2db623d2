"""Cold start: fresh `digitvae generate -n 1` processes timed against bare `import onnxruntime` ones."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from digitvae.runtime.errors import DigitVAEError
from digitvae.runtime.options import LoadOptions

from .command import generate_args

BASELINE = "onnxruntime"
#: A cold-start child: the console script's own entry point, run as `generate_args` spells the
#: load options it is sent as JSON (argv[1]).
_CHILD = (
    "import sys; from digitvae.bench.command import child_argv; from digitvae.cli.main import main; "
    "sys.argv = child_argv(sys.argv[1]); sys.exit(main())"
)
#: Runs argv[1:] with stdout discarded; prints its wall seconds, peak RSS (ru_maxrss) and exit code.
_LAUNCHER = """import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def cold_start(options: LoadOptions, runs: int = 7) -> dict[str, Any]:
    """Time fresh `digitvae generate -n 1` processes loading as `options` say against bare `import onnxruntime` ones."""
    args = generate_args(options)
    ours = [sys.executable, "-c", _CHILD, options.to_json()]
    base = [sys.executable, "-c", "import onnxruntime"]
    samples = in_turns({"digitvae": ours, BASELINE: base}, runs)
    result: dict[str, Any] = {
        "command": "digitvae " + " ".join(args),
        "baseline": 'python -c "import onnxruntime"',
        "runs": runs,
        # Without cached bytecode every start compiles digitvae's modules again.
        "dont_write_bytecode": bool(sys.flags.dont_write_bytecode),
    }
    for name, values in samples.items():
        peaks = [v[1] for v in values if v[1] is not None]
        result[name] = {
            "wall_s": statistics.median(v[0] for v in values),
            "peak_rss_mib": statistics.median(peaks) if peaks else None,
        }
    result["wall_ratio"] = statistics.median(a[0] / b[0] for a, b in zip(samples["digitvae"], samples[BASELINE]))
    return result


def in_turns(commands: dict[str, list[str]], runs: int) -> dict[str, list[tuple[float, float | None]]]:
    """Run each command `runs` times, in turns, after one uncounted round that warms the file cache.

    Returns each command's (wall seconds, peak resident MiB or None) per run.
    """
    samples: dict[str, list[tuple[float, float | None]]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="digitvae-bench-") as tmp:
        for i in range(runs + 1):
            for name, command in commands.items():
                wall, rss = _run_process(command, Path(tmp))
                if i:
                    samples[name].append((wall, rss))
    return samples


def _run_process(command: list[str], cwd: Path) -> tuple[float, float | None]:
    """Run a command to completion; return its wall time and peak resident memory in MiB."""
    if hasattr(os, "fork"):
        # A child's peak RSS starts at its parent's size at fork time, so a small launcher
        # starts it rather than this process, which holds models and perhaps torch.
        command = [sys.executable, "-c", _LAUNCHER, *command]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=err, check=False)
        wall, rss = time.perf_counter() - start, None
        if proc.returncode == 0 and hasattr(os, "fork"):
            wall_text, kib, code = proc.stdout.split()
            wall, rss, proc.returncode = (
                float(wall_text),
                int(kib) / (1 << 20 if sys.platform == "darwin" else 1024),
                int(code),
            )
        if proc.returncode:
            err.seek(0)
            last = (err.read().decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise DigitVAEError(f"cold-start run failed with exit status {proc.returncode}: {last}")
    return wall, rss
