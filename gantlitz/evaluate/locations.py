"""Where the measures look: the evaluated patch (named or explicit locations) and the whole-map size."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import InputError

NAMED_LOCATIONS: dict[str, tuple[float, float]] = {"lips": (0.467, 0.5)}
"""Built-in patch locations as the (row, column) fraction of the canvas at the patch centre.

Measured on the Lee Perry-Smith albedo (`Map-COL.jpg`, 1024², image rows top to bottom as stored,
which is the layout of the synthetic data): the lips span rows ≈ 455–500 and columns ≈ 450–575, centre
(478, 512) → (0.467, 0.5).  A dataset manifest may override or add names with
`"locations": {"lips": [top, left], ...}` in canvas pixels."""


def resolve_location(
    location: str | Sequence[int],
    canvas: tuple[int, int],
    patch: int,
    manifest: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """(top, left) of the evaluated patch in canvas pixels.

    A name is looked up in the manifest's `locations` first (used as given), then in
    `NAMED_LOCATIONS` (fraction of the canvas at the patch centre, snapped to the training patch grid
    of stride patch/2 and clamped into the canvas).  Explicit (top, left) or "TOP,LEFT" is used as
    given.  Out-of-canvas patches are an error.
    """
    height, width = int(canvas[0]), int(canvas[1])
    if patch > height or patch > width:
        raise InputError(f"patch {patch} does not fit in the canvas {width}x{height}")
    if isinstance(location, str) and "," in location:
        try:
            location = tuple(int(v) for v in location.split(","))
        except ValueError as exc:
            raise InputError(f"location {location!r} is neither a name nor TOP,LEFT integers") from exc
    if isinstance(location, str):
        named = dict((manifest or {}).get("locations") or {})
        if location in named:
            top, left = (int(v) for v in named[location])
        elif location in NAMED_LOCATIONS:
            fy, fx = NAMED_LOCATIONS[location]
            stride = max(patch // 2, 1)

            def snap(centre: float, extent: int) -> int:
                pos = int(round((centre - patch / 2) / stride)) * stride
                return int(min(max(pos, 0), (extent - patch) // stride * stride))

            top, left = snap(fy * height, height), snap(fx * width, width)
        else:
            known = sorted(set(named) | set(NAMED_LOCATIONS))
            raise InputError(f"unknown location {location!r}; known: {', '.join(known)} (or TOP,LEFT pixels)")
    else:
        if len(location) != 2:
            raise InputError(f"location must be (top, left), got {location!r}")
        top, left = int(location[0]), int(location[1])
    if not (0 <= top <= height - patch and 0 <= left <= width - patch):
        raise InputError(f"patch {patch} at (top {top}, left {left}) leaves the canvas {width}x{height}")
    return top, left


def whole_shape(canvas: tuple[int, int], whole_size: int) -> tuple[int, int, int]:
    """(height, width, factor) of the down-sampled whole maps: the smallest integer factor that divides
    both canvas sides and brings the long side to <= whole_size (so down-sampling is an exact block mean)."""
    height, width = int(canvas[0]), int(canvas[1])
    g = math.gcd(height, width)
    for f in range(1, g + 1):
        if g % f == 0 and max(height, width) // f <= whole_size:
            return height // f, width // f, f
    return height // g, width // g, g


@dataclass(frozen=True)
class Geometry:
    """Where the measures look: the canvas, the patch (side, top, left) and the whole-map size and factor."""

    canvas: tuple[int, int]
    patch: int
    top: int
    left: int
    wh: int
    ww: int
    factor: int

    @classmethod
    def of(cls, store: Any, manifest: Mapping[str, Any], models: Mapping[str, Any], patch: int | None,
           location: str | Sequence[int], whole_size: int) -> "Geometry":
        canvas = (int(store.canvas[0]), int(store.canvas[1]))
        if patch is None:
            sizes = {int(getattr(m, "patch_size", 512)) for m in models.values()}
            patch = min(sizes) if sizes else 512
        patch = min(int(patch), canvas[0], canvas[1])
        top, left = resolve_location(location, canvas, patch, manifest)
        return cls(canvas, patch, top, left, *whole_shape(canvas, whole_size))
