"""DigitVAE: generate and reconstruct digits with the two ONNX halves of a VAE."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..arrays import IMAGE_SIDE, all_finite, as_count, as_images, as_labels, as_latents
from ..errors import InputError
from ..folders.locate import DEFAULT_MODEL, resolve_model_dir
from ..folders.manifest import PRIOR_ROLES, ROLES, Manifest
from ..folders.reading import read_manifest
from ..logs import get_logger
from ..options import LoadOptions, as_provider_specs
from . import likelihood
from .contract import run_checked
from .draws import Codes, Draws
from .generator import ComposedGenerator
from .likelihood import Progress
from .loading import open_model
from .prior import LearnedPrior, Prior
from .providers import ProviderSpec, check_active, normalize, plan
from .sessions import CHUNK, SMALL_BATCH, LazySession, Runners, SmallBatchRunner, active_providers

if TYPE_CHECKING:
    import numpy.typing as npt
    import onnxruntime as ort

logger = get_logger(__name__)

_ENCODED = ["mean", "logvar"]
_DECODED = ["logits", "image"]


class DigitVAE:
    """A loaded encoder/decoder pair; every method takes and returns numpy arrays.

    Create it with `DigitVAE.load(...)`, which does all file and session work.
    """

    def __init__(
        self,
        manifest: Manifest,
        model_dir: Path,
        encoder: ort.InferenceSession | LazySession,
        decoder: ort.InferenceSession,
        prior: Prior | None = None,
        whole_decoder: LazySession | None = None,
    ) -> None:
        """`decoder` makes the images; `whole_decoder`, where given, gives the logits too (see loading.open_model)."""
        self.manifest = manifest
        self.model_dir = model_dir
        self._encoder_slot = encoder if isinstance(encoder, LazySession) else LazySession.opened(encoder)
        self._decoder = decoder
        self._whole_slot = whole_decoder or LazySession.opened(decoder)
        #: The latent prior p(z): N(0, I), or the model's learned prior.
        self.prior = prior or Prior(manifest.latent_dim)
        # Small batches skip InferenceSession.run's per-call conversions (CPU only), large ones are
        # decoded in place (CPU and CUDA); the encoder's and the whole decoder's runners are made
        # with their sessions, on first use.
        self._small = Runners(SmallBatchRunner(decoder), encoder=lambda: self._encoder, whole=self._whole_decoder)
        if self._whole_slot.is_open and self._whole_slot.get() is decoder:
            self._small["whole"] = self._small["decoder"]  # one session: one set of buffers
        self._draws = Draws(manifest.name, self.prior, manifest.num_classes, self._labels)
        self._composed: ComposedGenerator | None = None  # see from_options
        running = [active_providers(decoder)]
        if self._encoder_slot.is_open:
            running.append(active_providers(self._encoder))
        #: The providers that really run both halves, in order of preference (an encoder not yet
        #: opened will run on the CPU provider alone, as the decoder then does).
        self.providers = [p for p in running[0] if all(p in active for active in running)]

    @property
    def _encoder(self) -> ort.InferenceSession:
        return self._encoder_slot.get()

    @_encoder.setter
    def _encoder(self, session: ort.InferenceSession) -> None:
        self._encoder_slot = LazySession.opened(session)
        self._small.pop("encoder", None)  # the next small batch makes a runner for this session

    def _whole_decoder(self) -> ort.InferenceSession:
        """Return the decoder session that gives logits as well as images, opening it on first use."""
        return self._whole_slot.get()

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
        strict = options.strict
        chosen = plan(normalize(options.provider_request()), strict=strict)
        model_dir = resolve_model_dir(options.model)
        manifest = read_manifest(model_dir)
        learned = bool(manifest.prior) and options.prior
        roles = (*ROLES, *(PRIOR_ROLES if learned else ()))
        sessions, blobs = open_model(
            model_dir, manifest, options.variant, roles, options.threads, chosen, strict=strict
        )
        learned_prior = None
        if learned:
            description = dict(manifest.prior or {})
            learned_prior = LearnedPrior(
                manifest.latent_dim, description, sessions["prior"].get(), sessions["prior_density"]
            )
        vae = cls(
            manifest, model_dir, sessions["encoder"], sessions["images"].get(), learned_prior, sessions["decoder"]
        )
        if learned and not vae.num_classes and vae.providers == ["CPUExecutionProvider"]:
            vae._composed = ComposedGenerator(blobs["prior"], blobs["decoder"], options.threads, vae._images, model_dir)
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
        if self._draws.pooled(n, seed, digit):
            return self._draws.pooled_codes(n, digit), None
        if n <= CHUNK:  # one block, drawn as generate draws it (a served `generate` request's path)
            noise, uniform, label, labels = self._draws.one_block(n, seed, digit)
            return self.prior.sample(noise, uniform, label), labels
        blocks = list(self._draws.code_blocks(n, seed, digit, CHUNK))
        parts = [y for _, y in blocks if y is not None]
        return np.concatenate([z for z, _ in blocks]), np.concatenate(parts) if parts else None

    def generate(self, n: int, seed: int | None = None, digit: npt.ArrayLike | None = None) -> np.ndarray:
        """Generate n new digits from the model's prior as float32 [n, 28, 28] in [0, 1].

        `digit` (one class or one per row) asks for that digit: a conditional model decodes it,
        a prior fit per class samples it. A conditional model without `digit` cycles the
        classes 0, 1, ..., 9, 0, ... so every class appears equally often.
        """
        n = as_count(n)
        if self._draws.pooled(n, seed, digit):
            return self._decode(self._draws.pooled_codes(n, digit), None)
        if n <= CHUNK:  # one block: decoded where it is made, with no copy into a result
            noise, uniform, label, labels = self._draws.one_block(n, seed, digit)
            image = self._composed.images(noise, uniform, label) if self._composed and n <= SMALL_BATCH else None
            if image is not None:
                return image.reshape(n, IMAGE_SIDE, IMAGE_SIDE)
            return self._decode(self.prior.sample(noise, uniform, label), labels)
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
        for z, labels in self._draws.code_blocks(n, seed, digit, block):
            yield self._decode(z, labels)

    def decode(self, z: npt.ArrayLike, labels: npt.ArrayLike | None = None) -> np.ndarray:
        """Decode latent codes [N, D] into digits, float32 [N, 28, 28] in [0, 1]."""
        z = as_latents(z, self.latent_dim)
        return self._decode(z, self._labels(labels, len(z)))

    def _decode(self, z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """Decode checked codes into [N, 28, 28]; every image output's shape and finiteness checked."""
        if len(z) <= SMALL_BATCH:  # the bound buffers of the small-batch runner, through run_checked
            return self._run_decoder("image", z, y).reshape(len(z), IMAGE_SIDE, IMAGE_SIDE)
        out = np.empty((len(z), 1, IMAGE_SIDE, IMAGE_SIDE), np.float32)
        small = self._small["decoder"]
        for i in range(0, len(z), CHUNK):
            part, labels, into = z[i : i + CHUNK], _rows(y, i), out[i : i + CHUNK]
            feeds = {"z": part} if labels is None else {"z": part, "label": labels}
            # Decoded in place; where that is not possible, or the images are not finite, run_checked says why.
            if not (small.run_into("image", feeds, into) and all_finite(into)):
                into[...] = self._run_decoder("image", part, labels)
        return out.reshape(len(z), IMAGE_SIDE, IMAGE_SIDE)

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
            out = run_checked(self._whole_decoder(), _DECODED, feeds, "decoder", (shape, shape), self._small["whole"])
            logits[i : i + len(part)], image[i : i + len(part)] = out
        return logits, image

    def encode(self, images: npt.ArrayLike, labels: npt.ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode digits into the posterior's mean and log-variance, each float32 [N, D]."""
        x = as_images(images)
        y = self._labels(labels, len(x))
        chunks = [self.encoder_chunk(x[i : i + CHUNK], _rows(y, i)) for i in range(0, len(x), CHUNK)]
        if len(chunks) == 1:
            return chunks[0][0], chunks[0][1]
        return np.concatenate([mean for mean, _ in chunks]), np.concatenate([logvar for _, logvar in chunks])

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

    def _images(self, noise: np.ndarray, uniform: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Return the images [n, 1, 28, 28] the sampler and the decoder make of these draws, one session each."""
        return self._run_decoder("image", self.prior.sample(noise, uniform, label), None)

    def logits_chunk(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """Return the decoder's logits [m, 1, 28, 28] for at most CHUNK codes already checked (see `decode`)."""
        return self._run_decoder("logits", z, labels)

    def _run_decoder(self, output: str, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """Run one decoder output: images from the images session, logits from the whole decoder."""
        feeds = {"z": z} if labels is None else {"z": z, "label": labels}
        shape = (len(z), 1, IMAGE_SIDE, IMAGE_SIDE)
        if output == "image":
            session, runner = self._decoder, self._small["decoder"]
        else:
            session, runner = self._whole_decoder(), self._small["whole"]
        return run_checked(session, [output], feeds, "decoder", (shape,), runner)[0]

    def __repr__(self) -> str:
        return f"DigitVAE(name={self.name!r}, latent_dim={self.latent_dim}, providers={self.providers})"


def _rows(labels: np.ndarray | None, start: int, count: int = CHUNK) -> np.ndarray | None:
    return None if labels is None else labels[start : start + count]
