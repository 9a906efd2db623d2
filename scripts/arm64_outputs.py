"""Outputs of the Python API that scripts/arm64_check.sh compares between an aarch64 rootfs and the host.

    python scripts/arm64_outputs.py picture PICTURE.png   # a drawn 7 (needs tests/drawings.py)
    python scripts/arm64_outputs.py api OUT_DIR PICTURE.png
    python scripts/arm64_outputs.py compare HOST_DIR ARM_DIR [--atol 1e-5]

`api` writes one .npy per output of the default model: generate with a seed, encode, reconstruct
and iw_nll with a seed on the first 16 test digits of tests/data/mnist, and prepare_digit of the
picture. `compare` prints each .npy found in HOST_DIR with its largest absolute difference from
the same file in ARM_DIR, and exits 1 with one line naming the worst array above the tolerance.
Needs only the runtime's own dependencies (numpy, onnxruntime, Pillow).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "tests" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"


def picture(path: Path) -> None:
    """Draw a handwritten-like 7 on shaded, noisy paper and save it as a PNG."""
    sys.path.insert(0, str(ROOT / "tests"))
    from drawings import Style, draw

    style = Style(canvas=(320, 240), height=0.7, centre=(0.45, 0.55), pen=14.0, slant=0.15, light=0.2, noise=6.0)
    draw(7, style, seed=0).save(path)


def api(out: Path, picture_path: Path) -> None:
    """Write the API's outputs as .npy files in `out`."""
    from digitvae.runtime import DigitVAE, prepare_digit
    from digitvae.runtime.digits.idx import read_mnist_images
    from digitvae.runtime.digits.pictures import read_picture

    vae = DigitVAE.load()
    images = read_mnist_images(DIGITS)[:16]
    mean, logvar = vae.encode(images)
    arrays = {
        "api_generate": vae.generate(16, seed=0),
        "api_encode_mean": mean,
        "api_encode_logvar": logvar,
        "api_reconstruct": vae.reconstruct(images),
        "api_iw_nll": vae.iw_nll(images, k=50, seed=0),
        "api_prepare_digit": prepare_digit(read_picture(picture_path)),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(out / f"{name}.npy", array)


def compare(host: Path, arm: Path, atol: float) -> int:
    """Print the largest absolute difference per array; return 1 if any exceeds `atol` or is missing."""
    names = sorted(p.name for p in host.glob("*.npy"))
    if not names:
        print(f"arm64 check: FAILED: no .npy outputs in {host}")
        return 1
    worst: tuple[float, str] = (-1.0, "")
    for name in names:
        if not (arm / name).is_file():
            print(f"arm64 check: FAILED: {name} was written on the host but not in the arm64 rootfs")
            return 1
        a, b = np.load(host / name), np.load(arm / name)
        if a.shape != b.shape or a.dtype != b.dtype:
            print(
                f"arm64 check: FAILED: {name} is {a.dtype}{list(a.shape)} on the host, {b.dtype}{list(b.shape)} on arm64"
            )
            return 1
        diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        if not np.isfinite(diff):
            diff = float("inf")  # a NaN or infinity on one side only: never within any tolerance
        print(f"  {name:<28} {a.dtype}{list(a.shape)!s:<16} max abs diff {diff:.3g}")
        worst = max(worst, (diff, name))
    if worst[0] > atol:
        print(f"arm64 check: FAILED: {worst[1]} differs between x86-64 and arm64 by {worst[0]:.3g} (> {atol:g})")
        return 1
    print(f"arm64 check: {len(names)} arrays agree within {atol:g} (largest difference {worst[0]:.3g}, {worst[1]})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("picture").add_argument("path", type=Path)
    run = sub.add_parser("api")
    run.add_argument("out", type=Path)
    run.add_argument("picture", type=Path)
    check = sub.add_parser("compare")
    check.add_argument("host", type=Path)
    check.add_argument("arm", type=Path)
    check.add_argument("--atol", type=float, default=1e-5)
    args = parser.parse_args()
    if args.command == "picture":
        picture(args.path)
    elif args.command == "api":
        api(args.out, args.picture)
    else:
        return compare(args.host, args.arm, args.atol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
