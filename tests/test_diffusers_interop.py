"""diffusers' folder format, both ways: an imported UNet2DModel computes what diffusers computes (every prediction
type, the options DDPM's own models use), difflab's DDIM on diffusers' timesteps is DDIMPipeline, an exported run is
a DDPMPipeline that computes difflab's network, export then import gives the run back, and bad folders are refused in
one line with nothing written."""
from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import difflab
from difflab.config import RunConfig, SampleConfig, TrainConfig
from difflab.data.dataset import DataSpec
from difflab.errors import UserError
from difflab.interop.diffusers_config import exportable
from difflab.interop.diffusers_folder import DIFFLAB_RUN, WEIGHTS, is_diffusers_folder
from difflab.interop.diffusers_runs import export_diffusers
from difflab.nn.unet import UNetConfig
from difflab.pipeline import Pipeline
from difflab.samplers.ddim import sample_ddim
from difflab.schedules.config import ScheduleConfig
from difflab.train.build import build_network
from difflab.train.run import LoadedRun
from tests.proc import in_process

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
diffusers = pytest.importorskip("diffusers")

SMALL = dict(sample_size=16, in_channels=1, block_out_channels=(32, 64), layers_per_block=1,
             down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
             attention_head_dim=32)
# google/ddpm-*'s choices: sin before cos, shifted frequencies, eps 1e-6; plus scale-shift, 8 groups, 2 heads
DDPM_STYLE = dict(flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, resnet_time_scale_shift="scale_shift",
                  norm_num_groups=8, attn_norm_num_groups=8, attention_head_dim=16)


def diffusers_model(folder, prediction="epsilon", variance="fixed_small", seed=0, out_scale=1.0, **changes):
    """A randomly initialised small UNet2DModel (weights pushed off their zero init, the last layer scaled by
    out_scale) and its DDPMScheduler, saved."""
    torch.manual_seed(seed)
    learned = variance == "learned_range"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unet = diffusers.UNet2DModel(**{**SMALL, "out_channels": 2 if learned else 1, **changes})
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(0.05 * torch.randn_like(p))
            unet.conv_out.weight.mul_(out_scale)
            unet.conv_out.bias.mul_(out_scale)
        sched = diffusers.DDPMScheduler(prediction_type=prediction, variance_type=variance)
        unet.save_pretrained(folder / "unet")
        sched.save_pretrained(folder / "scheduler")
    return unet.eval(), sched


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("style", ["default", "ddpm"])
def test_imported_denoiser_is_the_unet(tmp_path, prediction, style):
    unet, _ = diffusers_model(tmp_path, prediction, **(DDPM_STYLE if style == "ddpm" else {}))
    pipe = difflab.load(tmp_path)
    assert pipe.cfg.train.parameterization == {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}[prediction]
    x, steps = torch.randn(4, 1, 16, 16), torch.tensor([0, 17, 500, 999])
    with torch.no_grad():
        theirs = unet(x, steps).sample
        ours = pipe.denoiser(x, (steps + 1).double() / 1000)  # diffusers' timestep t is the table's step t + 1
    assert (ours.out - theirs).abs().max() < 1e-5
    ab = diffusers.DDPMScheduler().alphas_cumprod[steps].double()[:, None, None, None]
    eps = {"epsilon": theirs, "sample": (x - ab.sqrt() * theirs) / (1 - ab).sqrt(),
           "v_prediction": ab.sqrt() * theirs + (1 - ab).sqrt() * x}[prediction]  # diffusers' conversions
    # diffusers' alphas_cumprod is float32: 1 - alpha_bar at t = 0 (1e-4) carries 6e-4 relative error
    assert torch.allclose(ours.eps, eps.float(), rtol=2e-3, atol=1e-4)


