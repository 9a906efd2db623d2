"""`digitvae bench` and the fast paths it measures: report structure, small-batch path, cold start.

Timings are never asserted here: they belong to benchmarks on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import assert_clean_failure, invoke, ok
from PIL import Image
from train_extra import HAVE_TORCH, needs_torch

from digitvae.bench.benchmark import QUICK, BenchConfig, run_bench
from digitvae.bench.coldstart import cold_start
from digitvae.runtime import DigitVAE
from digitvae.runtime.digits.files import encode_png
from digitvae.runtime.errors import ProviderError
from digitvae.runtime.folders.locate import shipped_models_dir
from digitvae.runtime.inference.sessions import SmallBatchRunner, session_options
from digitvae.runtime.options import LoadOptions

pytestmark = pytest.mark.heavy  # times the runtime and cold starts in child processes

QUICK_CONFIG = dataclasses.replace(BenchConfig(cold_runs=0, torch=False), **{**QUICK, "cold_runs": 0})


def _positive(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def costed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a copy of the shipped model whose model.json records the decoder's FLOPs."""
    folder = tmp_path_factory.mktemp("bench") / "mnist-vae"
    shutil.copytree(shipped_models_dir() / "mnist-vae", folder)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["metrics"]["cost"] = {"decoder": {"flops_per_digit": 1_304_000, "parameters": 659_784}}
    (folder / "model.json").write_text(json.dumps(manifest))
    return folder


def test_report_has_every_figure_positive_and_finite(costed_model: Path) -> None:
    report = run_bench(dataclasses.replace(QUICK_CONFIG, model=str(costed_model)))
    assert report["model"] == "mnist-vae" and report["variant"] == "fp32"
    assert report["providers"] == ["CPUExecutionProvider"] and report["machine"]["cores"] >= 1
    latency = report["latency"]
    for name in ("digitvae", "onnxruntime"):
        row = latency[name]
        assert _positive(row["p50"]) and _positive(row["p99"]) and row["p50"] <= row["p99"]
        assert _positive(row["ratio_to_onnxruntime"])
    assert latency["onnxruntime"]["ratio_to_onnxruntime"] == 1.0
    decode = report["latency_decode"]
    for name in ("digitvae", "onnxruntime"):
        assert _positive(decode[name]["p50"]) and decode[name]["p50"] <= decode[name]["p99"]
        assert _positive(report["generate_over_decode"][name])
    throughput = report["throughput"]
    assert sorted(k for k in throughput if k != "unit") == ["decode_1", "decode_256", "decode_64", "reconstruct_256"]
    for task in ("decode_1", "decode_64", "decode_256", "reconstruct_256"):
        row = throughput[task]
        assert _positive(row["digitvae"]) and _positive(row["onnxruntime"])
        assert _positive(row["ratio_to_onnxruntime"]["digitvae"])
    bound = report["bound"]
    assert bound["flops_per_digit"] == 1_304_000 and bound["task"] == "decode_256"
    assert _positive(bound["gemm_flops_per_s"]) and bound["digits_per_s"] == pytest.approx(
        bound["gemm_flops_per_s"] / 1_304_000
    )
    assert _positive(bound["fraction"]["digitvae"])
    stream = report["latency_bound"]
    assert stream["parameters"] == 659_784
    assert _positive(stream["gemv_us"]) and stream["weights_mib"] == pytest.approx(stream["parameters"] * 4 / 2**20)
    for name in ("digitvae", "onnxruntime"):
        assert stream["fraction"][name] == pytest.approx(stream["gemv_us"] / latency[name]["p50"])
    assert "torch" not in latency and "cold_start" not in report
    targets = report["targets"]
    assert sorted(targets) == ["decode1024_bound", "generate1", "int8_speedup", "seeded_generate1"]
    assert targets["decode1024_bound"]["ratio"] == pytest.approx(
        targets["decode1024_bound"]["ours_us"] / targets["decode1024_bound"]["plain_us"]
    )
    for row in targets.values():
        assert _positive(float(row["ratio"]))
        assert row["met"] == (
            row["ratio"] <= row["limit"] if row["target"] == "at most" else row["ratio"] >= row["limit"]
        )
    for key in ("generate1", "seeded_generate1", "int8_speedup", "decode1024_bound"):
        assert _positive(targets[key]["ours_us"]) and _positive(targets[key]["plain_us"])
    assert targets["int8_speedup"]["ratio"] == pytest.approx(
        targets["int8_speedup"]["plain_us"] / targets["int8_speedup"]["ours_us"], rel=0.5
    )


