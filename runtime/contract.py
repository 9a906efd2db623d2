"""The ONNX contract: the inputs and outputs every file of a model folder must have."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError
from .manifest import Manifest

if TYPE_CHECKING:
    import onnxruntime as ort


def check_signatures(model_dir: Path, manifest: Manifest, sessions: dict[str, ort.InferenceSession]) -> None:
    """Refuse ONNX files that do not follow the contract of this manifest (README, "ONNX contract")."""
    d = manifest.latent_dim
    label: dict[str, list[int]] = {"label": []} if manifest.conditional else {}
    draws = {"noise": [d], "uniform": [], "label": []}
    image = {"logits": [1, 28, 28], "image": [1, 28, 28]}
    expected: dict[str, tuple[dict[str, list[int]], dict[str, list[int]]]] = {
        "encoder": ({"image": [1, 28, 28], **label}, {"mean": [d], "logvar": [d]}),
        "decoder": ({"z": [d], **label}, image),
        "prior": (draws, {"z": [d]}),
        "prior_density": ({"z": [d], "label": []}, {"log_prob": []}),
        "generator": (draws, {"z": [d], **image}),
    }
    for role, session in sessions.items():
        inputs, outputs = expected[role]
        where = f"{model_dir}: {role}"
        for kind, wanted, found in (
            ("input", inputs, session.get_inputs()),
            ("output", outputs, session.get_outputs()),
        ):
            have = {arg.name: arg for arg in found}
            if sorted(have) != sorted(wanted):
                raise ModelError(
                    f"{where} has {kind}s {sorted(have)}, expected {sorted(wanted)} "
                    "(not a digitvae model, or from another version)"
                )
            for name, tail in wanted.items():
                arg = have[name]
                shape = list(arg.shape)
                dtype = "tensor(int64)" if name == "label" else "tensor(float)"
                if arg.type != dtype or len(shape) != 1 + len(tail) or shape[1:] != tail:
                    raise ModelError(
                        f"{where} {kind} {name!r} is {arg.type} {shape}, expected {dtype} "
                        f"[{', '.join(map(str, ['N', *tail]))}] (latent_dim {d} in model.json)"
                    )
