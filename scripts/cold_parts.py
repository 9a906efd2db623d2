"""Split the `load()` row of `digitvae bench` into its parts: fresh processes, in turns, against a bare import.

    python scripts/cold_parts.py [--model mnist-vae] [--runs 15]

Each command runs in a fresh process, all of them in turns after one uncounted round
(bench.coldstart.in_turns); a figure is the median wall time, a ratio the median of the
per-round ratios to `import onnxruntime, numpy`. The parts: importing the runtime; plain
onnxruntime sessions of the files `load()` opens (default options, nothing checked); and
`DigitVAE.load()` itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from digitvae.bench.coldstart import in_turns
from digitvae.runtime import DigitVAE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    vae = DigitVAE.load(args.model)  # where the files are, and which of them load() opens at once
    files = vae.manifest.files("fp32")
    opened = [str(vae.model_dir / files[role].path) for role in ("decoder", "prior") if role in files]
    sessions = "; ".join(f"o.InferenceSession({path!r})" for path in opened)
    codes = {
        "import onnxruntime, numpy": "import onnxruntime, numpy",
        "+ import digitvae.runtime": "import onnxruntime, numpy; import digitvae.runtime",
        f"+ plain sessions ({len(opened)} files)": f"import onnxruntime as o, numpy; {sessions}",
        "DigitVAE.load()": f"from digitvae.runtime import DigitVAE; DigitVAE.load({args.model!r})",
    }
    samples = in_turns({name: [sys.executable, "-c", code] for name, code in codes.items()}, args.runs)
    walls = {name: [wall for wall, _ in values] for name, values in samples.items()}
    base = walls["import onnxruntime, numpy"]
    print(f"{args.model}: {args.runs} fresh processes of each, in turns")
    for name, values in walls.items():
        ratio = statistics.median(a / b for a, b in zip(values, base))
        print(f"  {name:32} {1e3 * statistics.median(values):6.1f} ms  {ratio:.3f}x the bare import")


if __name__ == "__main__":
    main()
