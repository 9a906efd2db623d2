"""digitvae parity: one provider's numbers against the CPU provider's, on the same inputs."""

from __future__ import annotations

import onnxruntime as ort
import pytest
from click.testing import CliRunner

from digitvae.cli.main import cli
from digitvae.runtime import DigitVAE
from digitvae.runtime.inference.parity import IMAGE_TOLERANCE, compare


@pytest.mark.parametrize("model", ["mnist-vae", "mnist-cvae"])
def test_the_same_provider_agrees_with_itself_exactly(model: str) -> None:
    found = compare(DigitVAE.load(model, threads=1), DigitVAE.load(model), n=8, k=5)
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
