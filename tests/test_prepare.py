"""prepare_digit and --prepare: drawings and photos of digits made MNIST-style, read back as the digit drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from digit_mlp import classify
from drawings import Style, decode, draw, encode, gallery
from helpers import assert_clean_failure, copy_shipped_model, invoke, ok
from mnist_files import VALID_IMAGES
from PIL import Image

from digitvae.runtime import DigitVAE, InputError, prepare_digit
from digitvae.runtime.digits.idx import read_mnist_images, read_mnist_labels
from digitvae.runtime.digits.prepare import to_grey

#: Drawings in the shared set: every digit, every style of tests/drawings.py, PNG and JPEG.
COUNT = 60
#: The share of reconstructions that must be read as the digit drawn.
REQUIRED = 0.9


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, Path]]:
    """Draw COUNT digits as users would, each saved as the PNG or JPEG file its style asks for."""
    folder = tmp_path_factory.mktemp("drawn")
    files = []
    for i, (digit, style) in enumerate(gallery(COUNT)):
        path = folder / f"{i:03d}-{digit}{style.suffix}"
        path.write_bytes(encode(draw(digit, style, seed=i), style))
        files.append((digit, path))
    return files


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


@pytest.fixture(scope="module")
def prepared(drawn: list[tuple[int, Path]]) -> tuple[np.ndarray, np.ndarray]:
    """Return the drawings' digits [N] and their prepared versions float32 [N,28,28]."""
    digits = np.array([d for d, _ in drawn])
    return digits, np.stack([prepare_digit(_read(path)) for _, path in drawn])


def test_the_test_classifier_reads_real_digits() -> None:
    """The fixture classifier is a fair judge: it reads held-out MNIST digits."""
    images = read_mnist_images(VALID_IMAGES).astype(np.float32) / 255.0
    labels = read_mnist_labels(VALID_IMAGES.with_name("t10k-labels-idx1-ubyte.gz"))
    assert np.mean(classify(images) == labels) >= 0.95


@pytest.mark.heavy
def test_the_set_covers_what_users_draw(drawn: list[tuple[int, Path]]) -> None:
    suffixes = {path.suffix for _, path in drawn}
    sizes = {Image.open(path).size for _, path in drawn}
    assert suffixes == {".png", ".jpg"}
    assert (2000, 1500) in sizes and len(sizes) >= 6
    assert sorted({d for d, _ in drawn}) == list(range(10))


@pytest.mark.heavy
def test_reconstructions_of_prepared_drawings_read_as_the_digit_drawn(
    prepared: tuple[np.ndarray, np.ndarray], vae: DigitVAE
) -> None:
    digits, images = prepared
    assert images.dtype == np.float32 and images.shape == (COUNT, 28, 28)
    assert np.mean(classify(images) == digits) >= REQUIRED
    assert np.mean(classify(vae.reconstruct(images)) == digits) >= REQUIRED


@pytest.mark.heavy
def test_without_preparing_the_same_drawings_are_not_read(
    drawn: list[tuple[int, Path]], prepared: tuple[np.ndarray, np.ndarray], vae: DigitVAE
) -> None:
    """Shrinking the pictures to 28x28 (inverted or not) is no substitute: the check above can fail."""
    digits = prepared[0]
    for invert in (False, True):
        shrunk = []
        for _, path in drawn:
            with Image.open(path) as image:
                grey = np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BOX), np.float32) / 255.0
            shrunk.append(1.0 - grey if invert else grey)
        assert np.mean(classify(vae.reconstruct(np.stack(shrunk))) == digits) < 0.5


@pytest.mark.heavy
def test_prepared_digits_are_mnist_shaped(prepared: tuple[np.ndarray, np.ndarray]) -> None:
    """Ink fits a 20x20 box touching two of its sides, mass centred near (14, 14), strokes at full intensity."""
    for image in prepared[1]:
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.9
        rows, cols = np.nonzero(image.max(axis=1))[0], np.nonzero(image.max(axis=0))[0]
        assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == 20
        mass = image.sum()
        centre = ((image.sum(axis=1) * np.arange(28)).sum() / mass, (image.sum(axis=0) * np.arange(28)).sum() / mass)
        assert np.allclose(centre, 14.0, atol=0.5)
        assert image[0].max() == image[-1].max() == image[:, 0].max() == image[:, -1].max() == 0.0


def test_mnist_digits_stay_themselves() -> None:
    images = read_mnist_images(VALID_IMAGES)
    labels = read_mnist_labels(VALID_IMAGES.with_name("t10k-labels-idx1-ubyte.gz"))
    again = np.stack([prepare_digit(d) for d in images])
    assert np.mean(classify(again) == labels) >= 0.95
    assert np.mean(np.abs(again - images / 255.0)) < 0.05


