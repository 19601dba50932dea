"""difflab import-diffusers / export-diffusers: the models people already have, both ways (interop/)."""
from __future__ import annotations

import argparse
from pathlib import Path

from difflab.cli.common import common, log_for as _log
from difflab.errors import UserError


def register(sub) -> None:
    i = sub.add_parser("import-diffusers", help="a diffusers UNet2DModel folder -> a difflab run every command takes",
                       description="Read a folder written by diffusers' save_pretrained (model_index.json, "
                                   "unet/config.json + diffusion_pytorch_model.safetensors, scheduler/"
                                   "scheduler_config.json) and write it as a difflab run: sample with every sampler, "
                                   "eval nll / fid, guidance, restore and edit then take it. The beta table, the "
                                   "prediction type and the U-Net are mapped field by field; what cannot be mapped is "
                                   "refused in one line. Weights are read with safetensors (a pickled .bin is never "
                                   "opened). difflab.load(FOLDER) reads such a folder directly.")
    i.add_argument("folder", help="the diffusers folder (a pipeline's, or a bare UNet folder beside scheduler/)")
    i.add_argument("--out", required=True, help="the run folder to write")
    i.add_argument("--data", help="the dataset the model was trained on, for eval and restore (e.g. mnist; folder or "
                                  "npz with --data-path); without: a run with no data")
    i.add_argument("--data-path", help="folder of images or .npz file (with --data folder / npz)")
    common(i, example="data.image_size=32")
    i.set_defaults(handler=cmd_import)

    e = sub.add_parser("export-diffusers", help="a difflab U-Net run -> a folder DDPMPipeline.from_pretrained loads",
                       description="Write a difflab diffusion U-Net run (pixel space, unconditional or "
                                   "class-conditional, a beta table, eps / x0 / v) as a diffusers DDPMPipeline folder: "
                                   "UNet2DModel weights in safetensors, its config, a DDPMScheduler config. A run "
                                   "UNet2DModel cannot compute (text, super-resolution, latent, an MLP, an SDE "
                                   "schedule) is refused in one line saying why.")
    e.add_argument("run", help="the difflab run folder (or its checkpoint.safetensors)")
    e.add_argument("--out", required=True, help="the folder to write (new or empty)")
    e.add_argument("--live", action="store_true", help="the live weights instead of the EMA")
    common(e, config=False)
    e.set_defaults(handler=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from difflab.config import apply_overrides, from_dict
    from difflab.data.dataset import DataConfig
    from difflab.interop.diffusers_runs import import_diffusers

    data = None
    if args.set and not (args.data or args.data_path):
        raise UserError("--set data.KEY=VALUE describes the data of --data: name the dataset with --data")
    if args.data or args.data_path:
        d = {"name": args.data or "folder"}
        d.update({"path": args.data_path} if args.data_path else {})
        sets = [s for s in args.set if s.startswith("data.")]
        if len(sets) != len(args.set):
            raise UserError("import-diffusers takes --set data.KEY=VALUE only: the model's own settings come from "
                            "its folder")
        data = from_dict(DataConfig, apply_overrides({"data": d}, sets)["data"], "data.")
    out = import_diffusers(args.folder, args.out, data)
    from difflab.train.run import load_run

    run = load_run(out)
    c, u = run.cfg, run.cfg.unet
    log = _log(args)
    log(f"imported {args.folder}: UNet2DModel {sum(p.numel() for p in run.net.parameters()) / 1e6:.2f}M parameters, "
        f"{'x'.join(map(str, run.spec.shape))}, levels {[u.base_channels * m for m in u.channel_mult]}, "
        f"attention at {list(u.attention_levels)}; {c.schedule.kind} table T={c.schedule.T}, predicts "
        f"{c.train.parameterization}" + (f", {u.num_classes} classes" if u.num_classes else ""))
    log(f"wrote {Path(out) / 'checkpoint.safetensors'}: try difflab sample --run {out} --nfe 10")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from difflab.interop.diffusers_runs import export_diffusers
    from difflab.pipeline import load

    out = export_diffusers(load(args.run, live=args.live), args.out)
    _log(args)(f"wrote {out} (DDPMPipeline): DDPMPipeline.from_pretrained({str(out)!r}) loads it")
    return 0
