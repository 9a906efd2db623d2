"""Build the wheel and check its size: the models' weights are stored once, and it stays at most 36 MB.

Usage: python scripts/wheel_size.py [--limit-mb 36]. Prints the wheel's size and its unpacked size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mb", type=float, default=36.0, help="largest wheel allowed, in MB (10^6 bytes)")
    args = parser.parse_args()
    had_build = (ROOT / "build").exists()
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, str(ROOT)], check=True
        )
        if not had_build:  # setuptools' scratch folder in the checkout
            shutil.rmtree(ROOT / "build", ignore_errors=True)
        wheel = next(Path(out).glob("digitvae-*.whl"))
        size = wheel.stat().st_size
        with zipfile.ZipFile(wheel) as archive:
            entries = archive.infolist()
        unpacked = sum(e.file_size for e in entries)
        models = sum(e.file_size for e in entries if "/models/" in e.filename)
        generators = [e.filename for e in entries if "/models/" in e.filename and "generator" in Path(e.filename).name]
    print(f"{wheel.name}: {size / 1e6:.1f} MB; unpacked {unpacked / 1e6:.1f} MB, of which models {models / 1e6:.1f} MB")
    if generators:
        print(f"error: the wheel ships composed generator graphs, which repeat the decoders: {generators}")
        return 1
    if size > args.limit_mb * 1e6:
        print(f"error: the wheel is {size / 1e6:.1f} MB, over the {args.limit_mb:g} MB limit")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
