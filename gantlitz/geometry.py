"""Canvas and patch arithmetic (paper §4.4, Table 1) as pure functions.

The synthesis network is padding-free. Level 0 reads a crop of the positional-encoding map with a margin
of `PE_MARGIN` pixels per side and runs two 3x3 convolutions; every later level up-samples by 2 (nearest
+ 3-tap blur, which shrinks by 2) and runs two 3x3 convolutions, so each level's output is its core plus
`OUT_MARGIN` pixels per side.  Because every sample of every layer sits at a fixed global canvas position,
neighbouring patches compute identical values where they overlap: seamless by construction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .errors import UsageError

PE_MARGIN = 5
"""Per-side margin of the level-0 positional-encoding crop (two 3x3 convs + OUT_MARGIN)."""
OUT_MARGIN = 3
"""Per-side margin of every level's output around its core."""
CONV_MARGINS = (4, 3)
"""Per-side margins of the outputs of a level's first and second 3x3 convolution."""


def num_levels(patch: int) -> int:
    """Levels from the 4-pixel core to `patch` (8 for 512)."""
    if patch < 8 or patch & (patch - 1):
        raise ValueError(f"patch size must be a power of two >= 8, got {patch}")
    return int(math.log2(patch // 4)) + 1


def level0_unit(patch: int) -> int:
    """Canvas pixels per level-0 pixel (128 for 512-pixel patches)."""
    return patch // 4


def core_sizes(patch: int) -> list[int]:
    """Patch core size per level: 4, 8, ..., patch."""
    return [4 << lvl for lvl in range(num_levels(patch))]


def forward_sizes(patch: int) -> list[int]:
    """Sizes computed forward for one patch (Table 1, last row): PE crop at level 0, outputs after."""
    sizes = [4 + 2 * PE_MARGIN]
    n = 4 + 2 * OUT_MARGIN
    for _ in range(1, num_levels(patch)):
        n = 2 * n - 2 * OUT_MARGIN
        sizes.append(n)
    return sizes


def receptive_fields(patch: int) -> list[int]:
    """Receptive field of the final patch traced backward per level (Table 1), sub-pixels rounded up."""
    levels = num_levels(patch)
    fields = [patch]
    for _ in range(levels - 1):
        fields.append(math.ceil((fields[-1] + 2 * OUT_MARGIN) / 2))
    fields.reverse()
    # Level 0 also feeds two 3x3 convolutions from the positional encoding.
    fields[0] = fields[0] + 2 * (PE_MARGIN - OUT_MARGIN)
    return fields


def canvas_level0(canvas_h: int, canvas_w: int, patch: int) -> tuple[int, int]:
    """Level-0 size of the canvas (32x48 for 4096x6144 with 512-pixel patches)."""
    unit = level0_unit(patch)
    if canvas_h % unit or canvas_w % unit:
        raise ValueError(f"canvas {canvas_w}x{canvas_h} is not a multiple of {unit} (patch {patch})")
    return canvas_h // unit, canvas_w // unit


def pe_map_size(canvas_h: int, canvas_w: int, patch: int) -> tuple[int, int]:
    """Size of the padded positional-encoding map that covers every patch of the canvas (42x58)."""
    h0, w0 = canvas_level0(canvas_h, canvas_w, patch)
    return h0 + 2 * PE_MARGIN, w0 + 2 * PE_MARGIN


def level_step(patch: int, level: int) -> int:
    """Canvas pixels per sample of synthesis `level` (1 at the last level, `level0_unit` at level 0)."""
    return 1 << (num_levels(patch) - 1 - level)


def level_canvas(canvas_h: int, canvas_w: int, patch: int, level: int) -> tuple[int, int]:
    """The whole canvas at synthesis `level`: (H, W) divided by `level_step`."""
    step = level_step(patch, level)
    return canvas_h // step, canvas_w // step


def level_window(start, size, patch: int, level: int, margin: int):
    """Global start and length, at `level`, of the samples that cover canvas pixels [start, start + size)
    plus `margin` per side. Works on ints and on integer tensors (one window per sample)."""
    step = level_step(patch, level)
    return start // step - margin, size // step + 2 * margin


class RegionError(UsageError):
    """A canvas region synthesis can not compute: empty, off the level-0 grid, or outside the canvas."""


@dataclass(frozen=True)
class Region:
    """A pixel-aligned canvas region in pixels of the final level (top/left may lie outside the canvas)."""

    top: int
    left: int
    height: int
    width: int

    def __iter__(self) -> Iterator[int]:
        """(top, left, height, width), so that a Region unpacks like the tuple it replaces."""
        return iter((self.top, self.left, self.height, self.width))

    def level0(self, patch: int) -> "Region":
        """The positional-encoding crop (level-0 pixels, margin included) that synthesises this region."""
        check_regions(patch, self.height, self.width, [self.top], [self.left])
        top, height = level_window(self.top, self.height, patch, 0, PE_MARGIN)
        left, width = level_window(self.left, self.width, patch, 0, PE_MARGIN)
        return Region(top, left, height, width)


def check_regions(patch: int, height: int, width: int, tops=(), lefts=(),
                  canvas: tuple[int, int] | None = None) -> None:
    """Raise `RegionError` unless regions of height × width at (tops, lefts) are non-empty, on the level-0
    grid and (with `canvas`) inside it: the one rule for every region that enters synthesis.

    Call it where offsets enter, with host values (ints, or CPU tensors: checking device tensors would
    wait for the device); the synthesis itself does not check offsets."""
    unit = level0_unit(patch)
    tops, lefts = _host_ints(tops), _host_ints(lefts)
    def where() -> str:
        return f"{height}x{width} at tops {tops}, lefts {lefts}"

    if height <= 0 or width <= 0:
        raise RegionError(f"region {where()} is empty")
    if canvas is not None and (any(t < 0 or t + height > canvas[0] for t in tops)
                               or any(v < 0 or v + width > canvas[1] for v in lefts)):
        raise RegionError(f"region {where()} lies outside the canvas {canvas[0]}x{canvas[1]} (height x width)")
    if height % unit or width % unit or any(v % unit for v in tops + lefts):
        raise RegionError(f"region {where()} must be aligned to multiples of {unit} pixels for patch size {patch}")


def check_region(region: Sequence[int] | Region | None, canvas: tuple[int, int], patch: int) -> Region:
    """A (top, left, height, width) region of the canvas, or None for the whole canvas, checked."""
    if region is None:
        return Region(0, 0, canvas[0], canvas[1])
    try:
        top, left, height, width = (int(v) for v in region)
    except (TypeError, ValueError):
        raise RegionError(f"region must be (top, left, height, width), got {region!r}") from None
    check_regions(patch, height, width, [top], [left], canvas)
    return Region(top, left, height, width)


def _host_ints(values) -> list[int]:
    flat = values.flatten().tolist() if hasattr(values, "flatten") else values
    return [int(v) for v in flat]


def tiles(region: Sequence[int] | Region, height: int, width: int) -> list[Region]:
    """Row-major tiles of at most height × width covering `region` once (the last row and column
    clipped): the one tiler of generation, previews, inversion and evaluation."""
    top, left, rh, rw = region
    if height < 1 or width < 1:
        raise RegionError(f"tiles must be non-empty, got {height}x{width}")
    return [Region(y, x, min(height, top + rh - y), min(width, left + rw - x))
            for y in range(top, top + rh, height) for x in range(left, left + rw, width)]


def windows(height: int, width: int, win_h: int, win_w: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners, row-major, of the win_h × win_w windows at `stride` that fit in height × width."""
    return [(top, left) for top in range(0, height - win_h + 1, stride) for left in range(0, width - win_w + 1, stride)]


def patch_grid(canvas_h: int, canvas_w: int, patch: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Top-left corners of all patches at `stride` (default 50 % overlap), row-major.

    6144x4096 with 512-pixel patches gives 23x15 = 345 training locations; stride=patch gives the
    12x8 = 96 non-overlapping inference tiles.
    """
    stride = patch // 2 if stride is None else stride
    if stride <= 0 or stride % level0_unit(patch):
        raise ValueError(f"stride {stride} must be a positive multiple of {level0_unit(patch)}")
    if canvas_h < patch or canvas_w < patch or (canvas_h - patch) % stride or (canvas_w - patch) % stride:
        raise ValueError(f"canvas {canvas_w}x{canvas_h} is not tiled by patch {patch} at stride {stride}")
    return windows(canvas_h, canvas_w, patch, patch, stride)
