"""VAE and Markovian hierarchical VAE (seed: the VAE recap), with the same Gaussian KL and discretized decoder as
the diffusion ELBO.

Latents z_1 .. z_L; encoder q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}); generative model p(z_L) = N(0, I),
p(z_l | z_{l+1}) and p(x | z_1). With L = 1 this is the plain VAE. Per image:
  rec   = -log p(x | z_1)                                         (discretized Gaussian on 8-bit pixels)
  KL_l  = log q(z_l | z_{l-1}) - log p(z_l | z_{l+1}), l < L        (one-sample estimate: z_{l+1} depends on z_l)
  KL_L  = KL(q(z_L | z_{L-1}) || N(0, I))                          (closed form)
and -ELBO = rec + sum_l KL_l, an upper bound on -log p(x).

One model for three kinds of data (vae.body): images (C, H, W) with 2-D convolutions, sequences (C, L) with 1-D
convolutions, table rows (D,) with an MLP (vae.in_channels = D columns, vae.latent_channels = latent size). As the
autoencoder of latent diffusion (seed: 'combine VAEs with a diffusion prior') it is trained with vae.kl_weight, the
weight of the KL terms in the loss (1: the ELBO; small: a KL-regularized autoencoder with sharper reconstructions);
every bound it reports uses the full ELBO whatever the weight.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from difflab.errors import UserError
from difflab.losses.gaussian import discretized_gaussian_log_prob, gaussian_log_prob, normal_kl
from difflab.nn.blocks import group_norm
from difflab.noise import NoiseSource
from difflab.utils import bits_per_dim


BODIES = ("conv2d", "conv1d", "mlp")  # images (C, H, W), sequences (C, L), table rows (D,)


@dataclass(frozen=True)
class VAEConfig:
    """Shape of the (hierarchical) VAE."""

    in_channels: int = 1  # image / sequence channels; for body mlp the number of columns
    width: int = 32  # convolution width (mlp: hidden units)
    latent_channels: int = 4  # channels of every latent z_l (mlp: the latent size)
    levels: int = 1  # number of latent levels L (1 = VAE, >1 = Markovian hierarchical VAE)
    downsample: int = 1  # the first latent is at data size / 2^downsample; deeper levels halve again (conv bodies)
    body: str = "conv2d"  # conv2d (images), conv1d (sequences) or mlp (table rows)
    kl_weight: float = 1.0  # weight of the KL terms in the training loss (1: the ELBO)

    def __post_init__(self) -> None:
        if self.body not in BODIES:
            raise UserError(f"vae.body must be one of {', '.join(BODIES)}, got {self.body!r}")
        if self.body == "conv2d" and self.in_channels not in (1, 3):
            raise UserError(f"vae.in_channels must be 1 or 3 for images, got {self.in_channels}")
        if min(self.width, self.latent_channels, self.levels, self.in_channels) < 1 or self.downsample < 0:
            raise UserError("vae.width, vae.latent_channels, vae.levels and vae.in_channels must be positive, "
                            "vae.downsample >= 0")
        if self.body == "mlp" and (self.levels != 1 or self.downsample):
            raise UserError("an mlp VAE has one latent level and no downsampling: set vae.levels=1 vae.downsample=0")
        if not (self.kl_weight > 0):
            raise UserError(f"vae.kl_weight must be > 0, got {self.kl_weight}")


def _stack(body: str, c_in: int, c_out: int, width: int, down: int, up: int) -> nn.Sequential:
    """conv -> [GN, SiLU, strided conv] * down -> [GN, SiLU, upsample, conv] * up -> GN, SiLU, conv to c_out
    (1-D or 2-D convolutions; body mlp: the same with linear layers and no resampling)."""
    if body == "mlp":  # one group: a layer norm over the features (a group per feature would zero them all)
        layer = lambda i, o, stride=1: nn.Linear(i, o)  # noqa: E731
        norm = lambda c: nn.GroupNorm(1, c)  # noqa: E731
    else:
        conv = nn.Conv2d if body == "conv2d" else nn.Conv1d
        layer = lambda i, o, stride=1: conv(i, o, 3, stride=stride, padding=1)  # noqa: E731
        norm = group_norm
    layers: list[nn.Module] = [layer(c_in, width)]
    for _ in range(down):
        layers += [norm(width), nn.SiLU(), layer(width, width, 2)]
    for _ in range(up):
        layers += [norm(width), nn.SiLU(), nn.Upsample(scale_factor=2.0, mode="nearest"), layer(width, width)]
    layers += [norm(width), nn.SiLU(), layer(width, width), norm(width), nn.SiLU(), layer(width, c_out)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class VAETerms:
    """Per-image terms in nats."""

    rec: Tensor  # (B,) -log p(x | z_1)
    kl: Tensor  # (B, L) KL_1 .. KL_L
    dims: int

    @classmethod
    def from_stacked(cls, terms: Tensor, dims: int) -> "VAETerms":
        """From the network's (B, 1 + L) output [rec, KL_1 .. KL_L]."""
        return cls(terms[:, 0], terms[:, 1:], dims)

    @property
    def nll(self) -> Tensor:
        return self.rec + self.kl.sum(1)

    @property
    def bpd(self) -> Tensor:
        return bits_per_dim(self.nll, self.dims)


