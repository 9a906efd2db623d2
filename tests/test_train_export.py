"""Training on tiny data, checkpoints and resume, ONNX export and torch-vs-onnxruntime parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mnist_files import TRAIN_IMAGES, VALID_IMAGES
from train_extra import EXPORTED_FILES, needs_torch

from digitvae.runtime import CheckpointError, DigitVAE, ExportError, OutputError

pytestmark = [needs_torch, pytest.mark.heavy]  # trains and exports with torch

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


def _tiny_train(out: Path, epochs: int = 1, resume: bool = False, seed: int = 0, command: str = ""):
    from digitvae.train.config import TrainConfig, VAEConfig
    from digitvae.train.data import load_splits
    from digitvae.train.loop import train

    train_split, valid_split = load_splits(None, TRAIN_IMAGES, VALID_IMAGES)
    small = VAEConfig(encoder_hidden=(64,), decoder_hidden=(64,), latent_dim=4)
    return train(
        train_split,
        valid_split,
        out,
        model_config=small,
        train_config=TrainConfig(epochs=epochs, batch_size=50, seed=seed),
        preset="tiny",
        resume=resume,
        epochs=epochs if resume else None,
        command=command,
    )


def test_geron_preset_is_the_reference_design() -> None:
    from digitvae.train.config import get_preset
    from digitvae.train.model import VAE

    preset = get_preset("geron")
    assert (preset.train.lr, preset.train.batch_size, preset.train.epochs) == (1e-3, 150, 50)
    model = VAE(preset.model)
    shapes = [tuple(p.shape) for p in model.parameters() if p.ndim == 2]
    assert shapes == [(500, 784), (500, 500), (20, 500), (20, 500), (500, 20), (500, 500), (784, 500)]
    assert sum(isinstance(m, torch.nn.ELU) for m in model.modules()) == 4
    # He (variance-scaling) init: weight variance about 2 / fan_in, biases zero.
    first = model.encoder[0]
    assert abs(first.weight.var().item() * 784 / 2 - 1) < 0.05
    assert first.weight.abs().max().item() <= 2 * (1.3 * 2 / 784) ** 0.5 + 1e-6
    assert first.bias.abs().max().item() == 0


def test_loss_is_cross_entropy_plus_kl() -> None:
    from digitvae.train.config import VAEConfig
    from digitvae.train.model import VAE

    torch.manual_seed(0)
    model = VAE(VAEConfig(encoder_hidden=(16,), decoder_hidden=(16,), latent_dim=3))
    x = torch.rand(5, 784)
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    loss = model.neg_elbo(x, gen_a)
    mean, gamma = model.encode(x)
    z = mean + torch.exp(gamma / 2) * torch.randn(mean.shape, generator=gen_b)
    p = torch.sigmoid(model.decode(z))
    xent = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)
    kl = 0.5 * (torch.exp(gamma) + mean**2 - 1 - gamma).sum(1)
    torch.testing.assert_close(loss, xent + kl, rtol=1e-4, atol=1e-3)


def test_training_writes_checkpoints_and_improves(tmp_path: Path) -> None:
    from digitvae.train.checkpoint import load_checkpoint

    ckpt = _tiny_train(tmp_path, epochs=3)
    assert {p.name for p in tmp_path.iterdir()} == {"best.pt", "last.pt"}
    last = load_checkpoint(tmp_path / "last.pt")
    assert last.epoch == 3 and len(last.history) == 3
    assert last.model_config.latent_dim == 4 and last.train_config.batch_size == 50
    assert last.optimizer_state["state"], "optimizer state is saved"
    losses = [h["valid_loss"] for h in last.history]
    assert losses[-1] < losses[0]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best.best["valid_loss"] == min(losses) and best.epoch == best.best["epoch"]
    assert ckpt.data["train"]["digits"] == 300


def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = _tiny_train(tmp_path / "a", epochs=2, seed=5)
    b = _tiny_train(tmp_path / "b", epochs=2, seed=5)
    c = _tiny_train(tmp_path / "c", epochs=2, seed=6)
    for key, value in a.model_state.items():
        assert torch.equal(value, b.model_state[key]), key
    assert a.history[-1]["valid_loss"] == b.history[-1]["valid_loss"]
    assert a.history[-1]["valid_loss"] != c.history[-1]["valid_loss"]


def test_resume_continues_exactly_where_training_stopped(tmp_path: Path) -> None:
    straight = _tiny_train(tmp_path / "straight", epochs=3)
    _tiny_train(tmp_path / "resumed", epochs=2)
    resumed = _tiny_train(tmp_path / "resumed", epochs=3, resume=True)
    assert resumed.epoch == 3
    for key, value in straight.model_state.items():
        assert torch.equal(value, resumed.model_state[key]), key


def test_a_resumed_run_records_every_command(tmp_path: Path) -> None:
    _tiny_train(tmp_path, epochs=1, command="digitvae train --epochs 1 -o run")
    resumed = _tiny_train(tmp_path, epochs=2, resume=True, command="digitvae train --epochs 2 -o run --resume")
    assert resumed.command == "digitvae train --epochs 1 -o run && digitvae train --epochs 2 -o run --resume"


def test_a_run_is_not_overwritten_without_resume(tmp_path: Path) -> None:
    _tiny_train(tmp_path, epochs=1)
    with pytest.raises(CheckpointError, match="--resume"):
        _tiny_train(tmp_path, epochs=1)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage"])
def test_corrupt_checkpoints_are_refused(tmp_path: Path, content: bytes) -> None:
    from digitvae.train.checkpoint import load_checkpoint

    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_foreign_torch_file_is_refused(tmp_path: Path) -> None:
    from digitvae.train.checkpoint import load_checkpoint

    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a digitvae checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_export_contract(tiny_model: Path) -> None:
    manifest = json.loads((tiny_model / "model.json").read_text())
    assert manifest["format_version"] == 1 and manifest["latent_dim"] == 20
    assert manifest["training"]["data"]["train"]["digits"] == 300
    assert manifest["metrics"]["valid_neg_elbo"] > 0
    for role, inputs, outputs in (
        ("encoder", {"image": ["N", 1, 28, 28]}, {"mean": ["N", 20], "logvar": ["N", 20]}),
        ("decoder", {"z": ["N", 20]}, {"logits": ["N", 1, 28, 28], "image": ["N", 1, 28, 28]}),
    ):
        model = onnx.load(tiny_model / f"{role}.onnx")
        onnx.checker.check_model(model, full_check=True)

        def dims(values):
            return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

        assert dims(model.graph.input) == inputs
        assert dims(model.graph.output) == outputs
        props = {p.key: p.value for p in model.metadata_props}
        assert props["digitvae.role"] == role
        assert props["digitvae.latent_dim"] == "20"
        assert props["digitvae.preset"] == "geron"
        assert props["digitvae.version"]
        assert manifest["metrics"]["parity"][f"{role}.{next(iter(outputs))}"]["max_scaled_diff"] <= 1e-5


@pytest.mark.parametrize("batch", [1, 37, 300])
def test_onnxruntime_matches_torch(tiny_run: Path, tiny_model: Path, digits: np.ndarray, batch: int) -> None:
    from digitvae.train.checkpoint import load_checkpoint
    from digitvae.train.model import VAE

    ckpt = load_checkpoint(tiny_run / "best.pt")
    model = VAE(ckpt.model_config)
    model.load_state_dict(ckpt.model_state)
    model.eval()
    vae = DigitVAE.load(tiny_model)
    x = np.resize(digits, (batch, 28, 28))
    z = np.random.default_rng(batch).standard_normal((batch, 20), dtype=np.float32)
    with torch.no_grad():
        mean, logvar = model.encode(torch.from_numpy(x.astype(np.float32) / 255))
        image = torch.sigmoid(model.decode(torch.from_numpy(z))).reshape(batch, 28, 28)
    got_mean, got_logvar = vae.encode(x)
    np.testing.assert_allclose(got_mean, mean.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got_logvar, logvar.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(vae.decode(z), image.numpy(), atol=1e-5)


def test_exported_model_round_trip(tiny_model: Path, digits: np.ndarray) -> None:
    vae = DigitVAE.load(tiny_model)
    assert vae.generate(3, seed=0).shape == (3, 28, 28)
    assert vae.reconstruct(digits[:5]).shape == (5, 28, 28)


def test_failed_parity_leaves_nothing(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from digitvae.export import onnx as exporter

    monkeypatch.setattr(exporter, "TOLERANCE", 0.0)
    out = tmp_path / "model"
    with pytest.raises(ExportError, match="nothing written"):
        exporter.export_checkpoint(tiny_run, out)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_replace_without_force(tiny_run: Path, tmp_path: Path) -> None:
    from digitvae.export.onnx import export_checkpoint

    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="--force"):
        export_checkpoint(tiny_run, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    export_checkpoint(tiny_run, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == EXPORTED_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_runtime_likelihood_agrees_with_torch(tiny_run: Path, tiny_model: Path, digits: np.ndarray) -> None:
    from digitvae.train.checkpoint import load_checkpoint
    from digitvae.train.likelihood import iw_nll, neg_elbo
    from digitvae.train.model import VAE

    ckpt = load_checkpoint(tiny_run / "best.pt")
    model = VAE(ckpt.model_config)
    model.load_state_dict(ckpt.model_state)
    vae = DigitVAE.load(tiny_model, prior=False)  # torch's bounds use N(0, I); test_prior checks the learned one
    for k in (1, 50):
        ours, theirs = vae.iw_nll(digits, k, seed=3), iw_nll(model, digits, k, seed=3)
        # Same posterior samples: only float32 (onnxruntime) vs float64 (torch) rounding differs.
        np.testing.assert_allclose(ours, theirs, atol=0.05)
        assert abs(ours.mean() - theirs.mean()) < 0.01
    np.testing.assert_allclose(-vae.elbo(digits, seed=4), neg_elbo(model, digits, seed=4), atol=0.05)


def test_exported_files_carry_no_local_paths_or_stack_traces(tiny_model: Path) -> None:
    import onnx

    for name in ("encoder.onnx", "decoder.onnx", "prior.onnx", "decoder.int8.onnx"):
        blob = (tiny_model / name).read_bytes()
        assert b"stack_trace" not in blob and str(Path(__file__).parents[1]).encode() not in blob, name
        model = onnx.load_from_string(blob)
        assert all(len(node.metadata_props) == 0 for node in model.graph.node), name


def test_export_reports_each_step(tiny_run: Path, tmp_path: Path) -> None:
    from digitvae.export.onnx import EXPORT_STEPS, export_checkpoint

    steps: list[str] = []
    export_checkpoint(tiny_run, tmp_path / "with-prior", progress=steps.append)
    assert tuple(steps) == EXPORT_STEPS
    steps.clear()
    export_checkpoint(tiny_run, tmp_path / "plain", prior=False, progress=steps.append)
    assert tuple(steps) == EXPORT_STEPS[:-1]
