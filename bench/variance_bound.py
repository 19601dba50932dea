"""The bound of one trained run under each reverse variance, paired: same images, same draws of t and x_t.

    .venv/bin/python bench/variance_bound.py RUN_DIR [--num-images 256] [--num-t 64]

Prints bits/dim per variance and the paired differences with their standard errors.
"""
from __future__ import annotations

import argparse
import math

from difflab.eval.likelihood import per_image_terms
from difflab.train.run import load_run
from difflab.utils import bits_per_dim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--num-images", type=int, default=256)
    p.add_argument("--num-t", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    run = load_run(args.run)
    variances = ["posterior", "beta"] + (["learned"] if run.cfg.train.learn_variance else [])
    totals = {}
    for v in variances:
        L0, Lt, LT, _, dims, where, _ = per_image_terms(run, num_images=args.num_images, num_t=args.num_t, variance=v,
                                                     seed=args.seed, progress=False, log=lambda s: None)
        totals[v] = bits_per_dim(L0 + Lt + LT, dims)  # per image
        print(f"{v:<10} {totals[v].mean():.4f} bits/dim  (+- {totals[v].std() / math.sqrt(len(L0)):.4f} over images; "
              f"L_0 {bits_per_dim(L0.mean(), dims):.4f}, sum L_t-1 {bits_per_dim(Lt.mean(), dims):.4f})")
    base = variances[-1]
    for v in variances[:-1]:
        d = totals[v] - totals[base]
        print(f"{v} - {base}: {d.mean():+.4f} bits/dim, paired s.e. {d.std() / math.sqrt(len(d)):.4f}")


if __name__ == "__main__":
    main()
