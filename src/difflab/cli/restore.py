"""difflab restore (inverse problems with a diffusion prior, beside the classical baselines) and difflab edit
(SDEdit: noise an image to t0, denoise it with the run)."""
from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path

from difflab.cli.common import common, log_for as _log
from difflab.errors import UserError
from difflab.inverse.names import METHODS, TASKS


def register(sub) -> None:
    r = sub.add_parser("restore", help="solve an inverse problem (inpaint, superres, deblur, mri, ct) with a run as prior",
                       description="Restore with the run as the prior (--method) and with the classical baselines: "
                                   "clean images (--input, --data) are first measured by the task's operator (y = A x "
                                   "+ noise), for a benchmark with PSNR and SSIM against them; an input that is "
                                   "already degraded (--measurement) is restored as it is, without a truth. Writes "
                                   "restore.png (rows: truth if any, measurement, baselines, diffusion), "
                                   "restored.npz, measurement.npz and report.md (PSNR, SSIM, ||A x - y|| / ||y||) to "
                                   "--out.")
    r.add_argument("--task", required=True, choices=TASKS)
    r.add_argument("--run", required=True, help="a trained diffusion run of the images' size and channels")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", metavar="FILE", help="image files (PNG, JPEG, .npy, DICOM) to measure")
    src.add_argument("--data", help="held-out images of a dataset (its test split), e.g. brain, phantoms, mnist")
    src.add_argument("--measurement", metavar="FILE",
                     help="an input that is already degraded (no ground truth): measurement.npz of an earlier restore, "
                          "or a file made elsewhere: superres a low-resolution image (factor from the size ratio), "
                          "inpaint an image with --mask FILE, deblur a blurred image with --kernel K.npy or --blur, "
                          "mri complex k-space .npy (numpy.fft.fft2 order, norm='ortho') with --mask (columns; default: "
                          "the non-zero ones), ct a sinogram .npy (views, N) with --angles A.npy (degrees; default: "
                          "equally spaced over 180)")
    r.add_argument("--num", type=int, default=8, help="with --data: how many images (default 8)")
    r.add_argument("--method", default="dps", help=f"{', '.join(METHODS)} (default dps: defined for every task)")
    r.add_argument("--noise", type=float, help="measurement noise std in the [-1, 1] scale (default: 0.01; an "
                                                 "external --measurement: estimated from it)")
    r.add_argument("--mask", default="box", help="inpaint: box, random or a PNG (white = observed); with an external "
                                                 "--measurement: its mask file (mri: a 0/1 .npy of the sampled columns)")
    r.add_argument("--kernel", metavar="NPY", help="deblur with an external --measurement: the blur kernel (odd square "
                                                   "array, centred)")
    r.add_argument("--angles", metavar="NPY", help="ct with an external --measurement: the view angles in degrees")
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
        common(p, config=False)
    r.set_defaults(handler=cmd_restore)
    e.set_defaults(handler=cmd_edit)



def cmd_restore(args: argparse.Namespace) -> int:
    import torch

    from difflab.inverse.external import read_external
    from difflab.inverse.inputs import load_images, read_measurement
    from difflab.inverse.report import write_restoration
    from difflab.inverse.restore import TaskConfig, build_operator, posterior_mean
    from difflab.pipeline import load

    log = _log(args)
    for flag in ("num", "jumps", "samples", "iters"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag} must be at least 1, got {value}")
    if args.method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    tc = TaskConfig(args.task, 0.01 if args.noise is None else args.noise, args.mask, args.factor, args.blur,
                    args.acceleration, args.center_fraction, args.views, args.seed)
    external = bool(args.measurement) and not args.measurement.lower().endswith(".npz")
    for flag in ("kernel", "angles"):
        if getattr(args, flag) and not external:
            raise UserError(f"--{flag} describes an external --measurement file (not .npz): drop it or pass one")
    pipe = load(args.run)
    if not pipe.spec.is_image:
        raise UserError(f"{args.run} was trained on points, not images: restore needs an image run")
    truth, settings = None, asdict(tc)
    if external:
        y, op = read_external(args.measurement, args.task, tuple(pipe.shape), args.noise, log, mask=args.mask,
                              kernel=args.kernel, blur=args.blur, angles=args.angles)
        tc, settings = replace(tc, noise_std=op.noise_std), None  # a kernel, mask or angles no flag can record
    elif args.measurement:
        y, tc = read_measurement(args.measurement, tc)
        op = build_operator(tc, tuple(pipe.shape))
        y = op.check_measurement(y if y.ndim == 4 else y[None])
        settings = asdict(tc)
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
    k = args.samples
    log(f"{args.task}: {len(y)} measurement(s) of {op.name}, noise {tc.noise_std:g}; restoring with {args.method}"
        + (f", the mean of {k} samples each" if k > 1 else ""))
    restored, std = posterior_mean(pipe, op, y, args.method, k, nfe=args.nfe, sampler=args.sampler, seed=args.seed,
                                   zeta=args.zeta, jumps=args.jumps, iters=args.iters, log=log,
                                   progress=not args.quiet)
    results = {**op.baselines(y), f"diffusion ({args.method})" if k == 1 else
               f"diffusion ({args.method}, mean of {k})": restored}
    title = f"# {args.task}: {op.name}, noise {tc.noise_std:g}, {len(y)} image(s), run {args.run}"
    lines = write_restoration(Path(args.out or Path(args.run) / f"restore_{args.task}"), op, y, truth, results,
                              std if k > 1 else None, title, settings=settings)
    print("\n".join(lines))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from difflab.eval.grid import save_grid
    from difflab.inverse.inputs import load_images
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
