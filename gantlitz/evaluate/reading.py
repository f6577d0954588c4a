"""The compared sets as arrays: the prepared dataset's subjects and each checkpoint's samples, whole
(down-sampled) and as the evaluated patch, per modality."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import MODALITIES, MODALITY_CHANNELS, split_channels
from ..errors import InputNotFoundError
from ..geometry import tiles
from ..resample import area_downsample, network_to_unit, resize
from .locations import Geometry

log = logging.getLogger(__name__)


def open_data(data: Any) -> tuple[Any, dict[str, Any]]:
    """(store, manifest) from a prepared dataset folder, or an object with the PatchStore interface."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise InputNotFoundError(f"{path}: not a prepared dataset (no manifest.json); run `gantlitz prepare` first")
        from ..data.store import PatchStore

        return PatchStore(path), json.loads(manifest_path.read_text())
    return data, dict(getattr(data, "manifest", None) or {})


def _split_modalities(stack: np.ndarray) -> dict[str, np.ndarray]:
    """(5, h, w) in [-1, 1] → {modality: h×w×c in [0, 1]}."""
    hwc = network_to_unit(np.transpose(np.asarray(stack, dtype=np.float32), (1, 2, 0)))
    return {m: np.clip(part, 0.0, 1.0) for m, part in split_channels(hwc, -1).items()}


def read_whole(store: Any, subject: int, canvas: tuple[int, int], factor: int,
               max_tile: int = 2048) -> dict[str, np.ndarray]:
    """Full-resolution maps of a subject, block-mean down-sampled by `factor`, read tile by tile.

    Uses `read_patch` (full resolution, masked) on square tiles whose side divides both canvas sides and
    is a multiple of `factor`, so the result is exactly the block mean of the stored map (the store's
    `read_whole` resamples its small preview instead, which would not match the generated maps).
    """
    height, width = canvas
    g = math.gcd(height, width)
    tile = factor  # whole_shape's factor divides g, so some divisor of g qualifies
    for k in range(1, g + 1):
        if g % k == 0 and (g // k) % factor == 0 and g // k <= max(max_tile, factor):
            tile = g // k
            break
    out = {m: np.empty((height // factor, width // factor, MODALITY_CHANNELS[m]), np.float32) for m in MODALITIES}
    t = tile // factor
    for top, left, _, _ in tiles((0, 0, height, width), tile, tile):  # square tiles: `tile` divides both sides
        r, c = top // factor, left // factor
        for m, arr in _split_modalities(store.read_patch(subject, top, left, tile)).items():
            out[m][r : r + t, c : c + t] = area_downsample(arr, factor)
    return out


def call_loader(loader: Callable, path: Any, device: str) -> Any:
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        params = {}
    if "device" in params:
        return loader(path, device=device)
    return loader(path)


def _tqdm(iterable, progress: bool, **kwargs):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def real_sets(store: Any, geo: Geometry, progress: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every subject's down-sampled whole maps and its patch, per modality."""
    n = len(store.subjects)
    whole = {m: np.empty((n, geo.wh, geo.ww, MODALITY_CHANNELS[m]), np.float32) for m in MODALITIES}
    patches = {m: np.empty((n, geo.patch, geo.patch, MODALITY_CHANNELS[m]), np.float32) for m in MODALITIES}
    for i in _tqdm(range(n), progress, desc="real", unit="subject"):
        for m, arr in read_whole(store, i, geo.canvas, geo.factor).items():
            whole[m][i] = arr
        for m, arr in _split_modalities(store.read_patch(i, geo.top, geo.left, geo.patch)).items():
            patches[m][i] = arr
    return whole, patches


def generated_sets(name: str, model: Any, geo: Geometry, seeds: list[int], truncation: float, progress: bool
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """A model's down-sampled whole maps and (on the data's canvas) its patches, per modality.

    Whole albedo for KID on any canvas; all modalities whole (for the layout measure) and the patches
    (cropped from the whole maps, identical to region synthesis) only on the data's canvas."""
    model_canvas = tuple(int(v) for v in getattr(model, "canvas", geo.canvas))
    same_canvas = model_canvas == geo.canvas
    if not same_canvas:
        log.warning("%s: canvas %s differs from the data's %s: whole albedo resized; no patch KID, no layout",
                    name, model_canvas, geo.canvas)
    p, top, left = geo.patch, geo.top, geo.left
    modalities = MODALITIES if same_canvas else ("albedo",)
    whole = {m: np.empty((len(seeds), geo.wh, geo.ww, MODALITY_CHANNELS[m]), np.float32) for m in modalities}
    patches = {m: np.empty((len(seeds), p, p, MODALITY_CHANNELS[m]), np.float32) for m in modalities
               } if same_canvas else None
    for j, s in enumerate(_tqdm(seeds, progress, desc=f"sample {name}", unit="sample")):
        maps = model.sample(s, modalities=modalities, truncation=truncation)
        for m in modalities:
            arr = np.asarray(maps[m], np.float32).reshape(*model_canvas, -1)[:, :, : MODALITY_CHANNELS[m]]
            if patches is None:
                whole[m][j] = resize(arr, geo.wh, geo.ww)
                continue
            whole[m][j] = area_downsample(arr, geo.factor)
            patches[m][j] = arr[top : top + p, left : left + p]
    whole = {m: np.clip(v, 0.0, 1.0) for m, v in whole.items()}
    return whole, (None if patches is None else {m: np.clip(v, 0.0, 1.0) for m, v in patches.items()})
