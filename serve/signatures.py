"""What each served model takes and returns: names, datatypes and shapes from the ONNX contract.

Every model M is served as three: `M-encoder`, `M-decoder` and `M-generate`. The names and
tensors are shared with the Triton model repository, so one client works against both.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tensors import DeclaredTensor

#: The served roles, in the order they are listed; the served name is f"{model}-{role}".
SERVED_ROLES = ("encoder", "decoder", "generate")
_ANY = -1
_IMAGE = (_ANY, 1, 28, 28)


@dataclass(frozen=True)
class ModelDims:
    """The dimensions of a model that its served tensors' shapes and ranges depend on."""

    latent_dim: int
    #: Classes a conditional model's encoder and decoder take (0: not conditional).
    num_classes: int
    #: Classes the learned prior can be asked for (0: none).
    prior_classes: int


def served_name(model: str, role: str) -> str:
    """Return the served name of one role of a model, e.g. "mnist-vae-decoder"."""
    return f"{model}-{role}"


def input_forms(role: str, dims: ModelDims) -> list[list[DeclaredTensor]]:
    """Return the input forms a role accepts, each a list of declared tensors."""
    label = [DeclaredTensor("label", "INT64", (_ANY,))] if dims.num_classes else []
    if role == "encoder":
        return [[DeclaredTensor("image", "FP32", _IMAGE, also=(_ANY, 784)), *label]]
    if role == "decoder":
        return [[DeclaredTensor("z", "FP32", (_ANY, dims.latent_dim)), *label]]
    if role == "generate":
        count = (("form", "count"),)
        sampler = (("form", "sampler"),)
        return [
            [
                DeclaredTensor("n", "INT64", (1,), notes=count),
                DeclaredTensor("seed", "INT64", (1,), optional=True, notes=count),
                DeclaredTensor("digit", "INT64", (_ANY,), optional=True, notes=(*count, ("rows", "1 or n"))),
            ],
            [
                DeclaredTensor("noise", "FP32", (_ANY, dims.latent_dim), notes=sampler),
                DeclaredTensor("uniform", "FP32", (_ANY,), notes=sampler),
                DeclaredTensor("label", "INT64", (_ANY,), notes=sampler),
            ],
        ]
    raise ValueError(f"unknown role {role!r}")


def output_tensors(role: str, dims: ModelDims) -> list[DeclaredTensor]:
    """Return the outputs a role returns."""
    latent = DeclaredTensor("z", "FP32", (_ANY, dims.latent_dim))
    if role == "encoder":
        return [DeclaredTensor("mean", "FP32", latent.shape), DeclaredTensor("logvar", "FP32", latent.shape)]
    if role == "decoder":
        return [DeclaredTensor("logits", "FP32", _IMAGE), DeclaredTensor("image", "FP32", _IMAGE)]
    if role == "generate":
        # The count form returns DigitVAE.generate's [n,28,28]; the sampler form decoder.onnx's [N,1,28,28].
        image = DeclaredTensor("image", "FP32", (_ANY, 28, 28), notes=(("shape_in_sampler_form", list(_IMAGE)),))
        return [latent, image]
    raise ValueError(f"unknown role {role!r}")


def metadata_inputs(role: str, dims: ModelDims) -> list[DeclaredTensor]:
    """Return every input a role declares in its metadata, all forms together."""
    return [tensor for form in input_forms(role, dims) for tensor in form]
