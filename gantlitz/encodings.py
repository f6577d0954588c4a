"""Positional encodings: G's sinusoidal input map (replaces the learned constant) and D's location channels.

Both are pure functions of global canvas coordinates, so any region, also outside the canvas
(extrapolation, §5.4), gets exactly the values its neighbours see.
"""

from __future__ import annotations

import math

import torch

from .config import DiscPos
from .geometry import PE_MARGIN


def _sinusoids(coords: torch.Tensor, periods: torch.Tensor) -> torch.Tensor:
    """coords (B, n) → (B, 2·len(periods), n): sin and cos of 2π·coord/period."""
    phase = coords[:, None, :] * (2 * math.pi / periods)[None, :, None]
    return torch.cat([torch.sin(phase), torch.cos(phase)], dim=1)


def generator_periods(channels: int, canvas_level0: tuple[int, int], min_period: float = 3.0) -> torch.Tensor:
    """Geometric periods (level-0 pixels) from `min_period` up to 4x the padded long side of the level-0
    canvas."""
    if channels % 4:
        raise ValueError(f"positional-encoding channels must be a multiple of 4, got {channels}")
    longest = 4.0 * (max(canvas_level0) + 2 * PE_MARGIN)
    if not 2.0 <= min_period < longest:
        raise ValueError(f"the shortest encoding period must lie in [2, {longest:g}) level-0 pixels, got {min_period}")
    return torch.logspace(math.log10(min_period), math.log10(longest), channels // 4, dtype=torch.float64)


def generator_input(
    tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int, periods: torch.Tensor
) -> torch.Tensor:
    """Crops of G's positional-encoding map at level-0 pixel coordinates → (B, 4·len(periods), h, w):
    sin/cos of the row coordinate for every period, then sin/cos of the column coordinate; every channel
    varies along one axis only, so 2-D structure needs products formed deeper in the network."""
    device = tops.device
    rows = tops.to(torch.float64)[:, None] + torch.arange(height, device=device, dtype=torch.float64)
    cols = lefts.to(torch.float64)[:, None] + torch.arange(width, device=device, dtype=torch.float64)
    periods = periods.to(device)
    b = tops.shape[0]
    fy = _sinusoids(rows, periods).float()  # (B, 2n, h)
    fx = _sinusoids(cols, periods).float()  # (B, 2n, w)
    return torch.cat(
        [fy[:, :, :, None].expand(b, -1, height, width), fx[:, :, None, :].expand(b, -1, height, width)], dim=1
    )


def disc_channels(mode: DiscPos, periods: int = 5) -> int:
    """Number of location channels D receives: 4·periods sinusoids, 2 raw UV, or none."""
    return {"sin": 4 * periods, "uv": 2, "none": 0}[mode]


def disc_periods(
    patch: int, canvas: tuple[int, int], count: int = 5, device: torch.device | str | None = None
) -> torch.Tensor:
    """Periods from 2x the patch side to 2x the long canvas side, spaced geometrically (§4.4.4). Made on
    `device`: copying host-made periods to a GPU in every D pass would synchronise the training step."""
    return torch.logspace(math.log10(2.0 * patch), math.log10(2.0 * max(canvas)), count, dtype=torch.float64,
                          device=device)


def _location_features(
    mode: DiscPos, tops: torch.Tensor, lefts: torch.Tensor, offsets: torch.Tensor, size: int,
    canvas: tuple[int, int], periods: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """D's location functions of the rows and of the columns at `offsets` from each patch's corner →
    (B, C, n) each: raw UV in [-1, 1] or sinusoids of the periods of `disc_periods`."""
    rows = tops.to(torch.float64)[:, None] + offsets
    cols = lefts.to(torch.float64)[:, None] + offsets
    if mode == "uv":
        return (rows / canvas[0] * 2 - 1)[:, None, :].float(), (cols / canvas[1] * 2 - 1)[:, None, :].float()
    if mode == "sin":
        per = disc_periods(size, canvas, periods, tops.device)
        return _sinusoids(rows, per).float(), _sinusoids(cols, per).float()
    raise ValueError(f"unknown discriminator position mode {mode!r}")


def disc_centre(
    mode: DiscPos, tops: torch.Tensor, lefts: torch.Tensor, size: int, canvas: tuple[int, int], periods: int = 5
) -> torch.Tensor | None:
    """The location features of each patch's centre → (B, C) (the same functions as `disc_input`), or None."""
    if mode == "none":
        return None
    centre = torch.full((1,), size / 2.0, device=tops.device, dtype=torch.float64)
    fy, fx = _location_features(mode, tops, lefts, centre, size, canvas, periods)
    return torch.cat([fy[..., 0], fx[..., 0]], dim=1)


def disc_input(
    mode: DiscPos, tops: torch.Tensor, lefts: torch.Tensor, size: int, canvas: tuple[int, int], periods: int = 5
) -> torch.Tensor | None:
    """Per-pixel location channels of patches at (tops, lefts) → (B, C, size, size), or None for 'none'."""
    if mode == "none":
        return None
    offsets = torch.arange(size, device=tops.device, dtype=torch.float64) + 0.5
    fy, fx = _location_features(mode, tops, lefts, offsets, size, canvas, periods)
    b = tops.shape[0]
    return torch.cat(
        [fy[:, :, :, None].expand(b, -1, size, size), fx[:, :, None, :].expand(b, -1, size, size)], dim=1
    )
