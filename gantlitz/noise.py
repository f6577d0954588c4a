"""Per-pixel noise inputs as a pure function of (noise seed, layer, global position).

Neighbouring patches must see identical noise where their receptive fields overlap, and a full canvas
must not need stored noise tensors. A counter-based hash (exact in int64 on every device) gives two
uniforms per pixel, turned into a standard normal by Box-Muller. Inversion instead optimises explicit
noise maps covering the whole canvas (`ExplicitNoise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

_MASK32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (lowbias32) on int64 tensors holding values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def hashed_normal(
    seeds: torch.Tensor, layer: int, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Standard-normal noise (B, 1, h, w) for rows tops..tops+h and columns lefts..lefts+w of `layer`."""
    device = tops.device
    rows = (tops.long()[:, None] + torch.arange(height, device=device)) & _MASK32
    cols = (lefts.long()[:, None] + torch.arange(width, device=device)) & _MASK32
    key = _hash32((_hash32(seeds.long().to(device) & _MASK32) + layer * 0x9E3779B9) & _MASK32)
    key_rows = _hash32((key[:, None] + rows) & _MASK32)  # (B, h)
    base = _hash32((key_rows[:, :, None] * 0x01000193 + cols[:, None, :]) & _MASK32)  # (B, h, w)
    u1 = ((base >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
    u2 = ((_hash32(base ^ 0x5BD1E995) >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2))[:, None]


class NoiseSource(Protocol):
    """Anything that yields per-pixel noise for a layer at given global positions."""

    def sample(self, layer: int, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Noise (B, 1, height, width) whose row/column 0 sits at global (tops, lefts) of `layer`."""
        ...


class HashNoise:
    """The default noise: a function of each sample's noise seed, nothing stored."""

    def __init__(self, seeds: torch.Tensor) -> None:
        self.seeds = seeds

    def sample(self, layer: int, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return hashed_normal(self.seeds, layer, tops, lefts, height, width)


@dataclass(frozen=True)
class NoiseLayout:
    """Extent of one noise layer over the whole canvas: global rows/cols [-margin, size + margin)."""

    level: int
    height: int
    width: int
    margin: int


class ExplicitNoise(nn.Module):
    """Noise maps covering the whole canvas, one trainable tensor per layer (used by inversion)."""

    def __init__(self, layouts: list[NoiseLayout], init_seed: int | None = 0) -> None:
        super().__init__()
        self.layouts = list(layouts)
        maps = []
        for index, lay in enumerate(self.layouts):
            h, w = lay.height + 2 * lay.margin, lay.width + 2 * lay.margin
            if init_seed is None:
                maps.append(nn.Parameter(torch.zeros(1, 1, h, w)))
            else:
                start = torch.tensor([-lay.margin])
                seeds = torch.tensor([init_seed])
                maps.append(nn.Parameter(hashed_normal(seeds, index, start, start, h, w)))
        self.maps = nn.ParameterList(maps)

    def sample(self, layer: int, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return MapNoise(list(self.maps), self.layouts).sample(layer, tops, lefts, height, width)

    def crops(self, slices: list[tuple[slice, slice]]) -> "MapNoise":
        """Copies (autograd leaves) of each map's `slices` as a noise source: what an optimisation step
        reads and updates instead of the whole maps (`crop.maps[i].grad` after a backward pass)."""
        crops = [p.detach()[:, :, ys, xs].clone().requires_grad_(True) for p, (ys, xs) in zip(self.maps, slices)]
        return MapNoise(crops, self.layouts, [(ys.start or 0, xs.start or 0) for ys, xs in slices])


class MapNoise:
    """Noise read from stored per-layer maps: map i's row/column 0 holds global row/column
    offsets[i] − margin of layer i (offsets 0: maps covering the layer's whole extent)."""

    def __init__(self, maps: list[torch.Tensor], layouts: list[NoiseLayout],
                 offsets: list[tuple[int, int]] | None = None) -> None:
        self.maps, self.layouts = maps, layouts
        self.offsets = offsets if offsets is not None else [(0, 0)] * len(maps)

    def sample(self, layer: int, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
        lay, full, (oy, ox) = self.layouts[layer], self.maps[layer], self.offsets[layer]
        crops = []
        for top, left in zip(tops.tolist(), lefts.tolist()):
            y, x = top + lay.margin - oy, left + lay.margin - ox
            if y < 0 or x < 0 or y + height > full.shape[2] or x + width > full.shape[3]:
                raise ValueError(
                    f"noise layer {layer}: region rows {top}..{top + height}, cols {left}..{left + width} "
                    f"lies outside the stored noise maps (canvas {lay.height}x{lay.width} + margin {lay.margin}"
                    f"{'' if (oy, ox) == (0, 0) else f', a crop at {oy}, {ox}'})"
                )
            crops.append(full[:, :, y : y + height, x : x + width])
        return torch.cat(crops, dim=0)
