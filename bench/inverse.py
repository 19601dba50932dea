"""Inverse problems with a diffusion prior against the classical baselines, per task, on held-out images:
PSNR / SSIM (scikit-image) and measurement consistency, with the sample count, and a figure per task (truth,
measurement, best baseline, diffusion). The baselines' regularization (TV lambda, Wiener noise-to-signal ratio) is
tuned on validation images apart from the test images.

  task      prior run (trained here if missing)      test images
  inpaint   MNIST (the demo recipe)                  MNIST test digits, centre half missing
  superres  MNIST (and a run trained for 4x SR)      4x average-pooled MNIST test digits
  deblur    MNIST                                    Gaussian blur sigma 1.5
  mri       MNI152 brain slices (64 x 64)            held-out axial levels, 4x Cartesian undersampling
  ct        textured ellipse phantoms (64 x 64)      held-out phantoms and Shepp-Logan, 30 views, low dose
  mri-ood   the brain prior                          pydicom's MR_small, matplotlib's sample MRI (other anatomy)
  ct-ood    the phantom prior                        pydicom's CT_small (a real CT slice)
  *-photo   photo patches (32 x 32, scikit-image)    inpaint / superres / deblur on patches of a held-out photo

  .venv/bin/python bench/inverse.py --minutes 10          # trains the three priors (10 min each), then measures
  .venv/bin/python bench/inverse.py --tasks mri,ct --num 16
  .venv/bin/python bench/inverse.py --tasks ct --ct-noise 0.01   # near-noiseless sinograms (TV's best case)

Measurement noise is 0.01 in the [-1, 1] image scale, except CT's sinograms (ray sums of ~30 on average at 64 x 64):
--ct-noise 0.3, about 1 % of the mean ray sum, the level of low-dose CT.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import difflab  # noqa: E402
from difflab.config import build_config, dump_yaml  # noqa: E402
from difflab.data.build import build_dataset  # noqa: E402
from difflab.data.dataset import DataConfig  # noqa: E402
from difflab.data.medical import ood_medical, shepp_logan  # noqa: E402
from difflab.demo import DEMO  # noqa: E402
from difflab.eval.grid import save_grid  # noqa: E402
from difflab.inverse.metrics import quality  # noqa: E402
from difflab.inverse.restore import TaskConfig, build_operator, posterior_mean, posterior_sample  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

OUT = ROOT / "bench" / "out" / "inverse"
PRIORS = {"mnist": ["data.name=mnist"], "mnist_sr4": ["data.name=mnist", "unet.lowres_factor=4"],
          "brain": ["data.name=brain", "unet.channel_mult=[1,2,2,2]", "unet.attention_levels=[3]"],
          "phantoms": ["data.name=phantoms", "unet.channel_mult=[1,2,2,2]", "unet.attention_levels=[3]"],
          "photos": ["data.name=photos"]}
TASK_PRIOR = {"inpaint": "mnist", "superres": "mnist", "deblur": "mnist", "mri": "brain", "ct": "phantoms",
              "mri-ood": "brain", "ct-ood": "phantoms", "inpaint-photo": "photos", "superres-photo": "photos",
              "deblur-photo": "photos"}
METHODS = {"inpaint": ("project", "repaint", "dps", "dds", "moment"), "superres": ("project", "dps", "dds", "moment"),
           "deblur": ("dps", "dds", "moment"), "mri": ("project", "dps", "dds", "moment"), "ct": ("dps", "dds", "moment")}
METHODS.update({"mri-ood": METHODS["mri"], "ct-ood": METHODS["ct"], "inpaint-photo": METHODS["inpaint"],
                "superres-photo": METHODS["superres"], "deblur-photo": METHODS["deblur"]})
LAMBDAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
NSRS = (1e-4, 1e-3, 1e-2, 1e-1)


def train(name: str, minutes: float) -> Path:
    run = OUT / name
    if (run / "checkpoint.safetensors").exists():
        return run
    OUT.mkdir(parents=True, exist_ok=True)
    recipe = OUT / f"{name}.yaml"
    recipe.write_text(dump_yaml(build_config(None, PRIORS[name] + ["train.ema_half_life_images=null"], base=DEMO)))
    cmd = [sys.executable, "-m", "difflab", "train", "--config", str(recipe), "--out", str(run), "--minutes",
           str(minutes), "--sample", "16", "--quiet"]
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT / "src"))).returncode != 0:
        raise SystemExit(f"training {name} failed")
    return run


def images(task: str, split: str, n: int, seed: int) -> torch.Tensor:
    """Held-out images of the task's prior data (validation: other images of the same split)."""
    prior = TASK_PRIOR[task]
    if task.endswith("-ood"):  # no validation set of its own: tuned on the in-distribution one
        if seed:
            return images(task[:-4], split, n, seed)
        ood = ood_medical(64)
        return torch.cat([ood[k] for k in (("MR_small", "matplotlib_mri") if task == "mri-ood" else ("CT_small",))])
    if prior == "mnist":
        x = build_dataset(DataConfig(name="mnist", split="test")).x
        return x[seed * 1000: seed * 1000 + n]
    if prior == "photos":  # test: the held-out image; validation: fresh patches of the training images
        return build_dataset(DataConfig(name="photos", split="test" if seed == 0 else "train", limit=n, seed=seed)).x
    if prior == "brain":
        x = build_dataset(DataConfig(name="brain", split="test")).x
        return x[seed::2][:n]  # alternate levels for validation (seed 1) and test (seed 0)
    x = build_dataset(DataConfig(name="phantoms", split="test", seed=seed)).x[:n]
    return torch.cat([shepp_logan(64), x[:n - 1]]) if seed == 0 else x


