"""DigitVAE: generate and reconstruct digits with the two ONNX halves of a VAE."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import likelihood as lk
from . import providers as eps
from .contract import check_signatures, run_checked, trial_run
from .errors import InputError, ModelError, ProviderError
from .inputs import IMAGE_SIDE, as_count, as_images, as_labels, as_latents, as_seed
from .manifest import DEFAULT_MODEL, ROLES, Manifest, read_manifest, resolve_model_dir, verified_bytes
from .onnxscan import check_self_contained
from .prior import ANY_CLASS, BlockPool, LearnedPrior, Prior, code_pool, draw_pool
from .sessions import SMALL_BATCH, SmallBatchRunner, active_providers, open_session, session_options

if TYPE_CHECKING:
    import onnxruntime as ort

logger = logging.getLogger(__name__)

#: Rows per onnxruntime call: bounds the session's working memory for very large batches.
CHUNK = 4096
_ENCODED = ["mean", "logvar"]
_DECODED = ["logits", "image"]
#: Most intra-op threads accepted: far beyond any machine, and within what onnxruntime takes.
MAX_THREADS = 1024
#: A callback told how many digits are done, for long likelihood computations.
Progress = Callable[[int], None] | None
#: The learned prior's files the runtime loads; small graphs, run on one thread (see load).
_PRIOR_FILES = ("prior", "prior_density")
#: The prior's `label` for small unseeded-class batches, made once (read-only).
_ANY_CLASS = {n: np.full(n, ANY_CLASS, np.int64) for n in range(1, 17)}
for _array in _ANY_CLASS.values():
    _array.flags.writeable = False


def _cpu_session(data: bytes, opts: ort.SessionOptions) -> ort.InferenceSession | None:
    """Return a CPU session on a graph, or None when onnxruntime cannot load it at all."""
    try:
        return open_session(data, opts)
    except Exception:
        return None


class DigitVAE:
    """A loaded encoder/decoder pair; every method takes and returns numpy arrays.

    Create it with `DigitVAE.load(...)`, which does all file and session work.
    """

    def __init__(
        self,
        manifest: Manifest,
        model_dir: Path,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        prior: Prior | None = None,
    ) -> None:
        self.manifest = manifest
        self.model_dir = model_dir
        self._encoder = encoder
        self._decoder = decoder
        #: The latent prior p(z): N(0, I), or the model's learned prior.
        self.prior = prior or Prior(manifest.latent_dim)
        # Small batches skip InferenceSession.run's per-call conversions (CPU only).
        self._small = {"encoder": SmallBatchRunner(encoder), "decoder": SmallBatchRunner(decoder)}
        # Unseeded draws come from blocks made ahead from one generator seeded by the OS.
        self._rng: np.random.Generator | None = None
        self._draw_pool: BlockPool | None = None
        self._code_pools: dict[int, BlockPool] = {}
        enc_active = active_providers(encoder)
        #: The providers that really run both halves, in order of preference.
        self.providers: list[str] = [p for p in active_providers(decoder) if p in enc_active]

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        providers: eps.ProviderSpec | Sequence[eps.ProviderSpec] | None = None,
        strict: bool = False,
        *,
        variant: str = "fp32",
        threads: int | None = None,
        prior: bool = True,
    ) -> DigitVAE:
        """Load a shipped model by name, or a model folder, and start its sessions.

        `providers` takes short names ("cpu", "cuda", "openvino", ...), onnxruntime names or
        "plugin:MODULE" for a plugin EP package, optionally as (name, options) pairs; the default
        is CPU. A requested provider that is unavailable or fails to start is a logged warning,
        or a ProviderError when `strict`.
        `prior=False` ignores a learned prior and uses N(0, I), for comparison.
        """
        requested = eps.normalize(providers)
        plan = eps.plan(requested, strict=strict)
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= MAX_THREADS
        ):
            raise InputError(
                f"threads must be an integer from 0 (onnxruntime's default) to {MAX_THREADS}, got {threads!r}"
            )
        threads = None if threads is None else int(threads)
        if not isinstance(variant, str):
            raise InputError(f"variant must be a name such as 'fp32', 'int8' or 'fp16', got {type(variant).__name__}")
        model_dir = resolve_model_dir(model)
        manifest = read_manifest(model_dir)
        files = manifest.files(variant)
        learned = bool(manifest.prior) and prior
        # generator.onnx (sampler and decoder in one graph) is for apps; here the pool below makes
        # small batches as cheap, and leaving it out saves a third copy of the decoder's weights.
        files = {role: files[role] for role in (*ROLES, *(_PRIOR_FILES if learned else ()))}
        sessions = {}
        for role in files:
            # Hash and load the same bytes, so the file cannot change between check and use.
            data = verified_bytes(model_dir, files[role])
            check_self_contained(data, model_dir / files[role].path)
            # The prior's graphs are small: a thread pool of their own would only spin beside the
            # decoder's and steal its cores (4 ms stalls of batch-1 calls on two cores).
            role_threads = 1 if role in _PRIOR_FILES else threads
            try:
                sessions[role] = open_session(data, session_options(role_threads), plan)
            except Exception as exc:  # onnxruntime raises several unrelated types for bad models
                # A plugin EP that fails to compile the graph, or a broken graph: the CPU provider tells.
                fallback = _cpu_session(data, session_options(role_threads)) if plan.plugins else None
                if fallback is None:
                    raise ModelError(f"{model_dir / files[role].path}: onnxruntime cannot load it: {exc}") from None
                sessions[role] = fallback
                message = f"{', '.join(c.ep_name for c in plan.plugins)} cannot run {files[role].path}: {exc}"
                if strict:
                    raise ProviderError(message) from None
                logger.warning("%s; running it on CPUExecutionProvider", message)
        check_signatures(model_dir, manifest, sessions)
        trial_run(model_dir, manifest, sessions)
        learned_prior = None
        if learned:
            learned_prior = LearnedPrior(
                manifest.latent_dim, dict(manifest.prior or {}), sessions["prior"], sessions["prior_density"]
            )
        vae = cls(manifest, model_dir, sessions["encoder"], sessions["decoder"], learned_prior)
        eps.check_active(plan.started, vae.providers, strict=strict)
        logger.info("loaded %s from %s on %s", manifest.name, model_dir, ", ".join(vae.providers))
        return vae

    @property
    def latent_dim(self) -> int:
        """Return the size D of the latent code."""
        return self.manifest.latent_dim

    @property
    def name(self) -> str:
        """Return the model's name."""
        return self.manifest.name

    @property
    def num_classes(self) -> int:
        """Return how many classes a conditional model takes (0 for an unconditional one)."""
        return self.manifest.num_classes

    def sample_latents(self, n: int, seed: int | None = None, digit: npt.ArrayLike | None = None) -> np.ndarray:
        """Draw n codes from the model's prior as float32 [n, D]; a seed makes them reproducible.

        `digit` (one class or one per row) asks a prior fit per class for that class's codes.
        """
        n = as_count(n)
        _, label = self._classes(n, digit)
        noise, uniform = self._noise(n, seed)
        return self.prior.sample(noise, uniform, label)

    def generate(self, n: int, seed: int | None = None, digit: npt.ArrayLike | None = None) -> np.ndarray:
        """Generate n new digits from the model's prior as float32 [n, 28, 28] in [0, 1].

        `digit` (one class or one per row) asks for that digit: a conditional model decodes it,
        a prior fit per class samples it. A conditional model without `digit` cycles the
        classes 0, 1, ..., 9, 0, ... so every class appears equally often.
        """
        n = as_count(n)
        pooled = seed is None and (digit is None or np.ndim(digit) == 0) and n <= SMALL_BATCH and not self.num_classes
        if pooled and isinstance(self.prior, LearnedPrior):
            # Unseeded codes of one class (or any) are sampled a block ahead: a small batch costs a decode.
            _, label = self._classes(n, digit)
            return self._decode(self._code_pool(int(label[0])).take(n)[0], None)
        out = np.empty((n, IMAGE_SIDE, IMAGE_SIDE), np.float32)
        start = 0
        for block in self.iter_generate(n, seed, digit):
            out[start : start + len(block)] = block
            start += len(block)
        return out

    def iter_generate(
        self, n: int, seed: int | None = None, digit: npt.ArrayLike | None = None, block: int = CHUNK
    ) -> Iterator[np.ndarray]:
        """Yield `generate(n, seed, digit)` in consecutive blocks of at most `block` digits.

        The same digits, with their random inputs and classes made block by block too, so
        writing them out as they come keeps memory to one block whatever n is.
        """
        n, block = as_count(n), as_count(block, "block")
        rows: np.ndarray | None = None
        if digit is not None and np.ndim(digit) != 0:
            self._classes(n, digit)  # a digit per row: all checked before the first block
            rows = np.asarray(digit)
        if as_seed(seed) is None:
            draws: Iterator[tuple[np.ndarray, np.ndarray | None]] = (
                self._noise(min(block, n - i), None) for i in range(0, n, block)
            )
        else:
            draws = self.prior.draw_blocks(np.random.default_rng(seed), n, block)
        for i, (noise, uniform) in zip(range(0, n, block), draws):
            m = len(noise)
            part = digit if rows is None else rows[i : i + m]
            if part is None and self.num_classes:
                part = np.arange(i, i + m) % self.num_classes  # every class in turn, continued across blocks
            part, label = self._classes(m, part)
            yield self._decode(
                self.prior.sample(noise, uniform, label), self._labels(part, m) if self.num_classes else None
            )

    def _classes(self, n: int, digit: Any) -> tuple[Any, np.ndarray]:
        """Return the digits asked for and the prior's `label` input for n draws.

        A conditional model without `digit` is asked for every class in turn; the prior's
        `label` is the digit where the prior has classes, else -1 (any class).
        """
        if digit is None and self.num_classes:
            digit = np.arange(n) % self.num_classes
        elif digit is not None and not self.num_classes and not self.prior.num_classes:
            raise InputError(
                f"model {self.name!r} cannot be asked for a digit: it is not conditional and its prior "
                "has no classes (fit one per class with `digitvae prior fit MODEL --data IMAGES --labels LABELS`, "
                "or use a conditional model such as mnist-cvae)"
            )
        if digit is not None and self.prior.num_classes:
            return digit, self.prior.class_rows(digit, n)
        label = _ANY_CLASS.get(n)
        return digit, np.full(n, ANY_CLASS, np.int64) if label is None else label

    def _noise(self, n: int, seed: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the prior's random inputs for n draws: from `seed`, or the next rows of a block."""
        if as_seed(seed) is not None:
            return self.prior.draw(np.random.default_rng(seed), n)
        if self._draw_pool is None:
            self._draw_pool = draw_pool(self.prior, self._os_rng())
        noise, uniform = self._draw_pool.take(n)
        return noise, uniform

    def _code_pool(self, label: int) -> BlockPool:
        pool = self._code_pools.get(label)
        if pool is None:
            pool = self._code_pools[label] = code_pool(self.prior, self._os_rng(), label)
        return pool

    def _os_rng(self) -> np.random.Generator:
        # Seeding a generator from the OS costs as much as decoding one digit: do it once.
        if self._rng is None:
            self._rng = np.random.default_rng()
        return self._rng

    def decode(self, z: npt.ArrayLike, labels: npt.ArrayLike | None = None) -> np.ndarray:
        """Decode latent codes [N, D] into digits, float32 [N, 28, 28] in [0, 1]."""
        z = as_latents(z, self.latent_dim)
        return self._decode(z, self._labels(labels, len(z)))

    def _decode(self, z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        if len(z) <= CHUNK:
            return _image_rows(self._run_decoder("image", z, y), len(z))
        out = np.empty((len(z), IMAGE_SIDE, IMAGE_SIDE), np.float32)
        for i in range(0, len(z), CHUNK):
            out[i : i + CHUNK] = _image_rows(
                self._run_decoder("image", z[i : i + CHUNK], _rows(y, i)), len(z[i : i + CHUNK])
            )
        return out

    def decoder_outputs(self, z: npt.ArrayLike, labels: npt.ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return both of the decoder's outputs for codes [N, D]: logits and image, float32 [N, 1, 28, 28]."""
        z = as_latents(z, self.latent_dim)
        y = self._labels(labels, len(z))
        logits = np.empty((len(z), 1, IMAGE_SIDE, IMAGE_SIDE), np.float32)
        image = np.empty_like(logits)
        for i in range(0, len(z), CHUNK):
            part = z[i : i + CHUNK]
            feeds = {"z": part} if y is None else {"z": part, "label": y[i : i + CHUNK]}
            shape = (len(part), 1, IMAGE_SIDE, IMAGE_SIDE)
            out = run_checked(self._decoder, _DECODED, feeds, "decoder", (shape, shape), self._small["decoder"])
            image[i : i + len(part)] = _image_rows(out[1], len(part)).reshape(shape)
            logits[i : i + len(part)] = out[0]
        return logits, image

    def encode(self, images: npt.ArrayLike, labels: npt.ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode digits into the posterior's mean and log-variance, each float32 [N, D]."""
        x = as_images(images)
        y = self._labels(labels, len(x))
        means, logvars = [], []
        for i in range(0, len(x), CHUNK):
            mean, logvar = self._run_encoder(x[i : i + CHUNK], _rows(y, i))
            means.append(mean)
            logvars.append(logvar)
        if len(means) == 1:
            return means[0], logvars[0]
        return np.concatenate(means), np.concatenate(logvars)

    def reconstruct(self, images: npt.ArrayLike, labels: npt.ArrayLike | None = None) -> np.ndarray:
        """Encode digits and decode their posterior means: float32 [N, 28, 28] in [0, 1]."""
        x = as_images(images)
        y = self._labels(labels, len(x))
        mean, _ = self.encode(x, y)
        return self.decode(mean, y)

    def elbo(
        self,
        images: npt.ArrayLike,
        labels: npt.ArrayLike | None = None,
        *,
        samples: int = 1,
        seed: int | None = 0,
        progress: Progress = None,
    ) -> np.ndarray:
        """Return each digit's evidence lower bound on log p(x) in nats, float64 [N].

        The reconstruction term averages `samples` draws from the posterior; the KL term is exact
        for N(0, I) and estimated from the same draws for a learned prior. Higher is more likely.
        `progress`, if given, is called with the number of digits done after each batch.
        """
        n_samples = as_count(samples, "samples")
        out, total = [], None
        for log_px, mean, logvar, noise, z, y, last in self._posterior_samples(
            images, labels, n_samples, seed, progress
        ):
            if isinstance(self.prior, LearnedPrior):
                # No closed form against a mixture: the KL term is estimated from the same draws.
                log_ratio = self.prior.log_prob(z, y) - lk.gaussian_log_prob_of_noise(noise, logvar[:, None, :])
                part = (log_px + log_ratio).sum(axis=1)
                total = part if total is None else total + part
                if last:
                    out.append(total / n_samples)
                    total = None
            else:
                part = log_px.sum(axis=1)
                total = part if total is None else total + part
                if last:
                    out.append(total / n_samples - lk.kl_to_standard_normal(mean, logvar))
                    total = None
        return np.concatenate(out)

    def iw_nll(
        self,
        images: npt.ArrayLike,
        k: int = 200,
        labels: npt.ArrayLike | None = None,
        *,
        seed: int | None = 0,
        progress: Progress = None,
    ) -> np.ndarray:
        """Return each digit's importance-weighted estimate of -log p(x) in nats, float64 [N].

        Burda et al. (2015) with k posterior samples; it tightens towards the true negative
        log-likelihood as k grows, and k=1 is a one-sample -ELBO. `progress`, if given, is
        called with the number of digits done after each batch.
        """
        k = as_count(k, "k")
        out = []
        top: np.ndarray | None = None
        scaled = np.zeros(0)
        for log_px, _, logvar, noise, z, y, last in self._posterior_samples(images, labels, k, seed, progress):
            log_w = log_px + self.prior.log_prob(z, y) - lk.gaussian_log_prob_of_noise(noise, logvar[:, None, :])
            # A log-sum-exp over the k samples, kept up to date chunk by chunk.
            chunk_top = log_w.max(axis=1)
            if top is None:
                top, scaled = chunk_top, np.exp(log_w - chunk_top[:, None]).sum(axis=1)
            else:
                new_top = np.maximum(top, chunk_top)
                scaled = scaled * np.exp(top - new_top) + np.exp(log_w - new_top[:, None]).sum(axis=1)
                top = new_top
            if last:
                out.append(-(top + np.log(scaled) - math.log(k)))
                top = None
        return np.concatenate(out)

    def _posterior_samples(
        self, images: Any, labels: Any, samples: int, seed: int | None, progress: Progress = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, bool]]:
        """Yield (log p(x|z) [m, s], mean, logvar, eps, z [m, s, D], labels, last) for posterior samples.

        At most CHUNK samples go through the decoder at once: several digits with all their
        samples, or one digit's samples CHUNK at a time (`last` marks a digit block's final
        chunk). The noise is drawn digit by digit in order, so the values do not depend on the
        chunking, and memory does not grow with the number of digits or of samples.
        """
        x = as_images(images)
        y = self._labels(labels, len(x))
        rng = np.random.default_rng(as_seed(seed))
        rows = max(1, CHUNK // samples)
        per = min(samples, CHUNK)
        for i in range(0, len(x), rows):
            xb, yb = x[i : i + rows], _rows(y, i, rows)
            mean, logvar = self._run_encoder(xb, yb)
            sigma = np.exp(0.5 * logvar)[:, None, :]
            for j in range(0, samples, per):
                eps = rng.standard_normal((len(xb), min(per, samples - j), self.latent_dim), dtype=np.float32)
                z = mean[:, None, :] + sigma * eps
                yield self._log_px_given_z(xb, yb, z), mean, logvar, eps, z, yb, j + per >= samples
            if progress is not None:
                progress(i + len(xb))

    def _log_px_given_z(self, x: np.ndarray, labels: np.ndarray | None, z: np.ndarray) -> np.ndarray:
        """Return log p(x | z) [m, s] for codes z of shape [m, s, D]."""
        m, s, d = z.shape
        flat_y = None if labels is None else np.repeat(labels, s)
        logits = np.empty((m * s, x[0].size), dtype=np.float32)
        flat_z = np.ascontiguousarray(z.reshape(m * s, d), dtype=np.float32)
        for j in range(0, m * s, CHUNK):
            part = self._run_decoder("logits", flat_z[j : j + CHUNK], _rows(flat_y, j))
            logits[j : j + len(part)] = part.reshape(len(part), -1)
        with np.errstate(invalid="ignore", over="ignore"):
            log_px = lk.bernoulli_log_prob(logits.reshape(m, s, -1), x.reshape(m, 1, -1))
        if not np.isfinite(log_px).all():
            raise ModelError("the decoder returned NaN or infinite logits; the likelihood is undefined")
        return log_px

    def _labels(self, labels: Any, n: int) -> np.ndarray | None:
        """Validate labels for this model: required by a conditional one, refused by the others."""
        if not self.num_classes:
            if labels is not None:
                raise InputError(f"model {self.name!r} is not conditional; it takes no labels")
            return None
        if labels is None:
            raise InputError(
                f"model {self.name!r} is conditional: pass labels (integers 0-{self.num_classes - 1}, one per digit)"
            )
        return as_labels(labels, n, self.num_classes)

    def _run_encoder(self, x: np.ndarray, labels: np.ndarray | None) -> list[np.ndarray]:
        feeds = {"image": x} if labels is None else {"image": x, "label": labels}
        code = (len(x), self.latent_dim)
        # Pixels in [0, 1] are ordinary inputs: run_checked blames NaN or infinity on the model.
        return run_checked(self._encoder, _ENCODED, feeds, "encoder", (code, code), self._small["encoder"])

    def _run_decoder(self, output: str, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        feeds = {"z": z} if labels is None else {"z": z, "label": labels}
        shape = (len(z), 1, IMAGE_SIDE, IMAGE_SIDE)
        return run_checked(self._decoder, [output], feeds, "decoder", (shape,), self._small["decoder"])[0]

    def __repr__(self) -> str:
        return f"DigitVAE(name={self.name!r}, latent_dim={self.latent_dim}, providers={self.providers})"


def _rows(labels: np.ndarray | None, start: int, count: int = CHUNK) -> np.ndarray | None:
    return None if labels is None else labels[start : start + count]


def _image_rows(image: np.ndarray, n: int) -> np.ndarray:
    """Return a decoder's image output (shape and finiteness checked by run_checked) as [n, 28, 28]."""
    return image.reshape(n, IMAGE_SIDE, IMAGE_SIDE)
