"""VAE and Markovian hierarchical VAE (seed: the VAE recap), with the same Gaussian KL and discretized decoder as
the diffusion ELBO.

Latents z_1 .. z_L; encoder q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}); generative model p(z_L) = N(0, I),
p(z_l | z_{l+1}) and p(x | z_1). With L = 1 this is the plain VAE. Per image:
  rec   = -log p(x | z_1)                                         (discretized Gaussian on 8-bit pixels)
  KL_l  = log q(z_l | z_{l-1}) - log p(z_l | z_{l+1}), l < L        (one-sample estimate: z_{l+1} depends on z_l)
  KL_L  = KL(q(z_L | z_{L-1}) || N(0, I))                          (closed form)
and -ELBO = rec + sum_l KL_l, an upper bound on -log p(x).
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


@dataclass(frozen=True)
class VAEConfig:
    """Shape of the (hierarchical) VAE."""

    in_channels: int = 1  # image channels
    width: int = 32  # convolution width
    latent_channels: int = 4  # channels of every latent z_l
    levels: int = 1  # number of latent levels L (1 = VAE, >1 = Markovian hierarchical VAE)
    downsample: int = 1  # the first latent is at image size / 2^downsample; deeper levels halve again

    def __post_init__(self) -> None:
        if self.in_channels not in (1, 3):
            raise UserError(f"vae.in_channels must be 1 or 3, got {self.in_channels}")
        if min(self.width, self.latent_channels, self.levels) < 1 or self.downsample < 0:
            raise UserError("vae.width, vae.latent_channels and vae.levels must be positive, vae.downsample >= 0")


def _stack(c_in: int, c_out: int, width: int, down: int, up: int) -> nn.Sequential:
    """conv -> [GN, SiLU, strided conv] * down -> [GN, SiLU, upsample, conv] * up -> GN, SiLU, conv to c_out."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, width, 3, padding=1)]
    for _ in range(down):
        layers += [group_norm(width), nn.SiLU(), nn.Conv2d(width, width, 3, stride=2, padding=1)]
    for _ in range(up):
        layers += [group_norm(width), nn.SiLU(), nn.Upsample(scale_factor=2.0, mode="nearest"),
                   nn.Conv2d(width, width, 3, padding=1)]
    layers += [group_norm(width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1), group_norm(width), nn.SiLU(),
               nn.Conv2d(width, c_out, 3, padding=1)]
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
        c, w, z = cfg.in_channels, cfg.width, cfg.latent_channels
        self.encoders = nn.ModuleList(
            [_stack(c, 2 * z, w, cfg.downsample, 0)] + [_stack(z, 2 * z, w, 1, 0) for _ in range(cfg.levels - 1)])
        self.priors = nn.ModuleList([_stack(z, 2 * z, w, 0, 1) for _ in range(cfg.levels - 1)])  # p(z_l | z_{l+1})
        self.decoder = _stack(z, c, w, 0, cfg.downsample)  # mean of p(x | z_1)
        self.log_scale = nn.Parameter(torch.full((1, c, 1, 1), -2.0))  # log std of the pixel decoder

    def factor(self) -> int:
        return 2 ** (self.cfg.downsample + self.cfg.levels - 1)

    def check_input(self, x: Tensor) -> None:
        f = self.factor()
        if x.ndim != 4 or x.shape[1] != self.cfg.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise UserError(f"the VAE takes (B, {self.cfg.in_channels}, H, W) images with H, W divisible by {f}, got "
                            f"{tuple(x.shape)}: set data.image_size / data.channels or vae.levels / vae.downsample")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z_1 | x): (B, z, h, w) each."""
        mean, logvar = self.encoders[0](x).chunk(2, dim=1)
        return mean, logvar.clamp(-12, 8)

    def decode(self, z1: Tensor) -> Tensor:
        """Mean of p(x | z_1) in [-1, 1]: (B, C, H, W)."""
        return torch.tanh(self.decoder(z1))

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
        ll = discretized_gaussian_log_prob if discrete else gaussian_log_prob
        rec = -ll(x, self.decode(zs[0]), (2 * self.log_scale).expand_as(x)).flatten(1).sum(1)
        return VAETerms(rec, torch.stack(kls, 1), x[0].numel())

    @torch.no_grad()
    def sample(self, n: int, image_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling z_L ~ N(0, I), z_l ~ p(z_l | z_{l+1}), x = mean of p(x | z_1): (n, C, H, W)."""
        side = image_size // self.factor()
        z = torch.randn(n, self.cfg.latent_channels, side, side, generator=generator)
        for lv in reversed(range(self.cfg.levels - 1)):
            mean, logvar = self.priors[lv](z).chunk(2, dim=1)
            z = mean + torch.exp(0.5 * logvar.clamp(-12, 8)) * torch.randn(mean.shape, generator=generator)
        return self.decode(z)


@dataclass(frozen=True)
class VAEObjective:
    """The negative ELBO per dimension (nats), one latent sample per image."""

    quantized: bool = True  # 8-bit data: discretized Gaussian decoder
    conditions: tuple[str, ...] = ()

    def loss(self, net: nn.Module, batch, noise: NoiseSource) -> Tensor:
        return net(batch.x, noise, self.quantized).sum(1) / batch.x[0].numel()
