"""A diffusers-trained MNIST model, imported and measured by difflab (docs/diffusers.md's worked example).

The network is bench/mnist_vs_diffusers.py's diffusers contender (UNet2DModel + DDPMScheduler, epsilon, trained by
diffusers' own loop for --minutes), saved with save_pretrained. `difflab import-diffusers` makes it a run; then
  * its likelihood: bits/dim by the ELBO (importance-sampled steps, mean +- standard error over test images) and by
    the probability-flow ODE (diffusers has no likelihood evaluation);
  * its FID at each --nfe: difflab's automatic sampler against diffusers' DDIM, DPM-Solver++ (2M) and UniPC at the
    same NFE, all from the same network, against the 10,000 MNIST test images (standard Inception);
  * an inpainting of test digits with `difflab restore` (posterior sampling, which diffusers has not).

  .venv/bin/python bench/diffusers_import.py            # trains the diffusers model first (skipped if saved)
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import difflab  # noqa: E402
from difflab.data.dataset import to_uint8  # noqa: E402
from difflab.data.mnist import load_mnist  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402
from mnist_vs_diffusers import SAMPLE_CHUNK, train_diffusers  # noqa: E402

OUT = ROOT / "bench" / "out" / "diffusers_import"
PEERS = ("DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def difflab_cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "difflab", *args]
    log(" ".join(["difflab", *args]))
    if subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT / "src"))).returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}")


@torch.no_grad()
def peer_samples(folder: Path, scheduler: str, n: int, nfe: int, seed: int) -> np.ndarray:
    """n samples (uint8 (n, 28, 28)) by a diffusers scheduler built from the saved scheduler's config."""
    import diffusers

    unet = diffusers.UNet2DModel.from_pretrained(folder / "unet").eval()
    solver = getattr(diffusers, scheduler).from_pretrained(folder / "scheduler")
    gen, out = torch.Generator().manual_seed(seed), []
    for i in range(0, n, SAMPLE_CHUNK):
        solver.set_timesteps(nfe)
        x = torch.randn((min(SAMPLE_CHUNK, n - i), 1, 28, 28), generator=gen)
        for t in solver.timesteps:
            x = solver.step(unet(x, t).sample, t, x).prev_sample
        out.append(to_uint8(x.clamp(-1, 1))[:, 0])
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="diffusers' training budget (wall-clock)")
    ap.add_argument("--samples", type=int, default=1000, help="samples per FID")
    ap.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--elbo-images", type=int, default=256, help="test images for the ELBO")
    ap.add_argument("--num-t", type=int, default=32, help="importance-sampled steps per image for the ELBO")
    ap.add_argument("--ode-images", type=int, default=32, help="test images for the ODE likelihood")
    ap.add_argument("--difflab-samplers", nargs="*", default=["dpmpp_3m", "ddim"],
                    help="difflab samplers measured beside the automatic choice")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    folder, run = OUT / "ddpm-mnist", OUT / "run"
    if not (folder / "unet" / "diffusion_pytorch_model.safetensors").exists():
        import diffusers

        unet, scheduler, stats = train_diffusers(args.minutes, 64, 2e-3, 0)
        diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
        (OUT / "training.json").write_text(json.dumps(stats, indent=1))
    stats = json.loads((OUT / "training.json").read_text())
    if not (run / "checkpoint.safetensors").exists():
        difflab_cli("import-diffusers", str(folder), "--out", str(run), "--data", "mnist")
    pipe = difflab.load(run)
    test, _ = load_mnist("test")
    x = torch.from_numpy(test).float().div(127.5).sub(1).unsqueeze(1)  # (10000, 1, 28, 28) in [-1, 1]
    dims = x[0].numel() * np.log(2)
    bpd_file = OUT / "bits_per_dim.json"  # measured once (a rerun reuses it)
    bpd = json.loads(bpd_file.read_text()) if bpd_file.exists() else {}
    for method, k, extra in (("elbo", args.elbo_images, {"num_t": args.num_t}), ("ode", args.ode_images, {})):
        if method in bpd and bpd[method]["n"] == k:
            continue
        t0 = time.perf_counter()
        lp = pipe.log_likelihood(x[:k], method=method, seed=0, **extra).double().numpy()
        b = -lp / dims
        bpd[method] = {"bpd": round(float(b.mean()), 4), "se": round(float(b.std(ddof=1) / np.sqrt(k)), 4), "n": k,
                       "seconds": round(time.perf_counter() - t0, 1)}
        log(f"{method}: {b.mean():.4f} +- {b.std(ddof=1) / np.sqrt(k):.4f} bits/dim ({k} test images)")
        bpd_file.write_text(json.dumps(bpd, indent=1))
    from difflab.eval.features import get_extractor
    from difflab.eval.quality import evaluate_images

    extractor, fid = get_extractor("inception"), []
    cache_file = OUT / "fid_rows.json"  # rows already measured (nfe|contender): a rerun adds only new ones
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    for nfe in args.nfe:
        t0 = time.perf_counter()
        for name in ["auto", *args.difflab_samplers, *PEERS]:
            key = f"{nfe}|{name}"
            if key not in cache:
                if name in PEERS:
                    imgs = peer_samples(folder, name, args.samples, nfe, seed=1)
                    label = name
                else:
                    sampler = None if name == "auto" else name
                    imgs = to_uint8(pipe.sample(args.samples, sampler=sampler, nfe=nfe, seed=1))[:, 0]
                    plan = pipe.plan(pipe.sample_config(args.samples, sampler=sampler, nfe=nfe), log=lambda m: None)
                    label = f"difflab {plan.config.sampler} ({plan.grid_name})" + (" [auto]" if name == "auto" else "")
                row = evaluate_images([imgs], test, extractor, ("fid",), "mnist test", log=lambda m: None).rows[0]
                cache[key] = {"nfe": nfe, "column": name if name in PEERS else f"difflab {name}", "sampler": label,
                              "fid": round(row.value, 2), "n": row.n}
                cache_file.write_text(json.dumps(cache, indent=1))
            fid.append(cache[key])
            log(f"NFE {nfe} {fid[-1]['sampler']}: FID {fid[-1]['fid']:.2f}")
        log(f"NFE {nfe}: {time.perf_counter() - t0:.0f}s")
    # docs/inverse.md's best inpainting of MNIST: DPS (zeta 3), the mean of 8 posterior samples, 50 NFE
    difflab_cli("restore", "--run", str(run), "--task", "inpaint", "--data", "mnist", "--num", "16", "--method", "dps",
                "--zeta", "3", "--samples", "8", "--sampler", "dpmpp_2m", "--nfe", "50", "--out", str(OUT / "inpaint"),
                "--quiet")
    inpaint = json.loads((OUT / "inpaint" / "report.json").read_text())
    best20 = min(r["fid"] for r in fid if r["nfe"] == 20 and not r["sampler"].startswith("difflab"))
    reached = sorted(r["nfe"] for r in fid if r["sampler"].startswith("difflab") and r["fid"] <= best20)
    result = {"command": shlex.join([sys.executable, *sys.argv]), "machine": cpu_flags(), "training": stats,
              "bits_per_dim": bpd, "fid": fid, "inpaint": inpaint,
              "difflab_reaches_diffusers_best_20_nfe_fid_at": reached[0] if reached else None,
              "diffusers_best_20_nfe_fid": best20}
    (OUT / "results.json").write_text(json.dumps(result, indent=1))
    lines = [f"diffusers' UNet2DModel trained {stats['steps']:,} steps ({stats['images_seen']:,} images) by its own "
             f"loop; {args.samples} samples per FID; {cpu_flags()}.", "",
             "| NFE | " + " | ".join(cols := list(dict.fromkeys(r["column"] for r in fid))) + " |",
             "|---:|" + "---:|" * len(cols)]
    for nfe in args.nfe:
        at = {r["column"]: r["fid"] for r in fid if r["nfe"] == nfe}
        lines.append(f"| {nfe} | " + " | ".join(f"{at[c]:.2f}" if c in at else "" for c in cols) + " |")
    lines += ["", f"bits/dim: ELBO {bpd['elbo']['bpd']:.3f} +- {bpd['elbo']['se']:.3f} ({bpd['elbo']['n']} images, "
                  f"{args.num_t} steps each); ODE {bpd['ode']['bpd']:.3f} +- {bpd['ode']['se']:.3f} "
                  f"({bpd['ode']['n']} images)",
              "inpainting (16 test digits, centre half missing; DPS zeta 3, mean of 8, 50 NFE): " +
              ", ".join(f"{k} PSNR {v['psnr']:.2f}" for k, v in inpaint.items() if "psnr" in v)]
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
