"""Scaffolding shared by the test modules (pytest puts tests/ on sys.path: `from helpers import ...`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from gantlitz import checkpoint, presets
from gantlitz.config import Preset, to_dict

SMALL_CANVAS = (64, 96)
"""2 x 3 patches of 32 pixels; not square, so height/width mix-ups show."""
SMALL_SCALE = 4.0
SMALL_PRESET: Preset = dataclasses.replace(
    presets.get("tiny"),
    model=dataclasses.replace(
        presets.get("tiny").model, canvas_height=SMALL_CANVAS[0], canvas_width=SMALL_CANVAS[1], patch_size=32,
        z_dim=32, w_dim=32, embed_dim=32, pe_channels=32, channel_base=512, channel_max=32,
    ),
)
"""The tiny preset shrunk once more (32-pixel patches, 4 levels), so every test runs in about a second."""


def randomise(G: torch.nn.Module, seed: int = 1, scale: float = 0.3, rgb_gain: float | None = None) -> None:
    """Random values for the parameters that start at zero (modality affines, noise strengths, biases).

    `rgb_gain` damps the toRGB layers (and zeroes their biases) so outputs mostly stay in [-1, 1].
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.parameters():
            if not p.abs().max() > 0:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
        if rgb_gain is not None:
            for level in G.levels:
                level.torgb.conv.weight.mul_(rgb_gain)
                level.torgb.conv.bias.zero_()


def ellipse_mask(canvas: tuple[int, int] = SMALL_CANVAS) -> torch.Tensor:
    """An elliptical visible region covering most of the canvas."""
    h, w = canvas
    yy, xx = np.mgrid[:h, :w]
    inside = ((yy - h / 2) / (h * 25 / 64)) ** 2 + ((xx - w / 2) / (w * 35 / 96)) ** 2 < 1.0
    return torch.from_numpy(inside.astype(np.uint8))


def save_generator(path: Path, G: torch.nn.Module, preset: Preset = SMALL_PRESET,
                   canvas: tuple[int, int] = SMALL_CANVAS, displacement_scale: float = SMALL_SCALE) -> Path:
    """A checkpoint holding `G` as G_ema with the dataset facts generation needs."""
    return checkpoint.save(path, checkpoint.prefixed(G.state_dict(), "G_ema"), meta={
        "preset": to_dict(preset),
        "dataset": {"canvas": list(canvas), "displacement_scale": displacement_scale, "normal_convention": "opengl"},
        "step": 0,
    })


ROUNDOFF_ULPS = 64
"""Seamlessness and reference equivalences hold to float32 round-off relative to the values' scale."""


def roundoff(a, b) -> tuple[float, float]:
    """(max |a − b|, the round-off bound 64 · eps(float32) · max |a|) of two arrays or tensors."""
    a = (a.detach() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))).double()
    b = (b.detach() if isinstance(b, torch.Tensor) else torch.as_tensor(np.asarray(b))).double()
    bound = ROUNDOFF_ULPS * float(torch.finfo(torch.float32).eps) * float(a.abs().max())
    return float((a - b).abs().max()), bound


def assert_roundoff(a, b) -> None:
    """a equals b up to float32 round-off: max |a − b| <= 64 · eps(float32) · max |a|."""
    diff, bound = roundoff(a, b)
    assert diff <= bound, f"max |a - b| = {diff:.3g} exceeds the round-off bound {bound:.3g}"