ZETAS = (1.0, 3.0, 10.0, 30.0)
ITERS = (2, 5, 10, 20)
STOCHASTIC = "euler_maruyama"  # DDS's alternative sampler: fresh noise each step (DDS itself uses DDIM with eta 0.85)


def tune_diffusion(task: str, tc: TaskConfig, pipe, nfe: int, sampler: str) -> tuple[float, dict]:
    """DPS's step size, and DDS's sampler, weight zeta and conjugate-gradient steps (one after the other), with the
    best mean PSNR on the validation images (as the baselines' regularization is)."""
    x = images(task, "val", 8, seed=1)
    op = build_operator(tc, tuple(pipe.shape))
    y = op.measure(x, torch.Generator().manual_seed(1))
    psnr = lambda method, **kw: quality(posterior_sample(pipe, op, y, method, nfe=nfe, **kw), x)[0].mean()  # noqa: E731
    zeta = max(ZETAS, key=lambda z: psnr("dps", zeta=z, sampler=sampler))
    dds = {"sampler": sampler, "zeta": 1.0, "iters": 10}
    for key, options in (("sampler", (sampler, STOCHASTIC)), ("zeta", ZETAS + (float("inf"),)), ("iters", ITERS)):
        dds[key] = max(options, key=lambda v: psnr("dds", **{**dds, key: v}))
    return zeta, dds


def baselines(op, y: torch.Tensor, lam: float, nsr: float) -> dict[str, torch.Tensor]:
    """The operator's baselines with the TV weight lam and (deblurring) the Wiener ratio nsr."""
    op.tv_weight, op.tv_noise, op.nsr = lam, max(op.noise_std, 1e-12), nsr
    return op.baselines(y)


