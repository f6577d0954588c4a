"""KID distributions of checkpoints against the training data, figures and spectra (paper §5.5–5.6; docs/evaluation.md).

Two layers:

- `evaluate_sets(real, generated, extractor, ...)`: the statistics on arrays.  Features of the real
  images and of every generated set; the reference distribution "real splits" (KID between two
  disjoint random halves of the real set, 1000 times: centred on 0 by construction) and, per generated
  set, KID between a random real subset and an equally sized random generated subset, 1000 times.
- `evaluate(checkpoints, data, out, ...)`: reads the prepared dataset, samples every checkpoint, runs
  `evaluate_sets` on whole albedo maps (down-sampled) and on one albedo patch (default: the lips),
  computes the radially averaged power spectra of real vs generated patches per modality and the
  layout measure (where each model puts things, against the data), and writes
  `kid_whole.{json,csv,png}`, `kid_patch.{json,csv,png}`, `spectra.{json,png}`, `layout.{json,png}`
  and `summary.json`.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .config import MODALITIES, MODALITY_CHANNELS, SEEDS_MAX, check_seed, check_truncation, split_channels
from .metrics.features import build_extractor, extract_features
from .metrics.kid import kid, kid_splits, summarize
from .metrics.layout import layout_plot, layout_scores
from .metrics.plots import kid_boxplot, spectra_plot
from .metrics.spectra import radial_power_spectrum
from .device import resolve_device
from .errors import InputError, InputNotFoundError, OutputError
from .geometry import tiles
from .outputs import atomic_path, make_dirs, refuse_existing, write_json, writing
from .resample import area_downsample, network_to_unit, resize

__all__ = [
    "REAL",
    "NAMED_LOCATIONS",
    "RESULT_FILES",
    "evaluate_sets",
    "evaluate",
    "resolve_location",
    "whole_shape",
    "checkpoint_labels",
]

log = logging.getLogger(__name__)

REAL = "real splits"
"""Name of the reference distribution (real vs real) in results and figures."""

NAMED_LOCATIONS: dict[str, tuple[float, float]] = {"lips": (0.467, 0.5)}
"""Built-in patch locations as the (row, column) fraction of the canvas at the patch centre.

