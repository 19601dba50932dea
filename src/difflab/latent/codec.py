"""The autoencoder interface of latent diffusion (seed: 'combine VAEs with a diffusion prior'): a trained VAE run
seen as encode, decode and scale, so that every sampler, guidance and evaluation works on z unchanged.

    z = scale * (mu(x) + s(x) eps)        the latent the diffusion model sees: one sample of q(z | x), scaled
    x = decoder(z / scale)                  the mean of p(x | z)

`scale` is fixed from data statistics when the latent run starts (1 / std of the training latents, so z has unit
variance as the schedules assume), written into the run's config and checkpoint, and never recomputed. The
autoencoder's checkpoint is pinned by its sha256: a latent run whose autoencoder is missing, changed or of another
shape is refused in one line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from difflab.data.dataset import DataConfig, DataSpec
from difflab.errors import UserError
from difflab.vae import HierarchicalVAE
from difflab.noise import NoiseSource
from difflab.utils import file_digest

SCALE_EXAMPLES = 10_000  # training examples whose latents fix the scale


@dataclass(frozen=True, eq=False)
class Codec:
    """A trained VAE as the autoencoder of a latent run."""

    vae: HierarchicalVAE  # frozen, eval mode (the live weights)
    run: Path
    sha256: str
    spec: DataSpec  # the data the autoencoder encodes (pixels, rows or sequences)
    scale: float  # z = scale * (latent of the VAE)
    data: DataConfig  # the data config the autoencoder was trained on

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Image latents stay (c, h, w) for a U-Net; sequence and row latents are vectors (d,) for an MLP."""
        shape = self.vae.latent_shape(self.spec.shape)
        return shape if len(shape) == 3 else (math.prod(shape),)

    def check_data(self, shape: tuple[int, ...]) -> None:
        if tuple(shape) != tuple(self.spec.shape):
            raise UserError(f"the autoencoder {self.run} encodes data of shape {tuple(self.spec.shape)}, this data is "
                            f"{tuple(shape)}: train on its data (drop --data) or train an autoencoder for this data")

    @torch.no_grad()
    def encode(self, x: Tensor, noise: Optional[NoiseSource] = None) -> Tensor:
        """(B, *data) -> (B, *latent): scale * a sample of q(z | x) (noise None: its mean)."""
        self.check_data(tuple(x.shape[1:]))
        mean, logvar = self.vae.encode(x)
        z = mean if noise is None else mean + torch.exp(0.5 * logvar) * noise.randn_like(mean)
        return self.scale * z.reshape(len(z), *self.latent_shape)

    @property
    def samples_decoder(self) -> bool:
        """Whether decoding draws from p(x | z) rather than taking its mean: for rows and sequences, whose model is
        p(x | z) itself (the bound is that distribution's); images show the mean, as decoded images usually do."""
        return not self.spec.is_image

    @torch.no_grad()
    def decode(self, z: Tensor, noise: Optional[NoiseSource] = None) -> Tensor:
        """(B, *latent) -> (B, *data): the mean of p(x | z / scale) or, with `noise`, a draw from it (the decoder's
        Gaussian); clamped to the data's range."""
        z = z.reshape(len(z), *self.vae.latent_shape(self.spec.shape))
        x = self.vae.decode(z.to(next(self.vae.parameters()).device) / self.scale)
        if noise is not None:
            x = x + self.vae.log_scale.exp() * noise.randn_like(x)
        return x.clamp(*self.spec.value_range) if self.spec.value_range is not None else x


def load_codec(data: DataConfig, scale: Optional[float] = None, check: bool = True) -> Codec:
    """The autoencoder run data.latent names, checked against data.latent_sha256 (when recorded); `scale` defaults
    to data.latent_scale."""
    from difflab.train.run import load_run
    from difflab.train.store import LATEST

    run = Path(data.latent)
    ckpt = run / LATEST if run.is_dir() else run
    if not ckpt.is_file():
        raise UserError(f"the autoencoder run {data.latent} of this latent run is missing (no {ckpt}): restore it, or "
                        "train one with difflab train-autoencoder and point data.latent at it")
    digest = file_digest(ckpt)
    if check and data.latent_sha256 and digest != data.latent_sha256:
        raise UserError(f"the autoencoder {ckpt} changed since this latent run was trained (sha256 {digest[:12]}, "
                        f"trained with {data.latent_sha256[:12]}): restore that checkpoint or retrain the latent run")
    loaded = load_run(ckpt, model="vae")
    vae = loaded.net.requires_grad_(False).eval()  # the live weights, as the autoencoder's own report
    return Codec(vae, ckpt.parent if run.is_file() else run, digest, loaded.spec,
                 data.latent_scale if scale is None else scale, loaded.cfg.data)


def resolve_latent(data: DataConfig, pixels: Tensor) -> DataConfig:
    """data with latent_sha256 recorded and latent_scale fixed (1 / std of the latents of up to SCALE_EXAMPLES
    training examples `pixels`) unless already set."""
    codec = load_codec(data, scale=1.0)  # a recorded sha256 that differs is refused here
    scale = data.latent_scale or float(1.0 / encode_all(codec, pixels[:SCALE_EXAMPLES], 0).double().std())
    return replace(data, latent=str(codec.run.resolve()), latent_scale=scale, latent_sha256=codec.sha256)


def encode_all(codec: Codec, x: Tensor, seed: int, batch: int = 500) -> Tensor:
    """(N, *latent): one sample of q(z | x) per example, example k from noise stream (seed, k), scaled."""
    return torch.cat([codec.encode(x[i: i + batch], NoiseSource.for_indices(seed, range(i, min(i + batch, len(x)))))
                      for i in range(0, len(x), batch)])


def encode_dataset(data, codec: Codec, seed: int):
    """ImageData of pixels -> ImageData of latents (encode_all), labels and captions kept."""
    z = encode_all(codec, data.x, seed)
    return replace(data, x=z.float().contiguous(), quantized=False, value_range=None, space="latent")


def model_data(cfg: DataConfig):
    """The data a run's model sees: the dataset itself, or with data.latent the autoencoder's scaled latents of it
    (one sample of q(z | x) per example, example k from noise stream (data.seed, k))."""
    from difflab.data.build import build_dataset

    if not cfg.latent:
        return build_dataset(cfg)
    if not cfg.latent_scale:
        raise UserError("data.latent_scale is 0: a latent run fixes it when training starts (difflab train "
                        "--latent RUN), or set it")
    return encode_dataset(build_dataset(cfg.pixels), load_codec(cfg), cfg.seed)


def run_codec(data: DataConfig, spec: DataSpec, device: torch.device | str = "cpu") -> Optional[Codec]:
    """The autoencoder a run trained on latents came from (pinned by its sha256), on `device`; None for a pixel run.
    Refused in one line when its latents are not the run's shape."""
    if spec.space != "latent":
        return None
    codec = load_codec(data)
    codec.vae.to(device)
    if tuple(codec.latent_shape) != tuple(spec.shape):
        raise UserError(f"the autoencoder {data.latent} makes latents of shape {tuple(codec.latent_shape)}, this run "
                        f"was trained on {tuple(spec.shape)}: point data.latent at the autoencoder it was trained with")
    return codec

