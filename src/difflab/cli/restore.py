"""difflab restore (inverse problems with a diffusion prior, beside the classical baselines) and difflab edit
(SDEdit: noise an image to t0, denoise it with the run)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from typing import TYPE_CHECKING

from difflab.cli.common import log_for as _log
from difflab.errors import UserError
from difflab.inverse.names import METHODS, TASKS

if TYPE_CHECKING:
    from torch import Tensor

# the baselines' regularization, tuned on held-out validation images by bench/inverse.py (docs/inverse.md)
TV_LAMBDA = {"inpaint": 0.02, "superres": 0.01, "deblur": 0.005, "mri": 0.01, "ct": 0.1}
WIENER_NSR = 1e-3


def add_parsers(sub) -> None:
    r = sub.add_parser("restore", help="solve an inverse problem (inpaint, superres, deblur, mri, ct) with a run as prior",
                       description="Measure each input image with the task's operator (y = A x + noise), restore it "
                                   "with the run as the prior (--method) and with the classical baselines, and write "
                                   "restore.png (rows: truth, measurement, baselines, diffusion), restored.npz, "
                                   "measurement.npz and report.md with PSNR, SSIM and ||A x - y|| / ||y|| to --out.")
    r.add_argument("--task", required=True, choices=TASKS)
    r.add_argument("--run", required=True, help="a trained diffusion run of the images' size and channels")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", metavar="FILE", help="image files (PNG, JPEG, .npy, DICOM) to measure")
    src.add_argument("--data", help="held-out images of a dataset (its test split), e.g. brain, phantoms, mnist")
    src.add_argument("--measurement", metavar="NPZ", help="a measurement.npz written by an earlier restore (key y)")
    r.add_argument("--num", type=int, default=8, help="with --data: how many images (default 8)")
    r.add_argument("--method", default="dps", help=f"{', '.join(METHODS)} (default dps: defined for every task)")
    r.add_argument("--noise", type=float, default=0.01, help="measurement noise std in the [-1, 1] scale")
    r.add_argument("--mask", default="box", help="inpaint: box, random or a PNG (white = observed)")
    r.add_argument("--factor", type=int, default=4, help="superres: downsampling factor")
    r.add_argument("--blur", type=float, default=1.5, help="deblur: Gaussian sigma in pixels")
    r.add_argument("--acceleration", type=int, default=4, help="mri: columns / sampled columns")
    r.add_argument("--center-fraction", type=float, default=0.08, help="mri: fully sampled centre share")
    r.add_argument("--views", type=int, default=30, help="ct: projection angles over 180 degrees")
    r.add_argument("--resize", action="store_true", help="resize inputs to the run's image size")
    r.add_argument("--nfe", type=int, help="sampler budget (default: the run's)")
    r.add_argument("--sampler", help="any sampler (default: the run's; repaint uses a one-step sampler)")
    r.add_argument("--zeta", type=float, default=1.0, help="dps step size, dds data weight (1: the Gaussian likelihood "
                   "approximation; larger pulls harder towards the measurements)")
    r.add_argument("--jumps", type=int, default=5, help="repaint: resamplings per interval")
    r.add_argument("--iters", type=int, help="conjugate-gradient steps per call: dds (default 10), moment (default 5)")
    r.add_argument("--samples", type=int, default=1, help="restorations per image: K > 1 reports their mean (the "
                   "least-squares estimate) and adds their pixel standard deviation (an uncertainty map)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", help="output folder (default RUN/restore_TASK)")

    e = sub.add_parser("edit", help="SDEdit: noise an image (a rough painting, a stroke image) to t0, denoise it",
                       description="Image editing and image-to-image: each input is noised to t0 by the forward "
                                   "kernel and denoised by the run's sampler from there; small t0 keeps the input, "
                                   "large t0 keeps only its coarse layout. Writes edit.png (input, then --num "
                                   "variations) and edited.npz to --out.")
    e.add_argument("--input", nargs="+", required=True, metavar="FILE")
    e.add_argument("--run", required=True)
    e.add_argument("--t0", type=float, default=0.6, help="strength in (0, 1]: the time the edit starts from")
    e.add_argument("--num", type=int, default=4, help="variations per input")
    e.add_argument("--nfe", type=int, help="network evaluations over [0, t0] (default: the run's)")
    e.add_argument("--sampler")
    e.add_argument("--resize", action="store_true", help="resize inputs to the run's image size")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out")
    for p in (r, e):
        p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
        p.add_argument("--quiet", action="store_true", help="no progress output")


def load_images(paths: list[str], shape: tuple[int, ...], resize: bool) -> Tensor:
    """(N, C, H, W) in [-1, 1] from image files, .npy arrays or DICOM files, refused unless they fit `shape`."""
    import torch

    out = []
    for p in paths:
        out.append(_load_one(Path(p), shape[0]))
    C, H, W = shape
    fixed = []
    for p, x in zip(paths, out):
        if tuple(x.shape[-2:]) != (H, W):
            if not resize:
                raise UserError(f"{p} is {x.shape[-2]}x{x.shape[-1]} but the run makes {H}x{W} images: pass --resize "
                                "or use a run trained on this size")
            x = torch.nn.functional.interpolate(x[None], size=(H, W), mode="bilinear", antialias=True)[0]
        fixed.append(x.clamp(-1, 1))
    return torch.stack(fixed)


def _load_one(path: Path, channels: int) -> Tensor:
    """(C, H, W) in [-1, 1]."""
    import numpy as np
    import torch

    from difflab.data.medical import to_unit

    if not path.is_file():
        raise UserError(f"input {path} does not exist")
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except ValueError:
            raise UserError(f"{path} is not a plain .npy array (object arrays are refused)") from None
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3 or not np.issubdtype(a.dtype, np.number):
            raise UserError(f"{path} must hold an (H, W) or (C, H, W) numeric array, got {a.shape} {a.dtype}")
        x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1 if a.dtype == np.uint8 else a.astype(np.float32))
    elif path.suffix.lower() in (".dcm", ".dicom"):
        import pydicom

        try:
            x = torch.from_numpy(to_unit(pydicom.dcmread(str(path)).pixel_array))[None]
        except Exception as e:  # pydicom raises many kinds on a bad file
            raise UserError(f"{path} is not a readable DICOM image ({type(e).__name__})") from None
    else:  # PNG, JPEG, ...: the image-folder reader (16-bit greyscale scaled, one line on a bad file)
        from difflab.data.folder import read_image

        a = read_image(path, "L" if channels == 1 else "RGB", 0)  # (H, W, C) uint8
        x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    if x.shape[0] != channels:
        if x.shape[0] == 1 and channels == 3:
            x = x.expand(3, -1, -1)
        else:
            raise UserError(f"{path} has {x.shape[0]} channels but the run makes {channels}-channel images")
    return x


def view(op, y: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The measurement as an image for the figure: observed pixels, the upsampled low-resolution image, the blurred
    image, the k-space log-magnitude (centred) or the sinogram."""
    import torch

    from difflab.inverse.mri import MRI
    from difflab.inverse.operators import Blur, Inpaint

    if isinstance(op, Inpaint):
        return op.pinv(y) + (1 - op.mask) * -1.0
    if isinstance(op, Blur):
        return y
    if isinstance(op, MRI):
        mag = torch.fft.fftshift(torch.log1p(y.abs() * 10), dim=(-2, -1))
        v = mag / mag.flatten(1).amax(1).clamp_min(1e-6).reshape(-1, 1, 1, 1) * 2 - 1
    elif op.has_pinv:
        return op.pinv(y)
    else:  # a sinogram (views x N), its own range to [-1, 1] (ray sums of a [-1, 1] image are mostly negative)
        lo, hi = (v.reshape(-1, 1, 1, 1) for v in (y.flatten(1).amin(1), y.flatten(1).amax(1)))
        v = (y - lo) / (hi - lo).clamp_min(1e-6) * 2 - 1
    return torch.nn.functional.interpolate(v.float(), size=shape[-2:], mode="nearest").clamp(-1, 1)


