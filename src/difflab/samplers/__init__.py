"""Stateless samplers with one signature: sample(denoiser, x, schedule, grid, *, noise, cond, hook, callback, **options)."""
from difflab.noise import NoiseSource
from difflab.samplers.ancestral import sample_ancestral
from difflab.samplers.ddim import sample_ddim
from difflab.samplers.dpm_solver import sample_dpmpp_2m, sample_dpmpp_3m, sample_dpmpp_pc
from difflab.samplers.langevin import sample_annealed_langevin, sample_predictor_corrector
from difflab.samplers.ode import sample_edm_heun, sample_heun
from difflab.samplers.registry import SAMPLERS, CountingDenoiser, SamplerSpec, get_sampler
from difflab.samplers.rk45 import sample_rk45
from difflab.samplers.sde import sample_euler_maruyama
from difflab.samplers.walk import StepCallback, StepHook

__all__ = ["sample_ancestral", "sample_ddim", "sample_euler_maruyama", "sample_predictor_corrector",
           "sample_annealed_langevin", "sample_heun", "sample_rk45", "sample_dpmpp_2m", "sample_dpmpp_3m", "sample_dpmpp_pc",
           "sample_edm_heun", "NoiseSource", "SAMPLERS", "SamplerSpec", "get_sampler", "CountingDenoiser",
           "StepCallback", "StepHook"]
