"""The bound on a data split, term by term: L_0, sum L_{t-1}, L_T, total, bits/dim with error bars. A latent run
adds its autoencoder's terms (latent/bound.py), so the total bounds -log p(x) of the data, in the data's bits/dim."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch

from difflab.condition import Condition
from difflab.data.build import build_dataset
from difflab.data.dataset import SPLIT_SETS
from difflab.errors import UserError
from difflab.losses.elbo import elbo_exact, elbo_importance
from difflab.precond import Precond
from difflab.train.build import build_denoiser, model_classes
from difflab.utils import bits_per_dim
from difflab.train.progress import Progress
from difflab.train.run import LoadedRun

METHODS = ("importance", "exact", "ode")


def standard_error(v: torch.Tensor) -> float:
    """The standard error of the mean of v (N,); NaN for one value (no error bar)."""
    return v.std().item() / math.sqrt(len(v)) if len(v) > 1 else math.nan


def error_bar(se: float) -> str:
    return f"+- {se:.4f} (1 s.e.)" if math.isfinite(se) else "(one image: no error bar)"


@dataclass(frozen=True)
class NLLReport:
    """Means over images, in nats per image; stderr covers data and Monte Carlo noise."""

    L0: float
    Lt: float  # sum over t = 2..T of L_{t-1}
    LT: float
    AE: float  # a latent run's autoencoder terms -log p(x|z) - H[q(z|x)] - d log s (0 for a pixel run)
    total: float
    stderr: float
    dims: int
    images: int
    method: str
    split: str
    variance: str

    def bpd(self, nats: float) -> float:
        return bits_per_dim(nats, self.dims)

    def table(self) -> str:
        rows = [("L_0 (reconstruction)", self.L0), ("sum L_{t-1} (denoising)", self.Lt), ("L_T (prior)", self.LT)]
        if self.AE:
            rows.append(("autoencoder (see below)", self.AE))
        out = [f"negative ELBO on {self.images} {self.split} images ({self.method}, variance={self.variance})",
               f"{'term':<26}{'nats/image':>14}{'bits/dim':>12}"]
        out += [f"{name:<26}{v:>14.2f}{self.bpd(v):>12.4f}" for name, v in rows]
        out.append(f"{'total':<26}{self.total:>14.2f}{self.bpd(self.total):>12.4f}  {error_bar(self.bpd(self.stderr))}")
        if self.AE:
            out.append("latent run: L_0 .. L_T bound -log p(s z) of the scaled latent; autoencoder = -log p(x|z) - "
                       "H[q(z|x)] - d log s; bits/dim of the data")
        return "\n".join(out)


def evaluate_nll(run: LoadedRun, *, split: str = "test", num_images: int = 256, method: str = "importance",
                 num_t: int = 64, variance: str | None = None, seed: int = 0, batch_size: int = 64,
                 use_ema: bool = True, log: Callable[[str], None] = print, progress: bool = True) -> NLLReport:
    """The negative ELBO of a trained run on `num_images` images of a split (MNIST: test by default)."""
    L0, Lt, LT, AE, dims, where, variance = per_image_terms(
        run, split=split, num_images=num_images, method=method, num_t=num_t, variance=variance, seed=seed,
        batch_size=batch_size, use_ema=use_ema, log=log, progress=progress)
    total = L0 + Lt + LT + AE
    return NLLReport(L0.mean().item(), Lt.mean().item(), LT.mean().item(), AE.mean().item(), total.mean().item(),
                     standard_error(total), dims, len(total), method, where, variance)


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
        bpd = bits_per_dim(self.nats, self.dims)
        return (f"probability-flow ODE likelihood on {self.images} {self.split} images ({self.trace} trace, "
                f"{self.nfe:.0f} evaluations per solve)\n"
                f"{'negative log-likelihood':<26}{self.nats:>14.2f} nats/image\n"
                f"{'bits/dim':<26}{bpd:>14.4f}  {error_bar(bits_per_dim(self.stderr, self.dims))}")


def evaluate_ode_nll(run: LoadedRun, *, split: str = "test", num_images: int = 256, exact_trace: bool = False,
                     rtol: float = 1e-5, atol: float = 1e-5, seed: int = 0, batch_size: int = 64, use_ema: bool = True,
                     log: Callable[[str], None] = print, progress: bool = True) -> ODEReport:
    """-log p(x) by the probability-flow ODE; 8-bit images are dequantized uniformly and pay the bin volume."""
    from difflab.eval.ode_likelihood import dequantize, discrete_nll, ode_log_likelihood

    g = torch.Generator().manual_seed(seed)
    quantized = run.spec.quantized
    codec = _codec(run)
    nfes = []

    def one(denoiser: Precond, x0: torch.Tensor, cond: Condition | None) -> tuple[torch.Tensor, ...]:
        x0, ae = _to_model(codec, x0, g)
        x = dequantize(x0, g).to(x0.dtype) if quantized else x0
        r = ode_log_likelihood(denoiser, denoiser.schedule, x, cond=cond, exact_trace=exact_trace, rtol=rtol,
                               atol=atol, generator=g)
        nfes.append(r.nfe)
        return (discrete_nll(r.log_p, x0[0].numel(), 256 if quantized else None).cpu() + ae.cpu(),)

    (nats,), where = evaluate_split(run, one, split=split, num_images=num_images, batch_size=batch_size,
                                    use_ema=use_ema, log=log, progress=progress)
    dims = math.prod(codec.spec.shape if codec else run.spec.shape)
    return ODEReport(nats.mean().item(), standard_error(nats), dims, len(nats),
                     sum(nfes) / len(nfes), where, "exact" if exact_trace else "Hutchinson")


def _codec(run: LoadedRun):
    """A latent run's autoencoder (None for a pixel run)."""
    if run.spec.space != "latent":
        return None
    from difflab.latent.codec import load_codec

    codec = load_codec(run.cfg.data)
    codec.vae.to(next(run.net.parameters()).device)
    return codec


