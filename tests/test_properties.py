"""Property-based tests: random bytes and arrays give a valid result or one of our own errors, never another exception."""

from __future__ import annotations

import gzip
import io
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from test_refusals import png_bytes

from digitvae.runtime.arrays import MAX_COUNT, as_count, as_images, as_labels, as_latents
from digitvae.runtime.digits.files import read_digits, read_npy, read_png
from digitvae.runtime.digits.idx import looks_like_idx, read_idx, read_mnist_images, write_idx
from digitvae.runtime.errors import DataFormatError, InputError, ModelError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.onnxscan import check_self_contained

pytestmark = pytest.mark.heavy  # runs hundreds of generated examples a test

# Modest example counts keep the whole file to a few seconds; the strategies aim at the edges.
FAST = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("properties")


def _put(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------------------------
# IDX


def _representable(dims: tuple[int, ...], code: int) -> bool:
    """Whether numpy can make an array of this shape: an empty one may still declare, say, 0x2**32x2**32."""
    try:
        np.empty(dims, dtype=CODES.get(code, "u1")) if 0 in dims else None
    except ValueError:
        return False
    return True


def _shape_of(blob: bytes) -> tuple[int, ...] | None:
    """Return the shape uncompressed bytes hold if they are a valid IDX file by read_idx's rules, else None."""
    if len(blob) < 4 or blob[:2] != b"\0\0" or blob[2] not in CODES or not 1 <= blob[3] <= 4:
        return None
    code, ndim = blob[2], blob[3]
    if len(blob) < 4 + 4 * ndim:
        return None
    dims = struct.unpack(f">{ndim}I", blob[4 : 4 + 4 * ndim])
    size = math.prod(dims) * np.dtype(CODES[code]).itemsize
    if size > 2**30 or not _representable(dims, code) or len(blob) != 4 + 4 * ndim + size:
        return None
    return dims


@st.composite
def idx_files(draw: st.DrawFn) -> tuple[bytes, tuple[int, ...] | None]:
    """Return IDX-like bytes and the shape they hold if they are a valid IDX file (else None)."""
    if draw(st.integers(0, 4)) == 0:
        blob = draw(st.binary(max_size=64))  # random bytes may, rarely, be a valid IDX file
        return blob, _shape_of(blob)
    code = draw(st.sampled_from([*CODES, 0x00, 0x0A, 0xFF]))
    ndim = draw(st.integers(0, 5))
    dims = tuple(draw(st.lists(st.integers(0, 5) | st.sampled_from([2**31, 2**32 - 1]), min_size=ndim, max_size=ndim)))
    magic = draw(st.sampled_from([b"\0\0", b"\0\0", b"\0\1", b"\x1f\x8b"]))
    header = magic + bytes([code, ndim]) + struct.pack(f">{ndim}I", *dims)
    size = math.prod(dims) * np.dtype(CODES.get(code, "u1")).itemsize
    # read_idx's rules: a known dtype code, 1..4 dimensions, at most max_bytes (1 GiB) of data.
    valid = magic == b"\0\0" and code in CODES and 1 <= ndim <= 4 and size <= 2**30 and _representable(dims, code)
    size = size if valid else 0
    delta = draw(st.sampled_from([0, 0, 0, -1, 1, -3, 7]))
    payload = draw(st.binary(min_size=max(0, size + delta), max_size=max(0, size + delta)))
    blob = (
        (header + payload)[: draw(st.integers(0, len(header) + len(payload)))]
        if draw(st.booleans())
        else header + payload
    )
    exact = valid and len(payload) == size and blob == header + payload
    if draw(st.booleans()):
        blob = gzip.compress(blob, mtime=0)
    return blob, dims if exact else None


@FAST
@given(idx_files())
# Empty but unrepresentable shapes, which an earlier version of the oracle counted as valid.
@example((b"\0\0\x08\x04" + struct.pack(">4I", 0, 2, 2**31, 2**31), None))
@example((b"\0\0\x08\x03" + struct.pack(">3I", 0, 2**32 - 1, 2**32 - 1), None))
@example((b"\0\0\x08\x03" + struct.pack(">3I", 0, 2**31, 5), (0, 2**31, 5)))
# Random bytes that happen to be a valid 1x2 IDX file, which an earlier version of the oracle counted as invalid.
@example((b"\0\0\x08\x02" + struct.pack(">2I", 1, 2) + b"\0\0", (1, 2)))
def test_idx_reader_reads_or_refuses(scratch: Path, sample: tuple[bytes, tuple[int, ...] | None]) -> None:
    blob, shape = sample
    path = _put(scratch, "x.idx", blob)
    assert isinstance(looks_like_idx(path), bool)
    try:
        array = read_idx(path)
    except DataFormatError as exc:
        assert shape is None, f"a valid IDX file was refused: {exc}"
        assert str(path) in str(exc)
    else:
        assert shape is not None, "malformed bytes were accepted"
        assert array.shape == shape and array.dtype.isnative
    try:
        images = read_mnist_images(path)
    except DataFormatError:
        pass
    else:
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28) and len(images) >= 1


