"""Text conditioning: cross-attention reads the caption row by row, a jointly trained text encoder learns word order
(which side the named digit goes), a pretrained encoder plugs in from a folder and is guarded by its digest, and
wrong prompts or data are refused in one line."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import difflab
from difflab.condition import TOKENS, Condition
from difflab.config import build_config
from difflab.conditions.caption import CaptionKind
from difflab.conditions.language import caption
from difflab.data.dataset import ImageData
from difflab.errors import UserError
from difflab.conditions.text import TextConfig, export_encoder
from difflab.nn.unet import UNet, UNetConfig
from difflab.train.loop import train
from tests.proc import assert_one_line_error, difflab as cli

TINY = {"unet": {"base_channels": 8, "channel_mult": [1, 2], "attention_levels": [], "cross_attention_levels": [0, 1],
                 "num_res_blocks": 1},
        "text": {"encoder": "transformer", "width": 32, "layers": 1, "heads": 2},
        "train": {"parameterization": "v", "batch_size": 32, "lr": 3e-3, "warmup_images": 640, "cond_dropout": 0.1,
                  "ema_half_life_images": 1000, "max_images": 32 * 300, "log_every": 100, "tensorboard": False,
                  "checkpoint_every_images": 10**6},
        "data": {"name": "npz", "path": "unused.npz"}}


ORDERED = ("a {l} next to a {r}", "{l} {r}", "the digits {l} and {r}")  # the left digit named first


def sides(n: int, templates, seed: int) -> tuple[list[str], np.ndarray]:
    """Captions naming a 1 and a 0 (as digits or words) in either order; bright[k] = the 1 is on the left."""
    rng = np.random.default_rng(seed)
    bright = rng.random(n) < 0.5
    return [caption(1 if b else 0, 0 if b else 1, templates[rng.integers(len(templates))], rng) for b in bright], bright


def halves(bright: np.ndarray) -> torch.Tensor:
    """(N, 1, 8, 16): the half with the 1 at +0.8, the other at -0.8."""
    left = torch.from_numpy(np.where(bright, 0.8, -0.8)).float()[:, None, None, None]
    x = torch.cat([left.expand(-1, 1, 8, 8), (-left).expand(-1, 1, 8, 8)], dim=3)
    return x.contiguous()


def test_cross_attention_reads_each_rows_caption_and_the_null_caption_is_the_unconditional_model():
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=(1,)),
               kinds=[CaptionKind(TextConfig("transformer"))])
    for m in net.modules():  # the zero-initialised output layers made random, so every path carries signal
        if hasattr(m, "proj") and isinstance(m.proj, torch.nn.Linear):
            torch.nn.init.normal_(m.proj.weight, std=0.2)
    net.out[-1].weight.data.normal_(std=0.2)
    tok = net.text.tokenizer(["a 3 next to a 7", "a 7 next to a 3", "3 7"])
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    with torch.no_grad():
        out = net(x, t, Condition.tokens(tok, net.text.null))
        one = torch.cat([net(x[k:k + 1], t[k:k + 1], Condition.tokens(tok[k:k + 1], net.text.null)) for k in range(3)])
        swapped = net(x[:1], t[:1], Condition.tokens(tok[1:2], net.text.null))
        null = net(x, t, Condition.tokens(tok, net.text.null).null())
        uncond = net(x, t, None)
    torch.testing.assert_close(out, one, rtol=1e-5, atol=1e-5)  # each row reads its own caption
    # the order of the words changes the output (without positions, attention and the mean would be blind to it)
    assert (swapped - out[:1]).abs().max() > 1e-5
    torch.testing.assert_close(null, uncond)
    assert net.conditions == (TOKENS,) and tok[2, 2:].eq(0).all()


@pytest.fixture(scope="module")
def sided_run(tmp_path_factory):
    """A tiny text-to-image run trained on 'which side is bright', said only by the order of '1' and '0'."""
    out = tmp_path_factory.mktemp("sided")
    texts, bright = sides(1024, ORDERED, seed=0)
    data = ImageData(halves(bright), quantized=False, value_range=(-1.0, 1.0), captions=tuple(texts))
    cfg = build_config(None, [], base=TINY)
    train(cfg, data, out / "run", log=lambda s: None, progress=False)
    return out / "run"


def test_a_jointly_trained_text_encoder_reads_word_order(sided_run):
    """'a 1 next to a zero' and 'a 0 next to a one' hold the same words: only their order says where the 1 goes.
    (Held-out phrasings on real digits are measured by bench/text_to_image.py.)"""
    pipe = difflab.load(sided_run)
    texts, bright = sides(64, ORDERED, seed=1)
    x = pipe.sample(64, prompts=texts, sampler="dpmpp_2m", nfe=10, seed=0)
    left, right = x[:, 0, :, :8].mean((1, 2)).numpy(), x[:, 0, :, 8:].mean((1, 2)).numpy()
    correct = float(np.mean(((left > 0) == bright) & ((right > 0) == ~bright)))
    print(f"the bright half on the named side in {correct:.2f} of 64 samples (chance 0.5)")
    assert correct > 0.9
    guided = pipe.sample(64, prompts=texts, sampler="dpmpp_2m", nfe=10, seed=0, guidance=3.0)
    g = guided[:, 0, :, :8].mean((1, 2)).numpy()
    assert float(np.mean((g > 0) == bright)) >= correct - 0.03  # guidance reads the caption at least as well


def test_a_pretrained_encoder_plugs_in_frozen_from_a_folder_and_a_changed_file_is_refused(sided_run, tmp_path):
    p = cli("export-text-encoder", "--run", str(sided_run), "--out", "enc", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    spec = json.loads((tmp_path / "enc" / "tokenizer.json").read_text())
    assert spec["pad"] == 0 and spec["max_tokens"] == 16 and "next" in spec["vocab"]
    source = difflab.load(sided_run).net.text
    cfg = build_config(None, ["text.encoder=pretrained", f"text.path={tmp_path / 'enc'}"], base=TINY)
    net = UNet(cfg.unet, kinds=[CaptionKind(cfg.text)])
    ids = source.tokenizer(["a 1 next to a 0", "0 1"])
    with torch.no_grad():
        torch.testing.assert_close(net.text.encoder(ids), source(ids))  # the exported features, exactly
    assert not any(k.startswith("text.encoder.") and k != "text.encoder.sha256" for k in net.state_dict())
    assert all(p.requires_grad for p in net.parameters())  # the frozen encoder's weights are not parameters
    # a run on top of the frozen encoder trains, and refuses to load once encoder.pt changed
    texts, bright = sides(64, ORDERED, seed=3)
    data = ImageData(halves(bright), value_range=(-1.0, 1.0), captions=tuple(texts))
    cfg = replace(cfg, train=replace(cfg.train, max_images=64))
    train(cfg, data, tmp_path / "frozen", log=lambda s: None, progress=False)
    assert difflab.load(tmp_path / "frozen").sample(2, prompts="1 0", nfe=2).shape == (2, 1, 8, 16)
    torch.manual_seed(5)
    other = UNet(cfg.unet, kinds=[CaptionKind(replace(cfg.text, encoder="transformer", path=""))])
    export_encoder(other.text, tmp_path / "enc")
    assert_one_line_error(cli("sample", "--run", "frozen", "--prompt", "1 0", cwd=tmp_path), "changed since")
    (tmp_path / "enc" / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match="vocab"):
        UNet(cfg.unet, kinds=[CaptionKind(cfg.text)])
    with pytest.raises(UserError, match="encoder.pt"):
        UNet(cfg.unet, kinds=[CaptionKind(replace(cfg.text, path=str(tmp_path)))])


def test_prompts_and_text_settings_that_cannot_work_are_one_line(sided_run, tmp_path):
    assert_one_line_error(cli("sample", "--run", str(sided_run), "--prompt", " ,", cwd=tmp_path), "has no words")
    assert_one_line_error(cli("sample", "--run", str(sided_run), "--prompt", "1 " * 20, cwd=tmp_path), "at most 16")
    p = cli("sample", "--run", str(sided_run), "--prompt", "first 1 then 0", "--num", "2", "--nfe", "2",
            "--out", "s", cwd=tmp_path)
    assert p.returncode == 0 and "'first' not in the model's vocabulary" in p.stdout + p.stderr, p.stderr
    toy = ["--data", "gmm", "--set", "arch=mlp", "--set", "mlp.hidden=16", "--max-images", "64", "--sample", "0"]
    assert cli("train", *toy, "--out", "toy", "--quiet", cwd=tmp_path).returncode == 0
    assert_one_line_error(cli("sample", "--run", "toy", "--prompt", "a 3 next to a 7", cwd=tmp_path),
                          "needs a text-to-image run")
    assert_one_line_error(cli("train", *toy, "--set", "text.encoder=transformer", "--out", "t2", cwd=tmp_path),
                          "conditions the U-Net")
    assert_one_line_error(cli("train", "--data", "mnist", "--set", "data.limit=64", "--set", "text.encoder=transformer",
                              "--max-images", "64", "--out", "t3", cwd=tmp_path), "has none")
    assert_one_line_error(cli("export-text-encoder", "--run", "toy", "--out", "e", cwd=tmp_path), "no text encoder")
    assert_one_line_error(cli("train", *toy, "--set", "text.encoder=pretrained", "--out", "t4", cwd=tmp_path),
                          "text.path")
