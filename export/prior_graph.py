"""The latent prior as ONNX graphs: a sampler, a log-density, and the sampler composed with the decoder.

The prior is a mixture of full-covariance Gaussians, p(z) = sum_k w_k N(z; mu_k, Sigma_k), whose
weights may depend on a class: `label` -1 picks the marginal weights, 0..C-1 the weights of
the components fit to that class (a class's own mixture, p(z | c)). A standard normal is the
mixture of one component with mu = 0 and Sigma = I. In the graphs the weight tables hold the
classes in rows 0..C-1 and the marginal in the last row, so `label` indexes them directly
(ONNX Gather reads -1 as the last row).

All randomness is an input, so any language reproduces Python's codes from the same numbers:

- sampler:  noise float32 [N, D] ~ N(0, I), uniform float32 [N] in [0, 1), label int64 [N]
            -> z float32 [N, D]. The component is the first k whose cumulative weight exceeds
            `uniform`; z = mu_k + L_k noise with L_k the Cholesky factor of Sigma_k.
- density:  z float32 [N, D], label int64 [N] -> log_prob float32 [N], log p(z) in nats
            (log p(z | label) for a label 0..C-1).
- generator: the sampler feeding the decoder: noise, uniform, label -> z, logits, image, in
            one graph, so that generating one digit costs one onnxruntime call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from digitvae.runtime.errors import ExportError

from .opset import merged_opsets

#: Stands for log 0 in the weight tables: exp() of it is 0 in float32, and it stays finite.
LOG_ZERO = -1e30


@dataclass(frozen=True)
class Mixture:
    """A Gaussian mixture over the latent space, with per-class weights.

    `weights` [C + 1, K] holds the marginal weights in row 0 and the weights of class c in
    row c + 1 (C = 0 for a prior without classes); each row sums to 1. `means` [K, D],
    `covariances` [K, D, D].
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __post_init__(self) -> None:
        k, d = self.means.shape
        if self.weights.ndim != 2 or self.weights.shape[1] != k or self.covariances.shape != (k, d, d):
            raise ExportError(
                f"inconsistent mixture: weights {list(self.weights.shape)}, means {list(self.means.shape)}, "
                f"covariances {list(self.covariances.shape)}"
            )
        if not np.allclose(self.weights.sum(axis=1), 1.0, atol=1e-6) or (self.weights < 0).any():
            raise ExportError("every row of mixture weights must be non-negative and sum to 1")

    @property
    def num_classes(self) -> int:
        """Return C, the classes the weights distinguish (0 = none)."""
        return len(self.weights) - 1

    @property
    def latent_dim(self) -> int:
        """Return D."""
        return self.means.shape[1]

    def cholesky(self) -> np.ndarray:
        """Return the lower Cholesky factors L_k of the covariances, [K, D, D]."""
        try:
            return np.linalg.cholesky(self.covariances)
        except np.linalg.LinAlgError:
            raise ExportError("a mixture covariance is not positive definite") from None

    def log_prob(self, z: np.ndarray, row: int = 0) -> np.ndarray:
        """Return log p(z) [N] in float64 for weights row `row` (0 = marginal, c + 1 = class c)."""
        return _logsumexp(self._component_log_probs(z) + _log(self.weights[row]), axis=1)

    def _component_log_probs(self, z: np.ndarray) -> np.ndarray:
        """Return log N(z; mu_k, Sigma_k) [N, K]."""
        chol = self.cholesky()
        diff = np.asarray(z, np.float64)[:, None, :] - self.means[None]  # [N, K, D]
        solved = np.stack([np.linalg.solve(chol[k], diff[:, k].T).T for k in range(len(chol))], axis=1)
        log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        return -0.5 * (np.square(solved).sum(axis=2) + log_det + self.latent_dim * math.log(2 * math.pi))


