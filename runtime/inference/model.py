"""DigitVAE: generate and reconstruct digits with the two ONNX halves of a VAE."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..arrays import IMAGE_SIDE, as_count, as_images, as_labels, as_latents, as_seed
from ..errors import InputError
from ..folders.locate import DEFAULT_MODEL, resolve_model_dir
from ..folders.manifest import ROLES, Manifest
from ..folders.reading import read_manifest
from ..options import LoadOptions, as_provider_specs
from . import likelihood
from .contract import run_checked
from .likelihood import Progress
from .loading import open_checked
from .prior import LearnedPrior, Prior, UnseededDraws, any_class_rows
from .providers import ProviderSpec, check_active, normalize, plan
from .sessions import CHUNK, SMALL_BATCH, SmallBatchRunner, active_providers

if TYPE_CHECKING:
    import onnxruntime as ort

logger = logging.getLogger(__name__)

_ENCODED = ["mean", "logvar"]
_DECODED = ["logits", "image"]
#: The learned prior's files the runtime loads; small graphs, run on one thread (see load).
_PRIOR_FILES = ("prior", "prior_density")
#: Codes z [n, D] and the decoder's labels for them (None for a model that is not conditional).
Codes = tuple[np.ndarray, np.ndarray | None]


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
        self._draws = UnseededDraws(self.prior)
        enc_active = active_providers(encoder)
        #: The providers that really run both halves, in order of preference.
        self.providers: list[str] = [p for p in active_providers(decoder) if p in enc_active]

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        providers: ProviderSpec | Sequence[ProviderSpec] | None = None,
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
        name = os.fspath(model) if isinstance(model, os.PathLike) else model
        return cls.from_options(LoadOptions(name, variant, as_provider_specs(providers), strict, threads, prior))

    @classmethod
    def from_options(cls, options: LoadOptions) -> DigitVAE:
        """Load the model that `options` name, as they say (see LoadOptions), and start its sessions."""
        strict, threads = options.strict, options.threads
        chosen = plan(normalize(options.provider_request()), strict=strict)
        model_dir = resolve_model_dir(options.model)
        manifest = read_manifest(model_dir)
        files = manifest.files(options.variant)
        learned = bool(manifest.prior) and options.prior
        # generator.onnx (sampler and decoder in one graph) is for apps; here the pool below makes
        # small batches as cheap, and leaving it out saves a third copy of the decoder's weights.
        files = {role: files[role] for role in (*ROLES, *(_PRIOR_FILES if learned else ()))}
        # The prior's graphs are small: a thread pool of their own would only spin beside the
        # decoder's and steal its cores (4 ms stalls of batch-1 calls on two cores).
        role_threads = {role: 1 if role in _PRIOR_FILES else threads for role in files}
        sessions, _ = open_checked(model_dir, manifest, files, role_threads, chosen, strict=strict)
        learned_prior = None
        if learned:
            learned_prior = LearnedPrior(
                manifest.latent_dim, dict(manifest.prior or {}), sessions["prior"], sessions["prior_density"]
            )
        vae = cls(manifest, model_dir, sessions["encoder"], sessions["decoder"], learned_prior)
        check_active(chosen.started, vae.providers, strict=strict)
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
        return self.sample_codes(n, seed, digit)[0]

    def sample_codes(self, n: int, seed: int | None = None, digit: npt.ArrayLike | None = None) -> Codes:
        """Draw the codes `generate(n, seed, digit)` decodes: z float32 [n, D] and the digits they are for.

        The digits are the decoder's labels, int64 [n], for a conditional model (None for the
        others, whose decoder takes none): `decode(z, labels)` is `generate(n, seed, digit)`.
        """
        n = as_count(n)
        if self._pooled(n, seed, digit):
            _, label = self._classes(n, digit)
            return self._draws.codes(int(label[0]), n), None
        blocks = list(self._code_blocks(n, seed, digit, CHUNK))
        labels = [y for _, y in blocks if y is not None]
        return np.concatenate([z for z, _ in blocks]), np.concatenate(labels) if labels else None

    def generate(self, n: int, seed: int | None = None, digit: npt.ArrayLike | None = None) -> np.ndarray:
        """Generate n new digits from the model's prior as float32 [n, 28, 28] in [0, 1].

        `digit` (one class or one per row) asks for that digit: a conditional model decodes it,
        a prior fit per class samples it. A conditional model without `digit` cycles the
        classes 0, 1, ..., 9, 0, ... so every class appears equally often.
        """
        n = as_count(n)
        if self._pooled(n, seed, digit):
            return self._decode(*self.sample_codes(n, seed, digit))
        out = np.empty((n, IMAGE_SIDE, IMAGE_SIDE), np.float32)
        start = 0
        for block in self.iter_generate(n, seed, digit):
            out[start : start + len(block)] = block
            start += len(block)
        return out

    def _pooled(self, n: int, seed: int | None, digit: Any) -> bool:
        """Return whether the codes come from the learned prior's pool: a small unseeded batch then costs a decode."""
        one_class = digit is None or np.ndim(digit) == 0
        unconditional = not self.num_classes and isinstance(self.prior, LearnedPrior)
        return seed is None and one_class and n <= SMALL_BATCH and unconditional

    def iter_generate(
        self, n: int, seed: int | None = None, digit: npt.ArrayLike | None = None, block: int = CHUNK
    ) -> Iterator[np.ndarray]:
        """Yield `generate(n, seed, digit)` in consecutive blocks of at most `block` digits.

        The same digits, with their random inputs and classes made block by block too, so
        writing them out as they come keeps memory to one block whatever n is.
        """
        n, block = as_count(n), as_count(block, "block")
        for z, labels in self._code_blocks(n, seed, digit, block):
            yield self._decode(z, labels)

    def _code_blocks(self, n: int, seed: int | None, digit: Any, block: int) -> Iterator[Codes]:
        """Yield the codes of `iter_generate` and the decoder's labels for them, block by block."""
        rows: np.ndarray | None = None
        if digit is not None and np.ndim(digit) != 0:
            self._classes(n, digit)  # a digit per row: all checked before the first block
            rows = np.asarray(digit)
        unseeded = (self._draws.inputs(min(block, n - i)) for i in range(0, n, block))
        draws = unseeded if as_seed(seed) is None else self.prior.draw_blocks(np.random.default_rng(seed), n, block)
        for i, (noise, uniform) in zip(range(0, n, block), draws):
            m = len(noise)
            part = digit if rows is None else rows[i : i + m]
            if part is None and self.num_classes:
                part = np.arange(i, i + m) % self.num_classes  # every class in turn, continued across blocks
            part, label = self._classes(m, part)
            yield self.prior.sample(noise, uniform, label), self._labels(part, m) if self.num_classes else None

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
        return digit, any_class_rows(n)

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
            mean, logvar = self.encoder_chunk(x[i : i + CHUNK], _rows(y, i))
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
        samples = as_count(samples, "samples")
        x = as_images(images)
        return likelihood.elbo(self, x, self._labels(labels, len(x)), samples, seed, progress)

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
        x = as_images(images)
        return likelihood.iw_nll(self, x, self._labels(labels, len(x)), k, seed, progress)

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

    def encoder_chunk(self, x: np.ndarray, labels: np.ndarray | None) -> list[np.ndarray]:
        """Return [mean, logvar] for at most CHUNK images already checked (see `encode`)."""
        feeds = {"image": x} if labels is None else {"image": x, "label": labels}
        code = (len(x), self.latent_dim)
        # Pixels in [0, 1] are ordinary inputs: run_checked blames NaN or infinity on the model.
        return run_checked(self._encoder, _ENCODED, feeds, "encoder", (code, code), self._small["encoder"])

    def logits_chunk(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """Return the decoder's logits [m, 1, 28, 28] for at most CHUNK codes already checked (see `decode`)."""
        return self._run_decoder("logits", z, labels)

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