def tune(task: str, tc: TaskConfig, shape) -> tuple[float, float]:
    """The TV lambda and Wiener NSR with the best mean PSNR on validation images."""
    x = images(task, "val", 8, seed=1)
    op = build_operator(tc, shape)
    y = op.measure(x, torch.Generator().manual_seed(1))
    best_lam = max(LAMBDAS, key=lambda lam: quality(baselines(op, y, lam, 1e-3)["TV"], x)[0].mean())
    best_nsr = 1e-3
    if task == "deblur":
        best_nsr = max(NSRS, key=lambda r: quality(baselines(op, y, 0.01, r)["Wiener"], x)[0].mean())
    return best_lam, best_nsr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="inpaint,superres,deblur,mri,ct,mri-ood,ct-ood")
    ap.add_argument("--minutes", type=float, default=10.0, help="training minutes per prior (if not trained yet)")
    ap.add_argument("--num", type=int, default=16, help="test images per task")
    ap.add_argument("--nfe", type=int, default=50)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--ct-noise", type=float, default=0.3, help="CT sinogram noise (ray sums average ~30)")
    ap.add_argument("--results", default="results", help="name of the results .json / .md in bench/out/inverse")
    ap.add_argument("--samples", type=int, default=0, help="also the mean of this many DPS and DDS samples per image")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    runs = {TASK_PRIOR[t]: train(TASK_PRIOR[t], args.minutes) for t in tasks}
    if "superres" in tasks:  # trained directly for the task: the same budget as the priors
        runs["mnist_sr4"] = train("mnist_sr4", args.minutes)
    rows = []
    for task in tasks:
        pipe = difflab.load(runs[TASK_PRIOR[task]])
        base = task.removesuffix("-ood").removesuffix("-photo")
        tc = TaskConfig(base, noise_std=args.ct_noise if base == "ct" else TaskConfig.noise_std)
        lam, nsr = tune(task, tc, tuple(pipe.shape))
        zeta, dds = tune_diffusion(task, tc, pipe, args.nfe, args.sampler)
        x = images(task, "test", args.num, seed=0)
        op = build_operator(tc, tuple(pipe.shape))
        y = op.measure(x, torch.Generator().manual_seed(0))
        results = {k: (v, 0.0) for k, v in baselines(op, y, lam, nsr).items()}
        settings = {m: {"sampler": args.sampler, "zeta": zeta} for m in METHODS[task]}
        settings["dds"] = dds
        tags = {"dps": f" (zeta {zeta:g})", "dds": f" ({dds['sampler']}, zeta {dds['zeta']:g}, {dds['iters']} CG steps)"}
        for method in METHODS[task]:
            t0 = time.perf_counter()
            r = posterior_sample(pipe, op, y, method, nfe=args.nfe, seed=0, **settings[method])
            results[f"diffusion: {method}{tags.get(method, '')}"] = (r, time.perf_counter() - t0)
        for method in ("dps", "dds") if args.samples > 1 else ():
            t0 = time.perf_counter()
            r, _ = posterior_mean(pipe, op, y, method, args.samples, nfe=args.nfe, seed=0, **settings[method])
            results[f"diffusion: {method}{tags[method]}, mean of {args.samples}"] = (r, time.perf_counter() - t0)
        if task == "superres":  # the conditional run is an MNIST one
            t0 = time.perf_counter()
            r = posterior_sample(difflab.load(runs["mnist_sr4"]), op, y, "conditional", nfe=args.nfe,
                                 sampler=args.sampler, seed=0)
            results["trained conditional (4x)"] = (r, time.perf_counter() - t0)
        per_image = {name: quality(r, x) for name, (r, _) in results.items()}
        best = max((n for n in results if not n.startswith(("diffusion", "trained"))),
                   key=lambda n: float(per_image[n][0].mean()))
        for name, (r, secs) in results.items():
            psnr, ssim = per_image[name]
            gain = psnr - per_image[best][0]  # paired over the same images: the margin and its standard error
            rows.append({"task": task, "method": name, "psnr": round(float(psnr.mean()), 2),
                         "psnr_se": round(float(psnr.std(ddof=1) / np.sqrt(len(psnr))), 2) if len(x) > 1 else None,
                         "vs_best_baseline": None if name == best or len(x) < 2 else
                         [best, round(float(gain.mean()), 2), round(float(gain.std(ddof=1) / np.sqrt(len(gain))), 2)],
                         "ssim": round(float(ssim.mean()), 3), "consistency": round(float(op.consistency(r, y).mean()), 4),
                         "n": len(x), "seconds": round(secs, 1), "tv_lambda": lam, "wiener_nsr": nsr,
                         "noise": tc.noise_std})
            print(json.dumps(rows[-1]), flush=True)
        shown = [x[:8], op.view(y)[:8]] + [r[:8] for r, _ in results.values()]
        save_grid(torch.cat(shown), OUT / f"{task}.png", nrow=8)
        (OUT / f"{task}_rows.txt").write_text("rows: truth, measurement, " + ", ".join(results) + "\n")
    (OUT / f"{args.results}.json").write_text(json.dumps(rows, indent=1))
    lines = [f"Machine: {cpu_flags()}; {args.sampler} at {args.nfe} NFE per step budget", "",
             "| task | method | PSNR (dB) | vs best baseline (dB, paired) | SSIM | ||A x - y|| / ||y|| | images | seconds |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    vs = lambda r: f"{r['vs_best_baseline'][1]:+.2f} +- {r['vs_best_baseline'][2]:.2f}" if r["vs_best_baseline"] else ""  # noqa: E731
    se = lambda r: f" +- {r['psnr_se']:.2f}" if r["psnr_se"] is not None else ""  # noqa: E731
    lines += [f"| {r['task']} | {r['method']} | {r['psnr']:.2f}{se(r)} | {vs(r)} | {r['ssim']:.3f} | "
              f"{r['consistency']:.4f} | {r['n']} | {r['seconds']:.0f} |" for r in rows]
    (OUT / f"{args.results}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
