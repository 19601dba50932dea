"""difflab sample (Algorithm 2 or any sampler, with classes, prompts and guidance) and difflab export-text-encoder
(a text-to-image run's encoder as a pretrained one)."""
from __future__ import annotations

import argparse
from pathlib import Path

from difflab.cli.common import common, log_for as _log
from difflab.errors import UserError


def register(sub) -> None:
    """The sample and export-text-encoder subcommands; `common` adds --threads / --quiet (and --set)."""
    s = sub.add_parser("sample", help="draw samples from a trained run (Algorithm 2 or any other sampler)",
                       description="Sample from a run folder's checkpoint with Algorithm 2 or any sampler on any time "
                                   "grid; writes NAME.png and NAME.npz.")
    s.add_argument("--run", required=True, help="run folder (or its checkpoint.safetensors)")
    s.add_argument("--out", help="output folder (default: the run folder)")
    s.add_argument("--name", default="samples", help="output file stem (default: samples)")
    s.add_argument("--num", type=int, help="number of samples (sets sample.num_samples)")
    s.add_argument("--sampler", help="auto (default: the most accurate at the NFE, 20 if unset), ancestral "
                                     "(Algorithm 2: every step of the table), ddim (50), euler_maruyama (1000), "
                                     "pc (1000), langevin (200), heun (99), rk45, dpmpp_2m (20), dpmpp_3m (20), "
                                     "dpmpp_pc (20), edm (35); in brackets the NFE used when --nfe and --steps are "
                                     "not given (sets sample.sampler; see docs/samplers.md)")
    s.add_argument("--grid", help="time grid: uniform, karras, logsnr, focus, stable, discrete (default: the "
                                  "sampler's usual one), or calibrated: fitted to this model first (deterministic "
                                  "samplers; costs ~100x the sampling of 64 images)")
    s.add_argument("--nfe", type=int, help="network evaluations per sample, at least 2; sets the grid size; without "
                                          "--sampler it also picks the sampler most accurate at that budget "
                                          "(sets sample.nfe)")
    s.add_argument("--eta", type=float, help="ddim: 0 deterministic .. 1 ancestral (sets sample.eta)")
    s.add_argument("--steps", type=int, help="grid intervals instead of --nfe; 1..T on a discrete schedule "
                                            "(sets sample.steps)")
    s.add_argument("--seed", type=int, help="sample k uses noise stream (seed, k) (sets sample.seed)")
    s.add_argument("--variance", choices=["posterior", "beta", "learned", "analytic"],
                   help="sigma_t^2 of Algorithm 2 (default: learned if the run learned it, else analytic: the "
                        "posterior variance plus x0's spread, right at any stride)")
    s.add_argument("--no-clip", action="store_true", help="do not clip predicted x0 to [-1, 1]")
    s.add_argument("--live", action="store_true", help="use the live weights instead of the EMA")
    s.add_argument("--schedule", choices=["linear", "cosine", "vp", "subvp", "ve", "edm"],
                   help="sample on another schedule's grid (the network sees only the noise level, so one trained "
                        "under the linear table samples under the cosine table or an SDE; default: the run's)")
    s.add_argument("--class", dest="classes", metavar="K[,K...]",
                   help="the class(es) to sample by name (a folder's sub-folder, e.g. circle,square) or index, "
                        "cycled over the samples (sets sample.classes): a class-conditional run, or an unconditional "
                        "one with --classifier")
    s.add_argument("--prompt", dest="prompts", action="append", metavar="TEXT",
                   help="a caption to draw, for a text-to-image run (text.encoder set); repeat for several, cycled "
                        "over the samples (sets sample.prompts), e.g. --prompt 'a 3 next to a 7'")
    s.add_argument("--guidance", metavar="S[,S...]",
                   help="guidance scale: classifier-free guidance of a conditional run (class or text) trained with "
                        "train.cond_dropout > 0 (w = 1: the conditional model, w > 1 sharper), or with --classifier "
                        "classifier guidance (1: the exact Bayes rule); several scales: one row each in NAME_grid.png")
    s.add_argument("--classifier", metavar="RUN", help="a noise-conditional classifier run (difflab train-classifier) "
                                                       "for classifier guidance")
    s.add_argument("--guidance-interval", metavar="LO,HI",
                   help="guide only at noise levels sigma / alpha in [LO, HI] (Kynkaanniemi et al. 2024), e.g. 0.3,5; "
                        "elsewhere the conditional model alone")
    common(s, config=False)

    x = sub.add_parser("export-text-encoder", help="write a text-to-image run's text encoder as a pretrained encoder",
                       description="Write the text encoder a run trained jointly (and its projection) as a pretrained "
                                   "encoder folder: encoder.pt (TorchScript, token ids (B, L) -> features (B, L, d)) and "
                                   "tokenizer.json. Another run conditions on it, frozen, with --set "
                                   "text.encoder=pretrained --set text.path=DIR.")
    x.add_argument("--run", required=True, help="a text-to-image run folder (trained with text.encoder set)")
    x.add_argument("--out", required=True, help="folder to write encoder.pt and tokenizer.json into")
    common(x, config=False)
    s.set_defaults(handler=cmd_sample)
    x.set_defaults(handler=cmd_export_text)



