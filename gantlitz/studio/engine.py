"""What the studio shows, made on demand from a `TextureModel`: pyramid tiles, thumbnails, a lit-preview .glb.

Synthesis goes through `TextureModel.sample_ws` one *pass* at a time: the passes are exactly the forward
passes `gantlitz generate` runs (`generate.tile_layout` over the canvas with the model's patches per pass,
all three network modalities batched), so every pixel shown equals the file `generate` writes for the same
seed. Coarse tiles are block means of full-resolution rows of patches made one row at a time, so neither
a view nor a preview ever holds a whole full-resolution map. Finished passes (float maps) and encoded results
(PNG, GLB) are kept in two byte-bounded LRU caches.

Every method here runs on the studio's one worker thread (`Worker`), never concurrently.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import MODALITIES
from ..generate import MAP_CHANNELS, TextureModel, interpolate_ws, normals_from_displacement, tile_layout
from ..outputs.mapfiles import OUTPUT_MAPS
from ..resample import area_downsample, to_uint8
from .cache import LRUCache
from .params import Identity
from .pyramid import Pyramid, Rect

__all__ = ["Engine", "Cancelled", "tile_key", "thumb_key", "preview_key"]

PREVIEW_TEXTURE = 2048
"""Longest side of the lit preview's textures: the pyramid level just below it is used."""


class Cancelled(Exception):
    """A long job (a download) was stopped between passes."""


def tile_key(ident: Identity, modality: str, level: int, row: int, col: int) -> tuple:
    return ("tile", ident, modality, level, row, col)


def thumb_key(ident: Identity) -> tuple:
    return ("thumb", ident)


def preview_key(ident: Identity) -> tuple:
    return ("preview", ident)


def png_bytes(image: np.ndarray) -> bytes:
    """8-bit PNG of an H×W×C map in [0, 1] (the quantisation of every preview, `resample.to_uint8`)."""
    from PIL import Image

    data = to_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(data[:, :, 0] if data.shape[2] == 1 else data).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _intersect(a: Rect, b: Rect) -> Rect | None:
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return (top, left, bottom - top, right - left) if bottom > top and right > left else None


