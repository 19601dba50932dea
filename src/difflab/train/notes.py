"""Say when a run is too short to mean anything: stopped in the warm-up, an EMA still made of the initial weights,
too few steps for an image model."""
from __future__ import annotations

import math

import numpy as np

from difflab.config import RunConfig

EMA_INITIAL_MAX = 0.01  # warn when the EMA still holds more than this share of the untrained network
# image models rarely give samples that look like data before this many steps and images (1,000 steps of 64): a
# small batch does not make up for few images, nor a large one for few steps
IMAGE_STEPS_MIN, IMAGE_IMAGES_MIN = 1000, 64_000


def ema_initial_share(cfg: RunConfig, images: int) -> float:
    """The weight the EMA still gives the initial network after `images`: prod_k beta_k, beta_k = 0.5^(B / h_k)."""
    tc = cfg.train
    seen = np.arange(0, images, tc.batch_size, dtype=np.float64)  # images before each step
    half = np.full_like(seen, float(tc.ema_half_life_images))
    if tc.ema_rampup > 0:
        half = np.minimum(half, tc.ema_rampup * (seen + tc.batch_size))
    return math.exp(float(np.sum(math.log(0.5) * tc.batch_size / half)))


def short_run_notes(cfg: RunConfig, steps: int, images: int, is_image: bool) -> list[str]:
    """Plain sentences for the end of training and the report; empty when the run is long enough to judge."""
    tc, notes = cfg.train, []
    if images < (tc.warmup_images or 0):
        notes.append(f"training stopped inside the learning-rate warm-up ({images:,} of train.warmup_images="
                     f"{tc.warmup_images:,} images): the network has barely trained; train longer")
    share = ema_initial_share(cfg, images)
    if share > EMA_INITIAL_MAX:
        notes.append(f"the EMA weights are still {100 * share:.0f}% the untrained initial network (half-life "
                     f"{tc.ema_half_life_images:,} images, {images:,} seen): samples will look like noise; train "
                     "longer, lower train.ema_half_life_images, or sample with --live")
    if is_image and (steps < IMAGE_STEPS_MIN or images < IMAGE_IMAGES_MIN):
        notes.append(f"only {steps} training steps ({images:,} images): image models need ~{IMAGE_STEPS_MIN:,} "
                     f"steps and ~{IMAGE_IMAGES_MIN:,} images before samples look like data (MNIST digits appear "
                     "after ~1,500 steps of 64); expect noise-like samples")
    return notes
