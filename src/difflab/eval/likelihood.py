"""The bound on a data split, term by term: L_0, sum L_{t-1}, L_T, total, bits/dim with error bars."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch

from difflab.data.build import build_dataset
from difflab.errors import UserError
from difflab.losses.elbo import elbo_exact, elbo_importance
from difflab.train.build import build_denoiser
from difflab.train.progress import Progress
from difflab.train.run import LoadedRun

METHODS = ("importance", "exact", "ode")


@dataclass(frozen=True)
class NLLReport:
    """Means over images, in nats per image; stderr covers data and Monte Carlo noise."""

    L0: float
    Lt: float  # sum over t = 2..T of L_{t-1}
    LT: float
    total: float
    stderr: float
    dims: int
    images: int
    method: str
    split: str
    variance: str

    def bpd(self, nats: float) -> float:
        return nats / (self.dims * math.log(2))

    def table(self) -> str:
        rows = [("L_0 (reconstruction)", self.L0), ("sum L_{t-1} (denoising)", self.Lt), ("L_T (prior)", self.LT)]
        out = [f"negative ELBO on {self.images} {self.split} images ({self.method}, variance={self.variance})",
               f"{'term':<26}{'nats/image':>14}{'bits/dim':>12}"]
        out += [f"{name:<26}{v:>14.2f}{self.bpd(v):>12.4f}" for name, v in rows]
        out.append(f"{'total':<26}{self.total:>14.2f}{self.bpd(self.total):>12.4f}  "
                   f"+- {self.bpd(self.stderr):.4f} (1 s.e.)")
        return "\n".join(out)


def evaluate_nll(run: LoadedRun, *, split: str = "test", num_images: int = 256, method: str = "importance",
                 num_t: int = 64, variance: str | None = None, seed: int = 0, batch_size: int = 64,
                 use_ema: bool = True, log: Callable[[str], None] = print, progress: bool = True) -> NLLReport:
    """The negative ELBO of a trained run on `num_images` images of a split (MNIST: test by default)."""
    L0, Lt, LT, dims, where, variance = per_image_terms(
        run, split=split, num_images=num_images, method=method, num_t=num_t, variance=variance, seed=seed,
        batch_size=batch_size, use_ema=use_ema, log=log, progress=progress)
    total = L0 + Lt + LT
    return NLLReport(L0.mean().item(), Lt.mean().item(), LT.mean().item(), total.mean().item(),
                     total.std().item() / math.sqrt(len(total)), dims, len(total), method, where, variance)


@dataclass(frozen=True)
class ODEReport:
    """Exact likelihood by the probability-flow ODE, per image means."""

    nats: float  # -log p per image (after dequantization, with the bin volume, for 8-bit images)
    stderr: float
    dims: int
    images: int
    nfe: float  # mean network evaluations per batch solve
    split: str
    trace: str

    def table(self) -> str:
        bpd = self.nats / (self.dims * math.log(2))
        return (f"probability-flow ODE likelihood on {self.images} {self.split} images ({self.trace} trace, "
                f"{self.nfe:.0f} evaluations per solve)\n"
                f"{'negative log-likelihood':<26}{self.nats:>14.2f} nats/image\n"
                f"{'bits/dim':<26}{bpd:>14.4f}  +- {self.stderr / (self.dims * math.log(2)):.4f} (1 s.e.)")


def evaluate_ode_nll(run: LoadedRun, *, split: str = "test", num_images: int = 256, exact_trace: bool = False,
                     rtol: float = 1e-5, atol: float = 1e-5, seed: int = 0, batch_size: int = 64, use_ema: bool = True,
                     log: Callable[[str], None] = print, progress: bool = True) -> ODEReport:
    """-log p(x) by the probability-flow ODE; images are dequantized uniformly and pay the 8-bit bin volume."""
    from difflab.eval.ode_likelihood import bits_per_dim, dequantize, ode_log_likelihood

    if num_images < 2:
        raise UserError(f"--num-images must be at least 2 for an error bar, got {num_images}")
    cfg = run.cfg
    dcfg = replace(cfg.data, limit=num_images, split=split if cfg.data.name == "mnist" else cfg.data.split)
    data = build_dataset(dcfg)
    net = run.ema if use_ema else run.net
    net.eval()
    denoiser = build_denoiser(cfg, net)
    device = next(net.parameters()).device
    g = torch.Generator().manual_seed(seed)
    nll, nfes = [], []
    bar = Progress(-(-len(data.x) // batch_size), "nll", "batch", every=1, log=log, enabled=progress)
    for i in range(0, len(data.x), batch_size):
        x0 = data.x[i: i + batch_size].to(device)
        cond = data.labels[i: i + batch_size].to(device) if getattr(net.cfg, "num_classes", 0) else None
        images = x0.ndim == 4
        x = dequantize(x0, g).to(x0.dtype) if images else x0
        r = ode_log_likelihood(denoiser, denoiser.schedule, x, cond=cond, exact_trace=exact_trace, rtol=rtol,
                               atol=atol, generator=g)
        dims = x0[0].numel()
        nll.append(bits_per_dim(r.log_p, dims, 256 if images else None).cpu() * dims * math.log(2))
        nfes.append(r.nfe)
        bar.update(1)
    bar.close()
    nats = torch.cat(nll)
    where = dcfg.split if cfg.data.name == "mnist" else f"{cfg.data.name} (training data)"
    return ODEReport(nats.mean().item(), nats.std().item() / math.sqrt(len(nats)), data.x[0].numel(), len(nats),
                     sum(nfes) / len(nfes), where, "exact" if exact_trace else "Hutchinson")


def per_image_terms(run: LoadedRun, *, split: str = "test", num_images: int = 256, method: str = "importance",
                    num_t: int = 64, variance: str | None = None, seed: int = 0, batch_size: int = 64,
                    use_ema: bool = True, log: Callable[[str], None] = print, progress: bool = True):
    """(L0, sum L_{t-1}, L_T) per image in nats, dims, the data's name, the variance used; draws depend on seed only."""
    if method not in METHODS:
        raise UserError(f"--method must be one of {METHODS}, got {method!r}")
    if num_images < 2:
        raise UserError(f"--num-images must be at least 2 for an error bar, got {num_images}")
    cfg = run.cfg
    if not cfg.schedule.discrete:
        raise UserError(f"the ELBO needs a discrete schedule; this run uses schedule.kind={cfg.schedule.kind}: "
                        "use --method ode")
    variance = variance or cfg.variance
    dcfg = replace(cfg.data, limit=num_images, split=split if cfg.data.name == "mnist" else cfg.data.split)
    data = build_dataset(dcfg)
    x = data.x
    discrete = x.ndim == 4  # images: discretized decoder on 8-bit pixels; points: continuous density
    net = run.ema if use_ema else run.net
    denoiser = build_denoiser(cfg, net)
    device = next(net.parameters()).device
    g = torch.Generator().manual_seed(seed)
    parts: list[tuple[torch.Tensor, ...]] = []
    bar = Progress(-(-len(x) // batch_size), "nll", "batch", every=1, log=log, enabled=progress)
    for i in range(0, len(x), batch_size):
        x0 = x[i: i + batch_size].to(device)
        cond = data.labels[i: i + batch_size].to(device) if getattr(net.cfg, "num_classes", 0) else None
        if method == "exact":
            e = elbo_exact(denoiser, denoiser.schedule, x0, variance=variance, discrete=discrete, cond=cond, generator=g)
            parts.append((e.L0, e.Lt.sum(1), e.LT))
        else:
            e = elbo_importance(denoiser, denoiser.schedule, x0, num_t, variance=variance, discrete=discrete,
                                cond=cond, generator=g)
            parts.append((e.L0, e.Lt, e.LT))
        bar.update(1)
    bar.close()
    L0, Lt, LT = (torch.cat(p) for p in zip(*parts))
    where = dcfg.split if cfg.data.name == "mnist" else f"{cfg.data.name} (training data)"
    return L0, Lt, LT, x[0].numel(), where, variance
