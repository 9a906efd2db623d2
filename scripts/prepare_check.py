"""Measure --prepare: are reconstructions of drawn digits read as the digit drawn, with and without it?

Draws N digits in the varied styles of tests/drawings.py (pens thick and thin, off-centre on
canvases up to 2000x1500, both polarities, grey and shaded paper, noise, blur, specks, PNG and
JPEG), then classifies the default model's reconstructions:

- `--prepare`: `digitvae reconstruct --prepare FILES -o OUT.npy`;
- without it: `digitvae reconstruct FILES` refuses pictures that are not 28x28 PNGs, so the
  baselines are the pictures shrunk to 28x28 by Pillow (box filter), as drawn and inverted.

Readers: the fixture MLP of the tests (tests/data/digit-mlp.npz) and, with --classifier, the CNN
that `digitvae quality` trains (runs/classifier-*.pt; needs torch). Also times prepare_digit on a
2000x1500 photo (and web/src/prepare.js under node, where node is installed). Reads nothing from
the network.

    python scripts/prepare_check.py --classifier runs/classifier-ed6f5e987eb8.pt
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from digit_mlp import classify  # noqa: E402
from drawings import Style, decode, draw, encode, gallery  # noqa: E402

from digitvae.cli.main import cli  # noqa: E402
from digitvae.runtime import DigitVAE, prepare_digit  # noqa: E402

PHOTO = Style(canvas=(2000, 1500), pen=6.0, height=0.3, centre=(0.35, 0.6), noise=6.0, light=60.0, colour=True, jpeg=85)
TIMER = """
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const [module, file, width, height, repeats] = process.argv.slice(2);
const { rgbaToGray, prepareDigit } = await import(pathToFileURL(module).href);
const rgba = new Uint8ClampedArray(readFileSync(file));
const times = [];
for (let i = 0; i < Number(repeats); i++) {
  const start = performance.now();
  prepareDigit(rgbaToGray(rgba, Number(width), Number(height)), Number(width), Number(height));
  times.push(performance.now() - start);
}
console.log(JSON.stringify(times));
"""


def _readers(classifier: Path | None) -> dict[str, object]:
    readers: dict[str, object] = {"fixture MLP": classify}
    if classifier is not None:
        from digitvae.train.classifier import load_classifier

        model = load_classifier(classifier).model
        readers[f"CNN {classifier.name}"] = lambda images: model.features(images)[1].argmax(axis=1)
    return readers


def _shrunk(path: Path, invert: bool) -> np.ndarray:
    with Image.open(path) as image:
        grey = np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BOX), np.float32) / 255.0
    return 1.0 - grey if invert else grey


def _reconstruct(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output.strip().splitlines()[-1] if result.output.strip() else ""


def _time_photo(repeats: int) -> dict[str, object]:
    picture = decode(encode(draw(3, PHOTO, seed=0), PHOTO))
    prepare_digit(picture)  # first call pays imports
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        prepare_digit(picture)
        seconds.append(time.perf_counter() - start)
    report: dict[str, object] = {
        "picture": f"{picture.shape[1]}x{picture.shape[0]} RGB JPEG",
        "python_ms": _stats(seconds),
    }
    node = shutil.which("node")
    if node is not None:
        with tempfile.TemporaryDirectory() as folder:
            rgba = np.concatenate([picture, np.full(picture.shape[:2] + (1,), 255, np.uint8)], axis=2)
            (Path(folder) / "photo.rgba").write_bytes(rgba.tobytes())
            (Path(folder) / "time.mjs").write_text(TIMER)
            out = subprocess.run(
                [node, f"{folder}/time.mjs", str(ROOT / "web/src/prepare.js"), f"{folder}/photo.rgba"]
                + [str(picture.shape[1]), str(picture.shape[0]), str(repeats + 1)],
                capture_output=True,
                text=True,
                check=True,
            )
            report["node_ms"] = _stats([t / 1000.0 for t in json.loads(out.stdout)[1:]])
    return report


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000.0
    return {"median": round(float(np.median(ms)), 1), "min": round(float(ms.min()), 1), "runs": len(ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="Drawings (default 100).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--classifier", type=Path, default=None, help="A `digitvae quality` classifier (.pt).")
    parser.add_argument("--repeats", type=int, default=20, help="Timed runs on the 2000x1500 photo.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pairs = gallery(args.n, seed=args.seed)
    digits = np.array([d for d, _ in pairs])
    vae = DigitVAE.load()
    readers = _readers(args.classifier)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, (digit, style) in enumerate(pairs):
            path = Path(folder) / f"{i:03d}-{digit}{style.suffix}"
            path.write_bytes(encode(draw(digit, style, seed=i), style))
            paths.append(path)
        out = Path(folder) / "rebuilt.npy"
        code, line = _reconstruct(["reconstruct", "--prepare", *map(str, paths), "-o", str(out)])
        if code != 0:
            raise SystemExit(f"reconstruct --prepare failed: {line}")
        refused = sum(_reconstruct(["reconstruct", str(p), "-o", str(Path(folder) / "x.npy")])[0] != 0 for p in paths)
        prepared = np.stack([prepare_digit(decode(p.read_bytes())) for p in paths])
        candidates = {
            "reconstruct --prepare": np.load(out),
            "prepared digits themselves": prepared,
            "no --prepare: shrunk to 28x28": vae.reconstruct(np.stack([_shrunk(p, False) for p in paths])),
            "no --prepare: shrunk and inverted": vae.reconstruct(np.stack([_shrunk(p, True) for p in paths])),
        }
        for name, images in candidates.items():
            rows[name] = {reader: float(np.mean(fn(images) == digits)) for reader, fn in readers.items()}  # type: ignore[operator]
        last_reader = list(readers.values())[-1]
        rebuilt = candidates["reconstruct --prepare"]
        per_style = {}
        for label in dict.fromkeys(style.label for _, style in pairs):
            chosen = np.array([style.label == label for _, style in pairs])
            per_style[label] = f"{np.mean(last_reader(rebuilt[chosen]) == digits[chosen]):.0%} of {chosen.sum()}"  # type: ignore[operator]
    report = {
        "drawings": args.n,
        "seed": args.seed,
        "reconstructions read as drawn": rows,
        "refused by reconstruct without --prepare": f"{refused} of {args.n}",
        "per style (reconstruct --prepare, last reader)": per_style,
        "prepare_digit time": _time_photo(args.repeats),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.n} drawings (seed {args.seed}); share of reconstructions read as the digit drawn")
    width = max(map(len, rows))
    print(f"{'':{width}}  " + "  ".join(f"{r:>22}" for r in readers))
    for name, shares in rows.items():
        print(f"{name:{width}}  " + "  ".join(f"{v:>22.1%}" for v in shares.values()))
    print(f"reconstruct without --prepare refuses {refused} of {args.n} pictures (not 28x28 PNGs)")
    print("per style (reconstruct --prepare, last reader):")
    for name, share in per_style.items():
        print(f"  {name:30s} {share}")
    print("prepare_digit on a 2000x1500 photo (ms):", json.dumps(report["prepare_digit time"]))


if __name__ == "__main__":
    main()
