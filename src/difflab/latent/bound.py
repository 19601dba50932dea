"""A likelihood bound for the whole latent model (seed: the VAE's ELBO with the prior p(z) a diffusion model):

    -log p(x) <= E_q(z|x) [ -log p(x | z) ] - H[q(z | x)] + E_q(z|x) [ -log p_prior(z) ],

with p_prior(z) = p_diffusion(s z) s^d for the latent scale s (z_model = s z has d dimensions), and -log p_diffusion
bounded by the diffusion ELBO of the continuous latent (L_0 a Gaussian density, not the 8-bit decoder). One z ~ q per
example; H[q] in closed form. In bits/dim of the data, like the pixel bound."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.latent.codec import Codec
from difflab.losses.gaussian import LOG2PI


def autoencoder_terms(codec: Codec, x: Tensor, generator: torch.Generator, discrete: bool) -> tuple[Tensor, Tensor]:
    """(z_model = s z with z ~ q(z | x), (B,) nats: -log p(x | z) - H[q(z | x)] - d log s). Adding the diffusion
    bound of z_model gives the whole model's bound."""
    vae = codec.vae
    mean, logvar = vae.encode(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator).to(mean)
    rec = vae.rec_nll(x, z, discrete)  # -log p(x | z)
    entropy = 0.5 * (logvar + 1.0 + LOG2PI).flatten(1).sum(1)  # H[N(mean, e^logvar)]
    d = z[0].numel()
    return codec.scale * z.reshape(len(z), *codec.latent_shape), rec - entropy - d * math.log(codec.scale)
