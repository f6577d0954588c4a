"""Generation: stitched full-canvas maps, sampling, interpolation, noise variation, extrapolation (§5.1, §5.4).

`load(checkpoint)` gives a `TextureModel`; `model.sample(seed)` synthesises the full canvas (or an aligned
region) of every requested modality from non-overlapping patch tiles, and `model.write(seed, out_dir)`
writes `seedNNNN/{albedo,specular,displacement,normal}.{exr|png|tif}` plus a contact sheet.

Memory: the device holds one tile of patches (all requested modalities batched in one forward pass) plus
one tile being copied to the host, never the whole canvas. The host holds the finished float32 maps
(6144x4096 x (3+1+1) x 4 B ~ 503 MB, plus 302 MB for the normal map, plus one transient copy of a map
while its file is written); normals are derived from the displacement in row bands on the host.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import maps as maps_mod
from .checkpoint import CheckpointError, load_generator
from .config import (CHANNEL_SLICES, MODALITIES, MODALITY_CHANNELS, SEED_MAX, SEEDS_MAX, TRUNCATION_MAX,
                     channel_slices, check_seed, check_truncation)
from .errors import UsageError
from .device import PRECISIONS, precision_context, resolve_device, resolve_precision
from .geometry import Region, check_region, level0_unit, tiles
from .nn.generator import Generator
from .resample import network_to_unit
from .outputs import refuse_existing, save_image
from .outputs.mapfiles import OUTPUT_MAPS, output_paths, write_map
from .sheets import contact_sheet, thumbnails

log = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "OUTPUT_MAPS",
    "TextureModel",
    "load",
    "parse_seeds",
    "check_seed",
    "SEED_MAX",
    "SEEDS_MAX",
    "check_truncation",
    "TRUNCATION_MAX",
    "synthesize_texture",
    "stream_maps",
    "iter_tiles",
    "tile_layout",
    "normals_from_displacement",
    "extrapolate_fill",
    "interpolate_ws",
    "output_paths",
]

MAP_CHANNELS: dict[str, int] = {**MODALITY_CHANNELS, "normal": 3}

DEFAULT_NORMAL_CONVENTION = "opengl"
DEFAULT_SCALE_PER_PIXEL = 1.0 / 256.0
"""Displacement scale used when a checkpoint does not record its dataset's: canvas width / 256 pixels."""

# ================================================================================================ helpers


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """`"0-7"`, `"1,5,9"`, `"0-3,8"` (or ints) → a list of distinct non-negative seeds, in order."""
    if isinstance(text, int):
        items: list[int] = [text]
    elif isinstance(text, str):
        items = []
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise UsageError(f"invalid seed list {text!r}: use e.g. 0-7, 1,5,9 or 0-3,8")
        for part in parts:
            match = re.fullmatch(r"(\d+)\s*-\s*(\d+)|(\d+)", part)
            if not match:
                raise UsageError(f"invalid seed {part!r} in {text!r}: seeds are non-negative integers or ranges a-b")
            if match.group(3) is not None:
                items.append(int(match.group(3)))
            else:
                a, b = int(match.group(1)), int(match.group(2))
                if b < a:
                    raise UsageError(f"invalid seed range {part!r}: the end is below the start")
                check_seed(a)
                check_seed(b)
                if len(items) + b - a >= SEEDS_MAX:
                    raise UsageError(f"seed list {text!r} holds more than {SEEDS_MAX} seeds")
                items.extend(range(a, b + 1))
    else:
        items = [int(s) for s in text]
    seen: set[int] = set()
    out = []
    for s in items:
        check_seed(s)
        if len(seen) >= SEEDS_MAX:
            raise UsageError(f"more than {SEEDS_MAX} seeds given")
        if s not in seen:
            seen.add(s)
            out.append(s)
    if not out:
        raise UsageError("no seeds given")
    return out


