"""digitvae parity: one provider's numbers against the CPU provider's, on the same inputs."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest
from click.testing import CliRunner

from digitvae.cli.main import cli
from digitvae.runtime import DigitVAE
from digitvae.runtime.inference.parity import FLOAT16, FLOAT32, IMAGE_TOLERANCE, Tolerances, compare, tolerances


@pytest.mark.parametrize("model", ["mnist-vae", "mnist-cvae"])
def test_the_same_provider_agrees_with_itself_exactly(model: str) -> None:
    # One thread each: a sum split over threads may round differently, in the last bit of iw_nll.
    found = compare(DigitVAE.load(model, threads=1), DigitVAE.load(model, threads=1), n=8, k=5)
    assert [d.output for d in found] == [
        "decode: image",
        "encode: mean",
        "encode: logvar",
        "reconstruct: image",
        "generate: image",
        "iw_nll: nats",
    ]
    assert all(d.ok and d.max_abs == 0 for d in found), found


def test_a_model_that_computes_other_numbers_is_caught() -> None:
    """int8 weights against fp32 ones: the differences a wrong provider would show."""
    found = compare(DigitVAE.load(variant="int8"), DigitVAE.load(), n=8, k=5)
    bad = {d.output for d in found if not d.ok}
    assert "decode: image" in bad and "iw_nll: nats" in bad
    assert max(d.max_abs for d in found if d.output == "decode: image") > IMAGE_TOLERANCE


@pytest.mark.parametrize(("variant", "allowed"), [("fp32", FLOAT32), ("int8", FLOAT32), ("fp16", FLOAT16)])
def test_cli_holds_each_variant_to_its_arithmetic(variant: str, allowed: Tolerances) -> None:
    args = ["parity", "--provider", "cpu", "--variant", variant, "-n", "4", "-k", "3", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    by_output = {row["output"]: row["tolerance"] for row in json.loads(result.output)["outputs"]}
    assert by_output["decode: image"] == allowed.image and by_output["encode: mean"] == allowed.code
    assert by_output["iw_nll: nats"] == allowed.nats and tolerances(variant) == allowed
    assert FLOAT16.image > 10 * FLOAT32.image


def test_cli_reports_every_output_and_exits_0() -> None:
    result = CliRunner().invoke(cli, ["parity", "--provider", "cpu", "-n", "4", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "iw_nll: nats" in result.output and "vs CPUExecutionProvider" in result.output


@pytest.mark.parametrize(
    "args, match",
    [
        ([], "name one with --provider"),
        (["--provider", "cuda"], "CUDAExecutionProvider is not available"),
    ],
)
def test_cli_refuses_without_a_provider_that_really_runs(args: list[str], match: str) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    result = CliRunner().invoke(cli, ["parity", *args])
    assert result.exit_code == 1
    assert match in result.output and result.output.count("\n") == 1
