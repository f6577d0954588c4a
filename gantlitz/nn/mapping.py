"""Mapping network z → w (two layers, §4.1) with the running w average used for truncation."""

from __future__ import annotations

import torch
from torch import nn

from .layers import EqualLinear


class MappingNetwork(nn.Module):
    """Normalise z, then `layers` leaky-ReLU layers at learning-rate multiplier 0.01 (StyleGAN2)."""

    def __init__(self, z_dim: int, w_dim: int, layers: int = 2, lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.net = nn.Sequential(
            *(EqualLinear(a, b, lr_mul=lr_mul, activate=True) for a, b in zip(dims[:-1], dims[1:]))
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.w_avg_beta = w_avg_beta

    def forward(self, z: torch.Tensor, *, update_w_avg: bool = False) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.net(z)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return w
