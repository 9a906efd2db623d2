"""prepare_digit and --prepare at their limits: noise, very thin pictures, bad arrays, corrupt EXIF.

Noise of every kind a camera or a fuzzer makes is "no ink" (an InputError), pictures far longer
than wide cost memory and time linear in their pixels, every bad array is an InputError with a
clear message, and Pillow's own warnings never reach stderr as raw lines.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from digit_mlp import classify
from drawings import Style, draw
from helpers import assert_clean_failure, invoke, ok
from PIL import Image

from digitvae.runtime import InputError, prepare_digit


def _salt_and_pepper(rng: np.random.Generator, shape: tuple[int, int], share: float) -> np.ndarray:
    picture = np.full(shape, 128, np.uint8)
    draws = rng.random(shape)
    picture[draws < share / 2] = 0
    picture[draws > 1 - share / 2] = 255
    return picture


def _pepper_on_paper(rng: np.random.Generator, shape: tuple[int, int], share: float) -> np.ndarray:
    """Dark dots, each pixel independently, on a light page."""
    return np.where(rng.random(shape) < share, np.uint8(25), np.uint8(235))


#: Kinds of noise, each made at each of SIZES (height, width).
NOISE = {
    "uniform uint8": lambda rng, s: rng.integers(0, 256, s, dtype=np.uint8),
    "uniform float": lambda rng, s: rng.random(s),
    "uniform float32": lambda rng, s: rng.random(s, dtype=np.float32),
    "uniform RGB": lambda rng, s: rng.integers(0, 256, s + (3,), dtype=np.uint8),
    "uniform RGBA": lambda rng, s: rng.integers(0, 256, s + (4,), dtype=np.uint8),
    "Gaussian": lambda rng, s: np.clip(rng.normal(128, 40, s), 0, 255).astype(np.uint8),
    "Gaussian over a blank page": lambda rng, s: np.clip(rng.normal(215, 25, s), 0, 255).astype(np.uint8),
    "strong Gaussian over a blank page": lambda rng, s: np.clip(rng.normal(200, 60, s), 0, 255).astype(np.uint8),
    "salt and pepper 2%": lambda rng, s: _salt_and_pepper(rng, s, 0.02),
    "salt and pepper 20%": lambda rng, s: _salt_and_pepper(rng, s, 0.2),
    "pepper 0.5% on paper": lambda rng, s: _pepper_on_paper(rng, s, 0.005),
    "pepper 5% on paper": lambda rng, s: _pepper_on_paper(rng, s, 0.05),
    "pepper 40% on paper": lambda rng, s: _pepper_on_paper(rng, s, 0.4),
}
SIZES = [(28, 28), (64, 48), (300, 400), (1500, 2000)]


NOISE_CASES = [pytest.param(kind, size, id=f"{kind}-{size[0]}x{size[1]}") for kind in NOISE for size in SIZES]


@pytest.mark.heavy
@pytest.mark.parametrize(("kind", "size"), NOISE_CASES)
def test_noise_alone_has_no_ink(kind: str, size: tuple[int, int]) -> None:
    for seed in range(3 if size[0] * size[1] < 10**5 else 1):
        picture = NOISE[kind](np.random.default_rng(seed), size)
        with pytest.raises(InputError, match="no ink found"):
            prepare_digit(picture)


def test_noise_is_refused_for_what_it_is() -> None:
    """Uniform noise passes every contrast test; the clumping test names it."""
    with pytest.raises(InputError, match="scattered like noise"):
        prepare_digit(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8))


@pytest.mark.parametrize("noise", [0.0, 10.0, 25.0])
def test_drawings_on_noisy_paper_still_read_as_drawn(noise: float) -> None:
    for digit in range(10):
        style = Style(canvas=(320, 240), pen=7.0, paper=200, ink=60, noise=noise)
        image = prepare_digit(np.asarray(draw(digit, style, seed=digit)))
        assert classify(image[None])[0] == digit, (digit, noise)


@pytest.mark.parametrize("name", ["noise.png", "noise.jpg"])
def test_cli_refuses_a_noise_picture_in_one_line(tmp_path: Path, name: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / name)
    out = tmp_path / "r.npy"
    line = assert_clean_failure(invoke("reconstruct", "--prepare", tmp_path / name, "-o", out), "no ink found")
    assert name in line and not out.exists()


#: Measures one prepare in a fresh process: peak numpy memory (tracemalloc) and seconds, under a 4 GB cap.
_MEASURE = textwrap.dedent(
    """
    import resource, sys, time, tracemalloc
    import numpy as np
    from digitvae.runtime.digits.pictures import read_prepared
    from digitvae.runtime import prepare_digit
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    what = sys.argv[1]
    if what.endswith(".png"):
        call = lambda: read_prepared(__import__("pathlib").Path(what))
    else:
        h, w = map(int, what.split("x"))
        picture = np.full((h, w), 250, np.uint8)
        if h <= w:
            picture[:, w // 3 : w // 2] = 10
        else:
            picture[h // 3 : h // 2, :] = 10
        call = lambda: prepare_digit(picture)
    tracemalloc.start()
    start = time.perf_counter()
    digit = call()
    print(time.perf_counter() - start, tracemalloc.get_traced_memory()[1], float(np.asarray(digit).max()))
    """
)


def _measure(what: str) -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-c", _MEASURE, what], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seconds, peak, top = done.stdout.split()
    assert float(top) > 0.9  # a digit came out
    return float(seconds), int(peak)


@pytest.mark.heavy
@pytest.mark.parametrize("shape", ["1x1000000", "1000000x1", "3x2000000", "20x400000"])
def test_thin_pictures_cost_memory_linear_in_their_pixels(shape: str) -> None:
    """A strip of 10^6 pixels once padded itself to a square of blocks: 15 GB; now a few bytes a pixel."""
    seconds, peak = _measure(shape)
    h, w = map(int, shape.split("x"))
    assert peak < 40 * h * w + (20 << 20), peak
    assert peak < 200 << 20 and seconds < 10.0, (peak, seconds)


@pytest.mark.heavy
def test_a_small_png_of_a_thin_picture_is_prepared_in_bounded_memory(tmp_path: Path) -> None:
    """A 1x400,000 PNG is a few hundred bytes; it once took 2.4 GiB to prepare."""
    strip = np.full((1, 400_000), 250, np.uint8)
    strip[0, 100_000:300_000] = 10
    path = tmp_path / "strip.png"
    Image.fromarray(strip).save(path, optimize=True)
    assert path.stat().st_size < 2000
    seconds, peak = _measure(str(path))
    assert peak < 200 << 20 and seconds < 10.0, (peak, seconds)
    ok(invoke("reconstruct", "--prepare", path, "-o", tmp_path / "r.npy"))


BAD_ARRAYS = [
    ([[0, 1], [0]], "rectangular array of numbers"),
    ([[0.0, 1.0], [0.5]], "rectangular array of numbers"),
    ([[None, 1], [2, 3]], "dtype object"),
    (np.array([[1, 2], [3, 4]], object), "dtype object"),
    (np.array([["a", "b"], ["c", "d"]]), "dtype <U1"),
    ("a picture", "dtype <U9"),
    (b"\x00\x01", "dtype |S2"),
    (None, "dtype object"),
    ({"pixels": [0, 1]}, "dtype object"),
    (np.zeros((8, 8), complex), "dtype complex128"),
    (np.zeros((8, 8), bool), "dtype bool"),
    (np.zeros((8, 8), np.int64), "dtype int64"),
    ([[0, 255], [255, 0]], "dtype int64"),
    (np.zeros((8, 8), "datetime64[s]"), "dtype datetime64"),
    (np.array(0.5), "got shape []"),
    (np.zeros((2, 2, 2, 2)), "got shape [2, 2, 2, 2]"),
    (np.zeros((8, 8, 5), np.uint8), "got shape [8, 8, 5]"),
    (np.zeros((0, 8)), "empty"),
    (np.zeros((8, 0, 3), np.uint8), "empty"),
    (np.full((8, 8), np.nan), "NaN"),
    (np.full((8, 8), -np.inf), "NaN or infinite"),
    (np.full((8, 8), np.inf, np.float16), "NaN or infinite"),
    ([[1e400, 0.0], [0.0, 1.0]], "NaN or infinite"),
    (np.full((8, 8), 1e300), "values in [0, 1]"),
    (np.full((8, 8), -1e-9), "values in [0, 1]"),
]


@pytest.mark.parametrize(("array", "fragment"), BAD_ARRAYS, ids=range(len(BAD_ARRAYS)))
def test_every_bad_array_is_an_input_error(array: object, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        prepare_digit(array)  # type: ignore[arg-type]
    assert fragment.lower() in str(info.value).lower()


def _exif_pointing_past_its_end() -> bytes:
    """An EXIF block whose second tag claims 400 bytes beyond the block: Pillow warns and skips it."""
    entries = struct.pack("<HHII", 0x0112, 3, 1, 1) + struct.pack("<HHII", 0x010E, 2, 400, 1000)
    return b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + struct.pack("<H", 2) + entries + bytes(4)


@pytest.mark.heavy
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_pillows_warnings_about_a_corrupt_exif_are_one_line_of_ours(tmp_path: Path, suffix: str) -> None:
    picture = np.asarray(draw(3, Style(canvas=(160, 120), pen=6.0)))
    path = tmp_path / f"photo{suffix}"
    buffer = io.BytesIO()
    Image.fromarray(picture).save(
        buffer, format="JPEG" if suffix == ".jpg" else "PNG", exif=_exif_pointing_past_its_end()
    )
    path.write_bytes(buffer.getvalue())
    command = [sys.executable, "-c", "from digitvae.cli.main import main; main()"]
    done = subprocess.run(
        [*command, "reconstruct", "--prepare", str(path), "-o", str(tmp_path / "r.npy")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONWARNINGS": "always"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) <= 1, done.stderr
    assert all(line.startswith("warning: ") and path.name in line for line in lines), lines
    assert np.load(tmp_path / "r.npy").shape == (1, 28, 28)