FLAGS = {"noise_std": "--noise", "mask": "--mask", "factor": "--factor", "blur": "--blur",
         "acceleration": "--acceleration", "center_fraction": "--center-fraction", "views": "--views"}


def read_measurement(path: str, tc):
    """(y, the task settings it was measured with) from a measurement.npz: settings the file records replace the
    defaults; a flag given with another value than the file's is refused, as is another task (the mask seed comes
    from the file: it fixes the MRI and random-inpainting masks)."""
    import numpy as np
    import torch

    from difflab.inverse.restore import TaskConfig

    try:
        with np.load(path, allow_pickle=False) as f:
            y = torch.from_numpy(f["y"])
            saved = json.loads(str(f["settings"])) if "settings" in f.files else None
    except (OSError, ValueError, KeyError):
        raise UserError(f"{path} must be an .npz with the measurement under key y") from None
    if saved is None:  # an array from elsewhere: the flags describe it
        return y, tc
    if not isinstance(saved, dict) or set(saved) != set(asdict(tc)):
        raise UserError(f"{path} has unreadable task settings: write it again with difflab restore")
    if saved["task"] != tc.task:
        raise UserError(f"{path} was measured for --task {saved['task']}, not {tc.task}")
    default = asdict(TaskConfig(tc.task))
    for key, flag in FLAGS.items():
        mine = getattr(tc, key)
        if mine != default[key] and mine != saved[key]:
            raise UserError(f"{path} was measured with {flag} {saved[key]}, not {mine}: drop {flag} (the file records "
                            "how it was measured)")
    return y, TaskConfig(**saved)


