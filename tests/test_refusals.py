"""Every bad input is refused with a specific error: the same cases through the Python API and the CLI.

Through the API each case raises one DigitVAEError subclass; through the CLI it prints exactly one
`error:` line, exits with status 1, shows no traceback and leaves no file (not even a temporary one).
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_clean_failure, invoke
from mnist_files import VALID_IMAGES
from PIL import Image
from test_model_files import copy_model, install, needs_onnx

from digitvae.runtime import (
    DataFormatError,
    DigitVAE,
    DigitVAEError,
    InputError,
    ModelError,
    ModelNotFoundError,
    OutputError,
    ProviderError,
)
from digitvae.runtime.digits.files import output_kind, read_digits, write_npy, write_png
from digitvae.runtime.digits.idx import read_mnist_images
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.folders.reading import read_manifest

# ---------------------------------------------------------------------------------------------------------------
# what a case works with


def _refuses_writes(directory: Path) -> bool:
    try:
        fd = os.open(directory / ".probe", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError:
        return True
    os.close(fd)
    os.unlink(directory / ".probe")
    return False


class Ctx:
    """Folders, the shipped model and real digits for one case; `watched` folders must stay unchanged."""

    def __init__(self, tmp_path: Path, vae: DigitVAE, digits: np.ndarray) -> None:
        self.inp, self.out = tmp_path / "in", tmp_path / "out"
        self.inp.mkdir()
        self.out.mkdir()
        self.vae, self.digits = vae, digits
        self.read_only = tmp_path / "read-only"
        self.read_only.mkdir()
        self.read_only.chmod(0o555)
        # Root writes through permission bits; sysfs refuses new files even to root.
        if not _refuses_writes(self.read_only) and Path("/sys").is_dir() and _refuses_writes(Path("/sys")):
            self.read_only = Path("/sys")
        self.watched = [self.out, self.read_only]

    def snapshot(self) -> dict[Path, list[str]]:
        return {d: sorted(os.listdir(d)) for d in self.watched}

    def file(self, name: str, data: bytes) -> Path:
        path = self.inp / name
        path.write_bytes(data)
        return path

    def npy(self, array: np.ndarray) -> Path:
        np.save(self.inp / "in.npy", array)
        return self.inp / "in.npy"

    def model(self, edit: Callable[[dict[str, Any]], object] | None = None) -> Path:
        """Copy the shipped model into the input folder, applying edit to its model.json."""
        folder = copy_model(self.inp / "model")
        if edit is not None:
            manifest = json.loads((folder / "model.json").read_text())
            edit(manifest)
            (folder / "model.json").write_text(json.dumps(manifest))
        return folder

    def png(self, data: bytes, name: str = "d.png") -> Path:
        return self.file(name, data)

    def read_only_dir(self) -> Path:
        if not _refuses_writes(self.read_only):
            pytest.skip("no folder here refuses writes to this user (root without sysfs)")
        return self.read_only


@dataclass(frozen=True)
class Case:
    """One bad input: the error class and message fragment, how the API meets it, how the CLI does."""

    error: type[DigitVAEError]
    fragment: str
    api: Callable[[Ctx], object] | None = None
    cli: Callable[[Ctx], list[object]] | None = None
    cli_fragment: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# file builders


def png_bytes(width: int = 28, height: int = 28, bit_depth: int = 8, colour: int = 0) -> bytes:
    """Build a PNG by hand, so that sizes and depths pillow would not write can be tested."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
    row = b"\0" + bytes((width * channels * bit_depth + 7) // 8)
    rows = row * min(height, 64)  # a huge declared size needs no real pixels to be refused

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def real_png(ctx: Ctx) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(ctx.digits[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_named_png(ctx: Ctx) -> Path:
    Image.fromarray(ctx.digits[0]).save(ctx.inp / "j.png", format="JPEG")
    return ctx.inp / "j.png"


def pickled_npy(ctx: Ctx) -> Path:
    np.save(ctx.inp / "o.npy", np.array([{}, {}]), allow_pickle=True)
    return ctx.inp / "o.npy"


def idx_bytes(dims: tuple[int, ...], payload: bytes, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    """An .npy header declaring a float32 array of `shape`, followed by almost no data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def corrupt_gzip_idx() -> bytes:
    blob = bytearray(VALID_IMAGES.read_bytes())
    blob[-6] ^= 0xFF  # inside the CRC32 trailer
    return bytes(blob)


def onnx_mlp(input_name: str, input_shape: list[int], outputs: dict[str, list[int]]) -> bytes:
    """Build a small ONNX model: flatten the input, then one MatMul and Reshape per output."""
    from onnx import TensorProto, helper, numpy_helper

    size = int(np.prod(input_shape))
    nodes = [helper.make_node("Flatten", [input_name], ["flat"], axis=1)]
    initializers = []
    for name, shape in outputs.items():
        width = int(np.prod(shape))
        initializers.append(numpy_helper.from_array(np.zeros((size, width), np.float32), f"w_{name}"))
        initializers.append(numpy_helper.from_array(np.array([-1, *shape], np.int64), f"s_{name}"))
        nodes.append(helper.make_node("MatMul", ["flat", f"w_{name}"], [f"m_{name}"]))
        nodes.append(helper.make_node("Reshape", [f"m_{name}", f"s_{name}"], [name]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape]) for name, shape in outputs.items()],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def foreign_encoder(ctx: Ctx) -> Path:
    folder = ctx.model()
    install(folder, "encoder", onnx_mlp("input", [1, 28, 28], {"mean": [20], "logvar": [20]}))
    return folder


def narrow_decoder(ctx: Ctx) -> Path:
    folder = ctx.model()
    install(folder, "decoder", onnx_mlp("z", [16], {"logits": [1, 28, 28], "image": [1, 28, 28]}))
    return folder


def garbage_encoder(ctx: Ctx) -> Path:
    folder = ctx.model()
    install(folder, "encoder", b"\x3a\x10not an onnx model at all")
    return folder


def without(name: str) -> Callable[[Ctx], Path]:
    def make(ctx: Ctx) -> Path:
        folder = ctx.model()
        (folder / name).unlink()
        return folder

    return make


def manifest_bytes(data: bytes) -> Callable[[Ctx], Path]:
    def make(ctx: Ctx) -> Path:
        folder = ctx.model()
        (folder / "model.json").write_bytes(data)
        return folder

    return make


def manifest_set(*keys: str, value: Any) -> Callable[[Ctx], Path]:
    """Set (or, for value None, delete) one field of model.json, addressed by its keys."""

    def edit(manifest: dict[str, Any]) -> None:
        node = manifest
        for key in keys[:-1]:
            node = node[key]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value

    return lambda ctx: ctx.model(edit)


# ---------------------------------------------------------------------------------------------------------------
# the surfaces a case goes through


def on_images(make: Callable[[Ctx], np.ndarray]) -> dict[str, Any]:
    """An image array: vae.reconstruct in Python, an .npy file through `reconstruct`."""
    return {
        "api": lambda ctx: ctx.vae.reconstruct(make(ctx)),
        "cli": lambda ctx: ["reconstruct", ctx.npy(make(ctx)), "-o", ctx.out / "r.npy"],
    }


def on_latents(z: np.ndarray) -> dict[str, Any]:
    return {"api": lambda ctx: ctx.vae.decode(z)}


def on_count(n: Any) -> dict[str, Any]:
    return {
        "api": lambda ctx: ctx.vae.generate(n),
        # click itself refuses any -n outside 1..1,000,000 as a usage error (exit 2), before our
        # check: see test_cli_options.test_a_bad_option_value_is_a_usage_error.
        "cli": None,
    }


def on_file(make: Callable[[Ctx], Path], read: Callable[[list[Path]], object] = read_digits) -> dict[str, Any]:
    """A digit file: read_digits (or another reader) in Python, `reconstruct FILE` on the command line."""
    return {
        "api": lambda ctx: read([make(ctx)]),
        "cli": lambda ctx: ["reconstruct", make(ctx), "-o", ctx.out / "r.png"],
    }


def on_model(make: Callable[[Ctx], Path]) -> dict[str, Any]:
    return {
        "api": lambda ctx: DigitVAE.load(make(ctx)),
        "cli": lambda ctx: ["generate", "-n", 3, "--model", make(ctx), "-o", ctx.out / "x.npy"],
    }


def on_output(name: Callable[[Ctx], Path], write: Callable[[Path], object]) -> dict[str, Any]:
    return {
        "api": lambda ctx: write(name(ctx)),
        "cli": lambda ctx: ["generate", "-n", 3, "-o", name(ctx)],
    }


def _nan_images(ctx: Ctx) -> np.ndarray:
    images = ctx.digits[:3].astype(np.float32) / 255
    images[1, 14, 14] = np.nan
    return images


def _inf_images(ctx: Ctx) -> np.ndarray:
    images = ctx.digits[:3].astype(np.float64) / 255
    images[2, 0, 0] = -np.inf
    return images


def _with_nan(z: np.ndarray, value: float) -> np.ndarray:
    z = z.copy()
    z[1, 3] = value
    return z


def _first(read: Callable[[Path], object]) -> Callable[[list[Path]], object]:
    return lambda paths: read(paths[0])


D = read_manifest(shipped_models_dir() / "mnist-vae").latent_dim
Z = np.zeros((3, D), np.float32)
GRID = np.zeros((28, 28), np.uint8)
DIGITS = np.zeros((2, 28, 28), np.float32)

CASES: dict[str, Any] = {
    # arrays of digits
    "images-wrong-shape": Case(InputError, "shaped", **on_images(lambda ctx: np.zeros((2, 32, 32), np.uint8))),
    "images-one-digit-unbatched": Case(InputError, "shaped", **on_images(lambda ctx: ctx.digits[0])),
    "images-int64": Case(InputError, "dtype int64", **on_images(lambda ctx: ctx.digits[:2].astype(np.int64))),
    "images-complex": Case(InputError, "dtype complex", **on_images(lambda ctx: np.zeros((2, 784), np.complex64))),
    "images-above-one": Case(InputError, "[0, 1]", **on_images(lambda ctx: ctx.digits[:2].astype(np.float32))),
    "images-negative": Case(InputError, "[0, 1]", **on_images(lambda ctx: np.full((2, 1, 28, 28), -0.01))),
    "images-nan": Case(InputError, "NaN", **on_images(_nan_images)),
    "images-inf": Case(InputError, "infinite", **on_images(_inf_images)),
    "images-empty-batch": Case(InputError, "empty", **on_images(lambda ctx: np.zeros((0, 28, 28), np.uint8))),
    # latent codes
    "z-wrong-width": Case(InputError, f"[N,{D}]", **on_latents(np.zeros((3, D - 1), np.float32))),
    "z-unbatched": Case(InputError, "z[None]", **on_latents(np.zeros(D, np.float32))),
    "z-nan": Case(InputError, "NaN", **on_latents(_with_nan(Z, np.nan))),
    "z-inf": Case(InputError, "infinite", **on_latents(_with_nan(Z, np.inf))),
    "z-beyond-float32": Case(InputError, "infinite", **on_latents(np.full((2, D), 1e39))),
    "z-empty-batch": Case(InputError, "empty", **on_latents(np.zeros((0, D), np.float32))),
    "z-strings": Case(InputError, "float", **on_latents(np.full((2, D), "0.5"))),
    # counts
    "n-zero": Case(InputError, "between 1 and 1,000,000", **on_count(0)),
    "n-negative": Case(InputError, "between 1 and 1,000,000", **on_count(-5)),
    "n-absurd": Case(InputError, "between 1 and 1,000,000", **on_count(10**18)),
    "n-float": Case(InputError, "must be an integer", **on_count(2.5)),
    "n-bool": Case(InputError, "must be an integer", **on_count(True)),
    # PNG files
    "png-32x32": Case(DataFormatError, "28x28", **on_file(lambda ctx: ctx.png(png_bytes(32, 32)))),
    "png-16-bit-grey": Case(DataFormatError, "mode I;16", **on_file(lambda ctx: ctx.png(png_bytes(bit_depth=16)))),
    "png-rgb-4-bit": Case(
        DataFormatError, "not an image", **on_file(lambda ctx: ctx.png(png_bytes(bit_depth=4, colour=2)))
    ),
    "png-colour-type-5": Case(DataFormatError, "not an image", **on_file(lambda ctx: ctx.png(png_bytes(colour=5)))),
    "png-text": Case(DataFormatError, "not an image", **on_file(lambda ctx: ctx.png(b"just some words\n"))),
    "png-empty": Case(DataFormatError, "not an image", **on_file(lambda ctx: ctx.png(b""))),
    "png-truncated": Case(DataFormatError, "truncated", **on_file(lambda ctx: ctx.png(real_png(ctx)[:-40]))),
    "png-is-jpeg": Case(DataFormatError, "not a PNG file (found JPEG)", **on_file(jpeg_named_png)),
    "png-huge-declared-size": Case(
        DataFormatError, "28x28", **on_file(lambda ctx: ctx.png(png_bytes(100_000, 100_000)))
    ),
    # npy files
    "npy-empty-file": Case(DataFormatError, "not a readable .npy", **on_file(lambda ctx: ctx.file("e.npy", b""))),
    "npy-object-array": Case(DataFormatError, "allow_pickle", **on_file(pickled_npy)),
    "npy-shape-beyond-the-data": Case(
        DataFormatError,
        "not a readable .npy",
        **on_file(lambda ctx: ctx.file("h.npy", npy_header_only((500_000, 28, 28)))),
    ),
    "npy-shape-beyond-memory": Case(
        DataFormatError,
        "more than 1,000,000 digits",
        **on_file(lambda ctx: ctx.file("h.npy", npy_header_only((10**9, 28, 28)))),
    ),
    "npy-broken-zip": Case(
        DataFormatError, "npz archive", **on_file(lambda ctx: ctx.file("z.npy", b"PK\x03\x04" + bytes(40)))
    ),
    # IDX files: read_mnist_images in Python; on the command line a file that is no IDX at all is "not a digit file"
    "idx-truncated": Case(
        DataFormatError,
        "truncated",
        **on_file(lambda ctx: ctx.file("t-images-idx3-ubyte", idx_bytes((10, 28, 28), bytes(5000)))),
    ),
    "idx-empty": Case(
        DataFormatError,
        "file is empty",
        cli_fragment="not a digit file",
        **on_file(lambda ctx: ctx.file("e-images-idx3-ubyte", b""), _first(read_mnist_images)),
    ),
    "idx-wrong-magic": Case(
        DataFormatError,
        "bad magic bytes",
        cli_fragment="not a digit file",
        **on_file(
            lambda ctx: ctx.file("m-images-idx3-ubyte", b"\x01\x02\x08\x03" + bytes(100)), _first(read_mnist_images)
        ),
    ),
    "idx-oversized": Case(
        DataFormatError,
        "exceeds max_bytes",
        **on_file(lambda ctx: ctx.file("o-images-idx3-ubyte", idx_bytes((3_000_000, 28, 28), bytes(64)))),
    ),
    "idx-empty-but-unindexable": Case(
        DataFormatError,
        "too large to represent",
        **on_file(lambda ctx: ctx.file("u-images-idx3-ubyte", idx_bytes((0, 2, 2**31, 2**31), b""))),
    ),
    "idx-trailing-bytes": Case(
        DataFormatError,
        "trailing bytes",
        **on_file(lambda ctx: ctx.file("x-images-idx3-ubyte", idx_bytes((1, 28, 28), bytes(784 + 9)))),
    ),
    "idx-float-images": Case(
        DataFormatError,
        "not MNIST images",
        **on_file(lambda ctx: ctx.file("f-images-idx3-ubyte", idx_bytes((1, 28, 28), bytes(4 * 784), 0x0D))),
    ),
    "idx-corrupt-gzip": Case(
        DataFormatError, "gzip", **on_file(lambda ctx: ctx.file("c-images-idx3-ubyte.gz", corrupt_gzip_idx()))
    ),
    # model folders and model.json
    "model-not-a-path": Case(
        InputError, "must be a shipped model name or a folder path", api=lambda ctx: DigitVAE.load(None)
    ),
    "model-missing-folder": Case(ModelNotFoundError, "no model", **on_model(lambda ctx: ctx.inp / "absent")),
    "model-missing-model-json": Case(ModelError, "no model.json", **on_model(without("model.json"))),
    "model-missing-encoder": Case(ModelError, "encoder.onnx: missing", **on_model(without("encoder.onnx"))),
    "model-missing-decoder": Case(ModelError, "decoder.onnx: missing", **on_model(without("decoder.onnx"))),
    "manifest-not-json": Case(
        ModelError, "not valid JSON", **on_model(manifest_bytes(b'{"format": "digitvae-model",'))
    ),
    "manifest-nested-too-deeply": Case(
        ModelError, "not valid JSON", **on_model(manifest_bytes(b"[" * 100_000 + b"]" * 100_000))
    ),
    "manifest-not-an-object": Case(ModelError, "must hold a JSON object", **on_model(manifest_bytes(b"[1, 2]"))),
    "manifest-not-utf8": Case(ModelError, "cannot read", **on_model(manifest_bytes(b'{"name": "\xff"}'))),
    "manifest-unknown-version": Case(
        ModelError, "format_version 2 is not supported", **on_model(manifest_set("format_version", value=2))
    ),
    "manifest-other-format": Case(
        ModelError, "expected 'digitvae-model'", **on_model(manifest_set("format", value="onnx-bundle"))
    ),
    "manifest-latent-dim-string": Case(
        ModelError, "'latent_dim' must be an integer", **on_model(manifest_set("latent_dim", value="20"))
    ),
    "manifest-latent-dim-bool": Case(
        ModelError, "'latent_dim' must be an integer", **on_model(manifest_set("latent_dim", value=True))
    ),
    "manifest-image-shape-floats": Case(
        ModelError, "image_shape", **on_model(manifest_set("image_shape", value=[1.0, 28, 28]))
    ),
    "manifest-no-variants": Case(
        ModelError, "missing required field 'variants'", **on_model(manifest_set("variants", value=None))
    ),
    "manifest-training-a-list": Case(
        ModelError, "'training' must be an object", **on_model(manifest_set("training", value=[]))
    ),
    "manifest-other-likelihood": Case(
        ModelError, "likelihood 'gaussian' is not supported", **on_model(manifest_set("likelihood", value="gaussian"))
    ),
    "manifest-path-escapes": Case(
        ModelError,
        "plain file name",
        **on_model(manifest_set("variants", "fp32", "encoder", "path", value="../encoder.onnx")),
    ),
    "manifest-path-nul": Case(
        ModelError,
        "plain file name",
        **on_model(manifest_set("variants", "fp32", "decoder", "path", value="dec\0.onnx")),
    ),
    "manifest-sha256-short": Case(
        ModelError, "64 lowercase hex", **on_model(manifest_set("variants", "fp32", "encoder", "sha256", value="abc"))
    ),
    "onnx-not-a-model": Case(ModelError, "encoder.onnx: not a valid ONNX model", **on_model(garbage_encoder)),
    "onnx-foreign-input-names": pytest.param(
        Case(ModelError, "not a digitvae model", **on_model(foreign_encoder)), marks=needs_onnx
    ),
    "onnx-latent-sizes-disagree": pytest.param(
        Case(ModelError, "decoder input 'z'", **on_model(narrow_decoder)), marks=needs_onnx
    ),
    # providers
    "provider-unknown": Case(
        ProviderError,
        "unknown execution provider 'warp-drive'",
        api=lambda ctx: DigitVAE.load(providers=["warp-drive"]),
        cli=lambda ctx: ["generate", "-n", 2, "--provider", "cpu,warp-drive", "-o", ctx.out / "x.png"],
    ),
    "provider-none-listed": Case(
        ProviderError,
        "at least one",
        api=lambda ctx: DigitVAE.load(providers=[]),
    ),
    "provider-not-a-name": Case(ProviderError, "non-empty string", api=lambda ctx: DigitVAE.load(providers=[7])),
    "provider-not-a-list": Case(ProviderError, "list of them", api=lambda ctx: DigitVAE.load(providers=7)),
    # outputs
    "output-missing-folder": Case(
        OutputError,
        "does not exist",
        **on_output(lambda ctx: ctx.out / "missing" / "x.png", lambda p: write_png(GRID, p)),
    ),
    "output-read-only-folder": Case(
        OutputError,
        "cannot write",
        **on_output(lambda ctx: ctx.read_only_dir() / "x.npy", lambda p: write_npy(DIGITS, p)),
    ),
    "output-parent-is-a-file": Case(
        OutputError,
        "not a directory",
        **on_output(lambda ctx: ctx.file("plain", b"") / "x.png", lambda p: write_png(GRID, p)),
    ),
    "output-bad-extension": Case(OutputError, ".png", **on_output(lambda ctx: ctx.out / "x.gif", output_kind)),
}


def _case(value: Any) -> Case:
    return value.values[0] if hasattr(value, "values") else value


def _params(surface: str) -> list[Any]:
    params = []
    for name, value in CASES.items():
        case = _case(value)
        if getattr(case, surface) is None:
            continue
        marks = value.marks if hasattr(value, "values") else ()
        params.append(pytest.param(case, id=name, marks=marks))
    return params


@pytest.fixture
def ctx(tmp_path: Path, vae: DigitVAE, digits: np.ndarray) -> Iterator[Ctx]:
    context = Ctx(tmp_path, vae, digits)
    yield context
    if context.read_only.is_relative_to(tmp_path):
        context.read_only.chmod(0o755)


def test_the_matrix_is_wide() -> None:
    both = [c for c in map(_case, CASES.values()) if c.api is not None and c.cli is not None]
    assert len(CASES) >= 25 and len(both) >= 25, (len(CASES), len(both))


@pytest.mark.parametrize("case", _params("api"))
def test_api_refuses(ctx: Ctx, case: Case) -> None:
    before = ctx.snapshot()
    with pytest.raises(case.error) as info:
        case.api(ctx)  # type: ignore[misc]
    assert case.fragment.lower() in str(info.value).lower(), str(info.value)
    assert ctx.snapshot() == before, "a refused call left a file behind"


@pytest.mark.heavy
@pytest.mark.parametrize("case", _params("cli"))
def test_cli_refuses(ctx: Ctx, case: Case) -> None:
    args = case.cli(ctx)  # type: ignore[misc]
    before, inputs = ctx.snapshot(), sorted(p.name for p in ctx.inp.rglob("*"))
    result = invoke(*args)
    line = assert_clean_failure(result, case.cli_fragment or case.fragment)
    assert result.exit_code == 1
    assert "unexpected" not in line, line  # our own error class, not the catch-all
    assert result.stdout == ""
    assert ctx.snapshot() == before, "a failed command left a file behind"
    assert sorted(p.name for p in ctx.inp.rglob("*")) == inputs


# ---------------------------------------------------------------------------------------------------------------
# accepted on purpose


def test_unknown_manifest_fields_and_extra_files_are_ignored(ctx: Ctx) -> None:
    folder = ctx.model(lambda m: m.update(future_field={"any": [1, 2]}, comment="from a newer exporter"))
    (folder / "README.txt").write_text("notes beside the model")
    (folder / "old-decoder.onnx").write_bytes(b"not listed in model.json, so never read")
    np.testing.assert_array_equal(DigitVAE.load(folder).generate(2, seed=1), ctx.vae.generate(2, seed=1))
