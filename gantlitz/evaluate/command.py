"""`evaluate(checkpoints, data, out, ...)`: the `gantlitz evaluate` command, from the request's checks to
`summary.json`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..config import SEEDS_MAX, check_seed, check_truncation
from ..device import resolve_device
from ..errors import InputError, InputNotFoundError, OutputError
from ..metrics.features import build_extractor
from ..outputs import make_dirs, refuse_existing, write_json, writing
from .locations import Geometry
from .reading import call_loader, generated_sets, open_data, real_sets
from .results import RESULT_FILES, write_kid, write_layout, write_spectra
from .sets import checkpoint_labels, evaluate_sets

log = logging.getLogger(__name__)


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
    _check_request(out, checkpoints, data, overwrite, n_splits, seed, count, truncation)
    device = str(resolve_device(device))
    names = checkpoint_labels(checkpoints, labels)
    store, manifest = open_data(data)
    if len(store.subjects) < 4:
        raise InputError(f"the dataset has {len(store.subjects)} subjects; KID splits need at least 4")
    extractor = extractor if extractor is not None else build_extractor(features, weights, device)
    if loader is None and checkpoints:
        from ..generate import load as loader  # lazy: generation pulls in the networks
    models = {name: call_loader(loader, ckpt, device) for name, ckpt in zip(names, checkpoints)}
    geo = Geometry.of(store, manifest, models, patch, location, whole_size)
    count = len(store.subjects) if count is None else int(count)
    seeds = [seed + i for i in range(count)]
    log.info("evaluating %d checkpoint(s) on %d subjects: whole %dx%d, patch %d at (%d, %d)",
             len(models), len(store.subjects), geo.ww, geo.wh, geo.patch, geo.top, geo.left)
    real_whole, real_patch = real_sets(store, geo, progress)
    gen_whole, gen_patch = {}, {}
    for name, model in models.items():
        gen_whole[name], patches = generated_sets(name, model, geo, seeds, truncation, progress)
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
    write_kid(out, whole_res, patch_res, common, sources, geo, location, n_splits, real_whole["albedo"])
    write_spectra(out, real_patch, gen_patch, geo)
    layout = write_layout(out, store, real_whole, {k: gen_whole[k] for k in gen_patch}, geo)
    stats = ("mean", "std", "median")
    summary = {**common, "n_real": len(store.subjects), "count": count, "n_splits": n_splits,
               "subset_size": whole_res["subset_size"], "seed": seed, "location": [geo.top, geo.left],
               "patch": geo.patch, "whole_size": [geo.wh, geo.ww],
               "whole": {k: {s: v[s] for s in stats} for k, v in whole_res["sets"].items()},
               "patch_kid": {k: {s: v[s] for s in stats} for k, v in patch_res["sets"].items()},
               "layout": layout, "files": list(RESULT_FILES)}
    write_json(out / "summary.json", summary, overwrite=True)
    return summary


def _check_request(out: Path, checkpoints: list[Any], data: Any, overwrite: bool, n_splits: int, seed: int,
                   count: int | None, truncation: float) -> None:
    """Refuse, before any work: missing checkpoints, no splits, results in `out` without overwrite (or an
    input among them), bad seeds, sample count or truncation."""
    if out.exists() and not out.is_dir():
        raise OutputError(out, "exists and is not a directory")
    for ckpt in checkpoints:
        if not Path(ckpt).exists():
            raise InputNotFoundError(f"checkpoint not found: {ckpt}")
    if n_splits < 1:
        raise InputError(f"n_splits must be >= 1, got {n_splits}")
    refuse_existing([out / name for name in RESULT_FILES], overwrite,
                    inputs=[*checkpoints, *([data] if isinstance(data, (str, os.PathLike)) else [])])
    check_seed(seed)
    if count is not None and not 2 <= count <= SEEDS_MAX:
        raise InputError(f"count {count}: between 2 and {SEEDS_MAX} samples per checkpoint")
    check_seed(seed + (count or 1) - 1, "last sample seed")
    check_truncation(truncation)
