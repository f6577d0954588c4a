"""Training state beside the checkpoint: the per-step random streams, the global RNG states, and the
optimisers' state as flat tensors + JSON (safetensors holds tensors only; nothing is pickled).

Every random draw of a training step is a pure function of (seed, step, rank, purpose): a resumed run
therefore reproduces an uninterrupted run exactly. The purposes are numbered once, here; a new purpose
gets a new number and an old number is never reused (docs/architecture.md, "Random streams").
"""

from __future__ import annotations

import enum
import random
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["Purpose", "step_generator", "rng_state", "restore_rng", "optimizer_to_flat", "optimizer_from_flat",
           "RANK_SEED_STRIDE"]

RANK_SEED_STRIDE = 1_000_003
"""The data loader of rank r is seeded with seed + r · RANK_SEED_STRIDE (distinct per-rank batches)."""


class Purpose(enum.IntEnum):
    """What a per-step random stream is for (the numbers are part of the checkpoint format)."""

    Z = 1
    KEEP_FAKE = 2
    KEEP_REAL = 3
    AUG_D = 4
    AUG_R1 = 5
    AUG_G = 6
    MIX = 7
    PREVIEW = 8
    WHOLE_SUBJECTS = 9
    WHOLE_AUG_D = 10
    WHOLE_AUG_R1 = 11
    WHOLE_AUG_G = 12


def step_generator(seed: int, step: int, rank: int, purpose: int) -> torch.Generator:
    """A CPU torch.Generator whose stream depends only on (seed, step, rank, purpose)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step), int(rank), int(purpose), 0x6A17]).generate_state(
        2, np.uint32
    )
    return torch.Generator().manual_seed((int(state[0]) << 32) | int(state[1]))


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global torch / CUDA / NumPy / Python RNG states as (tensors, JSON meta)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = st
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).view(np.int32).copy())
    py_version, py_state, py_gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
            "python": [py_version, list(py_state), py_gauss]}
    return tensors, meta


def restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Inverse of `rng_state` (CUDA states only when the device count matches)."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([c.to(torch.uint8) for c in cuda])
    if "rng.numpy" in tensors and "numpy" in meta:
        kind, pos, has_gauss, cached = meta["numpy"]
        keys = tensors["rng.numpy"].numpy().view(np.uint32)
        np.random.set_state((kind, keys, pos, has_gauss, cached))
    if "python" in meta:
        version, state, gauss = meta["python"]
        random.setstate((version, tuple(state), gauss))


def optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state dict as `prefix.state.<param>.<name>` tensors plus JSON (groups, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                        prefix: str) -> None:
    """Inverse of `optimizer_to_flat`."""
    start = f"{prefix}.state."
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(start):
            idx, name = key[len(start):].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
