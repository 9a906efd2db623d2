"""MLServer runtimes for the three served roles of a model: encoder, decoder and generate.

MLServer imports these by path (`digitvae.serve.runtimes.DecoderModel`) in every inference
worker; each worker loads the model once and its three roles share it. A request that breaks
the declared contract is a 400 with a JSON error body; a 500 means the server itself failed.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import threading
import time
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.errors import InferenceError, MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from digitvae.runtime.errors import DigitVAEError, InputError
from digitvae.runtime.inference.model import DigitVAE
from digitvae.runtime.options import LoadOptions

from .batching import Batcher
from .signatures import ModelDims, input_forms
from .tensors import output, read_inputs, requested
from .workers import UNAVAILABLE

logger = logging.getLogger(__name__)


@functools.cache
def load_shared(options: LoadOptions) -> DigitVAE:
    """Load a model once per process, so that its encoder, decoder and generate roles share it."""
    return DigitVAE.from_options(options)


def dims_of(vae: DigitVAE) -> ModelDims:
    """Return the dimensions a loaded model's served tensors depend on."""
    return ModelDims(vae.latent_dim, vae.num_classes, vae.prior.num_classes)


@functools.cache
def _watch_parent() -> None:
    """In an inference worker, exit as soon as the server process is gone.

    MLServer's workers ignore SIGINT and SIGTERM (the server stops them), so a server killed
    outright (SIGKILL, out of memory) would leave them running.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="digitvae-parent-watch", daemon=True).start()


@functools.cache
def batch_metrics() -> tuple[Any, Any]:
    """Return the histograms of rows and of requests per batched model call (registered once per process).

    In prometheus_client's default registry, which MLServer's /metrics serves when inference
    runs in the server process (`mlserver.register` puts metrics in a registry it serves only
    with workers, whose metrics reach it through files either way).
    """
    from prometheus_client import Histogram

    labels = ["model_name", "model_version"]
    buckets = [2**i for i in range(13)]
    return (
        Histogram(
            "digitvae_batch_rows", "Rows (digits or codes) per model call when batching", labels, buckets=buckets
        ),
        Histogram("digitvae_batch_requests", "Requests per model call when batching", labels, buckets=buckets),
    )


class _QuietClientErrors(logging.Filter):
    """Drop MLServer's traceback for a request refused with a 4xx, or a 503 while a worker restarts.

    The client gets the reason; a worker's stop is logged once, by MLServer's pool.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, MLServerError) and (400 <= exc.status_code < 500 or exc.status_code == UNAVAILABLE))


@functools.cache
def quiet_client_errors() -> None:
    """Keep the server's log for the server: no traceback per refused request (workers and gRPC log them)."""
    for name in ("mlserver.parallel", "mlserver.grpc"):
        logging.getLogger(name).addFilter(_QuietClientErrors())


