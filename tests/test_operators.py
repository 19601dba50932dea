"""Measurement operators: every adjoint passes the dot-product test <A x, y> = <x, A^T y> to float precision, every
pseudo-inverse satisfies A A^+ y = y, the torch Radon transform agrees with scikit-image's, the MRI mask has the
stated acceleration, and the classical reconstructions do what they claim."""
import math

import numpy as np
import pytest
import torch

from difflab.errors import UserError
from difflab.operators import MRI, Blur, Downsample, Inpaint, Radon, cartesian_mask
from difflab.operators.tv import div2d, grad2d, op_norm, tv_least_squares

SHAPE = (2, 32, 32)


def operators():
    return {"inpaint": Inpaint.random(SHAPE, 0.6, seed=1), "box": Inpaint.box(SHAPE), "superres": Downsample(4, SHAPE),
            "blur": Blur(1.5, SHAPE), "mri": MRI(SHAPE, acceleration=4, center_fraction=0.08),
            "ct": Radon(SHAPE, 30)}


def inner(a, b) -> float:
    return float((a.conj() * b).real.double().sum()) if a.is_complex() else float((a.double() * b.double()).sum())


@pytest.mark.parametrize("name", list(operators()))
def test_the_adjoint_passes_the_dot_product_test(name):
    op = operators()[name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, *SHAPE, generator=g)
    Ax = op(x)
    y = torch.randn(Ax.shape, generator=g, dtype=Ax.dtype) if not Ax.is_complex() else \
        torch.complex(torch.randn(Ax.shape, generator=g), torch.randn(Ax.shape, generator=g))
    lhs, rhs = inner(Ax, y), inner(x, op.adjoint(y))
    assert abs(lhs - rhs) <= 1e-5 * (abs(lhs) + math.sqrt(inner(Ax, Ax) * inner(y, y))), (lhs, rhs)
    assert op.adjoint(y).shape == x.shape and op.adjoint(y).dtype == torch.float32
    if op.has_pinv:  # A A^+ y = y on the range of A, and A^+ A is a projection
        torch.testing.assert_close(op(op.pinv(Ax)), Ax, rtol=1e-4, atol=1e-4)
        P = op.pinv(op(x))
        torch.testing.assert_close(op.pinv(op(P)), P, rtol=1e-4, atol=1e-4)


def test_the_torch_radon_transform_agrees_with_scikit_image():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, resize

    img = resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True).astype(np.float32)
    yy, xx = np.mgrid[:64, :64]
    img[(yy - 32) ** 2 + (xx - 32) ** 2 > 31**2] = 0  # circle=True: zero outside the inscribed circle
    for views in (30, 7):
        theta = np.arange(views) * 180.0 / views
        ours = Radon((1, 64, 64), views)(torch.from_numpy(img)[None, None])[0, 0].numpy()  # (views, N)
        theirs = radon(img, theta=theta, circle=True)  # (N, views)
        assert np.abs(ours.T - theirs).max() <= 1e-4 * np.abs(theirs).max()
    # filtered back-projection from 180 views recovers the phantom (as scikit-image's iradon does)
    op = Radon((1, 64, 64), 180)
    rec = op.fbp(op(torch.from_numpy(img)[None, None]))[0, 0].numpy()
    inside = (yy - 32) ** 2 + (xx - 32) ** 2 < 28**2
    assert np.abs(rec - img)[inside].mean() < 0.03 and abs(rec[inside].mean() / img[inside].mean() - 1) < 0.03


def test_the_mri_mask_has_the_stated_acceleration_and_a_fully_sampled_centre():
    for width, acc, frac in ((64, 4, 0.08), (96, 8, 0.04), (32, 2, 0.25)):
        m = cartesian_mask(width, acc, frac, seed=3)
        assert width / float(m.sum()) == acc
        freq = (torch.fft.fftfreq(width) * width).abs()
        assert bool(m[freq.argsort(stable=True)[: round(frac * width)]].eq(1).all())
    op = MRI((1, 64, 64), 4, 0.08)
    assert op.acceleration == 4 and op(torch.zeros(1, 1, 64, 64)).is_complex()
    with pytest.raises(UserError, match="cannot be sampled at acceleration 3"):
        cartesian_mask(64, 3, 0.08)
    with pytest.raises(UserError, match="centre fraction"):
        cartesian_mask(64, 8, 0.2)


def test_wiener_inverts_a_noiseless_blur_and_tv_recovers_a_piecewise_constant_image():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:24, 10:20] = 0.8
    op = Blur(1.0, (1, 32, 32))
    op.nsr = 1e-8
    torch.testing.assert_close(op.classical(op(x))["Wiener"], x, atol=2e-3, rtol=0)
    g = torch.Generator().manual_seed(0)
    p = torch.randn(2, 1, 2, 32, 32, generator=g)
    u = torch.randn(2, 1, 32, 32, generator=g)
    assert abs(inner(grad2d(u), p) + inner(u, div2d(p))) < 1e-3  # div = -grad^T
    sr = Downsample(2, (1, 32, 32))
    assert abs(op_norm(sr) - 0.5) < 1e-3  # average pooling of 2 x 2: ||A|| = 1/2
    noisy = Inpaint.random((1, 32, 32), 0.5, seed=0)
    y = noisy(x) + 0.05 * torch.randn(x.shape, generator=g) * noisy.mask
    rec = tv_least_squares(noisy, y, lam=0.05, iters=300)
    assert float((rec - x).abs().mean()) < 0.5 * float((noisy.pinv(y) - x).abs().mean())


def test_operator_input_that_cannot_work_is_refused_in_one_line():
    with pytest.raises(UserError, match="mask must be 0/1 of shape"):
        Inpaint(torch.ones(16, 16), SHAPE)
    with pytest.raises(UserError, match="dividing the image size"):
        Downsample(3, SHAPE)
    with pytest.raises(UserError, match="built for images"):
        Downsample(2, SHAPE)(torch.zeros(1, 2, 16, 16))
    with pytest.raises(UserError, match="measurement must be"):
        Downsample(2, SHAPE).check_measurement(torch.zeros(1, 2, 8, 8))
    with pytest.raises(UserError, match="square"):
        Radon((1, 32, 16), 10)
    with pytest.raises(UserError, match="blur width"):
        Blur(float("nan"), SHAPE)


OPS = {"inpaint": lambda noise: Inpaint.random(SHAPE, 0.6, seed=1, noise_std=noise),
       "superres": lambda noise: Downsample(4, SHAPE, noise), "deblur": lambda noise: Blur(1.5, SHAPE, noise),
       "mri": lambda noise: MRI(SHAPE, 4, 0.08, noise_std=noise), "ct": lambda noise: Radon(SHAPE, 30, noise)}


@pytest.mark.parametrize("name", list(OPS))
def test_each_operator_carries_its_own_baselines_and_view(name):
    op = OPS[name](0.01)
    x = torch.rand(2, *op.shape) * 2 - 1
    y = op.measure(x, torch.Generator().manual_seed(0))
    own = {"inpaint": "masked input", "superres": "bicubic", "deblur": "Wiener", "mri": "zero-filled IFFT",
           "ct": "FBP"}[name]
    base = op.baselines(y)
    assert list(base) == [own, "TV"] and all(v.shape == x.shape and v.abs().max() <= 1 for v in base.values())
    assert op.view(y).shape == x.shape
    # the TV weight is the tuned one up to the noise it was tuned at, and grows in proportion above it
    assert OPS[name](op.tv_noise / 2).tv_lambda == op.tv_weight
    assert OPS[name](op.tv_noise * 3).tv_lambda == pytest.approx(3 * op.tv_weight)
