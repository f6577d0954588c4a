"""Layout: does the model put each facial feature where the data has it? (per-location statistics)

Patch KID compares the *distribution of patches* and is blind to where a patch is placed: a generator
that paints perfect lips on the cheek scores well. Aligned face textures share one UV layout, so the
mean map of the data carries the layout (brows, eyes, lips, beard, the oily T-zone). This module
averages maps over a coarse grid of canvas cells and correlates them with the data:

- ``mean_corr``: correlation of the generated mean map with the real mean map, over the cells wholly
  inside the UV mask (mask edges, which the output masking gets right by construction, never count);
- ``sample_corr``: mean over generated samples of the correlation of one sample with the real mean map
  (a model that only matches the mean in aggregate, one feature per sample, scores low here);
- the same two numbers for the real set as references: ``real_split_half`` (mean map of one random half
  of the subjects against the other half, averaged over splits) and ``real_sample_corr``;
- ``ratio`` = mean_corr / real_split_half: 1 means the generated layout agrees with the data as well as
  the data agrees with itself;
- ``std_ratio``: how much generated samples vary at each cell against how much subjects do (1: as
  much; near 0: collapsed to one map, which a direct loss on the mean could cause).

Correlations are pooled over channels after removing each channel's mean over the cells, so a global
colour offset neither helps nor hurts; per-channel scale differences (a too-pale albedo) do not count
either: colour and contrast are KID's and the spectra's job. What the measure does not detect: detail
below the cell size, identity diversity (use sample_corr's spread and KID), seams (tested by
construction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..outputs import save_figure

__all__ = ["LayoutGrid", "layout_grid", "cell_means", "correlation", "layout_scores", "layout_plot"]


@dataclass(frozen=True)
class LayoutGrid:
    """Square cells of `cell` pixels over an H×W canvas; `inside` marks the cells wholly inside the mask."""

    cell: int
    inside: np.ndarray  # (rows, cols) bool


def layout_grid(mask: np.ndarray, cells: int = 32) -> LayoutGrid:
    """At least `cells` square cells along the long side: the largest cell side that divides both sides
    (32 gives 8-pixel cells on 256x256 and 128-pixel cells, 48x32 of them, on 6144x4096)."""
    mask = np.asarray(mask) > 0
    h, w = mask.shape
    if cells < 2:
        raise ValueError(f"cells must be >= 2, got {cells}")
    common = math.gcd(h, w)
    sides = [c for c in range(1, common + 1) if common % c == 0 and max(h, w) // c >= cells]
    if not sides:
        raise ValueError(f"a {w}x{h} canvas can not be divided into {cells} square cells along its long side")
    cell = sides[-1]
    blocks = mask.reshape(h // cell, cell, w // cell, cell)
    inside = blocks.all(axis=(1, 3))
    if inside.sum() < 3:
        raise ValueError(f"only {int(inside.sum())} of the {inside.size} cells lie wholly inside the mask")
    return LayoutGrid(cell, inside)


def cell_means(maps: np.ndarray, grid: LayoutGrid) -> np.ndarray:
    """(N, H, W, C) maps → (N, cells inside, C) per-cell means."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 3:
        maps = maps[..., None]
    n, h, w, c = maps.shape
    k = grid.cell
    if (h // k, w // k) != grid.inside.shape:
        raise ValueError(f"maps of {w}x{h} do not match the layout grid {grid.inside.shape} of cell {k}")
    means = maps.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4))
    return means[:, grid.inside]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (cells, C) arrays, pooled over channels after centring each channel."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a - a.mean(axis=0, keepdims=True)
    b = b - b.mean(axis=0, keepdims=True)
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _split_half(real: np.ndarray, splits: int, rng: np.random.Generator) -> float:
    n = real.shape[0]
    if n < 2:
        return float("nan")
    values = []
    for _ in range(splits):
        order = rng.permutation(n)
        half = n // 2
        values.append(correlation(real[order[:half]].mean(0), real[order[half : 2 * half]].mean(0)))
    return float(np.mean(values))


