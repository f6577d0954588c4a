"""Scaffolding shared by the test modules (pytest puts tests/ on sys.path: `from helpers import ...`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

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
    train=dataclasses.replace(presets.get("tiny").train, whole_level=None, whole_moment_weight=0.0),
)
"""The tiny preset shrunk once more (32-pixel patches, 4 levels), so every test runs in about a second;
the paper's patch objective only (the whole-canvas view needs data targets: tests/test_objectives.py)."""


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


ROUNDOFF_K = 64
"""How many eps(dtype) · scale two computations of the same values may differ by (`assert_roundoff_equal`).

Summing n terms in another order (another kernel, thread split, tile or batch size) moves the sum by about
sqrt(n) · eps · scale, at worst n · eps · scale. The deepest reductions in the tests are the 3×3
convolutions over 64 channels of the `tiny` generator (576 products per output, sqrt ≈ 24), chained over
its levels and, for gradients, back through D. Measured with one and with two threads: one pass vs
stitched patches differ by up to 6 eps · scale here (1.05e-5 at values of 15) and by 8 in issue 24
(1.049e-5 at 11.2, another 2-core machine); G's gradients accumulated in two chunks by 17
(tests/test_step.py). 64 leaves 4× to spare. A real seam errs by a fraction of the values instead: in
tests/test_networks.py a patch read one level-0 unit off misses by 4.5e4 × the bound and a noise layer
read one pixel off by 2.2e3 ×."""


class Roundoff(NamedTuple):
    """max |a − b|, the bound k · eps · scale it is held to, and the scale (max |a|, max |b|) and eps used."""

    diff: float
    bound: float
    scale: float
    eps: float
    dtype: str


def _float_values(x) -> tuple[np.ndarray, float, str]:
    """Values as float64 NumPy (detached, on the CPU), with the eps and name of their own dtype."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"a round-off bound needs floating values, got {x.dtype}")
        return x.detach().cpu().double().numpy(), float(torch.finfo(x.dtype).eps), str(x.dtype)
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"a round-off bound needs floating values, got {arr.dtype}")
    return arr.astype(np.float64), float(np.finfo(arr.dtype).eps), str(arr.dtype)


def roundoff(a, b, k: float = ROUNDOFF_K, scale: float | None = None) -> Roundoff:
    """How far apart `a` and `b` (torch tensors or NumPy arrays of one shape) are, against their round-off
    bound k · eps · scale; eps is that of the coarser of the two dtypes (float32 vs float64), and the scale
    is max(max |a|, max |b|) unless given: give it where the round-off was made at larger values than the
    compared ones (a difference of two larger numbers)."""
    (x, eps_a, dtype_a), (y, eps_b, dtype_b) = _float_values(a), _float_values(b)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    eps, dtype = (eps_a, dtype_a) if eps_a >= eps_b else (eps_b, dtype_b)
    if scale is None:
        scale = float(max(np.abs(x).max(initial=0.0), np.abs(y).max(initial=0.0)))
    return Roundoff(float(np.abs(x - y).max(initial=0.0)), k * eps * scale, scale, eps, dtype)


def assert_roundoff_equal(a, b, k: float = ROUNDOFF_K, what: str = "values", scale: float | None = None) -> None:
    """Assert that `a` and `b` are the same values computed two ways: max |a − b| <= k · eps · scale.

    For comparisons whose only error is float round-off (another summation order, tiling, batch or thread
    count); see `ROUNDOFF_K` for the choice of k. NaN anywhere fails."""
    r = roundoff(a, b, k, scale)
    if not r.diff <= r.bound:  # written so that NaN fails
        raise AssertionError(
            f"{what}: max |a - b| = {r.diff:.3e} exceeds the round-off bound {r.bound:.3e} "
            f"= {k:g} · eps({r.dtype}) {r.eps:.3e} · scale {r.scale:.4g} "
            f"(the difference is {r.diff / (r.eps * r.scale) if r.scale else float('inf'):.3g} eps · scale)"
        )


def quantisation_bound(bits: int) -> float:
    """The most a value in [0, 1] moves when stored as a `bits`-bit integer and read back as float32: half a
    step (rounding to nearest) plus one float32 ulp at 1 (the decode's division). Quantisation, a property of
    the file format, not round-off: tests of integer image files compare with this."""
    return 0.5 / ((1 << bits) - 1) + float(np.finfo(np.float32).eps)


HALF_FLOAT_QUANTISATION = float(np.finfo(np.float16).eps)
"""The most a value in [0, 1] moves when stored as an EXR half float: 2^-10 ≈ 9.8e-4, two half-float
steps of values in [0.5, 1] (rounding either way stays within it). Quantisation, not round-off."""


def small_checkpoint(path: Path) -> Path:
    """A random `SMALL_PRESET` generator (outputs mostly inside [-1, 1]) saved as a checkpoint at `path`."""
    from gantlitz.networks import build

    G, _ = build(SMALL_PRESET, seed=3, mask=ellipse_mask())
    randomise(G, scale=0.1, rgb_gain=0.15)
    return save_generator(path, G)
