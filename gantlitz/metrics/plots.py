"""Figures: KID box plots in the style of the paper's Fig. 17, and power-spectrum comparisons.

Matplotlib's object API with the Agg canvas (headless; pyplot and its global backend are never
touched, so this is safe to call from any process or thread); every function writes one PNG and
returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..outputs import save_figure

__all__ = ["figure", "kid_boxplot", "spectra_plot", "format_mean_std"]


def figure(width: float, height: float, nrows: int = 1, ncols: int = 1, width_ratios=None):
    """A headless Matplotlib figure (Agg canvas, no pyplot state) and its axes as a list of rows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False,
                        gridspec_kw={"width_ratios": width_ratios} if width_ratios else None)
    return fig, [list(row) for row in axes]


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def format_mean_std(mean: float, std: float) -> str:
    """'mean (std)' with 3 significant digits, scientific where the values are tiny or huge."""
    scale = max(abs(mean), abs(std))
    if scale != 0 and (scale < 1e-3 or scale >= 1e4):
        return f"{mean:.2e}\n({std:.1e})"
    return f"{mean:.3g}\n({std:.2g})"


def kid_boxplot(
    values: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    title: str = "KID",
    ylabel: str = "KID",
    inset: np.ndarray | None = None,
    inset_title: str | None = None,
    dpi: int = 150,
) -> Path:
    """One box per set in the given order (put "real splits" first), mean (std) printed above each.

    `inset`: an optional H×W×3 image in [0, 1] shown in a panel on the right (e.g. the canvas with the
    evaluated patch outlined, as in Fig. 17 right).
    """
    names = list(values)
    if not names:
        raise ValueError("no sets to plot")
    data = [np.asarray(values[k], dtype=np.float64) for k in names]
    width = max(4.0, 1.1 * len(names) + 1.5)
    if inset is not None:
        fig, [[ax, ax_img]] = figure(width + 3.2, 4.6, 1, 2, [width, 3.0])
    else:
        fig, [[ax]] = figure(width, 4.6)
    box = ax.boxplot(data, showfliers=True, patch_artist=True, widths=0.6,
                     flierprops=dict(marker=".", markersize=2, alpha=0.4))
    colours = _cmap("tab10")
    for i, patch in enumerate(box["boxes"]):
        patch.set_facecolor(colours(i % 10))
        patch.set_alpha(0.55)
    tilt = len(names) > 3
    ax.set_xticks(range(1, len(names) + 1), names, rotation=25 if tilt else 0, ha="right" if tilt else "center")
    lo = min(float(d.min()) for d in data)
    hi = max(float(d.max()) for d in data)
    span = hi - lo if hi > lo else max(abs(hi), 1e-6)
    ax.set_ylim(lo - 0.05 * span, hi + 0.22 * span)
    for i, d in enumerate(data, start=1):
        ax.text(i, hi + 0.04 * span, format_mean_std(float(d.mean()), float(d.std())), ha="center", va="bottom",
                fontsize=8)
    ax.axhline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if inset is not None:
        ax_img.imshow(np.clip(inset, 0.0, 1.0))
        ax_img.set_axis_off()
        if inset_title:
            ax_img.set_title(inset_title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)


def spectra_plot(
    spectra: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    path: str | Path,
    *,
    title: str | None = None,
    reference: str | None = "real",
    dpi: int = 150,
) -> Path:
    """One panel per modality: log power vs frequency (cycles/pixel), one line per set.

    `spectra[modality][set_name] = (freqs, power)` with power of shape (bins,) or (C, bins) (channels
    are averaged).  The `reference` set is drawn black and thicker.
    """
    modalities = list(spectra)
    if not modalities:
        raise ValueError("no spectra to plot")
    fig, [axes] = figure(4.4 * len(modalities), 3.8, 1, len(modalities))
    colours = _cmap("tab10")
    for ax, modality in zip(axes, modalities):
        k = 0
        for name, (freqs, power) in spectra[modality].items():
            p = np.asarray(power, dtype=np.float64)
            p = p.mean(axis=0) if p.ndim == 2 else p
            p = np.maximum(p, 1e-20)
            if name == reference:
                ax.semilogy(freqs, p, color="black", lw=2.0, label=name)
            else:
                ax.semilogy(freqs, p, color=colours(k % 10), lw=1.2, label=name)
                k += 1
        ax.set_title(modality)
        ax.set_xlabel("frequency (cycles / pixel)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("power")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)
