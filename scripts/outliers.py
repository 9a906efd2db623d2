"""Score held-out digits and four kinds of non-digits with a calibrated model; print the flag rates.

    cp -r models/mnist-vae /tmp/half
    digitvae calibrate /tmp/half VALID_IDX --reference mnist-vae-geron --limit 2500
    python scripts/outliers.py --model /tmp/half --digits VALID_IDX --offset 2500

Non-digits: uniform noise, blank pages, inverted digits (white background), and the 52 Latin
letters drawn with Pillow's built-in font at MNIST's size and placement (20x20 box, centred),
in three stroke weights: thin, regular and bold.
"""

from __future__ import annotations

import argparse
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitvae.runtime import OutlierDetector
from digitvae.runtime.digits.files import tile, write_png
from digitvae.runtime.digits.idx import read_mnist_images


def letters(chars: str = string.ascii_letters, stroke: int = 1) -> np.ndarray:
    """Return letters as uint8 [N,28,28], white on black, fitted into a centred 20x20 box."""
    font = ImageFont.load_default(size=64)
    out = []
    for char in chars:
        canvas = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(canvas).text((16, 8), char, fill=255, font=font, stroke_width=stroke * 3, stroke_fill=255)
        box = canvas.getbbox()
        glyph = canvas.crop(box)
        scale = 20 / max(glyph.size)
        glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.LANCZOS)
        digit = Image.new("L", (28, 28), 0)
        digit.paste(glyph, ((28 - glyph.width) // 2, (28 - glyph.height) // 2))
        out.append(np.asarray(digit))
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--digits", required=True, help="held-out IDX images (not the calibration digits)")
    parser.add_argument("--offset", type=int, default=0, help="skip this many digits (e.g. those used to calibrate)")
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--picture", default=None, help="write a PNG of the non-digit examples here")
    args = parser.parse_args()

    detector = OutlierDetector.load(args.model)
    digits = read_mnist_images(args.digits)[args.offset : args.offset + args.limit]
    rng = np.random.default_rng(0)
    sets = {
        "held-out digits": digits,
        "uniform noise": rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
        "blank": np.zeros((1, 28, 28), np.uint8),
        "inverted digits": 255 - digits[:100],
        "letters, thin": letters(stroke=0),
        "letters": letters(stroke=1),
        "letters, bold": letters(stroke=2),
    }
    checks = detector.checks
    ranges = ", ".join(f"{name} [{low:.1f}, {high:.1f}]" for name, (low, high) in detector.calibration.ranges.items())
    print(f"{detector!r}: k={detector.calibration.k}, typical ranges {ranges}")
    print(f"{'set':<16} {'images':>6} {'flagged':>8} " + " ".join(f"{'by ' + name:>14}" for name in checks))
    for name, images in sets.items():
        scores = detector.scores(images)
        marks = detector.flags(scores)
        by_check = [np.mean([check in m for m in marks]) for check in checks]
        flagged = np.mean([bool(m) for m in marks])
        print(f"{name:<16} {len(images):>6} {flagged:>8.1%} " + " ".join(f"{f:>14.1%}" for f in by_check))
    if args.picture:
        examples = np.concatenate(
            [
                sets["uniform noise"][:3],
                sets["blank"],
                sets["inverted digits"][:3],
                sets["letters, thin"][::12],
                sets["letters"][6::12],
                sets["letters, bold"][3::12],
            ]
        )
        write_png(tile(examples.astype(np.float32) / 255, len(examples)), args.picture, scale=2)


if __name__ == "__main__":
    main()
