"""Latent diffusion end to end on tiny runs: an autoencoder for MNIST images and one for CO2 sequences, diffusion
models on their latents; the round trip, the latent scale kept bitwise, sampling that decodes, the whole-model
bound from difflab eval, class-conditional guidance on latents, and every way the autoencoder can go wrong refused
in one line."""
import shutil
import struct

import numpy as np
import pytest
import torch

import difflab
from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig
from difflab.latent.codec import load_codec, model_data, resolve_latent
from tests.proc import assert_one_line_error, difflab as run_cli

AE = ["--set", "data.limit=256", "--set", "vae.width=8", "--max-images", "6000", "--eval-images", "64", "--quiet"]
LATENT = ["--set", "data.limit=256", "--set", "unet.base_channels=16", "--max-images", "256", "--sample", "0",
          "--quiet"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    for args in (["train-autoencoder", *AE, "--out", "ae"],
                 ["train", "--latent", "ae", *LATENT, "--set", "unet.num_classes=10", "--set", "train.cond_dropout=0.2",
                  "--out", "lat"]):
        p = run_cli(*args, cwd=root)
        assert p.returncode == 0, p.stderr
    return root


def test_the_autoencoder_round_trip_beats_the_mean_image_and_the_codec_scale_cancels(root):
    assert "round trip" in (root / "ae" / "report.md").read_text()
    data = DataConfig(latent=str(root / "ae"))
    codec = load_codec(data, scale=2.5)
    x = build_dataset(DataConfig(split="test", limit=64)).x
    z = codec.encode(x)  # the mean of q(z | x), times the scale
    assert z.shape == (64, 4, 7, 7)  # latents at 1/4 of the image size
    recon = codec.decode(z)
    with torch.no_grad():
        direct = codec.vae.decode(codec.vae.encode(x)[0]).clamp(-1, 1)
    assert torch.allclose(recon, direct, atol=1e-5)  # scale on the way in, 1 / scale on the way out
    rmse = float((recon - x).square().mean().sqrt())
    baseline = float((x - x.mean(0)).square().mean().sqrt())  # the best constant image
    print(f"round trip RMSE {rmse:.3f} (mean image {baseline:.3f})")
    assert rmse < 0.8 * baseline


def test_the_latent_scale_is_fixed_from_the_data_and_restored_bitwise(root):
    pipe = difflab.load(root / "lat")
    cfg = pipe.cfg.data
    again = resolve_latent(DataConfig(limit=256, latent=str(root / "ae")), build_dataset(DataConfig(limit=256)).x)
    assert struct.pack("<d", pipe.codec.scale) == struct.pack("<d", cfg.latent_scale) == \
        struct.pack("<d", again.latent_scale)
    assert 0.1 < cfg.latent_scale < 10 and cfg.latent_sha256 == again.latent_sha256
    z = model_data(cfg).x  # the training latents, scaled: unit variance by construction
    assert abs(float(z.std()) - 1.0) < 0.05


def test_sampling_decodes_and_guidance_works_on_latents(root):
    p = run_cli("sample", "--run", "lat", "--num", "8", "--nfe", "6", "--class", "3", "--guidance", "2", "--out", "s",
                "--quiet", cwd=root)
    assert p.returncode == 0, p.stderr
    images = np.load(root / "s" / "samples.npz")["images"]
    assert images.shape == (8, 28, 28) and images.dtype == np.uint8  # decoded to MNIST's pixels
    assert (root / "s" / "samples.png").is_file()


def test_eval_nll_gives_the_whole_model_bound_in_bits_per_pixel(root):
    p = run_cli("eval", "nll", "--checkpoint", "lat", "--num-images", "8", "--num-t", "8", "--quiet", cwd=root)
    assert p.returncode == 0, p.stderr
    assert "autoencoder" in p.stdout and "bits/dim of the data" in p.stdout
    total = [line for line in p.stdout.splitlines() if line.startswith("total")][0].split()
    assert float(total[1]) > 0 and 0 < float(total[2]) < 16  # nats per image, bits per pixel of 784 pixels


def test_an_autoencoder_that_is_missing_changed_or_of_another_shape_is_refused(root, tmp_path):
    shutil.copytree(root / "ae", tmp_path / "ae")
    p = run_cli("train", "--latent", "ae", *LATENT, "--out", "lat", cwd=tmp_path)  # pins this copy (absolute path)
    assert p.returncode == 0, p.stderr
    ok = run_cli("train", "--latent", "ae", "--data", "wine", *LATENT, "--out", "x", cwd=tmp_path)
    assert_one_line_error(ok, "encodes data of shape (1, 28, 28)", "is (13,)")
    p = run_cli("train-autoencoder", *AE[:-3], "--max-images", "6500", "--resume", "--out", "ae", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr  # trained further: a new checkpoint
    assert_one_line_error(run_cli("sample", "--run", "lat", "--num", "2", cwd=tmp_path), "changed since")
    shutil.rmtree(tmp_path / "ae")
    assert_one_line_error(run_cli("sample", "--run", "lat", "--num", "2", cwd=tmp_path), "is missing")
    assert_one_line_error(run_cli("train", "--latent", "nowhere", *LATENT, "--out", "y", cwd=tmp_path), "is missing")


def test_a_sequence_autoencoder_and_its_latent_model(tmp_path):
    p = run_cli("train-autoencoder", "--data", "co2", "--set", "vae.width=16", "--max-images", "2000",
                "--eval-images", "16", "--out", "ae", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = run_cli("train", "--latent", "ae", "--max-images", "512", "--sample", "16", "--out", "lat", "--quiet",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    samples = np.load(tmp_path / "lat" / "samples.npz")["samples"]
    assert samples.shape == (16, 1, 64) and np.isfinite(samples).all()  # decoded windows of 64 weeks
    assert (tmp_path / "lat" / "samples.png").is_file()


def test_runs_moved_together_find_their_autoencoder(root, tmp_path):
    """A latent run records its autoencoder's absolute path; moved together (the folders side by side), the run finds
    it beside itself, and the recorded sha256 still vouches that it is the same one."""
    shutil.copytree(root / "ae", tmp_path / "a" / "ae")
    p = run_cli("train", "--latent", "ae", *LATENT, "--out", "lat", cwd=tmp_path / "a")
    assert p.returncode == 0, p.stderr
    (tmp_path / "a").rename(tmp_path / "b")  # the recorded .../a/ae is gone
    pipe = difflab.load(tmp_path / "b" / "lat")
    assert pipe.codec.run == tmp_path / "b" / "ae"
    p = run_cli("sample", "--run", "lat", "--num", "2", "--nfe", "3", "--out", "s", "--quiet", cwd=tmp_path / "b")
    assert p.returncode == 0, p.stderr


def test_the_sampling_log_counts_what_guidance_evaluates(root):
    """Classifier-free guidance evaluates the network on a doubled batch: the log says so with the count."""
    pipe, lines = difflab.load(root / "lat"), []
    pipe.sample(4, nfe=4, sampler="ddim", classes=[3], guidance=2.0, log=lines.append)
    assert any("8 network evaluations per sample, 4 planned" in line for line in lines), lines
    lines.clear()
    pipe.sample(4, nfe=4, sampler="ddim", classes=[3], guidance=1.0, log=lines.append)  # w = 1: the conditional model
    assert not any("network evaluations per sample" in line for line in lines), lines