@pytest.mark.parametrize(
    "cost", [None, "many", {"decoder": {"flops_per_digit": -1}}, {"decoder": {"flops_per_digit": True}}]
)
def test_a_model_without_a_usable_cost_gets_a_note_not_a_bound(
    costed_model: Path, tmp_path: Path, cost: object
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(costed_model, folder)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["metrics"]["cost"] = cost
    (folder / "model.json").write_text(json.dumps(manifest))
    config = dataclasses.replace(QUICK_CONFIG, model=str(folder), repeats=1, batches=(1, 8), reconstruct_batch=8)
    report = run_bench(config)
    assert "flops_per_digit" not in report["bound"] and "metrics.cost" in report["bound"]["note"]
    assert _positive(report["bound"]["gemm_flops_per_s"])
    assert "gemv_us" not in report["latency_bound"] and "metrics.cost" in report["latency_bound"]["note"]


@needs_torch
def test_torch_contender_is_the_same_network(costed_model: Path) -> None:
    from digitvae.bench.torch_twin import torch_contender

    vae = DigitVAE.load(costed_model)
    twin = torch_contender(vae)
    assert not isinstance(twin, str), twin
    z = vae.sample_latents(16, seed=2)
    np.testing.assert_allclose(twin.decode(z, None), vae.decode(z), atol=1e-5)
    x = vae.decode(z)
    np.testing.assert_allclose(twin.reconstruct(x, None), vae.reconstruct(x), atol=1e-4)
    report = run_bench(dataclasses.replace(QUICK_CONFIG, model=str(costed_model), repeats=1, torch=True))
    assert report["torch"].startswith("torch eager")
    assert _positive(report["latency"]["torch"]["p50"]) and _positive(report["throughput"]["decode_64"]["torch"])
    assert _positive(report["bound"]["fraction"]["torch"])


def test_cold_start_measures_fresh_processes(tmp_path: Path) -> None:
    result = cold_start(LoadOptions(QUICK_CONFIG.model, threads=1), runs=1)
    assert result["command"] == "digitvae generate -n 1 -o x.png --model mnist-vae --threads 1"
    for name in ("digitvae", "onnxruntime"):
        assert _positive(result[name]["wall_s"])
        if sys.platform.startswith("linux"):
            # Both start from the same small launcher; digitvae holds more than a bare import.
            assert 10 < result[name]["peak_rss_mib"] < 1000
    if sys.platform.startswith("linux"):
        assert result["digitvae"]["peak_rss_mib"] > result["onnxruntime"]["peak_rss_mib"]
    assert _positive(result["wall_ratio"])
    assert result["dont_write_bytecode"] == bool(sys.flags.dont_write_bytecode)


def test_the_load_target_times_fresh_loads_against_bare_imports() -> None:
    from digitvae.bench.targets import _cold

    row = _cold(LoadOptions(), 1)
    assert row["ours"] == 'python -c "from digitvae.runtime import DigitVAE; DigitVAE.load()"'
    assert row["plain"] == 'python -c "import onnxruntime, numpy"'
    assert _positive(row["ours_us"]) and _positive(row["plain_us"])
    assert row["ratio"] == pytest.approx(row["ours_us"] / row["plain_us"])


def test_cold_start_children_get_the_load_options_as_json() -> None:
    from digitvae.bench.command import child_argv, generate_args

    options = LoadOptions("m", "int8", ("cuda", "cpu"), strict=True, threads=2, prior=False)
    args = generate_args(options)
    assert args == [
        "generate", "-n", "1", "-o", "x.png", "--model", "m", "--variant", "int8",
        "--provider", "cuda,cpu", "--strict", "--threads", "2", "--standard-prior",
    ]  # fmt: skip
    assert child_argv(options.to_json()) == ["digitvae", *args]
    with pytest.raises(ProviderError, match="provider names only"):
        generate_args(LoadOptions(providers=(("cuda", {"device_id": "0"}),)))


def test_cli_bench_quick_json_and_text() -> None:
    args = ["bench", "--quick", "--no-torch", "--no-cold-start", "--threads", "1"]
    report = json.loads(ok(invoke(*args, "--json")).stdout)
    assert report["threads"] == 1 and report["repeats"] == QUICK["repeats"] and report["quick"] is True
    text = ok(invoke(*args)).stdout
    assert "quick run: a setup check" in text
    reached = re.search(r"reaches ([0-9.]+) of it", text)
    assert reached is not None and ("above 1:" in text) == (float(reached.group(1)) > 1)
    for fragment in (
        "batch-1 generate latency",
        "batch-1 decode latency",
        "generate / decode",
        "throughput, digits/s",
        "decode batch 256",
        "hardware bound",
        "batch-1 bound: streaming",
        "targets, each a ratio measured in this run",
        "generate(1) / InferenceSession.run, decoder",
        "generate(1, seed=s), a new s each call / decode(z)",
        "int8 decode, batch 1024 / fp32 decode, batch 1024 (each alone in a process)",
        "fp32 decode, batch 1024, digits/s / the GEMM bound",
    ):
        assert fragment in text
    assert report["targets"]["generate1"]["target"] == "at most" and report["targets"]["generate1"]["limit"] == 1.05
    assert_clean_failure(invoke("bench", "--quick", "--variant", "int4"), "no variant 'int4'")


def test_small_batch_path_gives_what_run_gives() -> None:
    data = (shipped_models_dir() / "mnist-vae" / "decoder.onnx").read_bytes()
    session = ort.InferenceSession(data, session_options(1), providers=["CPUExecutionProvider"])
    runner = SmallBatchRunner(session, max_rows=4)
    assert runner.enabled
    d = session.get_inputs()[0].shape[1]
    rng = np.random.default_rng(0)
    for n in (1, 3, 1, 4):
        z = rng.standard_normal((n, d), dtype=np.float32)
        image, logits = runner.run(["image", "logits"], {"z": z})
        want = session.run(["image", "logits"], {"z": z})
        np.testing.assert_array_equal(image, want[0])
        np.testing.assert_array_equal(logits, want[1])
        again = runner.run(["image"], {"z": z})[0]
        assert again is not image and np.array_equal(again, image)  # copies, not the shared buffer
    assert runner.run(["image"], {"z": np.zeros((5, d), np.float32)}) is None  # too big: ordinary path
    with runner._lock:  # another thread holds the buffers
        assert runner.run(["image"], {"z": np.zeros((1, d), np.float32)}) is None
    # Inputs that do not fit go to the ordinary path, which reports them; the runner stays on.
    assert runner.run(["image"], {"z": np.zeros((2, d + 1), np.float32)}) is None
    assert runner.run(["image"], {"z": np.zeros((3, d + 1), np.float32)}) is None
    assert runner.enabled and runner.run(["image"], {"z": np.zeros((2, d), np.float32)}) is not None


def test_generate_without_a_seed_draws_new_digits_each_call(vae: DigitVAE) -> None:
    a, b = vae.generate(2), vae.generate(2)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(vae.generate(2, seed=9), vae.generate(2, seed=9))


@pytest.mark.parametrize("shape", [(1, 1), (28, 28), (59, 301), (3, 1000)])
def test_png_writer_round_trips_through_pillow(shape: tuple[int, int]) -> None:
    grid = np.random.default_rng(shape[1]).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(grid))) as image:
        assert image.format == "PNG" and image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), grid)