def cmd_restore(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from difflab.eval.grid import save_grid
    from difflab.inverse.metrics import quality
    from difflab.inverse.restore import TaskConfig, baselines, build_operator, posterior_mean
    from difflab.pipeline import load

    log = _log(args)
    for flag in ("num", "jumps", "samples", "iters"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag} must be at least 1, got {value}")
    if args.method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    tc = TaskConfig(args.task, args.noise, args.mask, args.factor, args.blur, args.acceleration, args.center_fraction,
                    args.views, args.seed)
    pipe = load(args.run)
    if not pipe.spec.is_image:
        raise UserError(f"{args.run} was trained on points, not images: restore needs an image run")
    truth = None
    if args.measurement:
        y, tc = read_measurement(args.measurement, tc)
        op = build_operator(tc, tuple(pipe.shape))
        y = op.check_measurement(y if y.ndim == 4 else y[None])
    else:
        op = build_operator(tc, tuple(pipe.shape))
        if args.data:
            from difflab.data.build import build_dataset
            from difflab.data.dataset import DataConfig

            truth = build_dataset(DataConfig(name=args.data, split="test", limit=args.num,
                                             image_size=pipe.shape[-1] if args.resize else 0)).x[: args.num]
            if tuple(truth.shape[1:]) != tuple(pipe.shape):
                raise UserError(f"{args.data} images are {tuple(truth.shape[1:])} but the run makes {tuple(pipe.shape)}: "
                                "pass --resize or use a run trained on them")
        else:
            truth = load_images(args.input, tuple(pipe.shape), args.resize)
        y = op.measure(truth, torch.Generator().manual_seed(args.seed))
    out = Path(args.out or Path(args.run) / f"restore_{args.task}")
    k = args.samples
    log(f"{args.task}: {len(y)} measurement(s) of {op.name}, noise {tc.noise_std:g}; restoring with {args.method}"
        + (f", the mean of {k} samples each" if k > 1 else ""))
    restored, std = posterior_mean(pipe, op, y, args.method, k, nfe=args.nfe, sampler=args.sampler, seed=args.seed,
                                   zeta=args.zeta, jumps=args.jumps, iters=args.iters, log=log,
                                   progress=not args.quiet)
    base = baselines(op, y, TV_LAMBDA[args.task], WIENER_NSR)
    name = f"diffusion ({args.method})" if k == 1 else f"diffusion ({args.method}, mean of {k})"
    results = {**base, name: restored}
    shown = list(results.values()) + ([std * (2 / std.amax().clamp_min(1e-6)) - 1] if k > 1 else [])
    rows = [r for r in ([truth] if truth is not None else []) + [view(op, y, pipe.shape)] + shown]
    cols = min(len(y), 8)
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused or failed restoration leaves no folder behind
    save_grid(torch.cat([r[:cols].cpu() for r in rows]), out / "restore.png", nrow=cols)
    np.savez_compressed(out / "restored.npz", images=restored.numpy(), **({"std": std.numpy()} if k > 1 else {}))
    np.savez_compressed(out / "measurement.npz", y=y.numpy(), settings=np.array(json.dumps(asdict(tc))))
    lines = [f"# {args.task}: {op.name}, noise {tc.noise_std:g}, {len(y)} image(s), run {args.run}", "",
             "| method | PSNR (dB) | SSIM | consistency ||A x - y|| / ||y|| |", "|---|---:|---:|---:|"]
    report = {}
    for name, x in results.items():
        cons = float(op.consistency(x, y).mean())
        if truth is not None:
            psnr, ssim = quality(x, truth)
            report[name] = {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "consistency": cons}
            lines.append(f"| {name} | {psnr.mean():.2f} | {ssim.mean():.3f} | {cons:.3f} |")
        else:
            report[name] = {"consistency": cons}
            lines.append(f"| {name} | - | - | {cons:.3f} |")
    rows_said = "truth, " if truth is not None else ""
    lines += ["", f"restore.png rows: {rows_said}measurement, {', '.join(results)}"
              + (f", the pixel std of the {k} samples (white: {float(std.amax()):.3f})" if k > 1 else "")]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print("\n".join(lines))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from difflab.eval.grid import save_grid
    from difflab.pipeline import load

    log = _log(args)
    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    pipe = load(args.run)
    x = load_images(args.input, tuple(pipe.shape), args.resize)
    init = x.repeat_interleave(args.num, 0)  # each input num times
    sc = pipe.sample_config(len(init), sampler=args.sampler, nfe=args.nfe, seed=args.seed)
    plan = pipe.plan(sc, log, t_start=args.t0)
    log(f"editing {len(x)} image(s) from t0 = {args.t0:g}: {plan.describe()}")
    if args.t0 >= 1:  # the forward kernel at t = 1 forgets its input: plain samples
        log("t0 = 1 starts from pure noise: the edits are samples that do not depend on the input")
    edited = pipe.draw(plan, init=init if args.t0 < 1 else None, log=log, progress=not args.quiet)
    out = Path(args.out or Path(args.run) / "edit")
    out.mkdir(parents=True, exist_ok=True)
    grid = torch.cat([torch.cat([x[k:k + 1], edited[k * args.num:(k + 1) * args.num]]) for k in range(len(x))])
    save_grid(grid, out / "edit.png", nrow=args.num + 1)
    np.savez_compressed(out / "edited.npz", images=edited.numpy())
    log(f"wrote {out / 'edit.png'} (each row: the input, then {args.num} edits) and edited.npz")
    return 0
