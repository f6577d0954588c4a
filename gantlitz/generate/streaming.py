"""Streaming tiles to host maps: `stream_maps`, the one full-canvas synthesis path, with CUDA event timing
and each tile's device-to-host copy overlapping the next tile's forward pass."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..config import MODALITIES, MODALITY_CHANNELS, channel_slices
from ..device import precision_context
from ..errors import UsageError
from ..geometry import check_region
from ..nn.generator import Generator
from ..resample import network_to_unit
from .tiling import Tile, iter_tiles, tile_layout


def stream_maps(
    G: Generator, ws: torch.Tensor, modalities: Sequence[str], region: Sequence[int] | None = None, *,
    noise_seed: int = 0, noise: Any = None, apply_mask: bool = True, patches_per_pass: int | None = None,
    precision: str = "fp32", call: Any = None, progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The one full-canvas synthesis path: run the tiles of `region` (default: the canvas) for latents ws
    (1, num_ws, w_dim) and copy each into host arrays ({modality: h×w×C float32}, values in [0, 1], not
    clipped), with timing statistics. `noise` (an `ExplicitNoise`) replaces the hashed noise of
    `noise_seed`; `precision` is a resolved `device` precision; `call` replaces G for the forward.

    On CUDA each tile is copied asynchronously while the next one is computed, so the device holds at
    most two tiles.
    """
    region = check_region(region, G.canvas, G.patch_size)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise UsageError(f"unknown modality {unknown[0]!r}; choose from {', '.join(MODALITIES)}")
    device = ws.device
    arrays = {m: np.empty((region.height, region.width, MODALITY_CHANNELS[m]), np.float32) for m in modalities}
    bounds = channel_slices(modalities)
    tile_list = tile_layout(region, G.patch_size, patches_per_pass)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(t.patches for t in tile_list), unit="patch", desc="synthesis", leave=False)

    def deliver(tile: Tile, host: torch.Tensor) -> None:
        arr = host[0].numpy()  # h x w x C, value space
        y, x = tile.top - region.top, tile.left - region.left
        for m, sl in bounds.items():
            arrays[m][y : y + tile.height, x : x + tile.width] = arr[:, :, sl]
        if bar is not None:
            bar.update(tile.patches)

    t0 = time.perf_counter()
    timer = _CudaTimer() if device.type == "cuda" else None
    try:
        with torch.inference_mode(), precision_context(device, precision):
            outs = iter_tiles(G, ws, modalities, noise_seed, region=region, patches_per_pass=patches_per_pass,
                              apply_mask=apply_mask, noise=noise, call=call)
            values = ((tile, network_to_unit(out.float()).permute(0, 2, 3, 1).contiguous()) for tile, out in outs)
            for tile, host in (_overlapped_copies(values) if timer is not None else values):
                deliver(tile, host)
    finally:
        if bar is not None:
            bar.close()
    stats = {"patch_evaluations": float(sum(t.patches for t in tile_list) * len(modalities)),
             "forward_passes": float(len(tile_list))}
    if timer is not None:
        stats["gpu_s"] = timer.seconds()
    stats["synthesis_s"] = time.perf_counter() - t0
    return arrays, stats


class _CudaTimer:
    """Device time from construction to `seconds()` (CUDA events)."""

    def __init__(self) -> None:
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.start.record()

    def seconds(self) -> float:
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1000.0


def _overlapped_copies(values: Iterator[tuple[Tile, torch.Tensor]]) -> Iterator[tuple[Tile, torch.Tensor]]:
    """(tile, device tensor) → (tile, host tensor), each copy asynchronous and overlapping the next tile."""
    pending: deque = deque()
    for tile, val in values:
        host = val.to("cpu", non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        pending.append((tile, host, event))
        while len(pending) > 1:
            tl, hs, evt = pending.popleft()
            evt.synchronize()
            yield tl, hs
    while pending:
        tl, hs, evt = pending.popleft()
        evt.synchronize()
        yield tl, hs
