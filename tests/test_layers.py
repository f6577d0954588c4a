"""Reference equivalences of the synthesis and discriminator building blocks (`gantlitz.nn.layers`): each
fast formulation against the textbook definition it replaces, to float32 round-off of the values' scale."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gantlitz.nn.layers import ModulatedConv2d, blur_down2, upsample2
from helpers import assert_roundoff_equal

pytestmark = pytest.mark.usefixtures("one_thread")

FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])


def _fir_up2(x: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's up-FIR: zero insertion (input sample i at position 2i + 1 of a 2n + 1 grid), then the
    separable [1,3,3,1] filter with gain 2 per axis (taps / 4), valid: n → 2n − 2."""
    b, c, h, w = x.shape
    up = x.new_zeros(b * c, 1, 2 * h + 1, 2 * w + 1)
    up[:, 0, 1::2, 1::2] = x.reshape(b * c, h, w)
    k = FIR.to(x.dtype) / 4.0
    return F.conv2d(up, torch.outer(k, k)[None, None]).reshape(b, c, 2 * h - 2, 2 * w - 2)


def _fir_down2(x: torch.Tensor) -> torch.Tensor:
    """Reflect-pad by 1, the separable [1,3,3,1] / 8 filter, every second sample: an explicit sum of the
    16 shifted taps (no convolution routine)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    k = FIR.to(x.dtype) / 8.0
    out = x.new_zeros(*x.shape[:2], h, w)
    for i in range(4):
        for j in range(4):
            out += k[i] * k[j] * padded[:, :, i : i + 2 * h : 2, j : j + 2 * w : 2]
    return out


def test_upsample2_is_the_fir_upsampler() -> None:
    x = torch.randn(2, 3, 9, 13, generator=torch.Generator().manual_seed(0))
    y = upsample2(x)
    assert y.shape == (2, 3, 16, 24)
    assert_roundoff_equal(_fir_up2(x), y, what="up-FIR vs upsample2")


def test_blur_down2_is_the_fir_downsampler() -> None:
    x = torch.randn(2, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    y = blur_down2(x)
    assert y.shape == (2, 3, 6, 8)
    assert_roundoff_equal(_fir_down2(x), y, what="down-FIR vs blur_down2")


def _per_sample_conv(layer: ModulatedConv2d, x: torch.Tensor, w: torch.Tensor, embed: torch.Tensor | None):
    """StyleGAN2's modulated convolution with explicit per-sample weights: modulate the input channels,
    demodulate each output filter, one grouped convolution over the batch; then the dual style's outer
    scale and the (modality) bias."""
    b = x.shape[0]
    styles = layer.affine(w)  # (B, in)
    weight = layer.weight[None] * layer.weight_gain * styles[:, None, :, None, None]  # (B, out, in, k, k)
    if layer.demodulate:
        weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    out_ch, in_ch, k = weight.shape[1], weight.shape[2], weight.shape[3]
    y = F.conv2d(x.reshape(1, b * in_ch, *x.shape[2:]), weight.reshape(b * out_ch, in_ch, k, k), groups=b)
    y = y.reshape(b, out_ch, *y.shape[2:])
    bias = layer.bias[None].expand(b, -1)
    if embed is not None:
        y = y * layer.modality_affine(embed)[:, :, None, None]
        bias = bias + layer.modality_bias(embed)
    return y, bias


@pytest.mark.parametrize("kernel, demodulate, dual", [(3, True, True), (3, True, False), (1, False, True)],
                         ids=["conv-dual", "conv", "torgb-dual"])
def test_modulated_conv_is_the_per_sample_weight_conv(kernel: int, demodulate: bool, dual: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    layer = ModulatedConv2d(6, 5, kernel, 8, 4 if dual else None, demodulate=demodulate)
    with torch.no_grad():  # every parameter away from its initial value (the outer style starts at 1)
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if p.ndim < 2 else 1.0))
    x = torch.randn(3, 6, 10, 11, generator=gen)
    w = torch.randn(3, 8, generator=gen)
    embed = torch.randn(3, 4, generator=gen) if dual else None
    with torch.no_grad():
        y, bias = layer(x, w, embed)
        y_ref, bias_ref = _per_sample_conv(layer, x, w, embed)
    assert y.shape == (3, 5, 10 - kernel + 1, 11 - kernel + 1)
    assert_roundoff_equal(y_ref, y, what="per-sample weights vs ModulatedConv2d")
    assert_roundoff_equal(bias_ref, bias, what="per-sample vs ModulatedConv2d bias")
    assert math.isfinite(float(y.abs().max())) and float(y.abs().max()) > 0.1
