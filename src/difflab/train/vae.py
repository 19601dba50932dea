"""Train a (hierarchical) VAE by its ELBO and report it like the diffusion bound: terms, bits/dim, figures."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from difflab.config import dump_yaml, to_dict
from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig
from difflab.errors import UserError
from difflab.eval.grid import save_grid
from difflab.latent.vae import HierarchicalVAE, VAEConfig
from difflab.train.checkpoint import save_checkpoint
from difflab.train.order import DataOrder, step_seed
from difflab.train.progress import Progress


@dataclass(frozen=True)
class VAERunConfig:
    """A VAE training run."""

    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    batch_size: int = 64  # images per step
    lr: float = 1e-3  # AdamW learning rate
    max_images: int = 200_000  # stop after this many training images
    minutes: float = 0.0  # or after this much wall-clock (0 = no limit)
    eval_images: int = 512  # test images for the reported bound
    seed: int = 0  # seeds data order and the latent noise, step by step
    log_every: int = 50  # steps between metric lines

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.lr <= 0 or self.max_images < 1 or self.eval_images < 2 or self.minutes < 0:
            raise UserError("need batch_size >= 1, lr > 0, max_images >= 1, eval_images >= 2, minutes >= 0")


@dataclass(frozen=True)
class VAEReport:
    rec: float  # nats per image
    kl: tuple[float, ...]  # per level
    total: float
    stderr: float
    dims: int
    images: int

    def table(self) -> str:
        bpd = lambda v: v / (self.dims * math.log(2))  # noqa: E731
        rows = [("reconstruction -log p(x|z_1)", self.rec)] + [(f"KL level {i + 1}", v) for i, v in enumerate(self.kl)]
        out = [f"negative ELBO of the VAE on {self.images} test images", f"{'term':<30}{'nats/image':>12}{'bits/dim':>10}"]
        out += [f"{n:<30}{v:>12.2f}{bpd(v):>10.4f}" for n, v in rows]
        out.append(f"{'total':<30}{self.total:>12.2f}{bpd(self.total):>10.4f}  +- {bpd(self.stderr):.4f} (1 s.e.)")
        return "\n".join(out)


@torch.no_grad()
def evaluate_vae(model: HierarchicalVAE, x: torch.Tensor, seed: int = 0, batch: int = 256) -> VAEReport:
    g = torch.Generator().manual_seed(seed)
    terms = [model.terms(x[i: i + batch], g) for i in range(0, len(x), batch)]
    rec = torch.cat([t.rec for t in terms])
    kl = torch.cat([t.kl for t in terms])
    nll = rec + kl.sum(1)
    return VAEReport(rec.mean().item(), tuple(kl.mean(0).tolist()), nll.mean().item(),
                     nll.std().item() / math.sqrt(len(nll)), x[0].numel(), len(nll))


def train_vae(cfg: VAERunConfig, out: str | Path, log: Callable[[str], None] = print, progress: bool = True) -> VAEReport:
    """Train by the ELBO, then write vae.safetensors, samples.png, recon.png, metrics.jsonl, report.md."""
    data = build_dataset(cfg.data)
    torch.manual_seed(cfg.seed)
    model = HierarchicalVAE(cfg.vae)
    model.check_input(data.x[:1])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    order = DataOrder(len(data), cfg.seed)
    steps = math.ceil(cfg.max_images / cfg.batch_size)
    bar = Progress(steps, "vae", "step", cfg.log_every, log=log, enabled=progress, budget_s=cfg.minutes * 60)
    t0, step = time.time(), 0
    with open(out / "metrics.jsonl", "w") as metrics:
        while step < steps and not (cfg.minutes and time.time() - t0 >= cfg.minutes * 60):
            g = torch.Generator().manual_seed(step_seed(cfg.seed, step))
            x = data.x[order.batch(step * cfg.batch_size, cfg.batch_size)]
            terms = model.terms(x, g)
            loss = terms.nll.mean() / terms.dims  # nats per dimension
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            bpd = float(terms.bpd.mean().detach())
            bar.update(1, bpd=bpd)
            if step % cfg.log_every == 0:
                metrics.write(json.dumps({"step": step, "images": step * cfg.batch_size, "bpd": bpd,
                                          "seconds": round(time.time() - t0, 3)}) + "\n")
    bar.close()
    model.eval()
    meta = {"config": to_dict(cfg), "step": step, "images": step * cfg.batch_size}
    save_checkpoint(out / "vae.safetensors", {f"model.{k}": v for k, v in model.state_dict().items()}, meta)
    test = build_dataset(replace(cfg.data, split="test", limit=cfg.eval_images) if cfg.data.name == "mnist"
                         else replace(cfg.data, limit=cfg.eval_images))
    rep = evaluate_vae(model, test.x, cfg.seed)
    with torch.no_grad():
        x = test.x[:8]
        z, _ = model.encode(x)
        save_grid(torch.cat([x, model.decode(z)]), out / "recon.png", nrow=8)
        save_grid(model.sample(64, data.x.shape[-1], torch.Generator().manual_seed(cfg.seed)), out / "samples.png")
    (out / "report.md").write_text(f"# difflab VAE ({cfg.vae.levels} latent level(s))\n\n{step} steps, "
                                   f"{step * cfg.batch_size} images, {time.time() - t0:.0f} s\n\n```\n{rep.table()}\n```\n\n"
                                   f"![samples](samples.png)\n\n![reconstructions: data above, decoded means below]"
                                   f"(recon.png)\n\n```yaml\n{dump_yaml(cfg)}```\n")
    log(rep.table())
    return rep
