"""What each served model takes and returns: names, datatypes and shapes from the ONNX contract.

Every model M is served as three: `M-encoder`, `M-decoder` and `M-generate`. The names and
tensors are shared with the Triton model repository, so one client works against both.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tensors import TensorSpec

#: The served roles, in the order they are listed; the served name is f"{model}-{role}".
ROLES = ("encoder", "decoder", "generate")
_ANY = -1
_IMAGE = (_ANY, 1, 28, 28)


@dataclass(frozen=True)
class Shape:
    """The figures of a model that its tensors' shapes and ranges depend on."""

    latent_dim: int
    #: Classes a conditional model's encoder and decoder take (0: not conditional).
    num_classes: int
    #: Classes the learned prior can be asked for (0: none).
    prior_classes: int


def served_name(model: str, role: str) -> str:
    """Return the served name of one role of a model, e.g. "mnist-vae-decoder"."""
    return f"{model}-{role}"


def input_forms(role: str, shape: Shape) -> list[list[TensorSpec]]:
    """Return the input forms a role accepts, each a list of declared tensors."""
    label = [TensorSpec("label", "INT64", (_ANY,))] if shape.num_classes else []
    if role == "encoder":
        return [[TensorSpec("image", "FP32", _IMAGE, also=(_ANY, 784)), *label]]
    if role == "decoder":
        return [[TensorSpec("z", "FP32", (_ANY, shape.latent_dim)), *label]]
    if role == "generate":
        count = (("form", "count"),)
        sampler = (("form", "sampler"),)
        return [
            [
                TensorSpec("n", "INT64", (1,), notes=count),
                TensorSpec("seed", "INT64", (1,), optional=True, notes=count),
                TensorSpec("digit", "INT64", (_ANY,), optional=True, notes=(*count, ("rows", "1 or n"))),
            ],
            [
                TensorSpec("noise", "FP32", (_ANY, shape.latent_dim), notes=sampler),
                TensorSpec("uniform", "FP32", (_ANY,), notes=sampler),
                TensorSpec("label", "INT64", (_ANY,), notes=sampler),
            ],
        ]
    raise ValueError(f"unknown role {role!r}")


def output_specs(role: str, shape: Shape) -> list[TensorSpec]:
    """Return the outputs a role returns."""
    latent = TensorSpec("z", "FP32", (_ANY, shape.latent_dim))
    if role == "encoder":
        return [TensorSpec("mean", "FP32", latent.shape), TensorSpec("logvar", "FP32", latent.shape)]
    if role == "decoder":
        return [TensorSpec("logits", "FP32", _IMAGE), TensorSpec("image", "FP32", _IMAGE)]
    if role == "generate":
        # The count form returns DigitVAE.generate's [n,28,28]; the sampler form decoder.onnx's [N,1,28,28].
        image = TensorSpec("image", "FP32", (_ANY, 28, 28), notes=(("shape_in_sampler_form", list(_IMAGE)),))
        return [latent, image]
    raise ValueError(f"unknown role {role!r}")


def metadata_inputs(role: str, shape: Shape) -> list[TensorSpec]:
    """Return every input a role declares in its metadata, all forms together."""
    return [spec for form in input_forms(role, shape) for spec in form]