def _std_ratio(fake: np.ndarray, real: np.ndarray) -> float:
    """RMS over cells and channels of the generated per-cell standard deviation across samples, over the
    data's: 1 when samples vary at each location as much as subjects do, near 0 for a collapsed model."""
    if fake.shape[0] < 2 or real.shape[0] < 2:
        return float("nan")
    real_var = float(real.var(axis=0, ddof=1).mean())
    return float(np.sqrt(fake.var(axis=0, ddof=1).mean() / real_var)) if real_var > 0 else float("nan")


def layout_scores(
    real: Mapping[str, np.ndarray],
    fake: Mapping[str, np.ndarray],
    mask: np.ndarray,
    cells: int = 32,
    *,
    splits: int = 50,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per modality present in both `real` and `fake` ((N, H, W, C) arrays on one canvas, any value range
    shared by both): mean_corr, sample_corr (mean and std), real_split_half, real_sample_corr, ratio,
    and the counts. See the module docstring for what each means."""
    grid = layout_grid(mask, cells)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for name in real:
        if name not in fake:
            continue
        r, f = cell_means(real[name], grid), cell_means(fake[name], grid)
        ref = r.mean(0)
        split_half = _split_half(r, splits, rng)
        mean_corr = correlation(f.mean(0), ref)
        per_sample = np.array([correlation(x, ref) for x in f])
        out[name] = {
            "mean_corr": mean_corr,
            "sample_corr": float(per_sample.mean()),
            "sample_corr_std": float(per_sample.std()),
            "real_split_half": split_half,
            "real_sample_corr": float(np.mean([correlation(x, ref) for x in r])),
            "ratio": mean_corr / split_half if split_half > 0 else float("nan"),
            "std_ratio": _std_ratio(f, r),
            "real_count": int(r.shape[0]),
            "fake_count": int(f.shape[0]),
            "cells": int(grid.inside.sum()),
            "cell_pixels": int(grid.cell),
        }
    return out


def _display(mean_map: np.ndarray) -> np.ndarray:
    """(H, W, C) mean map → something imshow shows: RGB as is, one channel squeezed."""
    return np.clip(mean_map, 0, 1) if mean_map.shape[-1] == 3 else mean_map[..., 0]


def layout_plot(
    real: Mapping[str, np.ndarray],
    fake: Mapping[str, Mapping[str, np.ndarray]],
    mask: np.ndarray,
    path: str | Path,
    scores: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
) -> Path:
    """One row per modality: real mean map | generated mean map per model | |difference| per model.

    `fake` maps a model label to its maps; values in [0, 1]. `scores[label][modality]` adds mean_corr and
    the split-half reference to the titles."""
    from .plots import figure

    names = [n for n in real if all(n in maps for maps in fake.values())]
    labels = list(fake)
    cols = 1 + 2 * len(labels)
    fig, axes = figure(2.6 * cols, 2.7 * len(names), len(names), cols)
    inside = (np.asarray(mask) > 0)[..., None]
    for row, name in enumerate(names):
        ref = np.asarray(real[name], np.float64).mean(0)
        lo, hi = np.percentile(ref[inside[..., 0]], [1, 99]) if ref.shape[-1] == 1 else (0.0, 1.0)
        panels = [(f"real mean ({real[name].shape[0]})", ref, "gray")]
        for label in labels:
            gen = np.asarray(fake[label][name], np.float64).mean(0)
            s = (scores or {}).get(label, {}).get(name)
            tag = f" r={s['mean_corr']:.2f}/{s['real_split_half']:.2f}" if s else ""
            panels.append((f"{label} mean ({fake[label][name].shape[0]}){tag}", gen, "gray"))
            panels.append((f"|{label} - real|", np.abs(gen - ref).mean(-1, keepdims=True) * inside, "magma"))
        for col, (title, image, cmap) in enumerate(panels):
            ax = axes[row][col]
            shown = _display(image)
            if shown.ndim == 2 and cmap == "gray":
                ax.imshow(shown, cmap=cmap, vmin=lo, vmax=hi)
            elif shown.ndim == 2:
                ax.imshow(shown, cmap=cmap, vmin=0, vmax=max(float(shown.max()), 1e-6))
            else:
                ax.imshow(shown)
            ax.set_title(f"{name}: {title}" if col == 0 else title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
