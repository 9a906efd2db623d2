"""DigitVAE: generate and reconstruct digits with the two ONNX halves of a VAE."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import providers as eps
from .errors import InputError, ModelError
from .inputs import IMAGE_SIDE, as_count, as_images, as_latents
from .manifest import DEFAULT_MODEL, Manifest, read_manifest, resolve_model_dir, verified_bytes

if TYPE_CHECKING:
    import onnxruntime as ort

logger = logging.getLogger(__name__)

#: Rows per onnxruntime call: bounds the session's working memory for very large batches.
CHUNK = 4096


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
    ) -> None:
        self.manifest = manifest
        self.model_dir = model_dir
        self._encoder = encoder
        self._decoder = decoder
        enc_active = encoder.get_providers()
        self.providers: list[str] = [p for p in decoder.get_providers() if p in enc_active]

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        providers: eps.ProviderSpec | Sequence[eps.ProviderSpec] | None = None,
        strict: bool = False,
        *,
        variant: str = "fp32",
        threads: int | None = None,
    ) -> DigitVAE:
        """Load a shipped model by name, or a model folder, and start both sessions.

        `providers` takes short names ("cpu", "cuda", "openvino", ...) or onnxruntime names,
        optionally as (name, options) pairs; the default is CPU. A requested provider that is
        unavailable or fails to start is a logged warning, or a ProviderError when `strict`.
        """
        import onnxruntime as ort

        requested = eps.normalize(providers)
        names, options = eps.session_providers(requested, strict=strict)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
            raise InputError(f"threads must be a non-negative integer (0 = onnxruntime's default), got {threads!r}")
        model_dir = resolve_model_dir(model)
        manifest = read_manifest(model_dir)
        files = manifest.files(variant)
        sessions = {}
        for role in ("encoder", "decoder"):
            # Hash and load the same bytes, so the file cannot change between check and use.
            data = verified_bytes(model_dir, files[role])
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            if threads:
                opts.intra_op_num_threads = threads
            try:
                sessions[role] = ort.InferenceSession(data, sess_options=opts, providers=names, provider_options=options)
            except Exception as exc:  # onnxruntime raises several unrelated types for bad models
                raise ModelError(f"{model_dir / files[role].path}: onnxruntime cannot load it: {exc}") from None
        _check_signatures(model_dir, manifest, sessions["encoder"], sessions["decoder"])
        vae = cls(manifest, model_dir, sessions["encoder"], sessions["decoder"])
        eps.check_active(names, vae.providers, strict=strict)
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

    def sample_latents(self, n: int, seed: int | None = None) -> np.ndarray:
        """Draw n codes z ~ N(0, I) as float32 [n, D]; a seed makes them reproducible."""
        n = as_count(n)
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, self.latent_dim), dtype=np.float32)

    def generate(self, n: int, seed: int | None = None) -> np.ndarray:
        """Generate n new digits as float32 [n, 28, 28] in [0, 1]."""
        return self.decode(self.sample_latents(n, seed))

    def decode(self, z: Any) -> np.ndarray:
        """Decode latent codes [N, D] into digits, float32 [N, 28, 28] in [0, 1]."""
        z = as_latents(z, self.latent_dim)
        parts = [self._decoder.run(["image"], {"z": z[i : i + CHUNK]})[0] for i in range(0, len(z), CHUNK)]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return out.reshape(len(z), IMAGE_SIDE, IMAGE_SIDE)

    def encode(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """Encode digits into the posterior's mean and log-variance, each float32 [N, D]."""
        x = as_images(images)
        means, logvars = [], []
        for i in range(0, len(x), CHUNK):
            mean, logvar = self._encoder.run(["mean", "logvar"], {"image": x[i : i + CHUNK]})
            means.append(mean)
            logvars.append(logvar)
        if len(means) == 1:
            return means[0], logvars[0]
        return np.concatenate(means), np.concatenate(logvars)

    def reconstruct(self, images: Any) -> np.ndarray:
        """Encode digits and decode their posterior means: float32 [N, 28, 28] in [0, 1]."""
        mean, _ = self.encode(images)
        return self.decode(mean)

    def __repr__(self) -> str:
        return f"DigitVAE(name={self.name!r}, latent_dim={self.latent_dim}, providers={self.providers})"


def _check_signatures(
    model_dir: Path, manifest: Manifest, encoder: ort.InferenceSession, decoder: ort.InferenceSession
) -> None:
    """Refuse ONNX files that do not follow the encoder/decoder contract of this manifest."""
    d = manifest.latent_dim
    expected = {
        "encoder": (encoder, {"image": [1, 28, 28]}, {"mean": [d], "logvar": [d]}),
        "decoder": (decoder, {"z": [d]}, {"logits": [1, 28, 28], "image": [1, 28, 28]}),
    }
    for role, (session, inputs, outputs) in expected.items():
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
                if arg.type != "tensor(float)" or shape[1:] != tail:
                    raise ModelError(
                        f"{where} {kind} {name!r} is {arg.type} {shape}, expected tensor(float) [N, "
                        f"{', '.join(map(str, tail))}] (latent_dim {d} in model.json)"
                    )