def _log(weights: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(weights > 0, np.log(np.where(weights > 0, weights, 1.0)), LOG_ZERO)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = a.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(a - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def _cumulative(weights: np.ndarray) -> np.ndarray:
    """Return each row's cumulative weights, ending at exactly 1 from its last positive weight on.

    A `uniform` below 1 then always finds a component of positive weight, whatever the rounding.
    """
    cum = np.cumsum(weights, axis=1)
    for row, w in zip(cum, weights):
        row[np.flatnonzero(w > 0)[-1] :] = 1.0
    return cum


class _Builder:
    """Nodes and initializers of one graph; `axes` go where the opset wants them."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self._count += 1
        out = out or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"{op_type}_{self._count}", **attrs))
        return out

    def reduce(self, op_type: str, x: str, axis: int, out: str | None = None) -> str:
        # ReduceSum takes axes as an input from opset 13, the other reductions from opset 18.
        if op_type == "ReduceSum" and self.opset >= 13 or self.opset >= 18:
            axes = self.const(f"axes_{op_type}_{self._count + 1}", np.array([axis], np.int64))
            return self.op(op_type, x, axes, out=out, keepdims=0)
        return self.op(op_type, x, out=out, axes=[axis], keepdims=0)

    def unsqueeze(self, x: str, axis: int) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", x, self.const(f"axes_unsqueeze_{self._count + 1}", np.array([axis], np.int64)))
        return self.op("Unsqueeze", x, axes=[axis])

    def squeeze(self, x: str, axis: int, out: str | None = None) -> str:
        if self.opset >= 13:
            return self.op(
                "Squeeze", x, self.const(f"axes_squeeze_{self._count + 1}", np.array([axis], np.int64)), out=out
            )
        return self.op("Squeeze", x, out=out, axes=[axis])

    def model(
        self,
        name: str,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        ir_version: int,
        doc: str,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="digitvae")
        model.ir_version = ir_version
        model.doc_string = doc
        return model


def _by_label(table: np.ndarray) -> np.ndarray:
    """Reorder a [C + 1, K] table (marginal first) for Gather by label: classes first, marginal last."""
    return np.concatenate([table[1:], table[:1]])


def sampler_graph(mixture: Mixture, *, opset: int, ir_version: int) -> onnx.ModelProto:
    """Return the graph noise [N,D], uniform [N], label [N] -> z [N,D]."""
    b = _Builder(opset)
    k, d = mixture.means.shape
    table = _by_label(_cumulative(mixture.weights)).astype(np.float32)
    cum = b.op("Gather", b.const("cumulative_weights", table), "label", axis=0)
    above = b.op("Cast", b.op("Less", b.unsqueeze("uniform", 1), cum), to=TensorProto.FLOAT)  # [N, K]: u < cum_k
    # The chosen component is the first k with u < cum_k: ArgMax returns the first maximum.
    component = b.op("ArgMax", above, axis=1, keepdims=0)
    mean = b.op("Gather", b.const("means", mixture.means.astype(np.float32)), component, axis=0)
    chol = b.op("Gather", b.const("cholesky", mixture.cholesky().astype(np.float32)), component, axis=0)
    spread = b.squeeze(b.op("MatMul", chol, b.unsqueeze("noise", 2)), 2)
    b.op("Add", mean, spread, out="z")
    return b.model(
        "prior_sampler",
        [
            _value("noise", TensorProto.FLOAT, ["N", d]),
            _value("uniform", TensorProto.FLOAT, ["N"]),
            _value("label", TensorProto.INT64, ["N"]),
        ],
        [_value("z", TensorProto.FLOAT, ["N", d])],
        ir_version,
        f"digitvae prior sampler: {k}-component Gaussian mixture, {mixture.num_classes} classes",
    )


def density_graph(mixture: Mixture, *, opset: int, ir_version: int) -> onnx.ModelProto:
    """Return the graph z [N,D], label [N] -> log_prob [N] (nats)."""
    b = _Builder(opset)
    k, d = mixture.means.shape
    # log N(z; mu_k, Sigma_k) = -|P_k^T (z - mu_k)|^2 / 2 + log det P_k - D log(2 pi) / 2, with
    # P_k P_k^T = Sigma_k^-1; all K products come from one [D, K*D] matrix multiply.
    chol = mixture.cholesky().astype(np.float64)
    precision_chol = np.linalg.inv(chol).transpose(0, 2, 1)  # upper: P_k = L_k^-T
    stacked = precision_chol.transpose(1, 0, 2).reshape(d, k * d)
    offset = np.einsum("kd,kde->ke", mixture.means, precision_chol).reshape(k * d)
    log_norm = -np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1) - 0.5 * d * math.log(2 * math.pi)
    projected = b.op(
        "Sub",
        b.op("MatMul", "z", b.const("precision_cholesky", stacked.astype(np.float32))),
        b.const("projected_means", offset.astype(np.float32)),
    )
    per_axis = b.op("Reshape", projected, b.const("shape", np.array([-1, k, d], np.int64)))
    squared = b.reduce("ReduceSum", b.op("Mul", per_axis, per_axis), 2)  # [N, K]
    half = b.op("Mul", squared, b.const("minus_half", np.array(-0.5, np.float32)))
    table = _by_label(_log(mixture.weights) + log_norm[None]).astype(np.float32)
    terms = b.op("Add", half, b.op("Gather", b.const("log_weights", table), "label", axis=0))
    b.reduce("ReduceLogSumExp", terms, 1, out="log_prob")
    return b.model(
        "prior_density",
        [_value("z", TensorProto.FLOAT, ["N", d]), _value("label", TensorProto.INT64, ["N"])],
        [_value("log_prob", TensorProto.FLOAT, ["N"])],
        ir_version,
        f"digitvae prior log-density: {k}-component Gaussian mixture, {mixture.num_classes} classes",
    )


def generator_graph(sampler: onnx.ModelProto, decoder: onnx.ModelProto) -> onnx.ModelProto:
    """Return the sampler feeding the decoder: noise, uniform, label -> z, logits, image.

    The decoder's inner names get a prefix; its inputs `z` (and `label`, for a conditional
    decoder) and its outputs keep theirs, so the two graphs join without extra nodes.
    """
    dec = onnx.ModelProto()
    dec.CopyFrom(decoder)
    graph = dec.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    renamed = {}
    for node in graph.node:
        node.name = f"decoder/{node.name}"
        for i, name in enumerate(node.output):
            if name not in keep:
                renamed[name] = node.output[i] = f"decoder/{name}"
    for init in graph.initializer:
        renamed[init.name] = init.name = f"decoder/{init.name}"
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    for info in graph.value_info:
        info.name = renamed.get(info.name, info.name)
    merged = helper.make_graph(
        [*sampler.graph.node, *graph.node],
        "generator",
        list(sampler.graph.input),
        [*sampler.graph.output, *(v for v in graph.output if v.name in ("logits", "image"))],
        [*sampler.graph.initializer, *graph.initializer],
        value_info=list(graph.value_info),
    )
    # Each graph may declare a lower opset than the other; merging refuses a node that would change meaning.
    model = helper.make_model(merged, opset_imports=merged_opsets(sampler, decoder), producer_name="digitvae")
    model.ir_version = max(sampler.ir_version, decoder.ir_version)
    model.doc_string = "digitvae generator: the prior sampler composed with the decoder"
    return model


def _value(name: str, elem: int, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)
