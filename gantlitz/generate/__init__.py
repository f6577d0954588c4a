"""Generation: stitched full-canvas maps, sampling, interpolation, noise variation, extrapolation (§5.1, §5.4).

`load(checkpoint)` gives a `TextureModel`; `model.sample(seed)` synthesises the full canvas (or an aligned
region) of every requested modality from non-overlapping patch tiles, and `model.write(seed, out_dir)`
writes `seedNNNN/{albedo,specular,displacement,normal}.{exr|png|tif}` plus a contact sheet.

Memory: the device holds one tile of patches (all requested modalities batched in one forward pass) plus
one tile being copied to the host, never the whole canvas. The host holds the finished float32 maps
(6144x4096 x (3+1+1) x 4 B ~ 503 MB, plus 302 MB for the normal map, plus one transient copy of a map
while its file is written); normals are derived from the displacement in row bands on the host.

Modules:
  selection.py    what a call asks for: `parse_seeds`, `modality_list`, `MAP_CHANNELS`
  tiling.py       `Tile`, `tile_layout` (on `geometry.tiles`), `iter_tiles` (one forward pass per tile),
                  `synthesize_texture` (one modality's canvas on the device)
  streaming.py    `stream_maps`: the one full-canvas path to host maps (overlapped CUDA copies, timing)
  postprocess.py  maps on the host: `normals_from_displacement` (row bands), `extrapolate_fill` (§5.4)
  model.py        `TextureModel` (seeds → maps and files, interpolation, noise variation), the checkpoint's
                  dataset facts, `interpolate_ws`, `load`
"""

from __future__ import annotations

from .model import DEFAULT_SCALE_PER_PIXEL, TextureModel, interpolate_ws, load
from .postprocess import DEFAULT_NORMAL_CONVENTION, extrapolate_fill, normals_from_displacement
from .selection import MAP_CHANNELS, parse_seeds
from .streaming import stream_maps
from .tiling import iter_tiles, synthesize_texture, tile_layout

__all__ = [
    "TextureModel",
    "load",
    "parse_seeds",
    "synthesize_texture",
    "stream_maps",
    "iter_tiles",
    "tile_layout",
    "normals_from_displacement",
    "extrapolate_fill",
    "interpolate_ws",
    "MAP_CHANNELS",
    "DEFAULT_NORMAL_CONVENTION",
    "DEFAULT_SCALE_PER_PIXEL",
]
