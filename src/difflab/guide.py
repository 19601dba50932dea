"""Guidance for a trained run: classifier-free guidance of the run itself (its own unconditional model), or classifier
guidance by a noise-conditional classifier run; each refused in one line where the run cannot do it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from difflab.condition import LABEL, Condition
from difflab.errors import UserError
from difflab.guidance import ClassifierFreeGuidance, ClassifierGuidance, check_scale
from difflab.losses.classifier import classifier_logits
from difflab.prediction import Denoiser
from difflab.train.build import model_classes
from difflab.train.run import load_run

Transform = Callable[[Denoiser], Denoiser]


def guidance_for(pipe, sc, scale: float, *, classifier: str | Path | None = None,
                 interval: tuple[float, float] | None = None,
                 cond: Condition | None = None) -> tuple[Transform, Condition]:
    """(transform, condition) for a Pipeline's request `sc`: classifier guidance with a classifier run, else
    classifier-free guidance of the conditional run."""
    scale = check_scale(scale)
    takes = LABEL in pipe.net.conditions
    if classifier is None:
        if not pipe.net.conditions:
            raise UserError("classifier-free guidance needs a conditional run (unet.num_classes > 0 or "
                            "text.encoder); for this unconditional run pass a noise-conditional classifier "
                            "(--classifier RUN)")
        if cond is None and not any(k.asked(sc) or k.guides_unasked for k in pipe.kinds):
            raise UserError("guidance needs the class(es) to guide towards: pass --class K (classes=...)")
        if pipe.cfg.train.cond_dropout <= 0:
            raise UserError("classifier-free guidance needs the unconditional model too, but this run was trained "
                            "with train.cond_dropout = 0: retrain with --set train.cond_dropout=0.1 or pass "
                            "--classifier RUN")
        cond = pipe.condition(sc) if cond is None else cond
        return (lambda den: ClassifierFreeGuidance(den, scale, pipe.schedule, interval)), cond
    if not sc.classes and cond is None:
        raise UserError("classifier guidance needs the class(es) to guide towards: pass --class K (classes=...)")
    run = load_run(classifier, model="classifier")
    if tuple(run.spec.shape) != tuple(pipe.shape):
        raise UserError(f"the classifier {classifier} was trained on data of shape {tuple(run.spec.shape)}, this "
                        f"run makes {tuple(pipe.shape)}: train the classifier on the same data and image size")
    k = run.cfg.classifier.num_classes
    if takes and model_classes(pipe.cfg)[0] != k:
        raise UserError(f"the classifier {classifier} knows {k} classes, this run {model_classes(pipe.cfg)[0]}: "
                        "pair runs trained on the same labels")
    if cond is None:
        idx = torch.arange(sc.num_samples)
        cond = Condition.labels(torch.tensor(sc.classes)[idx % len(sc.classes)], k)
    net = run.ema.to(pipe.device)

    def logits(x: Tensor, t: Tensor) -> Tensor:
        return classifier_logits(net, pipe.schedule, x, t)

    return (lambda den: ClassifierGuidance(den, logits, scale, pass_cond=takes)), cond
