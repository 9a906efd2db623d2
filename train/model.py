"""The VAE as a plain nn.Module, its loss, and the two halves that export to ONNX."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import VAEConfig

_ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), _ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def he_init_(linear: nn.Linear) -> None:
    """Initialise like TF's variance_scaling_initializer(factor=2, mode=FAN_IN, uniform=False)."""
    fan_in = linear.weight.shape[1]
    # TF draws from a normal truncated at 2 sigma, widening sigma by sqrt(1.3) so that the
    # truncated distribution keeps variance 2 / fan_in.
    std = math.sqrt(1.3 * 2.0 / fan_in)
    nn.init.trunc_normal_(linear.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(linear.bias)


class VAE(nn.Module):
    """MLP VAE with a Gaussian posterior (mean, log-variance gamma) and Bernoulli decoder."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config.num_classes
        enc = [config.input_dim + c, *config.encoder_hidden]
        dec = [config.latent_dim + c, *config.decoder_hidden]
        self.encoder = _mlp(enc, config.activation)
        self.mean = nn.Linear(enc[-1], config.latent_dim)
        self.logvar = nn.Linear(enc[-1], config.latent_dim)
        self.decoder = nn.Sequential(*_mlp(dec, config.activation), nn.Linear(dec[-1], config.input_dim))
        if config.init == "he":
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    he_init_(module)
        if config.prior_components:
            # Means start spread like N(0, I) draws, so every component begins near the data.
            k, d = config.prior_components, config.latent_dim
            self.prior_means = nn.Parameter(torch.randn(k, d, generator=torch.Generator().manual_seed(0)))
            self.prior_logvars = nn.Parameter(torch.zeros(k, d))
            self.prior_logits = nn.Parameter(torch.zeros(k))

    def log_prior(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Return log p(z) [...] for codes z [..., N, D]: N(0, I), or the learned mixture.

        With classes in the prior and labels [N], log p(z | label) per row; without labels the
        marginal, the classes weighted equally.
        """
        d = z.shape[-1]
        if not self.config.prior_components:
            return -0.5 * (z.square().sum(-1) + d * math.log(2 * math.pi))
        diff = z.unsqueeze(-2) - self.prior_means  # [..., K, D]
        per_component = -0.5 * (diff.square() * torch.exp(-self.prior_logvars) + self.prior_logvars).sum(-1)
        constant = 0.5 * d * math.log(2 * math.pi)
        classes = self.config.prior_classes
        if not classes:
            return torch.logsumexp(per_component + torch.log_softmax(self.prior_logits, dim=0), dim=-1) - constant
        grouped = per_component.unflatten(-1, (classes, -1)) + torch.log_softmax(  # type: ignore[no-untyped-call]
            self.prior_logits.view(classes, -1), dim=-1
        )
        per_class = torch.logsumexp(grouped, dim=-1)  # [..., N, C]
        if label is None:
            return torch.logsumexp(per_class, dim=-1) - math.log(classes) - constant
        index = label.long().view(-1, 1).expand(*per_class.shape[:-1], 1)
        return per_class.gather(-1, index).squeeze(-1) - constant

    def _with_label(self, h: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        if not self.config.num_classes:
            return h
        if label is None:
            raise ValueError("a conditional VAE needs labels")
        onehot = F.one_hot(label.long(), self.config.num_classes).to(h.dtype)
        return torch.cat([h, onehot.expand(*h.shape[:-1], -1)], dim=-1)

    def encode(self, x: torch.Tensor, label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Map images [N, ...] in [0, 1] to the posterior's mean and log-variance [N, D]."""
        h = self.encoder(self._with_label(x.flatten(1), label))
        return self.mean(h), self.logvar(h)

    def decode(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Map codes [..., N, D] to Bernoulli logits [..., N, 784]."""
        return self.decoder(self._with_label(z, label))

    def forward(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        label: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (logits, mean, logvar) for one reparameterised sample per image.

        The noise is `eps` [N, D] when given, else drawn from `generator`.
        """
        mean, logvar = self.encode(x, label)
        if eps is None:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        z = mean + torch.exp(0.5 * logvar) * eps
        return self.decode(z, label), mean, logvar

    def neg_elbo(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        label: torch.Tensor | None = None,
        beta: float = 1.0,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return -ELBO per image in nats [N]: pixel cross-entropy plus beta times the KL to N(0, I).

        The noise is `eps` [N, D] when given, else drawn from `generator`: the same draws either way.
        """
        if self.config.prior_components:
            # No closed-form KL against a mixture: the one-sample bound is the IW bound with k = 1.
            return self.neg_iw_bound(x, 1, generator, label, beta, None if eps is None else eps.unsqueeze(0))
        logits, mean, logvar = self(x, generator, label, eps)
        target = x.flatten(1)
        reconstruction = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1)
        latent = 0.5 * (torch.exp(logvar) + mean.square() - 1.0 - logvar).sum(1)
        return reconstruction + beta * latent

    def neg_iw_bound(
        self,
        x: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
        label: torch.Tensor | None = None,
        beta: float = 1.0,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the negative k-sample importance-weighted bound per image in nats [N].

        k=1 is -ELBO with a sampled latent term; beta < 1 scales log p(z) - log q(z|x) for warm-up.
        The noise is `eps` [k, N, D] when given, else drawn from `generator`.
        """
        mean, logvar = self.encode(x, label)
        if eps is None:
            eps = torch.randn((k, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
        elif eps.shape != (k, *mean.shape):
            raise ValueError(f"eps must have shape {(k, *mean.shape)}, got {tuple(eps.shape)}")
        z = mean + torch.exp(0.5 * logvar) * eps
        target = x.flatten(1).expand(k, -1, -1)
        log_px = -F.binary_cross_entropy_with_logits(self.decode(z, label), target, reduction="none").sum(-1)
        if self.config.prior_components:
            log_q = -0.5 * (eps.square() + logvar + math.log(2 * math.pi)).sum(-1)
            log_ratio = self.log_prior(z, label if self.config.prior_classes else None) - log_q
        else:
            # log N(z; 0, I) - log N(z; mean, sigma^2): the 2*pi terms cancel.
            log_ratio = -0.5 * (z.square().sum(-1) - eps.square().sum(-1) - logvar.sum(-1))
        log_w = log_px + beta * log_ratio
        return -(torch.logsumexp(log_w, dim=0) - math.log(k))


class Encoder(nn.Module):
    """ONNX half: image [N,1,28,28] in [0,1] -> (mean, logvar) [N,D]."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(image)


class Decoder(nn.Module):
    """ONNX half: z [N,D] -> (logits, image = sigmoid(logits)), each [N,1,28,28]."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.vae.decode(z).reshape(-1, 1, 28, 28)
        return logits, torch.sigmoid(logits)


class ConditionalEncoder(Encoder):
    """ONNX half of a conditional VAE: (image, label int64 [N]) -> (mean, logvar) [N,D]."""

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.vae.encode(image, label)


class ConditionalDecoder(Decoder):
    """ONNX half of a conditional VAE: (z, label int64 [N]) -> (logits, image), each [N,1,28,28]."""

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        logits = self.vae.decode(z, label).reshape(-1, 1, 28, 28)
        return logits, torch.sigmoid(logits)


def export_halves(vae: VAE) -> tuple[nn.Module, nn.Module]:
    """Return the (encoder, decoder) modules that export to ONNX for this VAE."""
    if vae.config.num_classes:
        return ConditionalEncoder(vae), ConditionalDecoder(vae)
    return Encoder(vae), Decoder(vae)