def test_ddim_on_diffusers_timesteps_is_ddim_pipeline(tmp_path):
    unet, sched = diffusers_model(tmp_path, "sample")  # an x0-predicting net: its samples lie mostly in [-1, 1]
    ddim = diffusers.DDIMScheduler.from_config(sched.config, clip_sample=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = diffusers.DDIMPipeline(unet, ddim)(batch_size=3, generator=torch.Generator().manual_seed(7),
                                                  num_inference_steps=10, eta=0.0, output_type="np").images
    ddim.set_timesteps(10)
    grid = torch.cat([(ddim.timesteps.double() + 1) / 1000, torch.zeros(1, dtype=torch.float64)])  # 901 ... 1, 0
    pipe = difflab.load(tmp_path)
    x = torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(7))  # the pipeline's initial noise
    ours = sample_ddim(pipe.denoiser, x, pipe.schedule, grid)
    ours = (ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    inside = (theirs > 0.01) & (theirs < 0.99)
    assert inside.mean() > 0.5  # most pixels are not clipped: the comparison sees the samples themselves
    assert abs(ours - theirs).max() < 1e-4


def difflab_run(num_classes=0, **unet) -> Pipeline:
    """A difflab U-Net run with random weights (zero-initialised layers too), as a Pipeline."""
    cfg = RunConfig(unet=UNetConfig(channel_mult=(1, 2), attention_levels=(1,), num_classes=num_classes, **unet),
                    train=TrainConfig(cond_dropout=0.1 if num_classes else 0.0),
                    sample=SampleConfig(num_samples=4))
    torch.manual_seed(1)
    net = build_network(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    spec = DataSpec((1, 16, 16), quantized=True, value_range=(-1.0, 1.0), num_classes=num_classes)
    return Pipeline(LoadedRun(cfg, net, net, 10, 640, spec))


@pytest.mark.parametrize("noise_input", ["vp_time", "steps"])
def test_exported_run_is_a_ddpm_pipeline_and_imports_back(tmp_path, noise_input):
    pipe = difflab_run()
    if noise_input == "steps":
        pipe = Pipeline(replace(pipe.run, cfg=replace(pipe.cfg, train=TrainConfig(noise_input="steps"))))
    out = export_diffusers(pipe, tmp_path / "ddpm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = diffusers.DDPMPipeline.from_pretrained(out)
        images = loaded(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0),
                        output_type="np").images
    assert images.shape == (2, 16, 16, 1) and images.std() > 0.01
    x, steps = torch.randn(3, 1, 16, 16), torch.tensor([0, 250, 999])
    with torch.no_grad():  # diffusers' integer timesteps call difflab's very network
        assert (loaded.unet(x, steps).sample - pipe.denoiser(x, (steps + 1).double() / 1000).out).abs().max() < 1e-5
    back = difflab.load(out)
    assert back.cfg == pipe.cfg and back.spec == pipe.spec
    theirs, ours = back.net.state_dict(), pipe.net.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
    assert torch.equal(back.sample(4, nfe=5, seed=3), pipe.sample(4, nfe=5, seed=3))


def test_class_conditional_keeps_its_labels(tmp_path):
    unet, _ = diffusers_model(tmp_path / "foreign", num_class_embeds=3)
    pipe = difflab.load(tmp_path / "foreign")
    assert pipe.cfg.unet.num_classes == 3
    x, labels = torch.randn(3, 1, 16, 16), torch.tensor([2, 0, 1])
    cond = pipe.condition(pipe.sample_config(3, classes=(2, 0, 1)))
    with torch.no_grad():
        theirs = unet(x, torch.tensor([5, 5, 5]), class_labels=labels).sample
        assert (pipe.denoiser(x, torch.full((3,), 6 / 1000, dtype=torch.float64), cond).out - theirs).abs().max() < 1e-5
    ours = difflab_run(num_classes=3)
    out = export_diffusers(ours, tmp_path / "ours")
    assert json.loads((out / "unet" / "config.json").read_text())["num_class_embeds"] == 4  # the null label kept last
    back = difflab.load(out)
    assert back.cfg.unet.num_classes == 3
    assert torch.equal(back.sample(3, nfe=4, seed=1, classes=(2, 0, 1)), ours.sample(3, nfe=4, seed=1, classes=(2, 0, 1)))


def test_learned_variance_maps_both_ways(tmp_path):
    diffusers_model(tmp_path, variance="learned_range")
    pipe = difflab.load(tmp_path)
    assert pipe.cfg.train.learn_variance and pipe.cfg.variance == "learned"
    assert pipe.sample(2, sampler="ancestral", nfe=4, seed=0).shape == (2, 1, 16, 16)


def test_import_cli_writes_a_run_every_command_takes(tmp_path):
    diffusers_model(tmp_path / "ddpm")
    r = in_process("import-diffusers", str(tmp_path / "ddpm"), "--out", str(tmp_path / "run"), "--data", "mnist",
                "--set", "data.image_size=16", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "UNet2DModel" in r.stdout and (tmp_path / "run" / "checkpoint.safetensors").is_file()
    r = in_process("sample", "--run", str(tmp_path / "run"), "--num", "4", "--sampler", "dpmpp_2m", "--nfe", "4",
                "--out", str(tmp_path / "s"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = in_process("export-diffusers", str(tmp_path / "run"), "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert is_diffusers_folder(tmp_path / "again") and (tmp_path / "again" / DIFFLAB_RUN).is_file()


def test_every_command_takes_an_imported_run(tmp_path):
    """Every sampler, both likelihoods, FID, classifier guidance with a difflab classifier, restore and edit."""
    from difflab.samplers.registry import SAMPLERS
    from tests.test_quality import Tiny

    diffusers_model(tmp_path / "ddpm", "v_prediction", sample_size=28)
    assert in_process("import-diffusers", "ddpm", "--out", "run", "--data", "mnist", "--quiet", cwd=tmp_path).returncode == 0
    pipe = difflab.load(tmp_path / "run")
    for name, spec in SAMPLERS.items():
        x = pipe.sample(2, sampler=name, nfe=None if spec.evals is None else 6, seed=0)
        assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all(), name
    torch.jit.save(torch.jit.script(Tiny()), str(tmp_path / "tiny.pt"))
    from difflab.data.mnist import load_mnist

    np.savez(tmp_path / "ref.npz", images=load_mnist("test")[0][:64])
    Image.fromarray(load_mnist("test")[0][0]).save(tmp_path / "digit.png")
    clf = ["--data", "mnist", "--set", "data.limit=512", "--set", "classifier.channel_mult=[1,2]",
           "--set", "classifier.attention_levels=[]", "--set", "classifier.base_channels=8", "--max-images", "128"]
    for args in (["eval", "nll", "--checkpoint", "run", "--method", "importance", "--num-t", "4", "--num-images", "2"],
                 ["eval", "nll", "--checkpoint", "run", "--method", "ode", "--rtol", "1e-2", "--num-images", "1"],
                 ["eval", "fid", "--run", "run", "--num", "8", "--seeds", "1", "--nfe", "4", "--features", "tiny.pt",
                  "--reference", "ref.npz"],
                 ["train-classifier", *clf, "--out", "clf"],
                 ["sample", "--run", "run", "--classifier", "clf", "--class", "3", "--guidance", "2", "--num", "2",
                  "--nfe", "4", "--name", "cg"],
                 ["restore", "--task", "inpaint", "--run", "run", "--data", "mnist", "--num", "2", "--nfe", "4",
                  "--out", "inpaint"],
                 ["edit", "--input", "digit.png", "--run", "run", "--t0", "0.5", "--num", "2", "--nfe", "4",
                  "--out", "edit"]):
        p = in_process(*args, "--quiet", cwd=tmp_path)
        assert p.returncode == 0, (args, p.stderr)
    assert (tmp_path / "inpaint" / "report.json").is_file() and (tmp_path / "run" / "cg.npz").is_file()


def _bad(tmp_path, name: str):
    """Folders that are wrong in one way each."""
    folder = tmp_path / name
    if name == "not_a_model":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
        return folder
    diffusers_model(folder)
    if name == "no_weights":
        (folder / "unet" / WEIGHTS).unlink()
    elif name == "pickle_only":
        (folder / "unet" / WEIGHTS).rename(folder / "unet" / "diffusion_pytorch_model.bin")
    elif name == "scheduler":
        cfg = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**cfg, "_class_name": "ScoreSdeVeScheduler"}))
    elif name == "betas":
        cfg = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**cfg, "beta_schedule": "sigmoid"}))
    return folder


