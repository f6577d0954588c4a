"""StyleGAN2 building blocks written for padding-free, globally aligned synthesis.

Equalised learning rate everywhere (weights stored at unit variance, scaled at run time), modulated /
demodulated convolutions, and the dual-style extension of GANtlitz (§4.1.1): a modality style that scales
the demodulated output channels ("outer" style) and a modality bias offset added to the layer bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with StyleGAN's gain so activations keep unit variance."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate and an optional learning-rate multiplier."""

    def __init__(
        self, in_features: int, out_features: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
        activate: bool = False, weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (weight_init / lr_mul))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(x) if self.activate else x


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """×2 up-sampling (nearest, then the 3-tap [1,2,1] blur, valid): n samples → 2n − 2.

    Equivalent to StyleGAN2's [1,3,3,1] up-FIR, written as two interleaved linear blends per axis. Output
    sample 0 sits at global position 2a + 1 when input sample 0 sits at a, so alignment is global.
    """
    for dim in (-1, -2):
        a, b = x.narrow(dim, 0, x.shape[dim] - 1), x.narrow(dim, 1, x.shape[dim] - 1)
        lo, hi = a * 0.75 + b * 0.25, a * 0.25 + b * 0.75
        x = torch.stack([lo, hi], dim=dim).flatten(dim - 1 if dim == -1 else -3, dim if dim == -1 else -2)
    return x


class ModulatedConv2d(nn.Module):
    """Valid (padding-free) modulated convolution with optional demodulation and dual-style modulation."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, w_dim: int, embed_dim: int | None,
        *, demodulate: bool = True, modality_bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        # The outer style is not demodulated: start it at exactly 1 (zero weights) so that ten stacked
        # layers do not multiply random scales; the embeddings differentiate the modalities as they learn.
        self.modality_affine = (
            EqualLinear(embed_dim, out_channels, bias_init=1.0, weight_init=0.0) if embed_dim else None
        )
        self.modality_bias = (
            EqualLinear(embed_dim, out_channels, weight_init=0.0) if embed_dim and modality_bias else None
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, embed: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Identity style `w` modulates the weights (inner); the modality `embed` scales outputs (outer).

        Returns the convolved features and the per-sample bias (learned bias + modality offset), which the
        caller adds after the noise.
        """
        styles = self.affine(w)  # (B, in)
        weight = self.weight * self.weight_gain
        x = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype))
        scale = None
        if self.demodulate:
            # Σ_{in,k} (w · s)² per sample and output channel, without materialising per-sample weights.
            wsq = weight.square().sum(dim=(2, 3))  # (out, in)
            scale = torch.rsqrt(styles.square() @ wsq.t() + 1e-8)  # (B, out)
        bias = self.bias[None].expand(x.shape[0], -1)
        if self.modality_affine is not None and embed is not None:
            outer = self.modality_affine(embed)
            scale = outer if scale is None else scale * outer
            if self.modality_bias is not None:
                bias = bias + self.modality_bias(embed)
        if scale is not None:
            x = x * scale[:, :, None, None].to(x.dtype)
        return x, bias


class StyleLayer(nn.Module):
    """Modulated 3x3 conv → per-pixel noise → bias (+ modality offset) → leaky ReLU, padding-free."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, embed_dim: int | None, *,
        modality_bias: bool, conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, embed_dim, modality_bias=modality_bias)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.conv_clamp = conv_clamp

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, embed: torch.Tensor | None, noise: torch.Tensor
    ) -> torch.Tensor:
        x, bias = self.conv(x, w, embed)
        x = x + (noise * self.noise_strength).to(x.dtype) + bias[:, :, None, None].to(x.dtype)
        x = lrelu(x)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    """Modulated 1x1 projection to the output channels (no demodulation), dual-styled like the convs."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, embed_dim: int | None, *,
        modality_bias: bool, conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, 1, w_dim, embed_dim, demodulate=False, modality_bias=modality_bias
        )
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, embed: torch.Tensor | None) -> torch.Tensor:
        x, bias = self.conv(x, w, embed)
        x = x + bias[:, :, None, None].to(x.dtype)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class EqualConv2d(nn.Module):
    """'Same'-padded conv with equalised learning rate, optional blur + stride-2 down-sampling (for D)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, *, bias: bool = True, activate: bool = True,
        down: bool = False, conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.activate, self.down, self.conv_clamp = activate, down, conv_clamp
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (self.weight * self.weight_gain).to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.down:
            x = blur_down2(x)
        x = F.conv2d(x, weight, bias, padding=self.padding)
        if self.activate:
            x = lrelu(x)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


def blur_down2(x: torch.Tensor) -> torch.Tensor:
    """Anti-aliased ×2 down-sampling: [1,3,3,1] blur with stride 2 ('same' padding), n → n/2."""
    # [1, 3, 3, 1] made on the device (a host-built tensor would be a synchronising copy in every D pass)
    k = 4.0 - (2.0 * torch.arange(4, device=x.device, dtype=x.dtype) - 3.0).abs()
    k = (k[:, None] * k[None, :]) / 64.0
    c = x.shape[1]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k.expand(c, 1, 4, 4), stride=2, groups=c)
