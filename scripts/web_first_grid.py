"""Compare the digits of another decoder variant (int8 by default) with the fp32 decoder's.

The web page draws its first digits with the int8 decoder (docs/web.md). For each seed, draws n
codes from the model's learned prior and decodes them with both decoders; prints the max and
mean absolute pixel difference and how often the test digit classifier (tests/data/digit-mlp.npz)
reads the same digit in both.

    python scripts/web_first_grid.py --seeds 1000 --n 40
    python scripts/web_first_grid.py --seeds 200 --variant fp16
    python scripts/web_first_grid.py --seeds 1000 --n 40 --variant js

`--variant js` compares the page's JavaScript first-digits decoder: the int8 arithmetic of
web/public/first-decoder/MODEL.bin (scripts/web_first_decoder.py's `decode`, which
tests/test_web_first_decoder.py holds the JavaScript to within 1e-5).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from digitvae.runtime import DigitVAE

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from digit_mlp import classify  # noqa: E402


def main() -> None:
    """Print the figures for --seeds seeds of --n digits each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--variant", default="int8", help="the variant compared with fp32 (int8, fp16, js)")
    args = parser.parse_args()
    fp32 = DigitVAE.load(args.model)
    if args.variant == "js":
        from web_first_decoder import decode  # noqa: PLC0415

        data = (ROOT / "web" / "public" / "first-decoder" / f"{args.model}.bin").read_bytes()
        other_decode = lambda z, labels: decode(data, z, labels).astype(np.float32)  # noqa: E731
    else:
        other_decode = DigitVAE.load(args.model, variant=args.variant).decode
    worst, total, count, same, digits = 0.0, 0.0, 0, 0, 0
    for seed in range(args.seeds):
        z, labels = fp32.sample_codes(args.n, seed=seed)
        a = fp32.decode(z, labels)
        b = other_decode(z, labels).reshape(a.shape)
        diff = np.abs(a - b)
        worst = max(worst, float(diff.max()))
        total += float(diff.sum())
        count += diff.size
        same += int((classify(a) == classify(b)).sum())
        digits += args.n
    print(f"{args.model} {args.variant} against fp32: {args.seeds} seeds x {args.n} digits = {digits} digits")
    print(f"max abs pixel difference  {worst:.4f}")
    print(f"mean abs pixel difference {total / count:.5f}")
    print(f"classifier agreement      {same}/{digits} = {same / digits:.4%}")


if __name__ == "__main__":
    main()
