"""The modality channel layout: which of the stored (and generated) channels belong to which modality.

One home for the 3 + 1 + 1 layout, so networks, augmentation, monitors, metrics and generation slice
the same channels by name instead of by hand-written index ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MODALITIES: tuple[str, ...] = ("albedo", "specular", "displacement")
"""Modalities in the order of the stored channels (3 + 1 + 1)."""
MODALITY_CHANNELS: dict[str, int] = {"albedo": 3, "specular": 1, "displacement": 1}
DATA_CHANNELS = sum(MODALITY_CHANNELS.values())


def channel_slices(modalities: Sequence[str] = MODALITIES) -> dict[str, slice]:
    """The channels of each modality in a stack of `modalities` (in that order): the stored layout for
    the default, {"albedo": 0:3, "specular": 3:4, "displacement": 4:5}."""
    out, start = {}, 0
    for name in modalities:
        out[name] = slice(start, start + MODALITY_CHANNELS[name])
        start += MODALITY_CHANNELS[name]
    return out


CHANNEL_SLICES: dict[str, slice] = channel_slices()
"""The channels of each modality in the stored (and generated) 5-channel layout."""
CHANNEL_MODALITY: tuple[int, ...] = tuple(i for i, m in enumerate(MODALITIES) for _ in range(MODALITY_CHANNELS[m]))
"""The modality index of each of the 5 channels: (0, 0, 0, 1, 2)."""


def split_channels(stack: Any, axis: int = 1, modalities: Sequence[str] = MODALITIES) -> dict[str, Any]:
    """{modality: its channels} of an array or tensor stacking `modalities` along `axis` (views, no copy)."""
    axis = axis % stack.ndim
    lead = (slice(None),) * axis
    return {name: stack[lead + (sl,)] for name, sl in channel_slices(modalities).items()}


def keep_channels(keep: Any) -> Any:
    """A (B, 3) per-modality keep mask (array or tensor) → the (B, 5) mask of their channels."""
    return keep[:, list(CHANNEL_MODALITY)]

