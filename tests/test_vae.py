"""VAE and hierarchical VAE: the bound's terms, training by the ELBO, the command line."""
import math

import pytest
import torch

from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig
from difflab.errors import UserError
from difflab.vae import HierarchicalVAE, VAEConfig
from difflab.losses.gaussian import gaussian_log_prob
from difflab.noise import NoiseSource
from tests.proc import assert_one_line_error, difflab


@pytest.mark.parametrize("levels", [1, 2])
def test_terms_are_finite_and_the_top_kl_is_the_closed_form(levels):
    torch.manual_seed(0)
    m = HierarchicalVAE(VAEConfig(levels=levels, width=8))
    x = torch.randint(0, 256, (3, 1, 28, 28)).float() / 127.5 - 1
    t = m.terms(x, NoiseSource.for_indices(0, range(3)))
    assert t.kl.shape == (3, levels) and torch.isfinite(t.nll).all() and (t.rec > 0).all()
    assert (t.kl[:, -1] >= 0).all()
    t.nll.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    if levels == 1:  # KL(q(z|x) || N(0, I)) against Monte Carlo over z
        with torch.no_grad():
            mean, logvar = m.encode(x)
            z = mean + torch.exp(0.5 * logvar) * torch.randn((4000,) + mean.shape, generator=torch.Generator().manual_seed(1))
            mc = (gaussian_log_prob(z, mean, logvar) - gaussian_log_prob(z, 0 * z, 0 * z)).flatten(2).sum(2).mean(0)
        assert torch.allclose(mc, t.kl[:, 0], rtol=0.02, atol=0.5)


def test_training_by_the_elbo_lowers_the_bound(tmp_path):
    from difflab.config import build_config
    from difflab.autoencoder import VAE_DEFAULTS, evaluate_vae, train_vae

    cfg = build_config(base={**VAE_DEFAULTS, "data": {"name": "mnist", "limit": 2000}, "vae": {"levels": 2, "width": 16},
                             "train": {**VAE_DEFAULTS["train"], "max_images": 64 * 80, "lr": 2e-3}})
    torch.manual_seed(0)
    test = build_dataset(DataConfig(name="mnist", split="test", limit=256)).x
    before = evaluate_vae(HierarchicalVAE(cfg.vae), test)
    after = train_vae(cfg, tmp_path, eval_images=256, log=lambda s: None, progress=False)
    bpd = after.total / (784 * math.log(2))
    assert before.total / (784 * math.log(2)) > 5 and 0 < bpd < 3.5, bpd  # measured: ~8 before, ~2.9 after
    for f in ("checkpoint.safetensors", "samples.png", "recon.png", "report.md", "metrics.jsonl"):
        assert (tmp_path / f).is_file()
    assert "KL level 2" in (tmp_path / "report.md").read_text()


def test_images_that_do_not_fit_are_refused():
    m = HierarchicalVAE(VAEConfig(levels=3, downsample=1))
    with pytest.raises(UserError, match="divisible by 8"):
        m.check_input(torch.zeros(1, 1, 28, 28))
    with pytest.raises(UserError):
        VAEConfig(levels=0)


def test_vae_command_line_errors(tmp_path):
    p = difflab("vae", "--levels", "3", "--out", "v", "--max-images", "64", cwd=tmp_path)
    assert_one_line_error(p, "divisible")
    assert not (tmp_path / "v").exists()
