"""The networks: shapes, conditioning, configuration errors."""
import pytest
import torch

from difflab.condition import Condition
from difflab.conditions.label import LabelKind
from difflab.errors import UserError
from difflab.nn import MLP, MLPConfig, UNet, UNetConfig
from difflab.nn.blocks import SelfAttention
from difflab.nn.embedding import sinusoidal


@pytest.mark.parametrize("cfg,size", [
    (UNetConfig(in_channels=1, base_channels=8, channel_mult=(1, 2, 2), attention_levels=(2,)), 28),
    (UNetConfig(in_channels=3, base_channels=8, channel_mult=(1, 2), attention_levels=(0, 1), heads=2,
                num_res_blocks=2, scale_shift=False, dropout=0.1), 16),
    (UNetConfig(in_channels=3, base_channels=8, channel_mult=(1, 1, 2, 2), attention_levels=()), 32),
])
def test_unet_maps_images_to_images(cfg, size):
    net = UNet(cfg)
    x = torch.randn(3, cfg.in_channels, size, size)
    y = net(x, torch.rand(3))
    assert y.shape == x.shape
    assert torch.equal(y, torch.zeros_like(y))  # zero-initialised output layer: starts as the zero predictor
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    y1, y2 = net(x, torch.full((3,), 0.1)), net(x, torch.full((3,), 0.9))
    assert not torch.allclose(y1, y2)  # depends on t
    net.eval()
    assert torch.allclose(net(x[:1], torch.full((1,), 0.3)), net(x, torch.full((3,), 0.3))[:1], atol=1e-5)


def test_unet_attention_and_classes():
    cfg = UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=(1,), num_classes=10)
    net = UNet(cfg, kinds=[LabelKind(10)])
    assert sum(isinstance(m, SelfAttention) for m in net.modules()) == 1 + 1 + 2  # down, mid, up (2 blocks)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    labels = lambda *y: Condition.labels(torch.tensor(y), 10)  # noqa: E731
    assert not torch.allclose(net(x, t, labels(1, 2)), net(x, t, labels(3, 4)))
    assert torch.equal(net(x, t, None), net(x, t, labels(1, 2).null()))  # unconditional = the null label
    assert net.conditions == ("label",) and UNet(UNetConfig(base_channels=8)).conditions == ()


def test_self_attention_is_permutation_equivariant():
    attn = SelfAttention(8, heads=2)
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 8, 4, 4)
    perm = torch.randperm(16)
    y = attn(x).flatten(2)[:, :, perm]
    y_perm = attn(x.flatten(2)[:, :, perm].reshape(2, 8, 4, 4)).flatten(2)
    assert torch.allclose(y, y_perm, atol=1e-5)


def test_input_checks_and_config_errors():
    net = UNet(UNetConfig(base_channels=8, channel_mult=(1, 2, 2)))
    with pytest.raises(UserError, match="divisible by 4"):
        net.check_input(torch.zeros(1, 1, 30, 30))
    with pytest.raises(UserError, match="in_channels"):
        net.check_input(torch.zeros(1, 3, 28, 28))
    for bad in (dict(in_channels=0), dict(attention_levels=(5,)), dict(num_res_blocks=0), dict(dropout=1.0)):
        with pytest.raises(UserError):
            UNetConfig(**bad)
    with pytest.raises(UserError, match="mlp.dim"):
        MLP(MLPConfig(dim=2)).check_input(torch.zeros(4, 3))


def test_mlp_and_embedding():
    net = MLP(MLPConfig(dim=5, hidden=16, depth=2))
    assert net(torch.randn(7, 5), torch.rand(7)).shape == (7, 5)
    e = sinusoidal(torch.tensor([0.0, 0.5]), 8)
    assert e.shape == (2, 8) and torch.allclose(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))


@pytest.mark.parametrize("heads", [1, 4])
def test_self_attention_equals_its_definition(heads):
    """x + W_o softmax(Q K^T / sqrt(d)) V per head, with Q, K, V the 1x1 projections of GroupNorm(x), written out."""
    torch.manual_seed(0)
    C, H, W = 32, 4, 5
    attn = SelfAttention(C, heads)
    torch.nn.init.normal_(attn.proj.weight, std=0.1)
    x = torch.randn(2, C, H, W, dtype=torch.float64)
    attn = attn.double()
    h = attn.norm(x).flatten(2)  # (B, C, HW)
    qkv = torch.einsum("oc,bcn->bon", attn.qkv.weight[:, :, 0, 0], h) + attn.qkv.bias[None, :, None]
    d = C // heads
    out = []
    for b in range(2):
        heads_out = []
        for j in range(heads):
            q, k, v = (qkv[b, i * C + j * d: i * C + (j + 1) * d].T for i in range(3))  # (HW, d) each
            heads_out.append(torch.softmax(q @ k.T / d ** 0.5, dim=-1) @ v)
        out.append(torch.cat(heads_out, 1).T)  # (C, HW)
    a = torch.stack(out)
    y = torch.einsum("oc,bcn->bon", attn.proj.weight[:, :, 0, 0], a) + attn.proj.bias[None, :, None]
    expected = x + y.reshape(2, C, H, W)
    assert torch.allclose(attn(x), expected, atol=1e-12)


def test_channels_last_is_a_layout_not_a_different_network():
    cfgs = [UNetConfig(in_channels=3, base_channels=8, channel_mult=(1, 2), attention_levels=(1,), channels_last=cl)
            for cl in (False, True)]
    torch.manual_seed(0)
    a = UNet(cfgs[0])
    b = UNet(cfgs[1])
    b.load_state_dict(a.state_dict())
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    assert torch.allclose(a(x, t), b(x, t), atol=1e-5)
    assert b.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
