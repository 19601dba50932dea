"""What the studio's jobs do, through the library's own API only: `Pipeline.sample` (with a step callback for the
trajectory), `Pipeline.plan` / `draw` from given images (SDEdit), and the restore API (`build_operator`,
`posterior_sample`, the operator's classical baselines). Each returns what the page shows and writes its arrays
into the job's own folder under the studio's output folder."""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from difflab.errors import UserError
from difflab.eval.grid import grid_array
from difflab.eval.samples import save_samples
from difflab.inverse.metrics import quality
from difflab.inverse.names import METHODS, TASKS
from difflab.inverse.restore import TaskConfig, build_operator, posterior_sample
from difflab.operators import Inpaint
from difflab.studio.jobs import Job

MAX_SAMPLES, MAX_NFE = 64, 250  # one request's work is bounded: the queue stays fair
UPSCALE = 4  # small images are shown 4x, pixel for pixel


def png(x: Tensor, nrow: int | None = None) -> str:
    """A data URI of a PNG grid of images (B, C, H, W) in [-1, 1] (a latent's first channels; more than 3 shown as
    their first)."""
    x = x.detach().float().cpu()
    if x.shape[1] not in (1, 3):
        x = x[:, :1]
    arr = grid_array(x.clamp(-1, 1), nrow=nrow, upscale=UPSCALE)
    arr = arr[..., 0] if arr.shape[-1] == 1 else arr  # (H, W) grey or (H, W, 3)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass(frozen=True)
class SampleRequest:
    """One sampling job's settings, checked before it queues."""

    num: int = 8
    sampler: str = "auto"
    nfe: int = 20
    grid: str = "auto"
    seed: int = 0
    classes: tuple[str, ...] = ()
    prompt: str = ""
    guidance: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.num <= MAX_SAMPLES:
            raise UserError(f"num must be 1..{MAX_SAMPLES}, got {self.num}")
        if not 1 <= self.nfe <= MAX_NFE:
            raise UserError(f"nfe must be 1..{MAX_NFE}, got {self.nfe}")
        if not (0 <= self.guidance <= 20):
            raise UserError(f"guidance must be a scale in [0, 20], got {self.guidance}")


def sample_settings(pipe, req: SampleRequest):
    """The run's sample config for a request, checked (sampler, grid, class names, prompt) before anything queues."""
    sc = pipe.sample_config(req.num, sampler=req.sampler, nfe=req.nfe, grid=req.grid, seed=req.seed,
                            classes=req.classes or None, prompts=(req.prompt,) if req.prompt else None)
    pipe.condition(sc)  # a class or prompt the run cannot take: refused now, in one line
    return sc


def sample_job(pipe, req: SampleRequest):
    """work(job, out): draw req.num samples, streaming x_t and the predicted x0 at every step; write samples.png /
    samples.npz into `out`. The request is checked now."""
    sc = sample_settings(pipe, req)

    def work(job: Job, out: Path) -> dict:
        plan = pipe.plan(sc, lambda s: None)
        steps = len(plan.grid) - 1
        job.emit({"type": "plan", "sampler": plan.config.sampler, "grid": plan.grid_name, "nfe": plan.nfe,
                  "steps": steps, "seconds": round(plan.seconds, 1)})

        def callback(i: int, t: Tensor, x: Tensor, pred) -> None:
            x0 = pipe.decode(pred.x0, req.seed) if pipe.codec is not None else pred.x0
            job.emit({"type": "step", "i": i + 1, "of": steps, "t": float(t), "xt": png(x), "x0": png(x0)})

        guidance = cond = None
        if req.guidance > 0:
            guidance, cond = pipe.guidance(sc, req.guidance)
        x = pipe.draw(plan, cond=cond, guidance=guidance, callback=callback)
        return save(pipe, out, x, {"request": req.__dict__, "sampler": plan.config.sampler, "grid": plan.grid_name})
    return work


def save(pipe, out: Path, x: Tensor, meta: dict) -> dict:
    """samples.png and samples.npz as `difflab sample` writes them, and settings.json, in the job's folder; what the
    page shows."""
    save_samples(x, out, "samples", pipe.data_spec, pipe.cfg.data)
    (out / "settings.json").write_text(json.dumps(meta, default=str, indent=1))
    return {"grid": png(x), "shape": list(x.shape), "files": ["samples.png", "samples.npz"]}


@dataclass(frozen=True)
class RestoreRequest:
    """A restoration (an operator's task and a posterior method) or an edit (SDEdit from a drawn image)."""

    task: str = "inpaint"  # one of TASKS, or edit
    method: str = "project"
    nfe: int = 20
    seed: int = 0
    strength: float = 0.6  # edit: t0, the time the edit starts from
    noise: float = 0.01  # measurement noise

    def __post_init__(self) -> None:
        if self.task not in TASKS + ("edit",):
            raise UserError(f"task must be one of {', '.join(TASKS + ('edit',))}, got {self.task!r}")
        if self.method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 1 <= self.nfe <= MAX_NFE:
            raise UserError(f"nfe must be 1..{MAX_NFE}, got {self.nfe}")
        if not 0 < self.strength <= 1:
            raise UserError(f"strength must lie in (0, 1], got {self.strength}")
        if not 0 <= self.noise <= 1:
            raise UserError(f"noise must lie in [0, 1], got {self.noise}")


