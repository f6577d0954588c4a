"""KID distributions of image sets (the statistics on arrays) and the names of the compared sets.

`evaluate_sets(real, generated, extractor, ...)`: features of the real images and of every generated set;
the reference distribution "real splits" (KID between two disjoint random halves of the real set, 1000
times: centred on 0 by construction) and, per generated set, KID between a random real subset and an
equally sized random generated subset, 1000 times.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..metrics.features import extract_features
from ..metrics.kid import kid, kid_splits, summarize

REAL = "real splits"
"""Name of the reference distribution (real vs real) in results and figures."""


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