class Engine:
    """Tiles, thumbnails and previews of one model; `cache_bytes` bounds both caches together."""

    def __init__(self, model: TextureModel, *, cache_bytes: int = 512 << 20, scratch: str | Path | None = None) -> None:
        self.model = model
        self.pyramid = Pyramid(model.canvas[0], model.canvas[1], model.patch_size)
        self.passes = tile_layout((0, 0, *model.canvas), model.patch_size, model.patches_per_pass)
        self.maps: LRUCache[dict[str, np.ndarray]] = LRUCache(cache_bytes // 2)
        self.results: LRUCache[bytes] = LRUCache(cache_bytes - cache_bytes // 2)
        self.scratch = scratch
        self.passes_run = 0
        self._mesh: Any = None

    # ------------------------------------------------------------------------------------------ latents
    def ws(self, ident: Identity) -> torch.Tensor:
        """Latents of an identity: the seed's, or the slerp in W towards seed_b (as `gantlitz interpolate`)."""
        wa = self.model.ws_for_seed(ident.seed, ident.truncation)
        if ident.seed_b is None:
            return wa
        return interpolate_ws(wa, self.model.ws_for_seed(ident.seed_b, ident.truncation), ident.t)

    # ------------------------------------------------------------------------------------------- passes
    def _pass(self, ident: Identity, index: int, net: tuple[str, ...]) -> dict[str, np.ndarray]:
        key = ("pass", ident, net, index)
        found = self.maps.get(key)
        if found is not None:
            return found
        p = self.passes[index]
        maps = self.model.sample_ws(self.ws(ident), net, noise_seed=ident.noise_seed,
                                    region=(p.top, p.left, p.height, p.width))
        self.passes_run += 1
        return self.maps.put(key, maps)

    def region(self, ident: Identity, modality: str, rect: Rect, net: tuple[str, ...] = MODALITIES) -> np.ndarray:
        """Full-resolution values (h×w×C in [0, 1]) of `rect`, assembled from the passes that cover it.

        Normals come from the displacement with a one-pixel border (right and above: the forward
        differences of `maps.gradients`), so they equal the whole map's normals exactly.
        """
        top, left, height, width = rect
        if modality == "normal":
            canvas_h, canvas_w = self.model.canvas
            y0, x1 = max(top - 1, 0), min(left + width + 1, canvas_w)
            d = self.region(ident, "displacement", (y0, left, top + height - y0, x1 - left), net)
            n = normals_from_displacement(d, self.model.displacement_scale, self.model.normal_convention)
            return np.ascontiguousarray(n[top - y0 :, :width])
        out = np.empty((height, width, MAP_CHANNELS[modality]), np.float32)
        for index, p in enumerate(self.passes):
            part = _intersect(rect, (p.top, p.left, p.height, p.width))
            if part is None:
                continue
            y, x, h, w = part
            src = self._pass(ident, index, net)[modality][y - p.top : y - p.top + h, x - p.left : x - p.left + w]
            out[y - top : y - top + h, x - left : x - left + w] = src
        return out

    def downsampled(self, ident: Identity, modality: str, rect: Rect, factor: int,
                    net: tuple[str, ...] = MODALITIES) -> np.ndarray:
        """Block mean by `factor` of `rect`, one row of patches at a time (memory: one row, not the rect)."""
        if factor == 1:
            return self.region(ident, modality, rect, net)
        top, left, height, width = rect
        out = np.empty((height // factor, width // factor, MAP_CHANNELS[modality]), np.float32)
        band = self.model.patch_size
        for y in range(top, top + height, band):
            h = min(band, top + height - y)
            rows = self.region(ident, modality, (y, left, h, width), net)
            out[(y - top) // factor : (y - top + h) // factor] = area_downsample(rows, factor)
        return out

    # ---------------------------------------------------------------------------------------- results
    def tile_array(self, ident: Identity, modality: str, level: int, row: int, col: int) -> np.ndarray:
        """One pyramid tile as float values (tile side = patch size, fewer at the canvas border)."""
        self.pyramid.check(level, row, col)
        return self.downsampled(ident, modality, self.pyramid.rect(level, row, col), self.pyramid.factor(level))

    def tile(self, ident: Identity, modality: str, level: int, row: int, col: int) -> bytes:
        """One pyramid tile as PNG (cached)."""
        key = tile_key(ident, modality, level, row, col)
        found = self.results.get(key)
        if found is not None:
            return found
        return self.results.put(key, png_bytes(self.tile_array(ident, modality, level, row, col)))

    def thumbnail(self, ident: Identity) -> bytes:
        """The albedo at the coarsest level as PNG, synthesised alone (a third of the work of a full tile)."""
        key = thumb_key(ident)
        found = self.results.get(key)
        if found is not None:
            return found
        image = self.downsampled(ident, "albedo", (0, 0, *self.model.canvas), self.pyramid.factor(0), ("albedo",))
        return self.results.put(key, png_bytes(image))

    def _head(self) -> Any:
        if self._mesh is None:
            from ..render import load_mesh

            self._mesh = load_mesh()
        return self._mesh

    def preview(self, ident: Identity) -> bytes:
        """The bundled head with albedo, specular and normal maps at preview resolution, as a .glb written
        by `export.export_gltf` (the same writer as the .glb download)."""
        key = preview_key(ident)
        found = self.results.get(key)
        if found is not None:
            return found
        level = self.pyramid.level_for(PREVIEW_TEXTURE)
        rect = (0, 0, *self.model.canvas)
        factor = self.pyramid.factor(level)
        maps = {m: self.downsampled(ident, m, rect, factor) for m in ("albedo", "specular", "normal")}
        with tempfile.TemporaryDirectory(prefix="preview-", dir=self.scratch) as folder:
            data = self.write_glb(maps, Path(folder) / "head.glb", max_texture=None).read_bytes()
        return self.results.put(key, data)

    def write_glb(self, maps: dict[str, np.ndarray], out: Path, max_texture: int | None) -> Path:
        """albedo, specular and normal maps on the bundled head, written (and validated) by `export_gltf`."""
        from ..export import export_gltf
        from ..render import Maps

        textures = Maps(albedo=maps["albedo"], specular=maps["specular"], normal=maps["normal"],
                        convention=self.model.normal_convention, name=self.model.name)
        return export_gltf(textures, self._head(), out, max_texture=max_texture, name=self.model.name)

    def full_maps(self, ident: Identity, progress: Callable[[int, int], None],
                  cancelled: Callable[[], bool]) -> dict[str, np.ndarray]:
        """The four full-resolution maps (downloads), pass by pass with `progress(done, total)`, bypassing
        the caches (a whole canvas would evict every tile); raises `Cancelled` between passes."""
        height, width = self.model.canvas
        ws = self.ws(ident)
        net = {m: np.empty((height, width, MAP_CHANNELS[m]), np.float32) for m in MODALITIES}
        for index, p in enumerate(self.passes):
            if cancelled():
                raise Cancelled()
            part = self.model.sample_ws(ws, MODALITIES, noise_seed=ident.noise_seed,
                                        region=(p.top, p.left, p.height, p.width))
            for m, arr in part.items():
                net[m][p.top : p.top + p.height, p.left : p.left + p.width] = arr
            progress(index + 1, len(self.passes))
        net["normal"] = normals_from_displacement(net["displacement"], self.model.displacement_scale,
                                                  self.model.normal_convention)
        return {m: net[m] for m in OUTPUT_MAPS}

    def stats(self) -> dict[str, Any]:
        return {"passes_run": self.passes_run, "maps_cache": self.maps.stats(), "results_cache": self.results.stats()}