def restore_job(pipe, req: RestoreRequest, truth: Tensor, mask: Tensor | None):
    """work(job, out): measure `truth` (1, C, H, W) with the task's operator (inpaint: the drawn mask, 1 = kept),
    restore it by the method, and show input, baselines, result and truth with their PSNR; edit: SDEdit of `truth`
    from t0 = strength."""
    if tuple(truth.shape[1:]) != tuple(pipe.data_spec.shape):
        raise UserError(f"the image is {tuple(truth.shape[1:])}; the run takes {tuple(pipe.data_spec.shape)}")

    def work(job: Job, out: Path) -> dict:
        if req.task == "edit":
            return _edit(pipe, req, truth, out, job)
        tc = TaskConfig(task=req.task, noise_std=req.noise, seed=req.seed)
        op = Inpaint(mask, tuple(truth.shape[1:]), req.noise) if req.task == "inpaint" and mask is not None \
            else build_operator(tc, tuple(truth.shape[1:]))
        y = op.measure(truth, torch.Generator().manual_seed(req.seed))
        job.emit({"type": "plan", "task": req.task, "method": req.method})

        def callback(i: int, t: Tensor, x: Tensor, pred) -> None:
            job.emit({"type": "step", "i": i + 1, "t": float(t), "xt": png(x), "x0": png(pred.x0)})

        x = posterior_sample(pipe, op, y, req.method, nfe=req.nfe, seed=req.seed, callback=callback)
        panels = [("measurement", op.view(y))] + list(op.baselines(y).items()) + [(f"difflab ({req.method})", x),
                                                                                  ("truth", truth)]
        shown = []
        for name, img in panels:
            img = img.reshape(truth.shape).clamp(-1, 1)
            p = None if name in ("truth", "measurement") else float(quality(img, truth)[0][0])
            shown.append({"name": name, "image": png(img), "psnr": p})
        result = save(pipe, out, x, {"request": req.__dict__})
        np.savez_compressed(out / "measurement.npz", y=y.numpy())
        return {**result, "panels": shown, "files": result["files"] + ["measurement.npz"]}
    return work


def _edit(pipe, req: RestoreRequest, image: Tensor, out: Path, job: Job) -> dict:
    sc = pipe.sample_config(1, nfe=req.nfe, seed=req.seed)
    plan = pipe.plan(sc, lambda s: None, t_start=req.strength)
    job.emit({"type": "plan", "task": "edit", "sampler": plan.config.sampler, "t0": req.strength})

    def callback(i: int, t: Tensor, x: Tensor, pred) -> None:
        job.emit({"type": "step", "i": i + 1, "t": float(t), "xt": png(x), "x0": png(pred.x0)})

    x = pipe.draw(plan, init=image if req.strength < 1 else None, callback=callback)
    result = save(pipe, out, x, {"request": req.__dict__})
    return {**result, "panels": [{"name": "drawn", "image": png(image), "psnr": None},
                                 {"name": f"SDEdit (t0 = {req.strength:g})", "image": png(x), "psnr": None}]}


def read_upload(data: bytes, shape: tuple[int, ...], what: str, max_bytes: int = 2_000_000) -> Tensor:
    """An uploaded PNG / JPEG as (1, C, H, W) in [-1, 1] at the run's size; a file too big, not an image, or of
    another size is refused in one line."""
    if len(data) > max_bytes:
        raise UserError(f"the {what} is {len(data) / 1e6:.1f} MB; at most {max_bytes / 1e6:.0f} MB")
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except Exception:  # noqa: BLE001 - PIL raises many kinds for non-images
        raise UserError(f"the {what} is not an image PIL can read (PNG or JPEG)") from None
    c, h, w = shape
    if im.size[0] * im.size[1] > 4096 * 4096:
        raise UserError(f"the {what} is {im.size[0]} x {im.size[1]} pixels; at most 4096 x 4096")
    im = im.convert("L" if c == 1 else "RGB")
    if im.size != (w, h):
        if im.size[0] % w or im.size[1] % h or im.size[0] // w != im.size[1] // h:
            raise UserError(f"the {what} is {im.size[0]} x {im.size[1]}; the run takes {w} x {h} images (or a whole "
                            "multiple of that size, as the page draws them)")
        im = im.resize((w, h), Image.Resampling.BOX)
    arr = np.asarray(im, dtype=np.float32).reshape(h, w, c).transpose(2, 0, 1)
    return torch.from_numpy(arr / 127.5 - 1)[None]