def _modality_list(modalities: str | Sequence[str]) -> list[str]:
    if isinstance(modalities, str):
        modalities = [modalities]
    out = []
    for m in modalities:
        if m not in MAP_CHANNELS:
            raise UsageError(f"unknown modality {m!r}; choose from {', '.join(OUTPUT_MAPS)}")
        if m not in out:
            out.append(m)
    if not out:
        raise UsageError("no modality requested")
    return out


# ========================================================================================= tiled synthesis
@dataclass(frozen=True)
class Tile:
    """One forward pass: a region of whole patches (clipped to the requested region)."""

    top: int
    left: int
    height: int
    width: int
    patches: int


def tile_layout(region: Region, patch: int, patches_per_pass: int | None = None) -> list[Tile]:
    """Row-major tiles covering `region` with at most `patches_per_pass` patches per forward pass.

    With `patches_per_pass` >= the patches per row the tiles are bands of whole patch rows
    (patches_per_pass // per_row rows); below that, strips of patches inside one row. None = one row.
    """
    top, left, height, width = region
    rows, cols = math.ceil(height / patch), math.ceil(width / patch)
    n = cols if patches_per_pass is None else int(patches_per_pass)
    if n < 1:
        raise UsageError(f"patches_per_pass must be >= 1, got {patches_per_pass}")
    c = min(n, cols)
    r = max(1, min(n // c, rows)) if n >= cols else 1
    return [Tile(y, x, th, tw, math.ceil(th / patch) * math.ceil(tw / patch))
            for y, x, th, tw in tiles(region, r * patch, c * patch)]


def _keep_and_channels(G: Generator, modalities: Sequence[str], batch: int) -> tuple[torch.Tensor, list[int]]:
    keep = torch.zeros(batch, len(MODALITIES), dtype=torch.bool, device=G.mask.device)
    channels: list[int] = []
    for m in modalities:
        keep[:, MODALITIES.index(m)] = True
        channels.extend(range(CHANNEL_SLICES[m].start, CHANNEL_SLICES[m].stop))
    return keep, channels


def iter_tiles(
    G: Generator | torch.nn.Module, ws: torch.Tensor, modalities: Sequence[str], noise_seed: int | torch.Tensor = 0,
    *, region: Sequence[int] | None = None, patches_per_pass: int | None = None, apply_mask: bool = True,
    noise: Any = None, call: Any = None,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Synthesize `region` tile by tile: yields (tile, tensor (B, C, h, w)) in network space on ws.device.

    C stacks the requested modalities' channels in the given order. All modalities of a tile are one
    forward pass (`G.forward` with `keep`, which batches the modality passes). `call` replaces `G` for
    the forward (e.g. a compiled G).
    """
    gen: Generator = G  # type: ignore[assignment]
    region_t = check_region(region, gen.canvas, gen.patch_size)
    mods = [m for m in modalities if m in MODALITIES]
    if not mods:
        raise UsageError(f"nothing to synthesize for modalities {list(modalities)}")
    b = ws.shape[0]
    keep, channels = _keep_and_channels(gen, mods, b)
    keep = keep.to(ws.device)
    seeds = None
    if noise is None:
        seeds = torch.as_tensor(noise_seed, dtype=torch.long, device=ws.device).reshape(-1).expand(b)
    run = call if call is not None else gen
    select = None if channels == list(range(len(channels))) else torch.tensor(channels, device=ws.device)
    for tile in tile_layout(region_t, gen.patch_size, patches_per_pass):
        tops = torch.full((b,), tile.top, dtype=torch.long, device=ws.device)
        lefts = torch.full((b,), tile.left, dtype=torch.long, device=ws.device)
        out = run(ws, tops, lefts, seeds, height=tile.height, width=tile.width, noise=noise, keep=keep,
                  apply_mask=apply_mask)
        out = out[:, : len(channels)] if select is None else out.index_select(1, select)
        yield tile, out


def synthesize_texture(
    G: Generator, ws: torch.Tensor, modality: str, noise_seed: int | torch.Tensor = 0, *,
    patches_per_pass: int | None = None, region: Sequence[int] | None = None, apply_mask: bool = True,
    noise: Any = None,
) -> torch.Tensor:
    """The whole canvas (or an aligned `region`) of one modality → (B, C, H, W) in network space, on ws.device.

    Tiles of `patches_per_pass` patches go through the generator one after the other (padding-free, so
    the result does not depend on the tiling beyond float round-off). `noise` (an `ExplicitNoise`)
    replaces the hashed noise of `noise_seed`.
    """
    if modality not in MODALITIES:
        raise UsageError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    top, left, height, width = check_region(region, G.canvas, G.patch_size)
    out = ws.new_zeros(ws.shape[0], MODALITY_CHANNELS[modality], height, width, dtype=torch.float32)
    for tile, x in iter_tiles(G, ws, [modality], noise_seed, region=(top, left, height, width),
                              patches_per_pass=patches_per_pass, apply_mask=apply_mask, noise=noise):
        y, xx = tile.top - top, tile.left - left
        out[:, :, y : y + tile.height, xx : xx + tile.width] = x.float()
    return out


def stream_maps(
    G: Generator, ws: torch.Tensor, modalities: Sequence[str], region: Sequence[int] | None = None, *,
    noise_seed: int = 0, noise: Any = None, apply_mask: bool = True, patches_per_pass: int | None = None,
    precision: str = "fp32", call: Any = None, progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The one full-canvas synthesis path: run the tiles of `region` (default: the canvas) for latents ws
    (1, num_ws, w_dim) and copy each into host arrays ({modality: h×w×C float32}, values in [0, 1], not
    clipped), with timing statistics. `noise` (an `ExplicitNoise`) replaces the hashed noise of
    `noise_seed`; `precision` is a resolved `device` precision; `call` replaces G for the forward.

    On CUDA each tile is copied asynchronously while the next one is computed, so the device holds at
    most two tiles.
    """
    region = check_region(region, G.canvas, G.patch_size)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise UsageError(f"unknown modality {unknown[0]!r}; choose from {', '.join(MODALITIES)}")
    device = ws.device
    arrays = {m: np.empty((region.height, region.width, MODALITY_CHANNELS[m]), np.float32) for m in modalities}
    bounds = channel_slices(modalities)
    tile_list = tile_layout(region, G.patch_size, patches_per_pass)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(t.patches for t in tile_list), unit="patch", desc="synthesis", leave=False)

    def deliver(tile: Tile, host: torch.Tensor) -> None:
        arr = host[0].numpy()  # h x w x C, value space
        y, x = tile.top - region.top, tile.left - region.left
        for m, sl in bounds.items():
            arrays[m][y : y + tile.height, x : x + tile.width] = arr[:, :, sl]
        if bar is not None:
            bar.update(tile.patches)

    t0 = time.perf_counter()
    timer = _CudaTimer() if device.type == "cuda" else None
    try:
        with torch.inference_mode(), precision_context(device, precision):
            outs = iter_tiles(G, ws, modalities, noise_seed, region=region, patches_per_pass=patches_per_pass,
                              apply_mask=apply_mask, noise=noise, call=call)
            values = ((tile, network_to_unit(out.float()).permute(0, 2, 3, 1).contiguous()) for tile, out in outs)
            for tile, host in (_overlapped_copies(values) if timer is not None else values):
                deliver(tile, host)
    finally:
        if bar is not None:
            bar.close()
    stats = {"patch_evaluations": float(sum(t.patches for t in tile_list) * len(modalities)),
             "forward_passes": float(len(tile_list))}
    if timer is not None:
        stats["gpu_s"] = timer.seconds()
    stats["synthesis_s"] = time.perf_counter() - t0
    return arrays, stats


class _CudaTimer:
    """Device time from construction to `seconds()` (CUDA events)."""

    def __init__(self) -> None:
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.start.record()

    def seconds(self) -> float:
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1000.0


def _overlapped_copies(values: Iterator[tuple[Tile, torch.Tensor]]) -> Iterator[tuple[Tile, torch.Tensor]]:
    """(tile, device tensor) → (tile, host tensor), each copy asynchronous and overlapping the next tile."""
    pending: deque = deque()
    for tile, val in values:
        host = val.to("cpu", non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        pending.append((tile, host, event))
        while len(pending) > 1:
            tl, hs, evt = pending.popleft()
            evt.synchronize()
            yield tl, hs
    while pending:
        tl, hs, evt = pending.popleft()
        evt.synchronize()
        yield tl, hs


# ============================================================================================ maps on host
def normals_from_displacement(
    displacement: np.ndarray, scale: float, convention: str = DEFAULT_NORMAL_CONVENTION, *, band: int = 512,
    encode: bool = True,
) -> np.ndarray:
    """Tangent normals of displacement (H x W[x1], values in [0, 1]; height = d * scale pixels).

    Computed in row bands with one row of overlap (exactly equal to `maps.displacement_to_normals` on
    the whole map, bounded temporary memory). `encode=True` returns the image values n * 0.5 + 0.5.
    """
    d = np.asarray(displacement)
    if d.ndim == 3:
        d = d[:, :, 0]
    height, width = d.shape
    out = np.empty((height, width, 3), np.float32)
    for y0 in range(0, height, band):
        y1 = min(y0 + band, height)
        start = max(y0 - 1, 0)
        n = maps_mod.displacement_to_normals(d[start:y1], scale, convention)  # type: ignore[arg-type]
        n = n[y0 - start :]
        out[y0:y1] = maps_mod.encode_normals(n) if encode else n
    return out


def _resize_torch(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "area":
        return torch.nn.functional.interpolate(x, size=size, mode="area")
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)


def extrapolate_fill(
    image: np.ndarray, mask: np.ndarray, *, detail_sigma: float | None = None, blur_sigma: float | None = None,
    feather: float | None = None,
) -> np.ndarray:
    """§5.4: outside `mask`, replace the low frequencies of an unmasked synthesis by a strong blur of them.

    image H x W x C (any value space), mask H x W (nonzero = trained region). With L = Gσd(image) (the
    low frequencies; σd = long side / 128) and L' = Gσb(L) (σb = long side / 16), the result is
    image + t · (L' − L), where t = 0 inside the mask and ramps smoothly to 1 within `feather` pixels
    (long side / 64) outside it. High-frequency detail is kept everywhere; inside the mask the image
    is returned unchanged. The blurs run on an area-down-sampled copy (the removed content is low-pass,
    so bilinear up-sampling of it is accurate) so the cost is small at 6144 x 4096.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float32)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    height, width = img.shape[:2]
    m = np.asarray(mask) > 0
    if m.shape != (height, width):
        raise UsageError(f"mask {m.shape} does not match the image {img.shape[:2]}")
    if m.all():
        return img[:, :, 0].copy() if squeeze else img.copy()
    long = max(height, width)
    detail_sigma = long / 128.0 if detail_sigma is None else float(detail_sigma)
    blur_sigma = long / 16.0 if blur_sigma is None else float(blur_sigma)
    feather = long / 64.0 if feather is None else float(feather)
    f = max(1, int(detail_sigma // 4))
    small = (max(1, round(height / f)), max(1, round(width / f)))
    fy, fx = height / small[0], width / small[1]
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
        xs = _resize_torch(x, small, "area")[0].numpy() if f > 1 else x[0].numpy()
        sd = detail_sigma / f
        sb = math.sqrt(detail_sigma**2 + blur_sigma**2) / f
        low = np.stack([ndimage.gaussian_filter(c, sd, mode="reflect") for c in xs])
        low2 = np.stack([ndimage.gaussian_filter(c, sb, mode="reflect") for c in xs])
        delta = torch.from_numpy((low2 - low).astype(np.float32))[None]
        if f > 1:
            delta = _resize_torch(delta, (height, width), "bilinear")
        # Distance (full-resolution pixels) to the trained region, from a down-sampled mask.
        mt = torch.from_numpy(m.astype(np.float32))[None, None]
        ms = (_resize_torch(mt, small, "area")[0, 0].numpy() > 0) if f > 1 else m
        dist = ndimage.distance_transform_edt(~ms, sampling=(fy, fx)).astype(np.float32)
        dist_t = torch.from_numpy(dist)[None, None]
        if f > 1:
            dist_t = _resize_torch(dist_t, (height, width), "bilinear")
        t = (dist_t[0, 0].numpy() / max(feather, 1e-6)).clip(0.0, 1.0)
        t = t * t * (3.0 - 2.0 * t)  # smoothstep
        t[m] = 0.0
        out = img + t[:, :, None] * delta[0].numpy().transpose(1, 2, 0)
    return out[:, :, 0] if squeeze else out


def _dataset_facts(meta: dict[str, Any], canvas: tuple[int, int], path: Any) -> tuple[float, str]:
    """(displacement scale, normal convention) from a checkpoint's dataset facts, with defaults said in
    warnings; malformed facts are a `CheckpointError`."""
    where = path or "checkpoint"
    dataset = meta.get("dataset") or {}
    if not isinstance(dataset, dict):
        raise CheckpointError(f"{where}: metadata 'dataset' must be a mapping, got {type(dataset).__name__}")
    scale = dataset.get("displacement_scale")
    if scale is None:
        scale = canvas[1] * DEFAULT_SCALE_PER_PIXEL
        warnings.warn(f"{where}: no dataset displacement_scale recorded; normals use {scale:g} pixels per "
                      "displacement unit (canvas width / 256)", stacklevel=3)
    conv = dataset.get("normal_convention")
    if conv is None:
        conv = DEFAULT_NORMAL_CONVENTION
        if dataset:
            warnings.warn(f"{where}: no normal_convention recorded; using {conv}", stacklevel=3)
    data_canvas = dataset.get("canvas")
    if isinstance(data_canvas, dict):
        data_canvas = [data_canvas.get("height"), data_canvas.get("width")]
    try:
        scale = float(scale)
        data_canvas = None if data_canvas is None else tuple(int(v) for v in data_canvas)
    except (TypeError, ValueError):
        raise CheckpointError(f"{where}: malformed dataset facts (displacement_scale {scale!r}, canvas "
                              f"{data_canvas!r})") from None
    if not (math.isfinite(scale) and scale > 0):
        raise CheckpointError(f"{where}: displacement_scale must be a positive number, got {scale}")
    if conv not in maps_mod.CONVENTIONS:
        raise CheckpointError(f"{where}: unknown normal convention {conv!r}")
    if data_canvas is not None and data_canvas != canvas:
        log.warning("dataset canvas %s differs from the generator's %s; using the generator's", data_canvas, canvas)
    return scale, str(conv)


# ================================================================================================= model
class TextureModel:
    """A loaded generator with everything needed to turn seeds into texture maps."""

    def __init__(
        self, G: Generator, meta: dict[str, Any] | None = None, *, device: str | torch.device = "cpu",
        precision: str = "auto", compile: bool = False, patches_per_pass: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.meta = dict(meta or {})
        self.path = self.meta.get("path")
        self.canvas: tuple[int, int] = tuple(int(v) for v in G.canvas)  # type: ignore[assignment]
        self.patch_size = int(G.patch_size)
        self.unit = level0_unit(self.patch_size)
        self.patches_per_pass = patches_per_pass
        self.mask = G.mask.detach().cpu().numpy().astype(np.uint8)
        self.displacement_scale, self.normal_convention = _dataset_facts(self.meta, self.canvas, self.path)
        self._call: Any = G
        if compile:
            self._call = torch.compile(self.G)
        self.last_stats: dict[str, float] = {}

    # --------------------------------------------------------------------------------------- latents
    @property
    def inputs(self) -> list[str]:
        """The files this model was read from (never an output of the commands that use it)."""
        return [self.path] if self.path else []

    @property
    def name(self) -> str:
        preset = self.meta.get("preset") or {}
        return str(preset.get("name", "generator"))

    def ws_for_seed(self, seed: int, truncation: float = 1.0) -> torch.Tensor:
        """Latents ws (1, num_ws, w_dim) of a seed: z ~ N(0, I) from a CPU generator (device-independent)."""
        check_truncation(truncation)
        z = torch.randn(1, self.G.cfg.z_dim, generator=torch.Generator().manual_seed(check_seed(seed)))
        with torch.no_grad():
            return self.G.mapping(z.to(self.device), truncation_psi=float(truncation))

    # ------------------------------------------------------------------------------------- synthesis
    def sample(
        self, seed: int, modalities: Sequence[str] = MODALITIES, truncation: float = 1.0,
        region: Sequence[int] | None = None, noise_seed: int | None = None, extrapolate: bool = False,
        *, progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """Maps of one seed: {modality: H x W x C float32 in [0, 1]} over the canvas or an aligned region.

        modalities: any of albedo, specular, displacement, normal (normal is derived from displacement:
        tangent space, encoded n * 0.5 + 0.5, finite differences inside the region). noise_seed defaults
        to the seed. extrapolate fills the region outside the mask (paper §5.4; full canvas only).
        """
        ws = self.ws_for_seed(seed, truncation)
        return self.sample_ws(ws, modalities, noise_seed=seed if noise_seed is None else noise_seed,
                              region=region, extrapolate=extrapolate, progress=progress)

    def sample_ws(
        self, ws: torch.Tensor, modalities: Sequence[str] = MODALITIES, *, noise_seed: int = 0,
        region: Sequence[int] | None = None, extrapolate: bool = False, noise: Any = None,
        progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """`sample` for given latents ws (1, num_ws, w_dim) (interpolation, inversion results).

        `noise` (an `ExplicitNoise`) replaces the hashed noise of `noise_seed`: the public synthesis entry
        point of inversion.
        """
        mods = _modality_list(modalities)
        region_t = check_region(region, self.canvas, self.patch_size)
        if extrapolate and (region_t.height, region_t.width) != self.canvas:
            raise UsageError("extrapolate needs the full canvas (its low-frequency blur spans the whole map)")
        if ws.ndim != 3 or ws.shape[0] != 1:
            raise UsageError(f"ws must be (1, num_ws, w_dim), got {tuple(ws.shape)}")
        net = [m for m in MODALITIES if m in mods or (m == "displacement" and "normal" in mods)]
        arrays, stats = stream_maps(self.G, ws.to(self.device), net, region_t, noise_seed=noise_seed, noise=noise,
                                    apply_mask=not extrapolate, patches_per_pass=self.patches_per_pass,
                                    precision=self.precision, call=self._call, progress=progress)
        t1 = time.perf_counter()
        if extrapolate:
            for m in net:
                arrays[m] = extrapolate_fill(arrays[m], self.mask)
        for arr in arrays.values():
            np.clip(arr, 0.0, 1.0, out=arr)
        result = {m: arrays[m] for m in MODALITIES if m in mods}
        if "normal" in mods:
            result["normal"] = normals_from_displacement(
                arrays["displacement"], self.displacement_scale, self.normal_convention
            )
        stats["postprocess_s"] = time.perf_counter() - t1
        self.last_stats = stats
        return {m: result[m] for m in mods}

    # ----------------------------------------------------------------------------------------- files
    def write(
        self, seed: int, out_dir: str | os.PathLike, format: str = "exr", *, truncation: float = 1.0,
        noise_seed: int | None = None, extrapolate: bool = False, overwrite: bool = False,
        contact: bool = True, progress: bool = False, label: str | None = None,
    ) -> dict[str, Any]:
        """Write `out_dir/seedNNNN/{albedo,specular,displacement,normal}.<ext>` (+ contact.png).

        Refuses (before synthesising anything) when one of the files exists, unless overwrite. Returns
        {"paths": {...}, "timings": {...}, "thumbnails": {...}} (thumbnails feed the run's contact sheet).
        """
        paths = output_paths(out_dir, seed, format)
        if not contact:
            paths.pop("contact")
        refuse_existing(paths.values(), overwrite, inputs=self.inputs)
        t0 = time.perf_counter()
        result = self.sample(seed, OUTPUT_MAPS, truncation, noise_seed=noise_seed, extrapolate=extrapolate,
                             progress=progress)
        timings = {**self.last_stats, "sample_s": time.perf_counter() - t0}
        t1 = time.perf_counter()
        for name in OUTPUT_MAPS:
            write_map(paths[name], result[name], name, overwrite=overwrite)
        timings["write_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        thumbs = thumbnails(result, mask=self.mask)
        if contact:
            text = label or f"seed {seed}  {self.name}  psi={truncation:g}" + ("  extrapolated" if extrapolate else "")
            save_image(contact_sheet(result, self.mask, title=text, thumbs=thumbs), paths["contact"], overwrite)
        timings["contact_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        return {"paths": {k: str(v) for k, v in paths.items()}, "timings": timings, "thumbnails": thumbs}

    # -------------------------------------------------------------------------------- §5.1 variations
    def interpolate(
        self, seed_a: int, seed_b: int, steps: int, *, method: str = "slerp", truncation: float = 1.0,
        modalities: Sequence[str] = ("albedo",), noise_seed: int | None = None, progress: bool = False,
    ) -> Iterator[tuple[float, dict[str, np.ndarray]]]:
        """Yields (t, maps) for `steps` frames from seed_a (t=0) to seed_b (t=1), interpolating in W.

        The noise seed is fixed (default: seed_a) so only the latent changes.
        """
        if steps < 2:
            raise UsageError("interpolation needs at least 2 steps")
        wa, wb = self.ws_for_seed(seed_a, truncation), self.ws_for_seed(seed_b, truncation)
        ns = seed_a if noise_seed is None else noise_seed
        for i in range(steps):
            t = i / (steps - 1)
            yield t, self.sample_ws(interpolate_ws(wa, wb, t, method), modalities, noise_seed=ns, progress=progress)

    def vary_noise(
        self, seed: int, count: int, *, truncation: float = 1.0, modalities: Sequence[str] = ("albedo", "displacement"),
        first_noise_seed: int = 0, progress: bool = False,
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yields (noise_seed, maps) for noise seeds first..first+count-1 with the latent of `seed` fixed."""
        if count < 1:
            raise UsageError("count must be >= 1")
        ws = self.ws_for_seed(seed, truncation)
        for k in range(first_noise_seed, first_noise_seed + count):
            yield k, self.sample_ws(ws, modalities, noise_seed=k, progress=progress)


def interpolate_ws(wa: torch.Tensor, wb: torch.Tensor, t: float, method: str = "slerp") -> torch.Tensor:
    """Lerp, or slerp (angle of the W vectors, norm interpolated linearly), between two latents."""
    if method == "lerp":
        return torch.lerp(wa, wb, float(t))
    if method != "slerp":
        raise UsageError(f"unknown interpolation {method!r}; choose lerp or slerp")
    na, nb = wa.norm(dim=-1, keepdim=True), wb.norm(dim=-1, keepdim=True)
    ua, ub = wa / na.clamp_min(1e-12), wb / nb.clamp_min(1e-12)
    dot = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    small = so.abs() < 1e-6
    ca = torch.where(small, 1.0 - t, torch.sin((1.0 - t) * omega) / so.where(~small, torch.ones_like(so)))
    cb = torch.where(small, torch.full_like(so, t), torch.sin(t * omega) / so.where(~small, torch.ones_like(so)))
    direction = ca * ua + cb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return direction * torch.lerp(na, nb, float(t))


def load(
    path_or_run_dir: str | os.PathLike, device: str | torch.device = "cpu", precision: str = "auto",
    compile: bool = False, *, patches_per_pass: int | None = None,
) -> TextureModel:
    """Load a checkpoint / model file / run directory (latest checkpoint) as a `TextureModel` (EMA weights).

    Raises `CheckpointError` (a ValueError) with a clear message for missing or corrupt files.
    """
    dev = resolve_device(device)
    try:
        G, meta = load_generator(path_or_run_dir, device="cpu")
    except CheckpointError as exc:
        raise CheckpointError(f"cannot load the checkpoint: {exc}") from None
    return TextureModel(G, meta, device=dev, precision=precision, compile=compile, patches_per_pass=patches_per_pass)


