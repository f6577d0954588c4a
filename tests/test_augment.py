"""Discriminator augmentation (SPEC §6): shapes, gradients, probabilities, geometry, mid-band spectrum,
modality dropout, the adaptive-p controller, determinism and NO-AUG."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gantlitz.config import AugmentConfig
from gantlitz.train.augment import (
    AdaptiveP,
    Augment,
    affine_matrices,
    affine_warp,
    drop_modalities,
    midband_filter,
    sample_modality_keep,
)
from helpers import assert_roundoff_equal

P = 32
ALL_OFF = AugmentConfig(noise=False, cutout=False, rotate=False, scale=False, translate=False, midband_p=0.0)

ONLY = {
    "noise": dataclasses.replace(ALL_OFF, noise=True),
    "cutout": dataclasses.replace(ALL_OFF, cutout=True),
    "rotate": dataclasses.replace(ALL_OFF, rotate=True),
    "scale": dataclasses.replace(ALL_OFF, scale=True),
    "translate": dataclasses.replace(ALL_OFF, translate=True),
    "midband": dataclasses.replace(ALL_OFF, midband_p=1.0),
    "all": AugmentConfig(midband_p=1.0),
}


def _images(b: int = 6, size: int = P, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth-ish content plus detail, in [-1, 1]
    x = torch.randn(b, 5, size // 4, size // 4, generator=g, dtype=dtype)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x + 0.2 * torch.randn(b, 5, size, size, generator=g, dtype=dtype)
    return x.clamp(-1, 1)


def _blob(b: int, size: int, cy: float, cx: float, sigma: float = 2.0) -> torch.Tensor:
    ys = torch.arange(size, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(size, dtype=torch.float32)[None, :] + 0.5
    img = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
    return img.expand(b, 5, size, size).clone()


def _centroid(img: torch.Tensor) -> torch.Tensor:
    """(B, 2) = (y, x) intensity centroid of channel 0, in pixel units."""
    m = img[:, 0].clamp_min(0)
    size = m.shape[-1]
    c = torch.arange(size, dtype=m.dtype) + 0.5
    tot = m.sum(dim=(1, 2))
    return torch.stack([(m.sum(2) * c).sum(1) / tot, (m.sum(1) * c).sum(1) / tot], dim=1)


@pytest.mark.parametrize("name", list(ONLY))
def test_shape_dtype_finite_gradient(name):
    aug = Augment(ONLY[name], P)
    x = _images().requires_grad_()
    y = aug(x, 1.0, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not torch.equal(y.detach(), x.detach()), f"{name} at p=1 did nothing"


def test_half_precision_keeps_dtype():
    aug = Augment(ONLY["all"], P)
    y = aug(_images().to(torch.bfloat16), 1.0, torch.Generator().manual_seed(0))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_gradient_matches_finite_differences_float64(one_thread):
    aug = Augment(ONLY["all"], 8)
    x = _images(b=2, size=8, dtype=torch.float64).requires_grad_()
    state = torch.Generator().manual_seed(3).get_state()

    def fn(inp):
        return aug(inp, 1.0, torch.Generator().set_state(state))

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_p_zero_is_identity():
    x = _images()
    for cfg in (dataclasses.replace(AugmentConfig(), midband_p=0.0), ALL_OFF):
        y = Augment(cfg, P)(x, 0.0, torch.Generator().manual_seed(0))
        assert torch.equal(y, x)
    # the constant mid-band filter still fires at p = 0 (here at probability 1)
    y = Augment(AugmentConfig(midband_p=1.0), P)(x, 0.0, torch.Generator().manual_seed(0))
    assert not torch.equal(y, x)
    # ... unless it follows the adaptive p (ADAPTIVE-FREQ)
    y = Augment(AugmentConfig(midband_p=1.0, adaptive_freq=True), P)(x, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(y, x)


@pytest.mark.parametrize("name", ["noise", "cutout", "rotate", "translate", "all"])
def test_p_one_changes_every_sample(name):
    x = _images(b=16)
    y = Augment(ONLY[name], P)(x, 1.0, torch.Generator().manual_seed(5))
    diff = (y - x).flatten(1).abs().amax(1)
    assert (diff > 1e-3).all(), diff


def test_probability_is_per_sample():
    x = _images(b=200, size=8)
    y = Augment(ONLY["noise"], 8)(x, 0.3, torch.Generator().manual_seed(0))
    frac = ((y - x).flatten(1).abs().amax(1) > 0).float().mean().item()
    assert 0.2 < frac < 0.4


def test_translation_moves_centred_blob():
    x = _blob(8, P, P / 2, P / 2)
    y = Augment(ONLY["translate"], P)(x, 1.0, torch.Generator().manual_seed(2))
    shift = (_centroid(y) - _centroid(x)).norm(dim=1)
    assert (shift > 0.5).all() and (shift <= math.sqrt(2) * 0.125 * P + 1).all()
    # explicit matrix: +x shifts content right by the fraction of the patch
    theta = affine_matrices(torch.zeros(1), torch.zeros(1), torch.tensor([[0.125, -0.0625]]))
    moved = affine_warp(_blob(1, P, P / 2, P / 2), theta)
    torch.testing.assert_close(_centroid(moved)[0], torch.tensor([P / 2 - 2.0, P / 2 + 4.0]), atol=0.05, rtol=0)


def test_rotation_moves_off_centre_blob_and_keeps_radius():
    # 64 px so that reflection padding never mirrors the blob back into the rotated corners
    size = 64
    x = _blob(8, size, size / 2, size / 2 + 8)  # 8 px right of the centre
    y = Augment(ONLY["rotate"], size)(x, 1.0, torch.Generator().manual_seed(4))
    cy, cx = _centroid(y).unbind(1)
    radius = torch.hypot(cy - size / 2, cx - size / 2)
    torch.testing.assert_close(radius, torch.full_like(radius, 8.0), atol=0.1, rtol=0)
    assert ((_centroid(y) - _centroid(x)).norm(dim=1) > 0.2).all()  # every sample rotated (some by a few degrees)
    # a centred blob stays put under rotation
    c = _blob(4, size, size / 2, size / 2)
    yc = Augment(ONLY["rotate"], size)(c, 1.0, torch.Generator().manual_seed(4))
    torch.testing.assert_close(_centroid(yc), _centroid(c), atol=0.05, rtol=0)


def test_scale_changes_blob_size_not_position():
    x = _blob(8, P, P / 2, P / 2, sigma=3.0)
    y = Augment(ONLY["scale"], P)(x, 1.0, torch.Generator().manual_seed(6))
    torch.testing.assert_close(_centroid(y), _centroid(x), atol=0.05, rtol=0)
    mass_ratio = y[:, 0].sum((1, 2)) / x[:, 0].sum((1, 2))  # area scales with s^2
    assert ((mass_ratio - 1).abs() > 1e-3).all()


def test_cutout_zeroes_a_rectangle():
    x = torch.ones(8, 5, P, P)
    y = Augment(ONLY["cutout"], P)(x, 1.0, torch.Generator().manual_seed(0))
    zero_frac = (y[:, 0] == 0).float().mean((1, 2))
    assert ((zero_frac > 0) & (zero_frac <= 0.25 + 1e-6)).all()
    assert torch.equal(y == 0, (y == 0)[:, :1].expand_as(y))  # same rectangle in every channel


def _radial_power(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    spec = torch.fft.fft2(x).abs().pow(2).mean((0, 1))
    f = torch.fft.fftfreq(x.shape[-1])
    r = torch.hypot(f[:, None], f[None, :])
    return spec, r


def test_midband_removes_dc_and_high_frequencies():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, 64, 64, generator=g, dtype=torch.float64) + 3.0  # white noise with a DC offset
    s1, s2 = torch.full((8,), 1.5, dtype=torch.float64), torch.full((8,), 3.0, dtype=torch.float64)
    y = midband_filter(x, s1, s2)
    assert y.mean((2, 3)).abs().max() < 0.05  # DC gone (the input's DC is 3)
    spec, r = _radial_power(y)
    low, mid, high = spec[(r > 0) & (r < 0.02)].mean(), spec[(r > 0.06) & (r < 0.1)].mean(), spec[r > 0.4].mean()
    assert mid > 10 * low and mid > 100 * high, (low, mid, high)
    # unit peak gain: white noise of unit power keeps roughly unit power at the band's centre
    assert 0.5 < mid.item() / 4096 < 1.5


def test_midband_in_augment_keeps_energy_sensible():
    x = _images(b=32, size=64)
    y = Augment(ONLY["midband"], 64)(x, 0.0, torch.Generator().manual_seed(0))
    assert y.mean((2, 3)).abs().max() < 0.1 * x.mean((2, 3)).abs().max() + 0.05
    ratio = y.std((1, 2, 3)) / x.std((1, 2, 3))
    assert (ratio > 0.02).all() and (ratio < 1.5).all(), ratio


def test_midband_adaptive_p_and_rate():
    x = _images(b=400, size=8)
    y = Augment(dataclasses.replace(ALL_OFF, midband_p=0.85), 8)(x, 0.0, torch.Generator().manual_seed(0))
    frac = ((y - x).flatten(1).abs().amax(1) > 0).float().mean().item()
    assert 0.78 < frac < 0.92


def test_modality_dropout():
    g = torch.Generator().manual_seed(0)
    keep = sample_modality_keep(300, g)
    assert keep.shape == (300, 3) and keep.dtype == torch.bool
    assert (keep.sum(1) == 2).all()
    counts = (~keep).sum(0)
    assert (counts > 70).all()  # every modality gets dropped, roughly uniformly
    x = torch.rand(300, 5, 4, 4) + 0.5
    y = drop_modalities(x, keep)
    zeroed = torch.stack([(y[:, a:b] == 0).all((1, 2, 3)) for a, b in ((0, 3), (3, 4), (4, 5))], 1)
    assert torch.equal(zeroed, ~keep)
    assert torch.equal(y[:, 0:3][keep[:, 0]], x[:, 0:3][keep[:, 0]])  # kept channels are multiplied by 1
    assert torch.equal(sample_modality_keep(300, torch.Generator().manual_seed(0)), keep)


def test_adaptive_p_up_down_clamped():
    up = AdaptiveP(target=0.6, interval=4, kimg=0.01)  # 10 images move p by 1
    for _ in range(4):
        up.update(torch.full((4,), 3.0))  # D always right on reals: r_t = 1
    assert up.r_t == 1.0 and up.p == pytest.approx(1.0)  # 16 images → +1.6, clamped
    down = AdaptiveP(target=0.6, interval=4, kimg=0.1, p=0.5)
    for _ in range(4):
        down.update(-torch.ones(4))
    assert down.r_t == -1.0 and down.p == pytest.approx(0.5 - 16 / 100)
    for _ in range(40):
        down.update(-torch.ones(4))
    assert down.p == 0.0
    slow = AdaptiveP(target=0.6, interval=4, kimg=100.0)
    changed = [slow.update(torch.ones(4)) for _ in range(8)]
    assert changed == [False, False, False, True] * 2
    assert slow.p == pytest.approx(2 * 16 / 100_000)


def test_adaptive_p_reduce_and_state_dict():
    calls = []

    def fake_all_reduce(t):  # two identical ranks
        calls.append(t.clone())
        t.mul_(2)

    a = AdaptiveP(interval=2, kimg=1.0, reduce=fake_all_reduce)
    a.update(torch.ones(4))
    a.update(torch.tensor([1.0, -1.0, 1.0, 1.0]))
    assert len(calls) == 1 and a.r_t == pytest.approx(6 / 8)
    assert a.p == pytest.approx(16 / 1000)  # 2 ranks x 2 steps x 4 images
    a.update(torch.ones(4))  # half an interval pending
    state = a.state_dict()
    assert all(isinstance(v, float) for v in state.values())
    b = AdaptiveP(interval=2, kimg=1.0, reduce=fake_all_reduce)
    b.load_state_dict(state)
    a.update(-torch.ones(4))
    b.update(-torch.ones(4))
    assert a.state_dict() == b.state_dict()
    frozen = AdaptiveP.from_config(AugmentConfig(enabled=False))
    for _ in range(8):
        frozen.update(torch.ones(2))
    assert frozen.p == 0.0


def test_determinism():
    x = _images()
    aug = Augment(ONLY["all"], P)
    y1 = aug(x, 0.7, torch.Generator().manual_seed(11))
    y2 = aug(x, 0.7, torch.Generator().manual_seed(11))
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, aug(x, 0.7, torch.Generator().manual_seed(12)))
    # consumption of the generator does not depend on p
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    aug(x, 0.0, g1)
    aug(x, 1.0, g2)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_no_aug_identity():
    x = _images()
    aug = Augment(AugmentConfig(enabled=False), P)
    for p in (0.0, 0.5, 1.0):
        assert aug(x, p) is x


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_sampling():
    x = _images()
    aug = Augment(dataclasses.replace(ONLY["all"], noise=False), P)
    cpu = aug(x, 0.8, torch.Generator().manual_seed(3))
    xc = x.cuda().requires_grad_()
    gpu = aug(xc, 0.8, torch.Generator().manual_seed(3))
    torch.testing.assert_close(gpu.detach().cpu(), cpu, atol=1e-4, rtol=1e-4)
    gpu.square().sum().backward()
    assert torch.isfinite(xc.grad).all()


@pytest.mark.parametrize("autocast", [False, True])
def test_bf16_fakes_and_fp32_reals_get_identical_augmentations(autocast):
    """Equal content in bf16 (G's output under autocast) and fp32 (the reals) must be warped, filtered and
    corrupted identically: any difference would let D tell fakes from reals by dtype alone."""
    size = 64
    real = _images(b=8, size=size, seed=4).bfloat16().float()  # representable in bf16: equal content
    fake = real.bfloat16()
    aug = Augment(ONLY["all"], size)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out_real = aug(real, 1.0, torch.Generator().manual_seed(9))
        out_fake = aug(fake, 1.0, torch.Generator().manual_seed(9))
    assert out_real.dtype == torch.float32 and out_fake.dtype == torch.bfloat16
    assert not torch.equal(out_real, real)
    assert torch.equal(out_fake, out_real.bfloat16())  # the only difference: bf16 rounding of the result


def test_geometry_is_float32_under_bf16():
    """A warp of bf16 images equals the float32 warp rounded once, sub-pixel sample positions included."""
    size = 512
    x = _images(b=2, size=size, seed=1).bfloat16()
    theta = affine_matrices(torch.tensor([0.3, -1.1]), torch.tensor([0.2, -0.1]), torch.tensor([[0.01, 0.03], [-0.02, 0.0]]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        warped = affine_warp(x, theta)
    assert warped.dtype == torch.bfloat16
    assert torch.equal(warped, affine_warp(x.float(), theta).bfloat16())


def test_strengths_come_from_the_config():
    x = _images(b=4)
    weak = Augment(dataclasses.replace(ONLY["noise"], noise_std=0.01), P)(x, 1.0, torch.Generator().manual_seed(0))
    strong = Augment(dataclasses.replace(ONLY["noise"], noise_std=1.0), P)(x, 1.0, torch.Generator().manual_seed(0))
    # weak - x loses the round-off of weak's own values, then is multiplied by 100: that is its scale
    assert_roundoff_equal(strong - x, (weak - x) * 100, what="noise at std 1 vs 100 x noise at std 0.01",
                          scale=100 * weak.abs().max().item())
    big = Augment(dataclasses.replace(ONLY["cutout"], cutout_size=1.0), P)(x, 1.0, torch.Generator().manual_seed(0))
    small = Augment(ONLY["cutout"], P)(x, 1.0, torch.Generator().manual_seed(0))
    assert (big == 0).sum() > (small == 0).sum()
    assert Augment(AugmentConfig(sigma_max=2.0), P).sigma_max == 2.0
    assert Augment(AugmentConfig(), P).sigma_max == P / 8
    with pytest.raises(ValueError, match="mid-band"):
        Augment(AugmentConfig(ratio_min=0.5), P)


def test_p_may_be_a_tensor_and_gives_the_float_result():
    x = _images()
    aug = Augment(ONLY["all"], P)
    by_float = aug(x, 0.4, torch.Generator().manual_seed(2))
    by_tensor = aug(x, torch.tensor(0.4, dtype=torch.float64), torch.Generator().manual_seed(2))
    assert torch.equal(by_float, by_tensor)


def test_adaptive_p_stays_on_its_device_between_reads():
    ada = AdaptiveP(target=0.6, interval=2, kimg=0.01)
    held = ada.p_tensor
    ada.update(torch.ones(4))
    ada.update(torch.ones(4))
    assert held is ada.p_tensor and held.item() == pytest.approx(0.8)  # updated in place, 8 images / 10
    assert ada.r_t == 1.0


@pytest.mark.compile
def test_apply_compiles_to_one_graph(compile_backend):
    aug = Augment(ONLY["all"], P)
    x = _images()
    draw = aug.draw(x, torch.Generator().manual_seed(3))
    p = torch.tensor(0.5, dtype=torch.float64)
    compiled = torch.compile(aug.apply, fullgraph=True, backend=compile_backend)
    assert_roundoff_equal(compiled(x, draw, p), aug.apply(x, draw, p), what="compiled vs eager augmentation")


def test_strengths_are_overridable_and_old_configs_load():
    from gantlitz.config import preset_from_dict, to_dict
    from gantlitz.presets import resolve as resolve_preset

    preset = resolve_preset("tiny", ["train.augment.noise_std=0.05", "train.augment.sigma_max=3"])
    assert preset.train.augment.noise_std == 0.05 and preset.train.augment.sigma_max == 3.0
    saved = to_dict(preset)
    for key in ("noise_std", "cutout_size", "rotate_max", "scale_std", "translate_max", "sigma_min", "sigma_max",
                "ratio_min", "ratio_max"):
        assert key in saved["train"]["augment"]
        del saved["train"]["augment"][key]  # a config.json written before these fields existed
    assert preset_from_dict(saved).train.augment == AugmentConfig(ada_kimg=preset.train.augment.ada_kimg)