def test_thin_strokes_on_a_large_canvas_are_thickened() -> None:
    """A 1-pixel pen on 2000x1500 vanishes under area averaging alone; prepared, it has MNIST's stroke width."""
    style = Style(canvas=(2000, 1500), pen=1.0, height=0.3, centre=(0.7, 0.3))
    picture = np.asarray(draw(4, style))
    plain = np.asarray(Image.fromarray(255 - picture).resize((28, 28), Image.Resampling.BOX), np.float32) / 255.0
    assert plain.max() < 0.2
    image = prepare_digit(picture)
    ink = image >= 0.5
    assert 40 <= ink.sum() <= 200
    assert classify(image[None])[0] == 4


def test_polarity_does_not_matter() -> None:
    style = Style(canvas=(300, 240), pen=7.0, centre=(0.4, 0.5))
    picture = np.asarray(draw(5, style))
    dark_on_light, light_on_dark = prepare_digit(picture), prepare_digit(255 - picture)
    assert np.abs(dark_on_light - light_on_dark).max() < 1e-3
    assert dark_on_light[0, 0] == 0.0 and classify(dark_on_light[None])[0] == 5


def test_uint8_and_float_pictures_agree() -> None:
    picture = np.asarray(draw(3, Style(canvas=(200, 260), noise=4.0)))
    assert np.abs(prepare_digit(picture) - prepare_digit(picture / 255.0)).max() < 1e-5


def test_grey_is_601_luma_and_rgba_lies_on_white() -> None:
    pure = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    assert np.allclose(to_grey(pure)[0], [0.299, 0.587, 0.114, 1.0], atol=1e-7)
    ink = np.asarray(draw(7, Style(canvas=(180, 180), ink=0, paper=255)))
    rgba = np.zeros(ink.shape + (4,), np.uint8)  # black everywhere, transparent where there is no ink
    rgba[..., 3] = 255 - ink
    assert np.array_equal(to_grey(rgba), to_grey(ink))
    assert np.array_equal(prepare_digit(rgba), prepare_digit(ink))
    rgb = np.repeat(ink[..., None], 3, axis=2)
    assert np.array_equal(prepare_digit(rgb), prepare_digit(ink))


def test_a_speck_far_from_the_digit_is_ignored() -> None:
    picture = np.asarray(draw(1, Style(canvas=(640, 480), pen=8.0, height=0.5, centre=(0.3, 0.5)))).copy()
    clean = prepare_digit(picture)
    picture[40:46, 600:606] = 20  # a dot of ink near the far corner
    assert np.array_equal(prepare_digit(picture), clean)