@FAST
@given(
    hnp.arrays(
        st.sampled_from(["u1", "i1", "<i2", ">i4", "<f4", ">f8"]),
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
    ),
    st.booleans(),
)
def test_idx_round_trip(scratch: Path, array: np.ndarray, compress: bool) -> None:
    path = scratch / "r.idx"
    write_idx(array, path, compress=compress)
    np.testing.assert_array_equal(read_idx(path), array)


# ---------------------------------------------------------------------------------------------------------------
# PNG and npy files


def _check_digits(digits: np.ndarray) -> None:
    assert digits.dtype == np.float32 and digits.ndim == 3 and digits.shape[1:] == (28, 28) and len(digits) >= 1
    assert np.isfinite(digits).all() and digits.min() >= 0 and digits.max() <= 1


@FAST
@given(st.binary(max_size=200), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n"]))
def test_png_reader_on_random_bytes(scratch: Path, body: bytes, prefix: bytes) -> None:
    path = _put(scratch, "x.png", prefix + body)
    try:
        pixels = read_png(path)
    except DataFormatError as exc:
        assert str(path) in str(exc)
    else:
        assert pixels.dtype == np.uint8 and pixels.shape == (28, 28)


@FAST
@given(
    st.integers(1, 40) | st.just(28),
    st.integers(1, 40) | st.just(28),
    st.sampled_from(
        [(1, 0), (2, 0), (4, 0), (8, 0), (16, 0), (8, 2), (16, 2), (8, 4), (16, 4), (8, 6), (3, 0), (4, 2), (8, 5)]
    ),
    st.booleans(),
)
def test_png_reader_on_every_header(
    scratch: Path, width: int, height: int, depth_colour: tuple[int, int], cut: bool
) -> None:
    bit_depth, colour = depth_colour
    data = png_bytes(width, height, bit_depth, colour)
    path = _put(scratch, "h.png", data[: len(data) // 2] if cut else data)
    readable = not cut and (width, height) == (28, 28) and (bit_depth, colour) not in ((16, 0), (3, 0), (4, 2), (8, 5))
    try:
        pixels = read_png(path)
    except DataFormatError:
        assert not readable
    else:
        assert readable and pixels.shape == (28, 28) and pixels.dtype == np.uint8


@FAST
@given(
    st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]),
    st.integers(26, 30),
    st.integers(26, 30),
    st.integers(0, 2**32 - 1),
)
def test_png_reader_on_pillow_images(scratch: Path, mode: str, width: int, height: int, seed: int) -> None:
    grey = np.random.default_rng(seed).integers(0, 256, (height, width), np.uint8)
    image = Image.fromarray(grey.astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(grey).convert(mode)
    assert image.mode == mode
    path = scratch / "p.png"
    image.save(path)
    try:
        pixels = read_png(path)
    except DataFormatError:
        assert (width, height) != (28, 28) or mode == "I;16"
    else:
        assert (width, height) == (28, 28) and mode != "I;16"
        expected = np.asarray(Image.open(path).convert("L"))
        np.testing.assert_array_equal(pixels, expected)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


DTYPES = hnp.scalar_dtypes() | hnp.byte_string_dtypes(max_len=3) | hnp.unicode_string_dtypes(max_len=3)
SHAPES = st.sampled_from(
    [(1, 28, 28), (2, 28, 28), (0, 28, 28), (2, 1, 28, 28), (3, 784), (28, 28), (2, 27, 28), (2, 3, 28, 28), (784,), ()]
)


@FAST
@given(hnp.arrays(DTYPES, SHAPES), st.integers(0, 3))
def test_npy_reader_on_random_arrays(scratch: Path, array: np.ndarray, cut: int) -> None:
    data = _npy_bytes(array)
    path = _put(scratch, "a.npy", data[: len(data) - cut])
    try:
        digits = read_npy(path)
    except DataFormatError as exc:
        assert str(path) in str(exc)
        return
    assert cut == 0 or array.size == 0, "a truncated .npy file was accepted"
    _check_digits(digits)
    _check_digits(read_digits([path]))


@FAST
@given(st.binary(max_size=300), st.sampled_from([b"", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00"]))
def test_npy_reader_on_random_bytes(scratch: Path, body: bytes, prefix: bytes) -> None:
    path = _put(scratch, "b.npy", prefix + body)
    try:
        _check_digits(read_npy(path))
    except DataFormatError:
        pass


# ---------------------------------------------------------------------------------------------------------------
# input validation


IMAGE_ELEMENTS = st.floats(0, 1) | st.sampled_from([np.nan, np.inf, -np.inf, -1e-7, 1.0000001, 255.0, 1e300])


@st.composite
def image_batches(draw: st.DrawFn) -> np.ndarray:
    """Arrays of every dtype and of near-valid shapes, often of values in [0, 1] with a few bad ones."""
    shape = draw(SHAPES)
    if draw(st.booleans()):
        return draw(hnp.arrays(DTYPES, shape))
    values = draw(hnp.arrays("f8", shape, elements=IMAGE_ELEMENTS, fill=st.floats(0, 1)))
    dtype = draw(st.sampled_from(["<f4", ">f8", "<f2", "u1", "<i8"]))
    with np.errstate(all="ignore"):
        return (
            np.nan_to_num(values * 255).clip(0, 255).astype(dtype) if dtype in ("u1", "<i8") else values.astype(dtype)
        )


def _acceptable_images(array: np.ndarray) -> bool:
    """The specification of as_images, written out independently."""
    if array.ndim < 2 or array.shape[1:] not in ((28, 28), (1, 28, 28), (784,)) or array.shape[0] == 0:
        return False
    if array.dtype == np.uint8:
        return True
    if array.dtype.kind != "f":
        return False
    with np.errstate(all="ignore"):
        values = array.astype(np.float32)
    return bool(np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1)


@FAST
@given(image_batches())
def test_as_images_returns_clean_batches_or_refuses(array: np.ndarray) -> None:
    try:
        out = as_images(array)
    except InputError as exc:
        assert not _acceptable_images(array), f"a valid batch was refused: {exc}"
        return
    assert _acceptable_images(array), "an invalid batch was accepted"
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (array.shape[0], 1, 28, 28)
    expected = array.astype(np.float64) / 255 if array.dtype == np.uint8 else array.astype(np.float64)
    np.testing.assert_allclose(out.reshape(-1), expected.reshape(-1), rtol=1e-6, atol=1e-7)


@FAST
@given(
    st.one_of(
        st.none(),
        st.text(max_size=5),
        st.integers(),
        st.floats(),
        st.binary(max_size=5),
        st.lists(st.floats() | st.integers() | st.text(max_size=2), max_size=4),
        st.builds(lambda value, n: [[value] * 784] * n, st.floats() | st.text(max_size=1), st.integers(0, 2)),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    )
)
def test_as_images_refuses_other_values(value: Any) -> None:
    try:
        out = as_images(value)
    except InputError:
        return
    assert out.shape[1:] == (1, 28, 28) and out.dtype == np.float32


@FAST
@given(
    st.integers(1, 5).flatmap(
        lambda d: st.tuples(
            st.just(d), hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
        )
    )
)
def test_as_latents_returns_finite_codes_or_refuses(sample: tuple[int, np.ndarray]) -> None:
    latent_dim, array = sample
    acceptable = array.ndim == 2 and array.shape[1] == latent_dim and array.shape[0] > 0 and array.dtype.kind in "fiu"
    if acceptable:
        with np.errstate(all="ignore"):
            acceptable = bool(np.isfinite(array.astype(np.float32)).all())
    try:
        out = as_latents(array, latent_dim)
    except InputError as exc:
        assert not acceptable, f"valid codes were refused: {exc}"
        return
    assert acceptable, "invalid codes were accepted"
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (array.shape[0], latent_dim)
    assert len(out) >= 1 and np.isfinite(out).all()


@FAST
@given(
    st.one_of(
        st.integers(-(2**70), 2**70),
        st.integers(-3, MAX_COUNT + 3),
        st.floats(),
        st.booleans(),
        st.none(),
        st.text(max_size=4),
        st.integers(-5, 2**62).map(np.int64),
        st.integers(0, 255).map(np.uint8),
        st.floats(-5, 5).map(np.float32),
    )
)
def test_as_count_returns_a_count_or_refuses(value: Any) -> None:
    acceptable = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 1 <= value <= MAX_COUNT
    try:
        n = as_count(value)
    except InputError:
        assert not acceptable
        return
    assert acceptable and type(n) is int and n == value


@FAST
@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4)), st.integers(2, 10))
def test_as_labels_returns_classes_or_refuses(array: np.ndarray, classes: int) -> None:
    n = array.shape[0] if array.ndim else 3
    try:
        labels = as_labels(array, n, classes)
    except InputError:
        return
    assert array.dtype.kind in "iuf" and array.ndim <= 1
    assert labels.dtype == np.int64 and labels.shape == (n,)
    assert ((labels >= 0) & (labels < classes)).all()
    np.testing.assert_array_equal(labels, np.broadcast_to(array, (n,)))


# ---------------------------------------------------------------------------------------------------------------
# the ONNX external-data scan


SHIPPED_ENCODER = (shipped_models_dir() / "mnist-vae" / "encoder.onnx").read_bytes()


@FAST
@given(st.binary(max_size=300))
def test_scan_of_random_bytes_passes_or_is_a_model_error(data: bytes) -> None:
    try:
        check_self_contained(data, Path("m.onnx"))
    except ModelError as exc:
        assert "m.onnx" in str(exc)


@FAST
@given(
    st.lists(st.tuples(st.integers(0, len(SHIPPED_ENCODER) - 1), st.integers(1, 255)), min_size=1, max_size=4),
    st.integers(0, len(SHIPPED_ENCODER)),
)
def test_scan_of_damaged_models_passes_or_is_a_model_error(flips: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(SHIPPED_ENCODER)
    for position, mask in flips:
        # Bias towards the structure at the start, where the protobuf framing lives.
        data[position % 4096 if mask & 1 else position] ^= mask
    try:
        check_self_contained(bytes(data[:keep]), Path("m.onnx"))
    except ModelError:
        pass