def test_generate_command_loads_neither_pillow_nor_other_commands(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from digitvae.cli.main import cli
        cli(["generate", "-n", "2", "-o", "x.png"], standalone_mode=False)
        heavy = [m for m in sys.modules if m.split(".")[0] in ("PIL", "torch", "onnx", "shlex")
                 or m.startswith(("digitvae.train", "digitvae.export", "digitvae.cli.likelihood",
                                  "digitvae.cli.latent", "digitvae.cli.bench", "digitvae.bench",
                                  "digitvae.cli.train", "digitvae.cli.export", "digitvae.cli.data",
                                  "digitvae.cli.variants", "digitvae.cli.prior", "digitvae.cli.quality",
                                  "digitvae.runtime.outliers.detector", "digitvae.runtime.outliers.scoring"))]
        print("heavy:", sorted(heavy))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "heavy: []"
    with Image.open(tmp_path / "x.png") as image:
        assert image.size == (2 * 58, 2 * 28)  # at the default --scale 2


def test_the_outlier_detector_is_imported_on_first_use() -> None:
    import digitvae.runtime as runtime
    from digitvae.runtime.outliers.detector import OutlierDetector

    assert runtime.OutlierDetector is OutlierDetector and "OutlierDetector" in runtime.__all__
    with pytest.raises(AttributeError, match="no attribute 'Detector'"):
        runtime.Detector  # noqa: B018


def test_torch_note_when_it_cannot_be_rebuilt(costed_model: Path, tmp_path: Path) -> None:
    from digitvae.bench.torch_twin import torch_contender

    folder = tmp_path / "m"
    shutil.copytree(costed_model, folder)
    manifest = json.loads((folder / "model.json").read_text())
    del manifest["training"]["model_config"]
    (folder / "model.json").write_text(json.dumps(manifest))
    note = torch_contender(DigitVAE.load(folder))
    expected = "model_config" if HAVE_TORCH else "not installed"
    assert isinstance(note, str) and expected in note
