"""The classical reconstruction every operator has: total-variation-regularized least squares,
    x* = argmin_x 1/2 ||A x - y||^2 + lambda TV(x),   TV(x) = sum_pixels |grad x|_2  (isotropic),
solved by the primal-dual method of Chambolle & Pock (2011) with A and A^T only.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F



def grad2d(x: Tensor) -> Tensor:
    """Forward differences (B, C, 2, H, W), zero at the last row / column (Neumann boundary)."""
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return torch.stack([dx, dy], dim=2)


def div2d(p: Tensor) -> Tensor:
    """-grad2d^T: the discrete divergence of (B, C, 2, H, W)."""
    px, py = p[:, :, 0], p[:, :, 1]
    dx = torch.cat([px[..., :, :1], px[..., :, 1:-1] - px[..., :, :-2], -px[..., :, -2:-1]], dim=-1)
    dy = torch.cat([py[..., :1, :], py[..., 1:-1, :] - py[..., :-2, :], -py[..., -2:-1, :]], dim=-2)
    return dx + dy


def op_norm(op) -> float:
    """||A||_2 (power iteration, cached on the operator)."""
    return op.norm()


def tv_least_squares(op, y: Tensor, lam: float, iters: int = 300, x0: Tensor | None = None,
                     box: tuple[float, float] | None = (-1.0, 1.0)) -> Tensor:
    """argmin 1/2 ||A x - y||^2 + lam TV(x) (x in the box if given) by Chambolle-Pock on K = [A; grad]."""
    L = math.sqrt(op_norm(op) ** 2 + 8.0)  # ||grad||^2 <= 8
    tau = sigma = 0.99 / L
    x = x0.clone() if x0 is not None else torch.zeros(len(y), *op.shape, device=y.device)
    xbar, q, p = x.clone(), torch.zeros_like(y), torch.zeros(len(y), op.shape[0], 2, *op.shape[1:], device=y.device)
    for _ in range(iters):
        q = (q + sigma * (op.forward(xbar) - y)) / (1 + sigma)  # prox of the conjugate of 1/2 ||. - y||^2
        p = p + sigma * grad2d(xbar)
        p = p / (p.norm(dim=2, keepdim=True) / lam).clamp_min(1.0)  # projection onto the lam-ball (isotropic)
        x_new = x - tau * (op.adjoint(q) - div2d(p))
        if box is not None:
            x_new = x_new.clamp(*box)
        xbar, x = 2 * x_new - x, x_new
    return x