def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from difflab.eval.grid import save_grid
    from difflab.pipeline import load
    from difflab.runs import sample_to

    if not args.name or Path(args.name).name != args.name or args.name.startswith("."):
        raise UserError(f"--name must be a plain file stem like 'samples', got {args.name!r}")
    pipe = load(args.run, schedule=args.schedule, live=True if args.live else None)
    sc = pipe.sample_config(args.num, sampler=args.sampler, nfe=args.nfe, steps=args.steps, grid=args.grid,
                            seed=args.seed, variance=args.variance, eta=args.eta, classes=_classes(args.classes),
                            prompts=tuple(args.prompts) if args.prompts else None, clip=False if args.no_clip else None)
    _say_unknown_words(pipe, sc.prompts, _log(args))
    out = args.out or (args.run if Path(args.run).is_dir() else str(Path(args.run).parent))
    scales = _floats(args.guidance, "--guidance") if args.guidance is not None else (None,)
    interval = _floats(args.guidance_interval, "--guidance-interval", 2) if args.guidance_interval else None
    if args.guidance is None and (args.classifier or interval):
        scales = (1.0,) if args.classifier else scales
        if interval:
            raise UserError("--guidance-interval needs a scale: pass --guidance S")
    rows = []
    for scale in scales:
        guidance, cond = pipe.guidance(sc, scale, classifier=args.classifier, interval=interval) \
            if scale is not None else (None, None)
        name = args.name if len(scales) == 1 else f"{args.name}_w{scale:g}"
        rows.append(sample_to(pipe, out, sc, name=name, log=_log(args), progress=not args.quiet, guidance=guidance,
                              cond=cond))
    if len(rows) > 1:  # one row per scale, the same seeds and classes in every row
        cols = min(sc.num_samples, 10)
        path = save_grid(torch.cat([r[:cols] for r in rows]), Path(out) / f"{args.name}_grid.png", nrow=cols)
        what = f"prompts {'; '.join((list(sc.prompts) * cols)[:cols])}" if sc.prompts else \
            f"classes {', '.join(str(c) for c in (list(sc.classes) * cols)[:cols])}"
        _log(args)(f"wrote {path}: rows = guidance {', '.join(f'{v:g}' for v in scales)}; columns = {what}")
    return 0


def _say_unknown_words(pipe, prompts: tuple[str, ...], log) -> None:
    """Notes on a text-to-image run's prompts: words outside a word encoder's vocabulary (read as unknown), and
    prompts that name no digit (drawn all the same; the judge has nothing to check)."""
    from difflab.conditions.language import digits_in

    text = getattr(pipe.net, "text", None)
    if text is None:
        return
    unknown = sorted({w for p in prompts for w in text.tokenizer.unknown(p)}) if text.tokenizer is not None else []
    if unknown:
        log(f"note: {', '.join(repr(w) for w in unknown)} not in the model's vocabulary: read as unknown words")
    for p in dict.fromkeys(prompts):
        if not digits_in(p):
            log(f"note: {p!r} names no digit (0-9 or zero..nine) to check the drawing against: drawn as it is")


def _floats(text: str, flag: str, count: int | None = None) -> tuple[float, ...]:
    """'1,2.5' -> (1.0, 2.5), finite numbers (exactly `count` of them if given)."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if not vals or any(v != v or v in (float("inf"), float("-inf")) for v in vals) or \
            (count is not None and len(vals) != count):
        want = f"{count} numbers like 0.3,5" if count else "numbers like 3 or 1,2,4"
        raise UserError(f"{flag} takes {want}, got {text!r}")
    return vals


def _classes(text: str | None) -> tuple[str, ...] | None:
    """'7' or 'circle,square' -> ('7',) or ('circle', 'square'): names or indices, resolved against the run."""
    if text is None:
        return None
    names = tuple(v.strip() for v in text.split(","))
    if not all(names):
        raise UserError(f"--class takes class names or indices like 7, 0,1,2 or circle,square, got {text!r}")
    return names


def cmd_export_text(args: argparse.Namespace) -> int:
    from difflab.conditions.text import export_encoder
    from difflab.pipeline import load

    pipe = load(args.run)
    if getattr(pipe.net, "text", None) is None:
        raise UserError(f"{args.run} has no text encoder (trained without text.encoder): export from a text-to-image run")
    out = export_encoder(pipe.net.text, args.out)
    _log(args)(f"wrote {out / 'encoder.pt'} and {out / 'tokenizer.json'}: use with --set text.encoder=pretrained "
               f"--set text.path={out}")
    return 0