Measured on the Lee Perry-Smith albedo (`Map-COL.jpg`, 1024², image rows top to bottom as stored,
which is the layout of the synthetic data): the lips span rows ≈ 455–500 and columns ≈ 450–575, centre
(478, 512) → (0.467, 0.5).  A dataset manifest may override or add names with
`"locations": {"lips": [top, left], ...}` in canvas pixels."""

RESULT_FILES = (
    "kid_whole.json", "kid_whole.csv", "kid_whole.png",
    "kid_patch.json", "kid_patch.csv", "kid_patch.png",
    "spectra.json", "spectra.png", "layout.json", "layout.png", "summary.json",
)


# --------------------------------------------------------------------------------------------------
# Statistics on arrays
# --------------------------------------------------------------------------------------------------


def evaluate_sets(
    real: np.ndarray,
    generated: Mapping[str, np.ndarray],
    extractor: Callable[[torch.Tensor], torch.Tensor],
    n_splits: int = 1000,
    subset_size: int | None = None,
    seed: int = 0,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """KID distributions of real-vs-real halves and of real-vs-each-generated set.

    `real`: N×H×W×3 in [0, 1]; `generated[name]`: M×H'×W'×3 in [0, 1] (M >= subset_size; sizes may
    differ from the real images, the extractor resizes).  `subset_size` defaults to N // 2 (disjoint
    halves for the reference).  Returns
    `{"n_splits", "subset_size", "seed", "extractor", "feature_dim", "n_real",
      "sets": {REAL: {...}, name: {...}}}` where every set holds `values` (np.ndarray, n_splits),
    `mean`, `std`, `median`, `q1`, `q3`, `n` (images) and, for generated sets, `kid_all` (KID of the
    whole real set against the whole generated set).
    """
    real = np.asarray(real)
    if real.ndim != 4 or real.shape[-1] != 3:
        raise InputError(f"real must be N×H×W×3, got shape {real.shape}")
    n_real = real.shape[0]
    size = n_real // 2 if subset_size is None else int(subset_size)
    if 2 * size > n_real or size < 2:
        raise InputError(
            f"subset_size {size} needs 2 <= subset_size <= N/2 = {n_real // 2} real images "
            "(the reference compares two disjoint real subsets)"
        )
    for name, imgs in generated.items():
        if name == REAL:
            raise InputError(f"{REAL!r} is reserved for the reference distribution")
        if np.shape(imgs)[0] < size:
            raise InputError(f"generated set {name!r} has {np.shape(imgs)[0]} images, needs >= subset_size {size}")

    def feats(images: np.ndarray, desc: str) -> np.ndarray:
        return extract_features(extractor, images, batch_size=batch_size, device=device, progress=progress, desc=desc)

    f_real = feats(real, "features real")
    ref = kid_splits(f_real, None, n_splits, size, seed)
    sets: dict[str, dict[str, Any]] = {REAL: {"values": ref, **summarize(ref), "n": n_real}}
    for name, imgs in generated.items():
        f_gen = feats(np.asarray(imgs), f"features {name}")
        values = kid_splits(f_real, f_gen, n_splits, size, seed)
        sets[name] = {"values": values, **summarize(values), "n": int(f_gen.shape[0]), "kid_all": kid(f_real, f_gen)}
    return {
        "n_splits": int(n_splits),
        "subset_size": size,
        "seed": int(seed),
        "extractor": str(getattr(extractor, "name", type(extractor).__name__)),
        "feature_dim": int(f_real.shape[1]),
        "n_real": n_real,
        "sets": sets,
    }


# --------------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------------


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


def checkpoint_labels(checkpoints: Sequence[str | os.PathLike], labels: Sequence[str] | None = None) -> list[str]:
    """Names of the compared sets: `labels` if given, else file stems, else parent/stem when stems repeat."""
    if labels is not None:
        labels = [str(v) for v in labels]
        if len(labels) != len(checkpoints):
            raise InputError(f"{len(labels)} labels for {len(checkpoints)} checkpoints")
    else:
        paths = [Path(p) for p in checkpoints]
        labels = [p.stem if p.suffix else p.name for p in paths]
        if len(set(labels)) != len(labels):
            labels = [f"{p.parent.name}/{lab}" if p.parent.name else lab for p, lab in zip(paths, labels)]
        if len(set(labels)) != len(labels):
            labels = [str(p) for p in paths]
    if len(set(labels)) != len(labels) or REAL in labels or "real" in labels:
        raise InputError(f"set labels must be unique and not 'real'/{REAL!r}: {labels}")
    return labels


# --------------------------------------------------------------------------------------------------
# Data access
# --------------------------------------------------------------------------------------------------


def _open_data(data: Any) -> tuple[Any, dict[str, Any]]:
    """(store, manifest) from a prepared dataset folder, or an object with the PatchStore interface."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise InputNotFoundError(f"{path}: not a prepared dataset (no manifest.json); run `gantlitz prepare` first")
        from .data.store import PatchStore

        return PatchStore(path), json.loads(manifest_path.read_text())
    return data, dict(getattr(data, "manifest", None) or {})


def _split_modalities(stack: np.ndarray) -> dict[str, np.ndarray]:
    """(5, h, w) in [-1, 1] → {modality: h×w×c in [0, 1]}."""
    hwc = network_to_unit(np.transpose(np.asarray(stack, dtype=np.float32), (1, 2, 0)))
    return {m: np.clip(part, 0.0, 1.0) for m, part in split_channels(hwc, -1).items()}


def _read_whole(store: Any, subject: int, canvas: tuple[int, int], factor: int,
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


def _call_loader(loader: Callable, path: Any, device: str) -> Any:
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


def _outline(image: np.ndarray, top: int, left: int, height: int, width: int, thickness: int = 2) -> np.ndarray:
    img = np.array(image, dtype=np.float32, copy=True)
    red = np.array([1.0, 0.0, 0.0], np.float32)
    b, r = min(top + height, img.shape[0]), min(left + width, img.shape[1])
    img[top : top + thickness, left:r] = red
    img[max(b - thickness, 0) : b, left:r] = red
    img[top:b, left : left + thickness] = red
    img[top:b, max(r - thickness, 0) : r] = red
    return img


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def _jsonable(result: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k != "sets"}
    out.update(extra)
    out["sets"] = {
        name: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in entry.items()}
        for name, entry in result["sets"].items()
    }
    return out


