"""Latent diffusion measured: on MNIST against pixel diffusion at one wall-clock budget, and on a table and a time
series (data shipped in scikit-learn / statsmodels) against a Gaussian fit, on held-out data.

  mnist   pixel: the demo recipe for --minutes; latent: difflab train-autoencoder for --ae-minutes, then difflab train
          --latent for the rest of the same budget. Train steps/s, seconds to sample 1,000 images (20 NFE, the same
          sampler, interleaved), Inception FID of 1,000 samples against the MNIST test set and the judge score, and
          the bound in bits/dim on 256 test images (the latent run's: the whole model's).
  tables  scikit-learn's breast-cancer rows: an MLP autoencoder, an MLP diffusion on its latents, against a Gaussian
          fit (and an MLP diffusion on the rows themselves), scored on the held-out rows: the mean 1-D Wasserstein
          distance of the column marginals and the mean absolute error of the pairwise correlations.
  series  statsmodels' weekly CO2 windows (64 weeks): a 1-D convolutional autoencoder and an MLP diffusion on its
          latents, against a Gaussian fit of the windows (full covariance): marginal W1 of the values and of each
          window's peak-to-peak amplitude, autocorrelation (lags 1-32) and log-spectrum (frequencies 1-32 per 64
          weeks) errors on held-out windows.

  .venv/bin/python bench/latent.py --part tables,series
  .venv/bin/python bench/latent.py --part mnist --minutes 12 --ae-minutes 3
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import difflab  # noqa: E402
from difflab.config import build_config, dump_yaml  # noqa: E402
from difflab.data.build import build_dataset  # noqa: E402
from difflab.data.dataset import DataConfig  # noqa: E402
from difflab.demo import DEMO  # noqa: E402
from difflab.eval.likelihood import evaluate_nll  # noqa: E402
from difflab.train.run import load_run  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

OUT = ROOT / "bench" / "out" / "latent"
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
BOOTSTRAP = 200  # resamples of the held-out examples for the spread of a difference


def cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "difflab", *args]
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd, env=ENV).returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}")


def trained(run: Path) -> bool:
    return (run / "checkpoint.safetensors").exists()


def recipe(name: str, flags: list[str]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.yaml"
    path.write_text(dump_yaml(build_config(None, flags, base=DEMO)))
    return path


def steps_per_second(run: Path) -> float:
    s = json.loads((run / "summary.json").read_text())
    return s["steps"] / s["seconds"]["training"]


# -- MNIST ----------------------------------------------------------------------------------------------------------
def mnist(minutes: float, ae_minutes: float, num: int) -> list[dict]:
    from difflab.eval.features import get_extractor
    from difflab.eval.judge import judge_samples, load_or_train_judge
    from difflab.eval.quality import evaluate_images, image_array

    pixel, ae, latent = OUT / "pixel", OUT / "ae", OUT / "latent"
    if not trained(pixel):
        cli("train", "--config", str(recipe("pixel", [])), "--out", str(pixel), "--minutes", str(minutes),
            "--sample", "0", "--quiet")
    if not trained(ae):
        cli("train-autoencoder", "--out", str(ae), "--minutes", str(ae_minutes), "--quiet")
    if not trained(latent):  # the rest of the budget; a wider network, since a 7 x 7 latent is cheap
        cli("train", "--latent", str(ae), "--config", str(recipe("latent", [])), "--set", "unet.base_channels=64",
            "--out", str(latent), "--minutes", str(minutes - ae_minutes), "--sample", "0", "--quiet")
    load_or_train_judge(log=print)
    ref = image_array(build_dataset(DataConfig(name="mnist", split="test")).x)
    extractor = get_extractor("inception")
    pipes = {"pixel": difflab.load(pixel), "latent": difflab.load(latent)}
    seconds: dict[str, list[float]] = {k: [] for k in pipes}
    samples = {}
    for rep in range(2):  # interleaved: pixel, latent, pixel, latent
        for name, pipe in pipes.items():
            t0 = time.perf_counter()
            x = pipe.sample(num, sampler="dpmpp_3m", nfe=20, seed=rep, batch_size=250)
            seconds[name].append(time.perf_counter() - t0)
            samples.setdefault(name, []).append(image_array(x))
    rows = []
    for name, pipe in pipes.items():
        run_dir = pixel if name == "pixel" else latent
        fid = evaluate_images(samples[name], ref, extractor, ("fid",), "mnist test").rows[0]
        nll = evaluate_nll(load_run(run_dir), num_images=256, num_t=32, progress=False, log=lambda s: None)
        judge = judge_samples(samples[name][0][..., 0] if samples[name][0].ndim == 4 else samples[name][0])
        trained_s = json.loads((run_dir / "summary.json").read_text())["seconds"]["training"]
        ae_s = json.loads((ae / "metrics.jsonl").read_text().splitlines()[-1])["seconds"] if name == "latent" else None
        rows.append({"model": name, "train_steps_per_s": round(steps_per_second(run_dir), 2),
                     "train_s": round(trained_s), "autoencoder_train_s": ae_s,
                     "sample_s_per_1000": round(min(seconds[name]) * 1000 / num, 1),
                     "fid": round(fid.value, 2), "fid_sd": round(fid.spread, 2), "judge": round(judge.score, 3),
                     "bpd": round(nll.bpd(nll.total), 4), "bpd_se": round(nll.bpd(nll.stderr), 4),
                     "params": sum(p.numel() for p in pipe.net.parameters())})
        print(json.dumps(rows[-1]), flush=True)
    return rows


# -- non-image data -------------------------------------------------------------------------------------------------
def w1(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a, b))


def gaussian_fit(train: np.ndarray, n: int, seed: int) -> np.ndarray:
    flat = train.reshape(len(train), -1)
    g = np.random.default_rng(seed)
    return g.multivariate_normal(flat.mean(0), np.cov(flat.T), size=n).reshape(n, *train.shape[1:])


def table_stats(x: np.ndarray, test: np.ndarray) -> dict:
    marg = np.mean([w1(x[:, j], test[:, j]) for j in range(x.shape[1])])
    iu = np.triu_indices(x.shape[1], 1)
    corr = np.abs(np.corrcoef(x.T)[iu] - np.corrcoef(test.T)[iu]).mean()
    return {"marginal_w1": round(float(marg), 4), "correlation_mae": round(float(corr), 4)}


def series_stats(x: np.ndarray, test: np.ndarray) -> dict:
    def acf(w):  # mean autocorrelation of the windows, lags 1..32
        w = w[:, 0] - w[:, 0].mean(1, keepdims=True)
        den = (w * w).sum(1)
        return np.array([((w[:, k:] * w[:, :-k]).sum(1) / den).mean() for k in range(1, 33)])

    def spectrum(w):  # mean periodogram without the zero frequency (each window's mean is removed by construction)
        return np.log(np.mean(np.abs(np.fft.rfft(w[:, 0], axis=1)[:, 1:]) ** 2, axis=0))

    return {"value_w1": round(w1(x.ravel(), test.ravel()), 4),
            "amplitude_w1": round(w1(np.ptp(x[:, 0], 1), np.ptp(test[:, 0], 1)), 4),
            "acf_mae": round(float(np.abs(acf(x) - acf(test)).mean()), 4),
            "log_spectrum_mae": round(float(np.abs(spectrum(x) - spectrum(test)).mean()), 4)}


def non_image(name: str, data: str, num: int, ae_args: list[str], pixel_args: list[str] | None) -> list[dict]:
    ae, latent = OUT / f"{name}_ae", OUT / f"{name}_latent"
    if not trained(ae):
        cli("train-autoencoder", "--data", data, "--out", str(ae), *ae_args, "--quiet")
    if not trained(latent):
        cli("train", "--latent", str(ae), "--set", "mlp.hidden=256", "--out", str(latent), "--max-images", "400000",
            "--sample", "0", "--quiet")
    train = build_dataset(DataConfig(name=data)).x.numpy()
    test = build_dataset(DataConfig(name=data, split="test")).x.numpy()
    stats = table_stats if name == "tables" else series_stats
    sets = {"held-out data itself (training rows)": train,
            "Gaussian fit": gaussian_fit(train, num, 0),
            "latent diffusion": difflab.load(latent).sample(num, nfe=50, seed=0).numpy()}
    if pixel_args is not None:
        pixel = OUT / f"{name}_pixel"
        if not trained(pixel):
            cli("train", "--data", data, *pixel_args, "--out", str(pixel), "--max-images", "400000", "--sample", "0",
                "--quiet")
        sets["diffusion on the data itself"] = difflab.load(pixel).sample(num, nfe=50, seed=0).numpy()
    rows = []
    for k, x in sets.items():
        rows.append({"data": data, "model": k, "n": len(x), "n_test": len(test), **stats(x, test)})
        print(json.dumps(rows[-1]), flush=True)
    # latent diffusion - Gaussian fit, with its spread over bootstrap resamples of the held-out examples
    g = np.random.default_rng(0)
    diffs = []
    for _ in range(BOOTSTRAP):
        t = test[g.integers(0, len(test), len(test))]
        a, b = stats(sets["latent diffusion"], t), stats(sets["Gaussian fit"], t)
        diffs.append({m: a[m] - b[m] for m in a})
    rows.append({"data": data, "model": "latent diffusion - Gaussian fit (bootstrap of the held-out set)",
                 **{m: f"{rows[2][m] - rows[1][m]:+.4f} +- {np.std([d[m] for d in diffs]):.4f}" for m in diffs[0]}})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="tables,series,mnist")
    ap.add_argument("--minutes", type=float, default=12.0, help="MNIST: the wall-clock budget of each contender")
    ap.add_argument("--ae-minutes", type=float, default=3.0, help="MNIST: the autoencoder's share of the budget")
    ap.add_argument("--num", type=int, default=1000, help="samples per model")
    args = ap.parse_args()
    parts = args.part.split(",")
    results = {"machine": cpu_flags()}
    if "tables" in parts:
        results["tables"] = non_image("tables", "breast_cancer", args.num, ["--max-images", "200000"],
                                      ["--set", "arch=mlp", "--set", "mlp.dim=30", "--set", "mlp.hidden=256",
                                       "--set", "train.parameterization=v"])
    if "series" in parts:
        results["series"] = non_image("series", "co2", args.num, ["--max-images", "200000", "--set", "vae.width=32"],
                                      None)
    if "mnist" in parts:
        results["mnist"] = mnist(args.minutes, args.ae_minutes, args.num)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"results_{'_'.join(parts)}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
