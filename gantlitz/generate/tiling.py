"""Tiled synthesis: the tiles of a region (`tile_layout`), one forward pass per tile (`iter_tiles`) and
one modality's canvas assembled on the device (`synthesize_texture`)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import CHANNEL_SLICES, MODALITIES, MODALITY_CHANNELS
from ..errors import UsageError
from ..geometry import Region, check_region, tiles
from ..nn.generator import Generator


@dataclass(frozen=True)
class Tile:
    """One forward pass: a region of whole patches (clipped to the requested region)."""

    top: int
    left: int
    height: int
    width: int
    patches: int


def tile_layout(region: Region, patch: int, patches_per_pass: int | None = None) -> list[Tile]:
    """Row-major tiles covering `region` with at most `patches_per_pass` patches per forward pass.

    With `patches_per_pass` >= the patches per row the tiles are bands of whole patch rows
    (patches_per_pass // per_row rows); below that, strips of patches inside one row. None = one row.
    """
    top, left, height, width = region
    rows, cols = math.ceil(height / patch), math.ceil(width / patch)
    n = cols if patches_per_pass is None else int(patches_per_pass)
    if n < 1:
        raise UsageError(f"patches_per_pass must be >= 1, got {patches_per_pass}")
    c = min(n, cols)
    r = max(1, min(n // c, rows)) if n >= cols else 1
    return [Tile(y, x, th, tw, math.ceil(th / patch) * math.ceil(tw / patch))
            for y, x, th, tw in tiles(region, r * patch, c * patch)]


def _keep_and_channels(G: Generator, modalities: Sequence[str], batch: int) -> tuple[torch.Tensor, list[int]]:
    keep = torch.zeros(batch, len(MODALITIES), dtype=torch.bool, device=G.mask.device)
    channels: list[int] = []
    for m in modalities:
        keep[:, MODALITIES.index(m)] = True
        channels.extend(range(CHANNEL_SLICES[m].start, CHANNEL_SLICES[m].stop))
    return keep, channels


def iter_tiles(
    G: Generator | torch.nn.Module, ws: torch.Tensor, modalities: Sequence[str], noise_seed: int | torch.Tensor = 0,
    *, region: Sequence[int] | None = None, patches_per_pass: int | None = None, apply_mask: bool = True,
    noise: Any = None, call: Any = None,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Synthesize `region` tile by tile: yields (tile, tensor (B, C, h, w)) in network space on ws.device.

    C stacks the requested modalities' channels in the given order. All modalities of a tile are one
    forward pass (`G.forward` with `keep`, which batches the modality passes). `call` replaces `G` for
    the forward (e.g. a compiled G).
    """
    gen: Generator = G  # type: ignore[assignment]
    region_t = check_region(region, gen.canvas, gen.patch_size)
    mods = [m for m in modalities if m in MODALITIES]
    if not mods:
        raise UsageError(f"nothing to synthesize for modalities {list(modalities)}")
    b = ws.shape[0]
    keep, channels = _keep_and_channels(gen, mods, b)
    keep = keep.to(ws.device)
    seeds = None
    if noise is None:
        seeds = torch.as_tensor(noise_seed, dtype=torch.long, device=ws.device).reshape(-1).expand(b)
    run = call if call is not None else gen
    select = None if channels == list(range(len(channels))) else torch.tensor(channels, device=ws.device)
    for tile in tile_layout(region_t, gen.patch_size, patches_per_pass):
        tops = torch.full((b,), tile.top, dtype=torch.long, device=ws.device)
        lefts = torch.full((b,), tile.left, dtype=torch.long, device=ws.device)
        out = run(ws, tops, lefts, seeds, height=tile.height, width=tile.width, noise=noise, keep=keep,
                  apply_mask=apply_mask)
        out = out[:, : len(channels)] if select is None else out.index_select(1, select)
        yield tile, out


def synthesize_texture(
    G: Generator, ws: torch.Tensor, modality: str, noise_seed: int | torch.Tensor = 0, *,
    patches_per_pass: int | None = None, region: Sequence[int] | None = None, apply_mask: bool = True,
    noise: Any = None,
) -> torch.Tensor:
    """The whole canvas (or an aligned `region`) of one modality → (B, C, H, W) in network space, on ws.device.

    Tiles of `patches_per_pass` patches go through the generator one after the other (padding-free, so
    the result does not depend on the tiling beyond float round-off). `noise` (an `ExplicitNoise`)
    replaces the hashed noise of `noise_seed`.
    """
    if modality not in MODALITIES:
        raise UsageError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    top, left, height, width = check_region(region, G.canvas, G.patch_size)
    out = ws.new_zeros(ws.shape[0], MODALITY_CHANNELS[modality], height, width, dtype=torch.float32)
    for tile, x in iter_tiles(G, ws, [modality], noise_seed, region=(top, left, height, width),
                              patches_per_pass=patches_per_pass, apply_mask=apply_mask, noise=noise):
        y, xx = tile.top - top, tile.left - left
        out[:, :, y : y + tile.height, xx : xx + tile.width] = x.float()
    return out