def _write_csv(path: Path, result: Mapping[str, Any], sources: Mapping[str, str | None]) -> None:
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["set", "checkpoint", "split", "kid"])
        for name, entry in result["sets"].items():
            for i, value in enumerate(entry["values"]):
                writer.writerow([name, sources.get(name) or "", i, repr(float(value))])


# --------------------------------------------------------------------------------------------------
# Top level
# --------------------------------------------------------------------------------------------------


@writing("evaluate")
def evaluate(
    checkpoints: Sequence[str | os.PathLike], data: str | os.PathLike | Any, out: str | os.PathLike, *,
    features: str = "local", weights: str | os.PathLike | None = None, n_splits: int = 1000,
    subset_size: int | None = None, location: str | Sequence[int] = "lips", patch: int | None = None,
    whole_size: int = 768, count: int | None = None, seed: int = 0, truncation: float = 1.0,
    labels: Sequence[str] | None = None, device: str = "cpu", batch_size: int = 16, overwrite: bool = False,
    progress: bool = True, loader: Callable[..., Any] | None = None,
    extractor: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Evaluate checkpoints against a prepared dataset and write results and figures to `out`.

    - Real set: every subject of the dataset (unflipped), read at full resolution.  Whole albedo maps
      are block-mean down-sampled to the long side <= `whole_size` (integer factor, see `whole_shape`),
      the same function as for the generated maps; the patch is
      `patch`² (default: the checkpoint's patch size, else 512, clipped to the canvas) at `location`.
    - Generated sets: `count` samples per checkpoint (default: as many as real subjects), seeds
      `seed, seed+1, ...`, truncation `truncation` (1 = none), every modality over the whole canvas with
      the same down-sampling, the patches cropped from it (identical to region synthesis: seamless).
    - Layout (`gantlitz.metrics.layout`): per-cell mean maps of each model against the data's, cells
      wholly inside the down-sampled mask, the data's split-half value as the reference.
    - KID: `n_splits` splits of `subset_size` (default N // 2) per set, `seed` for the splits.
    - `features`: "local" (default, no download) or "inception" with `weights` (a local file); an
      `extractor` object overrides both.  `loader(path)` defaults to `gantlitz.generate.load`; `data`
      may be any object with the `PatchStore` interface.

    Returns the summary dict (also written to `out/summary.json`).
    """
    out, checkpoints = Path(out), list(checkpoints)
    _check_request(out, checkpoints, overwrite, n_splits)
    refuse_existing([out / name for name in RESULT_FILES], overwrite,
                    inputs=[*checkpoints, *([data] if isinstance(data, (str, os.PathLike)) else [])])
    check_seed(seed)
    if count is not None and not 2 <= count <= SEEDS_MAX:
        raise InputError(f"count {count}: between 2 and {SEEDS_MAX} samples per checkpoint")
    check_seed(seed + (count or 1) - 1, "last sample seed")
    check_truncation(truncation)
    device = str(resolve_device(device))
    names = checkpoint_labels(checkpoints, labels)
    store, manifest = _open_data(data)
    if len(store.subjects) < 4:
        raise InputError(f"the dataset has {len(store.subjects)} subjects; KID splits need at least 4")
    extractor = extractor if extractor is not None else build_extractor(features, weights, device)
    if loader is None and checkpoints:
        from .generate import load as loader  # lazy: generation pulls in the networks
    models = {name: _call_loader(loader, ckpt, device) for name, ckpt in zip(names, checkpoints)}
    geo = _Geometry.of(store, manifest, models, patch, location, whole_size)
    count = len(store.subjects) if count is None else int(count)
    seeds = [seed + i for i in range(count)]
    log.info("evaluating %d checkpoint(s) on %d subjects: whole %dx%d, patch %d at (%d, %d)",
             len(models), len(store.subjects), geo.ww, geo.wh, geo.patch, geo.top, geo.left)
    real_whole, real_patch = _real_sets(store, geo, progress)
    gen_whole, gen_patch = {}, {}
    for name, model in models.items():
        gen_whole[name], patches = _generated_sets(name, model, geo, seeds, truncation, progress)
        if patches is not None:
            gen_patch[name] = patches
    kw = dict(n_splits=n_splits, subset_size=subset_size, seed=seed, batch_size=batch_size, device=device,
              progress=progress)
    whole_res = evaluate_sets(real_whole["albedo"], {k: v["albedo"] for k, v in gen_whole.items()}, extractor, **kw)
    patch_res = evaluate_sets(real_patch["albedo"], {k: v["albedo"] for k, v in gen_patch.items()}, extractor, **kw)

    make_dirs(out)
    sources = {name: str(ckpt) for name, ckpt in zip(names, checkpoints)}
    common = {
        "checkpoints": sources, "features": getattr(extractor, "name", features),
        "weights": str(weights) if weights is not None else None,
        "generation_seeds": [seeds[0], seeds[-1]] if seeds else [], "truncation": truncation,
        "dataset": str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__,
        "canvas": list(geo.canvas),
    }
    _write_kid(out, whole_res, patch_res, common, sources, geo, location, n_splits, real_whole["albedo"])
    _write_spectra(out, real_patch, gen_patch, geo)
    layout = _write_layout(out, store, real_whole, {k: gen_whole[k] for k in gen_patch}, geo)
    stats = ("mean", "std", "median")
    summary = {**common, "n_real": len(store.subjects), "count": count, "n_splits": n_splits,
               "subset_size": whole_res["subset_size"], "seed": seed, "location": [geo.top, geo.left],
               "patch": geo.patch, "whole_size": [geo.wh, geo.ww],
               "whole": {k: {s: v[s] for s in stats} for k, v in whole_res["sets"].items()},
               "patch_kid": {k: {s: v[s] for s in stats} for k, v in patch_res["sets"].items()},
               "layout": layout, "files": list(RESULT_FILES)}
    write_json(out / "summary.json", summary, overwrite=True)
    return summary


def _check_request(out: Path, checkpoints: list[Any], overwrite: bool, n_splits: int) -> None:
    """Refuse, before any work: results in `out` without overwrite, missing checkpoints, no splits."""
    if out.exists() and not out.is_dir():
        raise OutputError(out, "exists and is not a directory")
    for ckpt in checkpoints:
        if not Path(ckpt).exists():
            raise InputNotFoundError(f"checkpoint not found: {ckpt}")
    if n_splits < 1:
        raise InputError(f"n_splits must be >= 1, got {n_splits}")


@dataclass(frozen=True)
class _Geometry:
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
           location: str | Sequence[int], whole_size: int) -> "_Geometry":
        canvas = (int(store.canvas[0]), int(store.canvas[1]))
        if patch is None:
            sizes = {int(getattr(m, "patch_size", 512)) for m in models.values()}
            patch = min(sizes) if sizes else 512
        patch = min(int(patch), canvas[0], canvas[1])
        top, left = resolve_location(location, canvas, patch, manifest)
        return cls(canvas, patch, top, left, *whole_shape(canvas, whole_size))


def _real_sets(store: Any, geo: _Geometry, progress: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every subject's down-sampled whole maps and its patch, per modality."""
    n = len(store.subjects)
    whole = {m: np.empty((n, geo.wh, geo.ww, MODALITY_CHANNELS[m]), np.float32) for m in MODALITIES}
    patches = {m: np.empty((n, geo.patch, geo.patch, MODALITY_CHANNELS[m]), np.float32) for m in MODALITIES}
    for i in _tqdm(range(n), progress, desc="real", unit="subject"):
        for m, arr in _read_whole(store, i, geo.canvas, geo.factor).items():
            whole[m][i] = arr
        for m, arr in _split_modalities(store.read_patch(i, geo.top, geo.left, geo.patch)).items():
            patches[m][i] = arr
    return whole, patches


def _generated_sets(name: str, model: Any, geo: _Geometry, seeds: list[int], truncation: float, progress: bool
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


def _write_kid(out: Path, whole_res: Mapping[str, Any], patch_res: Mapping[str, Any], common: Mapping[str, Any],
               sources: Mapping[str, str], geo: _Geometry, location: Any, n_splits: int,
               real_whole: np.ndarray) -> None:
    """kid_{whole,patch}.{json,csv,png}: per-split values, their summary, box plots (patch inset marked)."""
    whole_json = _jsonable(whole_res, {**common, "kind": "whole albedo", "size": [geo.wh, geo.ww],
                                       "factor": geo.factor})
    patch_json = _jsonable(patch_res, {**common, "kind": "albedo patch", "location": [geo.top, geo.left],
                                       "patch": geo.patch,
                                       "location_name": location if isinstance(location, str) else None})
    write_json(out / "kid_whole.json", whole_json, overwrite=True)
    write_json(out / "kid_patch.json", patch_json, overwrite=True)
    _write_csv(out / "kid_whole.csv", whole_res, sources)
    _write_csv(out / "kid_patch.csv", patch_res, sources)
    feat = whole_json["features"]
    kid_boxplot({k: v["values"] for k, v in whole_res["sets"].items()}, out / "kid_whole.png",
                title=f"KID, whole albedo {geo.ww}x{geo.wh} ({feat} features, "
                      f"{n_splits} splits of {whole_res['subset_size']})")
    side = max(geo.patch // geo.factor, 2)
    inset = _outline(real_whole.mean(axis=0), geo.top // geo.factor, geo.left // geo.factor, side, side)
    loc_name = location if isinstance(location, str) else f"({geo.top}, {geo.left})"
    kid_boxplot({k: v["values"] for k, v in patch_res["sets"].items()}, out / "kid_patch.png",
                title=f"KID, {geo.patch}² albedo patch '{loc_name}' ({feat}, "
                      f"{n_splits} splits of {patch_res['subset_size']})",
                inset=inset, inset_title=f"patch at top {geo.top}, left {geo.left}")


def _write_spectra(out: Path, real_patch: Mapping[str, np.ndarray], gen_patch: Mapping[str, Mapping[str, np.ndarray]],
                   geo: _Geometry) -> None:
    """spectra.{png,json}: radially averaged power spectra of real and generated patches per modality."""
    spectra = {m: {"real": tuple(radial_power_spectrum(real_patch[m])),
                   **{name: tuple(radial_power_spectrum(pset[m])) for name, pset in gen_patch.items()}}
               for m in MODALITIES}
    spectra_plot(spectra, out / "spectra.png",
                 title=f"Radially averaged power spectra, {geo.patch}² patches at ({geo.top}, {geo.left})")
    write_json(out / "spectra.json", {
        "location": [geo.top, geo.left], "patch": geo.patch, "window": "hann",
        "modalities": {m: {name: {"freqs": f.tolist(), "power": p.tolist()} for name, (f, p) in sets.items()}
                       for m, sets in spectra.items()},
    }, overwrite=True)


def _write_layout(out: Path, store: Any, real_whole: Mapping[str, np.ndarray],
                  gen_whole: Mapping[str, Mapping[str, np.ndarray]], geo: _Geometry) -> dict[str, Any]:
    """layout.{json,png}: per-location agreement of each model's mean maps with the data's (cells wholly
    inside the mask of the down-sampled canvas), with the data's split-half value as the reference."""
    mask = area_downsample(np.asarray(store.mask, np.float32)[:, :, None], geo.factor)[:, :, 0] >= 1.0 - 1e-6
    scores = {name: layout_scores(real_whole, maps, mask) for name, maps in gen_whole.items()}
    layout_plot(real_whole, gen_whole, mask, out / "layout.png", scores)
    write_json(out / "layout.json", {"size": [geo.wh, geo.ww], "factor": geo.factor, "models": scores},
               overwrite=True)
    return scores