class HierarchicalVAE(nn.Module):
    """Markovian hierarchical VAE with L levels of (latent_channels, h_l, w_l) Gaussian latents."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        c, w, z, b = cfg.in_channels, cfg.width, cfg.latent_channels, cfg.body
        self.encoders = nn.ModuleList(
            [_stack(b, c, 2 * z, w, cfg.downsample, 0)] + [_stack(b, z, 2 * z, w, 1, 0) for _ in range(cfg.levels - 1)])
        self.priors = nn.ModuleList([_stack(b, z, 2 * z, w, 0, 1) for _ in range(cfg.levels - 1)])  # p(z_l | z_{l+1})
        self.decoder = _stack(b, z, c, w, 0, cfg.downsample)  # mean of p(x | z_1)
        self.spatial = {"conv2d": 2, "conv1d": 1, "mlp": 0}[b]  # spatial dimensions after the channels
        self.log_scale = nn.Parameter(torch.full((1, c) + (1,) * self.spatial, -2.0))  # log std of the decoder

    def factor(self) -> int:
        return 2 ** (self.cfg.downsample + self.cfg.levels - 1) if self.spatial else 1

    def check_input(self, x: Tensor) -> None:
        f, c = self.factor(), self.cfg.in_channels
        kind = {2: f"(B, {c}, H, W) images with H, W", 1: f"(B, {c}, L) sequences with L", 0: f"(B, {c}) rows"}
        if x.ndim != 2 + self.spatial or x.shape[1] != c or any(n % f for n in x.shape[2:]):
            fix = "set data.image_size / data.channels or vae.levels / vae.downsample" if self.spatial else \
                "set vae.in_channels to the number of columns"
            raise UserError(f"the VAE takes {kind[self.spatial]}" + (f" divisible by {f}" if self.spatial else "") +
                            f", got {tuple(x.shape)}: {fix}")

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of z_1 for one example of `shape`."""
        f = 2 ** self.cfg.downsample
        return (self.cfg.latent_channels,) + tuple(n // f for n in shape[1:])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z_1 | x): (B, z, ...) each."""
        mean, logvar = self.encoders[0](x).chunk(2, dim=1)
        return mean, logvar.clamp(-12, 8)

    def decode(self, z1: Tensor) -> Tensor:
        """Mean of p(x | z_1): images in [-1, 1] (tanh), sequences and rows unbounded."""
        h = self.decoder(z1)
        return torch.tanh(h) if self.spatial == 2 else h

    def rec_nll(self, x: Tensor, z1: Tensor, discrete: bool = True) -> Tensor:
        """-log p(x | z_1) per example (B,), in nats: discretized Gaussian for 8-bit data."""
        ll = discretized_gaussian_log_prob if discrete else gaussian_log_prob
        return -ll(x, self.decode(z1), (2 * self.log_scale).expand_as(x)).flatten(1).sum(1)

    def forward(self, x: Tensor, noise: NoiseSource, discrete: bool = True) -> Tensor:
        """(B, 1 + L) one-sample ELBO terms [rec, KL_1 .. KL_L] per image, in nats (reparameterised,
        differentiable); example k's latent noise comes from its own stream."""
        t = self.terms(x, noise, discrete)
        return torch.cat([t.rec[:, None], t.kl], 1)

    def terms(self, x: Tensor, noise: NoiseSource, discrete: bool = True) -> VAETerms:
        """One-sample ELBO terms per image (reparameterised, differentiable)."""
        qs, zs, h = [], [], x
        for enc in self.encoders:  # q(z_1 | x), then q(z_l | z_{l-1})
            mean, logvar = enc(h).chunk(2, dim=1)
            logvar = logvar.clamp(-12, 8)
            z = mean + torch.exp(0.5 * logvar) * noise.randn_like(mean)
            qs.append((mean, logvar))
            zs.append(z)
            h = z
        kls = []
        for lv in range(self.cfg.levels - 1):  # log q(z_l | .) - log p(z_l | z_{l+1})
            p_mean, p_logvar = self.priors[lv](zs[lv + 1]).chunk(2, dim=1)
            q_mean, q_logvar = qs[lv]
            diff = gaussian_log_prob(zs[lv], q_mean, q_logvar) - gaussian_log_prob(zs[lv], p_mean, p_logvar.clamp(-12, 8))
            kls.append(diff.flatten(1).sum(1))
        q_mean, q_logvar = qs[-1]
        kls.append(normal_kl(q_mean, q_logvar, torch.zeros_like(q_mean), torch.zeros_like(q_logvar)).flatten(1).sum(1))
        return VAETerms(self.rec_nll(x, zs[0], discrete), torch.stack(kls, 1), x[0].numel())

    @torch.no_grad()
    def sample(self, n: int, size: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling z_L ~ N(0, I), z_l ~ p(z_l | z_{l+1}), x = mean of p(x | z_1): (n, C, size[, size])
        (rows: (n, D))."""
        side = size // self.factor()
        z = torch.randn(n, self.cfg.latent_channels, *[side] * self.spatial, generator=generator)
        for lv in reversed(range(self.cfg.levels - 1)):
            mean, logvar = self.priors[lv](z).chunk(2, dim=1)
            z = mean + torch.exp(0.5 * logvar.clamp(-12, 8)) * torch.randn(mean.shape, generator=generator)
        return self.decode(z)


@dataclass(frozen=True)
class VAEObjective:
    """The negative ELBO per dimension (nats), one latent sample per image."""

    quantized: bool = True  # 8-bit data: discretized Gaussian decoder
    kl_weight: float = 1.0  # the KL terms' weight in the loss (1: the ELBO)
    conditions: tuple[str, ...] = ()

    def loss(self, net: nn.Module, batch, noise: NoiseSource) -> Tensor:
        terms = net(batch.x, noise, self.quantized)  # (B, 1 + L)
        return (terms[:, 0] + self.kl_weight * terms[:, 1:].sum(1)) / batch.x[0].numel()
