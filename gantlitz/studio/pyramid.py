"""The deep-zoom pyramid: tiles on the patch grid, from one patch at 1:1 up to the whole canvas in one tile.

Level `finest` holds one tile per generator patch (tile side = patch size, canvas pixels at 1:1). Each
coarser level halves the resolution: its tile covers a 2×2 block of the finer level's tiles, down-sampled
by block mean, so every tile border of every level lies on a patch border and the seams a user inspects are
the generator's own. Level 0 is the first level whose grid is a single tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .params import ParamError

__all__ = ["Pyramid", "Rect"]

Rect = tuple[int, int, int, int]
"""(top, left, height, width) in canvas pixels."""


@dataclass(frozen=True)
class Pyramid:
    """Tile geometry of a canvas of `height` × `width` pixels made of `patch`-pixel patches."""

    height: int
    width: int
    patch: int

    @property
    def grid(self) -> tuple[int, int]:
        """Patch rows and columns of the canvas."""
        return math.ceil(self.height / self.patch), math.ceil(self.width / self.patch)

    @property
    def levels(self) -> int:
        """Number of levels: enough halvings to fit the canvas in one tile, but never below one pixel per
        patch (so a tile's down-sampling factor always divides the patch size)."""
        span = max(self.grid)
        halvings = max(0, math.ceil(math.log2(span))) if span > 1 else 0
        return min(halvings, int(math.log2(self.patch))) + 1

    @property
    def finest(self) -> int:
        return self.levels - 1

    def factor(self, level: int) -> int:
        """Canvas pixels per tile pixel at `level` (1 at the finest)."""
        return 1 << (self.finest - level)

    def level_grid(self, level: int) -> tuple[int, int]:
        """Tile rows and columns at `level`."""
        f = self.factor(level)
        rows, cols = self.grid
        return math.ceil(rows / f), math.ceil(cols / f)

    def level_size(self, level: int) -> tuple[int, int]:
        """(height, width) in pixels of the whole canvas at `level`."""
        f = self.factor(level)
        return self.height // f, self.width // f

    def check(self, level: int, row: int, col: int) -> None:
        """A `ParamError` naming level, row or col when the tile does not exist."""
        if not 0 <= level <= self.finest:
            raise ParamError("level", f"{level} is out of range 0 .. {self.finest}")
        rows, cols = self.level_grid(level)
        if not 0 <= row < rows:
            raise ParamError("row", f"{row} is out of range 0 .. {rows - 1} at level {level}")
        if not 0 <= col < cols:
            raise ParamError("col", f"{col} is out of range 0 .. {cols - 1} at level {level}")

    def rect(self, level: int, row: int, col: int) -> Rect:
        """The canvas region a tile covers (whole patches, clipped at the canvas border)."""
        span = self.patch * self.factor(level)
        top, left = row * span, col * span
        return top, left, min(span, self.height - top), min(span, self.width - left)

    def level_for(self, long_side: int) -> int:
        """The finest level whose whole canvas has a long side of at most `long_side` pixels."""
        for level in range(self.finest, -1, -1):
            if max(self.level_size(level)) <= long_side:
                return level
        return 0

    def describe(self) -> list[dict[str, Any]]:
        """Per level: factor, grid and pixel size (what the front end lays tiles out with)."""
        return [{"level": lvl, "factor": self.factor(lvl), "rows": self.level_grid(lvl)[0],
                 "cols": self.level_grid(lvl)[1], "height": self.level_size(lvl)[0],
                 "width": self.level_size(lvl)[1]} for lvl in range(self.levels)]
