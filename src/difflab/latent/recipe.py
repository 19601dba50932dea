"""The recipe of latent diffusion's two stages: the autoencoder's training defaults and body for the data's shape,
and what a diffusion run on its latents sets (the autoencoder's data, a network for the latent's shape)."""
from __future__ import annotations

from dataclasses import replace

# the autoencoder's training defaults (the loop's EMA, checkpoints, resume and logs come with it); KL weight 0.1: a
# KL-regularized autoencoder whose latents keep the detail the diffusion prior is there to model
AUTOENCODER_DEFAULTS = {"model": "vae", "vae": {"kl_weight": 0.1},
                        "train": {"lr": 1e-3, "max_images": 2_000_000, "warmup_images": 0, "batch_size": 64,
                                  "ema_half_life_images": 20_000, "checkpoint_every_images": 50_000}}


def body_flags(data) -> list[str]:
    """vae.body, vae.in_channels and vae.downsample for the data's shape."""
    from difflab.data.build import build_dataset

    x = build_dataset(replace(data, limit=1)).x
    if x.ndim == 4:  # images: latents at 1/4 of the size where it divides
        down = 2 if x.shape[2] % 4 == 0 and x.shape[3] % 4 == 0 else int(x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0)
        return ["vae.body=conv2d", f"vae.in_channels={x.shape[1]}", f"vae.downsample={down}"]
    if x.ndim == 3:
        return ["vae.body=conv1d", f"vae.in_channels={x.shape[1]}", f"vae.downsample={2 if x.shape[2] % 4 == 0 else 0}"]
    return ["vae.body=mlp", f"vae.in_channels={x.shape[1]}", "vae.downsample=0", f"vae.latent_channels={max(2, x.shape[1] // 3)}"]


def latent_flags(run: str, data_given: bool) -> list[str]:
    """What `train --latent RUN` sets: data.latent, the autoencoder's data (unless --data names other data of the
    same shape), and the network for the latent: a U-Net for image latents (as many levels as the size halves, up
    to 3), an MLP for vector latents; v-prediction (latents are unbounded: x0 cannot be clipped, and an eps-prediction's
    x0 = (x_t - sigma eps) / alpha amplifies its error at high noise, which few-step samplers do not average out)."""
    from difflab.data.dataset import DataConfig
    from difflab.latent.codec import load_codec

    codec = load_codec(DataConfig(latent=run), scale=1.0)
    flags = [f"data.latent={codec.run.resolve()}", "train.parameterization=v"]
    if not data_given:
        d = codec.data
        flags += [f"data.name={d.name}", f"data.image_size={d.image_size}", f"data.channels={d.channels}"]
        flags += [f"data.path={d.path}"] if d.path else []
    shape = codec.latent_shape
    if len(shape) == 3:
        levels = next(k for k in (3, 2, 1) if shape[1] % 2 ** (k - 1) == 0 and shape[2] % 2 ** (k - 1) == 0)
        flags += ["arch=unet", f"unet.in_channels={shape[0]}", f"unet.channel_mult={[1, 2, 2][:levels]}",
                  f"unet.attention_levels=[{levels - 1}]"]
    else:
        flags += ["arch=mlp", f"mlp.dim={shape[0]}"]
    return flags
