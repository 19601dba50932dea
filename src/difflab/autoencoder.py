"""A (hierarchical) VAE trained by its ELBO through the one training loop, then reported like the diffusion bound:
terms, bits/dim, figures."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from difflab.config import RunConfig, dump_yaml
from difflab.data.build import build_dataset
from difflab.data.dataset import SPLIT_SETS
from difflab.eval.grid import save_grid
from difflab.vae import HierarchicalVAE, VAETerms
from difflab.noise import NoiseSource
from difflab.runs import train_run
from difflab.train.run import load_run
from difflab.utils import bits_per_dim

# what `difflab vae` trains unless told otherwise (the loop's EMA, checkpoints, resume and logs come with it)
VAE_DEFAULTS = {"model": "vae", "train": {"lr": 1e-3, "max_images": 200_000, "warmup_images": 0, "batch_size": 64,
                                          "ema_half_life_images": 20_000, "checkpoint_every_images": 50_000}}


@dataclass(frozen=True)
class VAEReport:
    rec: float  # nats per image
    kl: tuple[float, ...]  # per level
    total: float
    stderr: float
    dims: int
    images: int
    rmse: float | None = None  # round trip x -> mean of q(z|x) -> decoder mean, data scale (report_vae's)

    def table(self) -> str:
        bpd = lambda v: bits_per_dim(v, self.dims)  # noqa: E731
        rows = [("reconstruction -log p(x|z_1)", self.rec)] + [(f"KL level {i + 1}", v) for i, v in enumerate(self.kl)]
        out = [f"negative ELBO of the VAE on {self.images} test images", f"{'term':<30}{'nats/image':>12}{'bits/dim':>10}"]
        out += [f"{n:<30}{v:>12.2f}{bpd(v):>10.4f}" for n, v in rows]
        out.append(f"{'total':<30}{self.total:>12.2f}{bpd(self.total):>10.4f}  +- {bpd(self.stderr):.4f} (1 s.e.)")
        return "\n".join(out)


@torch.no_grad()
def evaluate_vae(model: HierarchicalVAE, x: torch.Tensor, seed: int = 0, batch: int = 256,
                 quantized: bool = True) -> VAEReport:
    """The one-sample negative ELBO per image on x; image k's latent noise from stream (seed, k)."""
    terms = [VAETerms.from_stacked(model(x[i: i + batch], NoiseSource.for_indices(seed, range(i, i + len(x[i: i + batch]))),
                                         quantized), x[0].numel()) for i in range(0, len(x), batch)]
    rec = torch.cat([t.rec for t in terms])
    kl = torch.cat([t.kl for t in terms])
    nll = rec + kl.sum(1)
    return VAEReport(rec.mean().item(), tuple(kl.mean(0).tolist()), nll.mean().item(),
                     nll.std().item() / math.sqrt(len(nll)), x[0].numel(), len(nll))


def train_vae(cfg: RunConfig, out: str | Path, *, resume: bool = False, eval_images: int = 512,
              log: Callable[[str], None] = print, progress: bool = True) -> VAEReport:
    """Train by the ELBO (the one loop: checkpoint.safetensors, metrics.jsonl, tb/), then write samples.png,
    recon.png and report.md with the bound on `eval_images` test images (live weights)."""
    res = train_run(cfg, out, resume=resume, log=log, progress=progress)
    return report_vae(cfg, out, res, eval_images, log)


def report_vae(cfg: RunConfig, out: str | Path, res, eval_images: int = 512,
               log: Callable[[str], None] = print) -> VAEReport:
    """After training (`res`: the loop's TrainResult): samples.png, recon.png and report.md with the bound on
    `eval_images` test examples (live weights)."""
    out = Path(out)
    run = load_run(out, model="vae")
    model = run.net
    test = build_dataset(replace(cfg.data, split="test", limit=eval_images) if cfg.data.name in SPLIT_SETS
                         else replace(cfg.data, limit=eval_images))
    rep = evaluate_vae(model, test.x, cfg.train.seed, quantized=run.spec.quantized)
    with torch.no_grad():
        z, _ = model.encode(test.x)
        recon = model.decode(z)
        rmse = float((recon - test.x).square().mean().sqrt())  # encode (mean) -> decode round trip
        prior = model.sample(64, run.shape[-1], torch.Generator().manual_seed(cfg.train.seed))
    figures(run.spec, test.x[:8], recon[:8], prior, out)
    (out / "report.md").write_text(f"# difflab VAE ({cfg.vae.levels} latent level(s), body {cfg.vae.body})\n\n"
                                   f"{res.steps} steps, {res.images} examples, {res.seconds:.0f} s\n\n```\n{rep.table()}\n"
                                   f"round trip x -> mean of q(z|x) -> decoder mean: RMSE {rmse:.4f} on {len(test.x)} "
                                   f"test examples\n```\n\n![samples from N(0, I)](samples.png)\n\n![reconstructions: "
                                   f"data, then decoded means](recon.png)\n\n```yaml\n{dump_yaml(cfg)}```\n")
    log(rep.table())
    log(f"round trip RMSE {rmse:.4f} (data scale) on {len(test.x)} test examples")
    return replace(rep, rmse=rmse)


def figures(spec, x, recon, prior, out: Path) -> None:
    """recon.png (data, then reconstructions) and samples.png (decoded N(0, I) latents): image grids, sequence plots
    or scatters of the first two columns."""
    from difflab.eval.plots import plot_points, plot_series

    if spec.is_image:
        save_grid(torch.cat([x, recon]), out / "recon.png", nrow=8)
        save_grid(prior, out / "samples.png")
    elif x.ndim == 3:
        plot_series(recon, out / "recon.png", x, title="reconstructions")
        plot_series(prior, out / "samples.png", x, title="VAE samples")
    else:
        plot_points(recon, out / "recon.png", x, title="reconstructions")
        plot_points(prior, out / "samples.png", x, title="VAE samples")