@pytest.mark.parametrize("name, says", [
    ("not_a_model", "not a diffusers model folder"), ("no_weights", "weights are missing"),
    ("pickle_only", "never opens"), ("scheduler", "ScoreSdeVeScheduler"), ("betas", "beta_schedule"),
    ("block", "SkipDownBlock2D")])
def test_bad_folders_are_one_line_and_write_nothing(tmp_path, name, says):
    if name == "block":  # diffusers cannot even build a skip block's folder the way we save it: write its config
        folder = tmp_path / name
        diffusers_model(folder)
        cfg = json.loads((folder / "unet" / "config.json").read_text())
        (folder / "unet" / "config.json").write_text(json.dumps({**cfg, "down_block_types": ["DownBlock2D", "SkipDownBlock2D"]}))
    else:
        folder = _bad(tmp_path, name)
    r = in_process("import-diffusers", str(folder), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "run").exists()


def test_runs_diffusers_cannot_compute_are_refused():
    spec = DataSpec((1, 16, 16), quantized=True, value_range=(-1.0, 1.0))
    for cfg, says in ((RunConfig(arch="mlp"), "arch=mlp"), (RunConfig(schedule=ScheduleConfig(kind="vp")), "SDE vp"),
                      (RunConfig(train=TrainConfig(parameterization="edm")), "predicts edm"),
                      (RunConfig(text={"encoder": "transformer"} and RunConfig().text.__class__(encoder="transformer")),
                       "text-conditioned")):
        with pytest.raises(UserError, match=says):
            exportable(cfg, spec)


def test_head_size_need_only_divide_the_levels_with_attention():
    """The bench's diffusers U-Net: widths 32, 64, 64, attention (64-channel heads) at the last level only."""
    assert UNetConfig(base_channels=32, channel_mult=(1, 2, 2), attention_levels=(2,), head_dim=64).heads_at(64) == 1
    with pytest.raises(UserError, match="head_dim=64"):
        UNetConfig(base_channels=32, channel_mult=(1, 2, 2), attention_levels=(0, 2), head_dim=64)