def _to_model(codec, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(what the network models, the autoencoder's terms per example): pixels and zeros for a pixel run."""
    if codec is None:
        return x, torch.zeros(len(x), device=x.device)
    from difflab.latent.bound import autoencoder_terms

    return autoencoder_terms(codec, x, g, codec.spec.quantized)


def per_image_terms(run: LoadedRun, *, split: str = "test", num_images: int = 256, method: str = "importance",
                    num_t: int = 64, variance: str | None = None, seed: int = 0, batch_size: int = 64,
                    use_ema: bool = True, log: Callable[[str], None] = print, progress: bool = True):
    """(L0, sum L_{t-1}, L_T) per image in nats, dims, the data's name, the variance used; draws depend on seed only."""
    if method not in METHODS:
        raise UserError(f"--method must be one of {METHODS}, got {method!r}")
    cfg = run.cfg
    if not cfg.schedule.discrete:
        raise UserError(f"the ELBO needs a discrete schedule; this run uses schedule.kind={cfg.schedule.kind}: "
                        "use --method ode")
    if method == "ode":
        raise UserError("per-term bounds are for --method importance or exact; the ODE gives one number")
    variance = variance or cfg.variance
    discrete = run.spec.quantized  # 8-bit data: discretized decoder; otherwise a continuous density
    g = torch.Generator().manual_seed(seed)
    codec = _codec(run)

    def one(denoiser: Precond, x0: torch.Tensor, cond: Condition | None) -> tuple[torch.Tensor, ...]:
        x0, ae = _to_model(codec, x0, g)
        if method == "exact":
            e = elbo_exact(denoiser, denoiser.schedule, x0, variance=variance, discrete=discrete, cond=cond, generator=g)
            return e.L0, e.Lt.sum(1), e.LT, ae
        e = elbo_importance(denoiser, denoiser.schedule, x0, num_t, variance=variance, discrete=discrete,
                            cond=cond, generator=g)
        return e.L0, e.Lt, e.LT, ae

    (L0, Lt, LT, AE), where = evaluate_split(run, one, split=split, num_images=num_images, batch_size=batch_size,
                                             use_ema=use_ema, log=log, progress=progress)
    dims = math.prod(codec.spec.shape if codec else run.spec.shape)
    return L0, Lt, LT, AE, dims, where, variance


def evaluate_split(run: LoadedRun, fn: Callable[[Precond, torch.Tensor, Condition | None], tuple[torch.Tensor, ...]],
                   *, split: str = "test", num_images: int = 256, batch_size: int = 64, use_ema: bool = True,
                   log: Callable[[str], None] = print, progress: bool = True) -> tuple[list[torch.Tensor], str]:
    """The one driver that evaluates a split: fn(denoiser, x0, cond) -> per-image tensors over batches of the first
    num_images examples (data with a test split: of `split`; other data: the training data), concatenated; and the
    split's name. A latent run's fn gets the data itself (it encodes)."""
    if num_images < 1:
        raise UserError(f"--num-images must be at least 1 (2 or more for an error bar), got {num_images}")
    cfg = run.cfg
    splits = cfg.data.name in SPLIT_SETS
    dcfg = replace(cfg.data.pixels, limit=num_images, split=split if splits else cfg.data.split)
    data = build_dataset(dcfg)
    net = run.ema if use_ema else run.net
    net.eval()
    denoiser = build_denoiser(cfg, net)
    device = next(net.parameters()).device
    takes_labels = bool(net.conditions) and data.labels is not None
    classes = model_classes(cfg)[0]
    parts = []
    bar = Progress(-(-len(data) // batch_size), "nll", "batch", every=1, log=log, enabled=progress)
    for i in range(0, len(data), batch_size):
        cond = Condition.labels(data.labels[i: i + batch_size], classes).to(device) if takes_labels else None
        parts.append(tuple(v.cpu() for v in fn(denoiser, data.x[i: i + batch_size].to(device), cond)))
        bar.update(1)
    bar.close()
    where = f"{cfg.data.name} {dcfg.split}" if splits else f"{cfg.data.name} (training data)"
    return [torch.cat(p) for p in zip(*parts)], where


def log_likelihood(pipe, x: torch.Tensor, *, method: str = "ode", cond: Condition | None = None, rtol: float = 1e-5,
                   num_t: int | None = None, seed: int = 0) -> torch.Tensor:
    """log p(x) per example in nats under a Pipeline's model: 'ode' by the probability-flow ODE (8-bit data: log P of
    the pixel bins, by uniform dequantization), 'elbo' -(L_0 + sum L_{t-1} + L_T) over all T steps, or over num_t
    importance-sampled steps. 8-bit data: x is rounded to the 8-bit grid first (real images are on it already;
    samples are not)."""
    from difflab.eval.ode_likelihood import dequantize, discrete_nll, ode_log_likelihood

    x = x.to(pipe.device, torch.float32)
    if tuple(x.shape[1:]) != tuple(pipe.shape):
        raise UserError(f"log_likelihood takes examples of shape {pipe.shape}, got {tuple(x.shape[1:])}")
    g = torch.Generator().manual_seed(seed)
    quantized, dims = pipe.spec.quantized, math.prod(pipe.shape)
    if quantized:  # the model's likelihood is of 8-bit images: samples are put on the grid first
        x = torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
    if method == "ode":
        xd = dequantize(x.cpu(), g).to(x) if quantized else x
        r = ode_log_likelihood(pipe.denoiser, pipe.schedule, xd, cond=cond, rtol=rtol, atol=rtol, generator=g)
        return -discrete_nll(r.log_p, dims, 256 if quantized else None).cpu()
    if method != "elbo":
        raise UserError(f"method must be 'ode' or 'elbo', got {method!r}")
    if not pipe.cfg.schedule.discrete:
        raise UserError(f"the ELBO needs a discrete schedule; this run uses {pipe.cfg.schedule.kind}: use 'ode'")
    with torch.no_grad():
        if num_t is None:
            e = elbo_exact(pipe.denoiser, pipe.schedule, x, variance=pipe.cfg.variance, discrete=quantized,
                           cond=cond, generator=g)
            return -(e.L0 + e.Lt.sum(1) + e.LT).cpu()
        e = elbo_importance(pipe.denoiser, pipe.schedule, x, num_t, variance=pipe.cfg.variance,
                            discrete=quantized, cond=cond, generator=g)
        return -(e.L0 + e.Lt + e.LT).cpu()