@pytest.mark.parametrize(
    ("picture", "fragment"),
    [
        (np.zeros(10, np.uint8), "must be [H,W] grey"),
        (np.zeros((4, 4, 4, 1), np.uint8), "must be [H,W] grey"),
        (np.zeros((8, 8, 2), np.uint8), "must be [H,W] grey"),
        (np.zeros((0, 8), np.uint8), "empty"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.full((8, 8), np.inf, np.float32), "NaN or infinite"),
        (np.full((8, 8), 2.0), "values in [0, 1]"),
        (np.zeros((8, 8), np.int16), "uint8"),
        (np.zeros((8, 8), bool), "uint8"),
        (np.full((50, 40), 200, np.uint8), "no ink"),
        (np.full((50, 40, 3), 0.4), "no ink"),
    ],
)
def test_bad_pictures_are_refused(picture: np.ndarray, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        prepare_digit(picture)
    assert fragment.lower() in str(info.value).lower()


def test_paper_with_noise_only_has_no_ink() -> None:
    rng = np.random.default_rng(0)
    paper = np.clip(rng.normal(200, 4, (300, 400)), 0, 255).astype(np.uint8)
    with pytest.raises(InputError, match="no ink"):
        prepare_digit(paper)


@pytest.mark.heavy
def test_cli_reconstruct_prepare(
    drawn: list[tuple[int, Path]], prepared: tuple[np.ndarray, np.ndarray], vae: DigitVAE, tmp_path: Path
) -> None:
    """`reconstruct --prepare` reads PNG and JPEG pictures, prepares each, and its reconstructions read as drawn."""
    digits, images = prepared
    out = tmp_path / "rebuilt.npy"
    result = ok(invoke("reconstruct", "--prepare", *[p for _, p in drawn], "-o", out))
    assert f"wrote {COUNT} reconstructions" in result.output
    rebuilt = np.load(out)
    assert np.mean(classify(rebuilt) == digits) >= REQUIRED
    assert np.abs(rebuilt - vae.reconstruct(images)).max() < 1e-5
    grid = tmp_path / "grid.png"
    ok(invoke("reconstruct", "--prepare", drawn[0][1], drawn[1][1], "-o", grid))
    with Image.open(grid) as image:
        assert image.size == (2 * 58, 2 * 58)  # two digits over their reconstructions, at the default --scale 2


@pytest.mark.heavy
def test_cli_without_prepare_is_unchanged(drawn: list[tuple[int, Path]], tmp_path: Path) -> None:
    png = next(p for _, p in drawn if p.suffix == ".png")
    jpeg = next(p for _, p in drawn if p.suffix == ".jpg")
    assert_clean_failure(invoke("reconstruct", png, "-o", tmp_path / "r.npy"), "must be 28x28")
    assert_clean_failure(invoke("reconstruct", jpeg, "-o", tmp_path / "r.npy"), "not a digit file")
    assert not list(tmp_path.iterdir())


@pytest.mark.heavy
def test_cli_score_evaluate_interpolate_prepare(drawn: list[tuple[int, Path]], tmp_path: Path) -> None:
    files = [p for _, p in drawn[:4]]
    scored = ok(invoke("score", "--prepare", *files))
    assert all(p.name in scored.output for p in files)
    assert "# 0 of 4 outside the typical ranges" in scored.output  # prepared pictures score like real digits
    evaluated = ok(invoke("evaluate", "--prepare", *files, "-k", "5"))
    assert "on 4 digits" in evaluated.output
    ok(invoke("interpolate", "--prepare", files[0], files[1], "-o", tmp_path / "i.npy", "--steps", "3"))
    assert np.load(tmp_path / "i.npy").shape == (6, 28, 28)


def test_cli_prepare_reads_idx_digits_up_to_the_limit(vae: DigitVAE, tmp_path: Path) -> None:
    ok(invoke("reconstruct", "--prepare", VALID_IMAGES, "--limit", "7", "-o", tmp_path / "r.npy"))
    first = np.stack([prepare_digit(d) for d in read_mnist_images(VALID_IMAGES)[:7]])
    assert np.abs(np.load(tmp_path / "r.npy") - vae.reconstruct(first)).max() < 1e-5


@pytest.mark.heavy
def test_cli_calibrate_and_manifold_prepare(drawn: list[tuple[int, Path]], tmp_path: Path) -> None:
    model = copy_shipped_model(tmp_path / "model")
    calibrated = ok(invoke("calibrate", model, "--prepare", VALID_IMAGES, "-k", "5", "--no-reference"))
    assert "on 100 digits" in calibrated.output
    files = [p for _, p in drawn[:3]]
    ok(invoke("manifold", *[a for f in files for a in ("--data", f)], "--prepare", "-o", tmp_path / "m.npy"))
    assert np.load(tmp_path / "m.npy").shape == (400, 28, 28)


def test_cli_prepare_reads_npy_pictures_and_stacks(tmp_path: Path) -> None:
    one = np.asarray(draw(2, Style(canvas=(120, 90), pen=5.0)))
    np.save(tmp_path / "one.npy", one)
    np.save(tmp_path / "stack.npy", np.stack([one, 255 - one]))
    ok(invoke("reconstruct", "--prepare", tmp_path / "one.npy", tmp_path / "stack.npy", "-o", tmp_path / "r.npy"))
    assert np.load(tmp_path / "r.npy").shape == (3, 28, 28)


def test_cli_prepare_refuses_a_picture_without_ink_naming_it(tmp_path: Path) -> None:
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (640, 480), (230, 228, 220)).save(blank, format="JPEG")
    out = tmp_path / "r.npy"
    line = assert_clean_failure(invoke("reconstruct", "--prepare", blank, "-o", out), "no ink found")
    assert "blank.jpg" in line and not out.exists()
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4, 5)))
    assert_clean_failure(invoke("reconstruct", "--prepare", tmp_path / "bad.npy", "-o", out), "stack [N,H,W]")
    digit = np.asarray(draw(6, Style(canvas=(64, 64), pen=4.0)))
    np.save(tmp_path / "stack.npy", np.stack([digit, np.full_like(digit, 255)]))
    line = assert_clean_failure(invoke("reconstruct", "--prepare", tmp_path / "stack.npy", "-o", out), "no ink")
    assert "stack.npy:1:" in line


def test_cli_prepare_turns_photos_upright(tmp_path: Path) -> None:
    """A phone stores the camera's orientation in EXIF; the picture is read as the phone shows it."""
    style = Style(canvas=(480, 360), pen=9.0)
    upright = draw(7, style)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view": the stored pixels lie on their side
    photo = tmp_path / "photo.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(photo, format="JPEG", quality=95, exif=exif)
    ok(invoke("reconstruct", "--prepare", photo, "-o", tmp_path / "p.npy"))
    from digitvae.runtime.digits.pictures import read_picture

    assert read_picture(photo).shape[:2] == (360, 480)
    expected = prepare_digit(decode(encode(upright, Style(jpeg=95))))
    assert classify(expected[None])[0] == 7
    assert np.abs(prepare_digit(read_picture(photo)) - expected).mean() < 0.05


def test_prepare_needs_numpy_alone() -> None:
    """prepare_digit is for apps that embed the runtime: no Pillow, no other third-party module."""
    import ast

    digits = Path(__file__).resolve().parents[1] / "runtime" / "digits"
    for name in ("prepare.py", "inkfind.py"):
        tree = ast.parse((digits / name).read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {
            ("." * node.level) + (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        assert imported <= {"__future__", "dataclasses", "typing", "numpy", "..errors", ".inkfind"}, (name, imported)