class _Served(MLModel):  # type: ignore[misc]
    """What the roles share: loading from the settings' parameters, reading inputs, batching, errors as 400s.

    A role checks each request and makes its row-wise feeds in `prepare`, and computes the
    outputs of feeds in `run`: one request's, or several joined by the batcher.
    """

    role = ""

    async def load(self) -> bool:
        extra: dict[str, Any] = dict(self.settings.parameters.extra or {}) if self.settings.parameters else {}
        self.max_rows = int(extra.pop("max_batch", 1024))
        batch_size = int(extra.pop("batch_size", 1))
        batch_delay = float(extra.pop("batch_delay", 0.0))
        self.batcher = Batcher(self.run, batch_size, batch_delay, self._observe) if batch_size > 1 else None
        self.vae = load_shared(LoadOptions.from_dict(extra))
        self.forms = input_forms(self.role, dims_of(self.vae))
        quiet_client_errors()
        if multiprocessing.parent_process() is not None:  # an inference worker
            _watch_parent()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            form, arrays = read_inputs(payload.inputs, self.forms, self.max_rows)
            feeds = self.prepare(form, arrays)
            results = await self.batcher(form, feeds) if self.batcher else self.run(form, feeds)
            names = requested(payload.outputs, results)
        except InputError as exc:
            raise InferenceError(str(exc)) from None
        except DigitVAEError as exc:
            # The model itself failed (a broken file, a provider error): not the client's fault.
            logger.error("%s: %s", self.name, exc)
            raise MLServerError(str(exc), status_code=500) from None
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[ResponseOutput(**output(name, results[name])) for name in names],
        )

    def _observe(self, rows: int, requests: int) -> None:
        """Record a model call's rows and requests in the Prometheus histograms (`--metrics-port`)."""
        labels = {"model_name": self.name, "model_version": self.version or ""}
        batch_metrics()[0].labels(**labels).observe(rows)
        batch_metrics()[1].labels(**labels).observe(requests)

    def prepare(self, form: int, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return one request's row-wise feeds (one row per digit or code) for `run`; InputError if it is refused."""
        return arrays

    def run(self, form: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the row-wise outputs for row-wise feeds of the input form `form`."""
        raise NotImplementedError


class EncoderModel(_Served):
    """`M-encoder`: image [N,1,28,28] or [N,784] in [0, 1] (+ label) -> mean, logvar [N,D]."""

    role = "encoder"

    def prepare(self, form: int, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # One image shape, so that requests sending either can be joined.
        return {**arrays, "image": arrays["image"].reshape(-1, 1, 28, 28)}

    def run(self, form: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mean, logvar = self.vae.encode(feeds["image"], feeds.get("label"))
        return {"mean": mean, "logvar": logvar}


class DecoderModel(_Served):
    """`M-decoder`: z [N,D] (+ label) -> logits, image [N,1,28,28], exactly decoder.onnx's outputs."""

    role = "decoder"

    def run(self, form: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        logits, image = self.vae.decoder_outputs(feeds["z"], feeds.get("label"))
        return {"logits": logits, "image": image}


class GenerateModel(_Served):
    """`M-generate`, in two forms.

    Count form: n [1] (+ seed [1], digit [1] or [n]) -> z [n,D] and image [n,28,28], the digits
    of `DigitVAE.generate(n, seed=seed, digit=digit)`. Sampler form: noise [N,D], uniform [N],
    label [N] -> z [N,D] and image [N,1,28,28], prior.onnx feeding decoder.onnx.
    """

    role = "generate"

    def prepare(self, form: int, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if form == 0:
            return self._codes(arrays)
        return self._sampler_feeds(arrays)

    def run(self, form: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if form == 0:
            return {"z": feeds["z"], "image": self.vae.decode(feeds["z"], feeds.get("labels"))}
        z = self.vae.prior.sample(feeds["noise"], feeds["uniform"], feeds["label"])
        image = self.vae.decode(z, feeds["label"] if self.vae.num_classes else None)
        return {"z": z, "image": image.reshape(len(z), 1, 28, 28)}

    def _codes(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Draw a count-form request's codes (and the digits they are for): its feeds, drawn alone whatever the batch."""
        n = int(arrays["n"][0])
        if not 1 <= n <= self.max_rows:
            raise InputError(f"n must be between 1 and {self.max_rows:,} (--max-batch), got {n:,}")
        seed = int(arrays["seed"][0]) if "seed" in arrays else None
        if seed is not None and seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed}")
        digit: Any = arrays.get("digit")
        if digit is not None and digit.shape == (1,):
            digit = int(digit[0])  # one digit asks for n of it, as generate(digit=7) does
        # The codes DigitVAE.generate decodes, and the digits they are for: z comes back too.
        z, labels = self.vae.sample_codes(n, seed=seed, digit=digit)
        return {"z": z} if labels is None else {"z": z, "labels": labels}

    def _sampler_feeds(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        noise, uniform, label = arrays["noise"], arrays["uniform"], arrays["label"]
        n = len(noise)
        if len(uniform) != n or len(label) != n:
            raise InputError(f"noise, uniform and label must have the same rows, got {n}, {len(uniform)}, {len(label)}")
        if n == 0:
            raise InputError("noise is an empty batch; pass at least one row")
        if uniform.min() < 0 or uniform.max() >= 1:
            raise InputError(f"uniform must be in [0, 1), got values in [{uniform.min():g}, {uniform.max():g}]")
        classes = self.vae.num_classes
        low, high = (0, classes - 1) if classes else (-1, self.vae.prior.num_classes - 1)
        if label.min() < low or label.max() > high:
            allowed = f"{low} to {high}" if high >= low + 1 else str(low)
            why = " (a conditional model's decoder needs a class)" if classes else " (-1: any class)"
            raise InputError(f"label must be {allowed}{why}, got values in [{label.min()}, {label.max()}]")
        return arrays
