"""Write the latent explorer's codes: web/public/latent-codes.json.

The encoder means of mnist-vae-2d for a fixed class-balanced subset of the training digits: the
first PER_CLASS digits of each class of train5k-images-idx3-ubyte.gz, in file order, rounded to
DECIMALS decimals. The file records the encoder's sha256 and the digits file's, so that a stale
asset is detected (tests/test_web_explorer.py).

    python scripts/web_latent_codes.py --data ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from digitvae.runtime import DigitVAE
from digitvae.runtime.atomic import atomic_write
from digitvae.runtime.digits.idx import read_mnist_images, read_mnist_labels

MODEL = "mnist-vae-2d"
IMAGES = "train5k-images-idx3-ubyte.gz"
LABELS = "train5k-labels-idx1-ubyte.gz"
PER_CLASS = 100
DECIMALS = 3
OUT = Path(__file__).resolve().parents[1] / "web" / "public" / "latent-codes.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def latent_codes(data: Path, per_class: int = PER_CLASS) -> dict[str, Any]:
    """Return the asset: the encoder means of the first `per_class` digits of each class."""
    vae = DigitVAE.load(MODEL, prior=False)
    labels = read_mnist_labels(data / LABELS)
    picked = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    picked.sort()  # file order, classes interleaved: no class is drawn over all the others
    images = read_mnist_images(data / IMAGES)[picked].astype(np.float32) / 255
    mean, _ = vae.encode(images)
    codes = np.round(mean.astype(np.float64), DECIMALS)
    # The plane shown: every code, with a margin, rounded out to a half.
    low = np.floor((codes.min(axis=0) - 0.25) * 2) / 2
    high = np.ceil((codes.max(axis=0) + 0.25) * 2) / 2
    encoder = vae.model_dir / vae.manifest.files("fp32")["encoder"].path
    return {
        "model": MODEL,
        "encoder": {"path": encoder.name, "sha256": _sha256(encoder)},
        "data": {"file": IMAGES, "sha256": _sha256(data / IMAGES), "per_class": per_class},
        "decimals": DECIMALS,
        "bounds": {"x": [float(low[0]), float(high[0])], "y": [float(low[1]), float(high[1])]},
        "labels": labels[picked].astype(int).tolist(),
        "codes": [float(v) for v in codes.ravel()],
    }


def dumps(asset: dict[str, Any]) -> str:
    """Return the asset as the compact JSON written to disk."""
    return json.dumps(asset, separators=(",", ":")) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mnist"), help="folder of train5k-*.gz")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write it (default {OUT})")
    args = parser.parse_args()
    with atomic_write(args.out, "w") as f:
        f.write(dumps(latent_codes(args.data)))


if __name__ == "__main__":
    main()
