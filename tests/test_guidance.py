"""Guidance against exact answers: a labelled 2-D Gaussian mixture (label = component) has the exact classifier
p(y | x_t) and exact conditional and unconditional scores at every noise level."""
from __future__ import annotations

import math

import pytest
import torch

from difflab.condition import Condition
from difflab.errors import UserError
from difflab.eval.exact import ConditionalMixtureDenoiser, MixtureDenoiser, component, mixture_logits
from difflab.guidance import ClassifierFreeGuidance, ClassifierGuidance
from difflab.data.toy import GaussianMixture
from difflab.samplers import SAMPLERS, CountingDenoiser
from difflab.samplers.generate import generate
from difflab.schedules import DiscreteSchedule, linear_betas

T64 = torch.float64
SCHED = DiscreteSchedule(linear_betas(1000))
GMM = GaussianMixture(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]]),
                      0.4**2 * torch.eye(2).expand(3, 2, 2))  # overlapping: p(y | x) is far from one-hot
N, Y = 2000, 0
SAMPLER_NFE = {"ancestral": 100, "ddim": 50, "euler_maruyama": 200, "pc": 201, "dpmpp_2m": 20, "dpmpp_3m": 20,
               "dpmpp_pc": 20, "heun": 41, "edm": 41, "langevin": 400}


def draw(denoiser, name: str, y: int = Y, n: int = N) -> torch.Tensor:
    spec = SAMPLERS[name]
    grid = spec.grid("auto", SCHED, spec.steps_for_nfe(name, SAMPLER_NFE[name]))
    cond = Condition.labels(torch.full((n,), y), len(GMM.weights))
    return generate(denoiser, (2,), n, SCHED, grid, seed=1, batch_size=n, cond=cond, sampler=spec.fn).double()


def certainty(x: torch.Tensor, y: int = Y) -> float:
    """Mean exact posterior p(y | x_0) of the samples."""
    return float(torch.softmax(GMM._component_log_probs(x)[0], -1)[:, y].mean())


def guided(kind: str, scale: float):
    if kind == "classifier":  # an unconditional model and the exact noise-conditional classifier
        return ClassifierGuidance(MixtureDenoiser(GMM, SCHED), mixture_logits(GMM, SCHED), scale)
    return ClassifierFreeGuidance(ConditionalMixtureDenoiser(GMM, SCHED), scale)


@pytest.mark.parametrize("name", list(SAMPLER_NFE))
@pytest.mark.parametrize("kind", ["classifier", "free"])
def test_guidance_at_scale_one_samples_the_asked_component_with_every_sampler(kind, name):
    """Scale 1 is the exact conditional p(x | y): the component's mean, covariance and class certainty."""
    x = draw(guided(kind, 1.0), name)
    part = component(GMM, Y)
    truth = part.sample(N, torch.Generator().manual_seed(3))[0]
    cov = torch.cov(x.T)
    print(f"{kind} {name}: mean {x.mean(0).tolist()}, cov {cov.diagonal().tolist()}, certainty {certainty(x):.3f} "
          f"(truth {certainty(truth):.3f})")
    assert torch.allclose(x.mean(0), part.means[0], atol=0.05), name
    assert torch.allclose(cov, part.covs[0], atol=0.035), name
    assert abs(certainty(x) - certainty(truth)) < 0.03


@pytest.mark.parametrize("name", ["ddim", "dpmpp_3m", "euler_maruyama"])
@pytest.mark.parametrize("kind", ["classifier", "free"])
def test_a_larger_scale_sharpens_towards_the_class(kind, name):
    """w > 1 samples p(x | y) p(y | x)^(w - 1) (in the limit of small noise): mass moves to where the class is
    most certain — away from the other components, with a smaller spread."""
    x1, x3 = draw(guided(kind, 1.0), name), draw(guided(kind, 3.0), name)
    assert certainty(x3) > certainty(x1) + 0.03
    assert float(x3[:, 0].mean()) < float(x1[:, 0].mean()) - 0.05  # component 0 is the left one
    assert torch.cov(x3.T).trace() < torch.cov(x1.T).trace()


def test_classifier_free_guidance_at_zero_is_the_unconditional_model_in_one_doubled_call():
    counted = CountingDenoiser(ConditionalMixtureDenoiser(GMM, SCHED), batch=N)
    x = draw(ClassifierFreeGuidance(counted, 0.0), "dpmpp_3m")
    truth = GMM.sample(N, torch.Generator().manual_seed(4))[0]
    assert torch.allclose(x.mean(0), truth.mean(0), atol=0.08) and torch.allclose(torch.cov(x.T), torch.cov(truth.T), atol=0.1)
    assert counted.nfe == 2 * 20  # every step evaluates [x; x] under [y; null]: 2 evaluations per sample


def test_a_guidance_interval_guides_only_inside_it_and_saves_the_evaluations_outside():
    counted = CountingDenoiser(ConditionalMixtureDenoiser(GMM, SCHED), batch=N)
    spec = SAMPLERS["dpmpp_3m"]
    grid = spec.grid("auto", SCHED, 20)
    s = (SCHED.sigma(grid[:-1]) / SCHED.alpha(grid[:-1]))  # sigma~ at each evaluation
    lo, hi = 0.3, 3.0
    inside = int(((s >= lo) & (s <= hi)).sum())
    draw(ClassifierFreeGuidance(counted, 3.0, SCHED, (lo, hi)), "dpmpp_3m")
    assert 0 < inside < 20 and counted.nfe == 20 + inside
    full = draw(guided("free", 3.0), "dpmpp_3m")
    part = draw(ClassifierFreeGuidance(ConditionalMixtureDenoiser(GMM, SCHED), 3.0, SCHED, (lo, hi)), "dpmpp_3m")
    plain = draw(guided("free", 1.0), "dpmpp_3m")
    assert certainty(plain) < certainty(part) < certainty(full)


def test_guidance_runs_inside_a_no_grad_sampler_and_bad_input_is_one_line():
    with torch.no_grad():
        x = draw(guided("classifier", 2.0), "ddim", n=64)
    assert torch.isfinite(x).all()
    for bad in (float("nan"), float("inf"), -1.0, "x"):
        with pytest.raises(UserError, match="guidance scale"):
            guided("free", bad)
    with pytest.raises(UserError, match="interval"):
        ClassifierFreeGuidance(MixtureDenoiser(GMM, SCHED), 2.0, SCHED, (3.0, 1.0))
    with pytest.raises(UserError, match="class"):
        ClassifierGuidance(MixtureDenoiser(GMM, SCHED), mixture_logits(GMM, SCHED), 1.0)(
            torch.zeros(2, 2, dtype=T64), torch.full((2,), 0.5, dtype=T64), None)
    assert math.isfinite(certainty(x))
