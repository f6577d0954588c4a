"""Checkpoints and model files: safetensors tensors + JSON metadata, written atomically, loaded without code.

A checkpoint holds tensors under prefixes (`G.`, `G_ema.`, `D.`, optimiser states, ...) and one metadata
entry `gantlitz` with JSON: the resolved preset, the dataset facts generation needs (canvas,
displacement scale, normal convention) and the training state. Loading parses JSON and raw tensors only:
no pickle, nothing executes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import preset_from_dict
from .networks import build
from .nn.generator import Generator

FORMAT = "gantlitz-checkpoint"
VERSION = 1
CHECKPOINT_GLOB = "step-*.safetensors"
_STEP_RE = re.compile(r"step-(\d+)\.safetensors$")


class CheckpointError(ValueError):
    """A checkpoint or model file that is missing, unreadable or not a gantlitz file."""


def save(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write tensors + metadata to `path` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"gantlitz": json.dumps({"format": FORMAT, "version": VERSION, **meta})}
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(flat, tmp, metadata=header)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or the latest checkpoint of a run directory (or its `checkpoints/` folder)."""
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = latest(folder)
        if found is None:
            raise CheckpointError(f"{path}: no checkpoint ({CHECKPOINT_GLOB}) in this directory")
        return found
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def latest(folder: str | Path) -> Path | None:
    """The checkpoint with the highest step in `folder`, if any."""
    best: tuple[int, Path] | None = None
    for candidate in Path(folder).glob(CHECKPOINT_GLOB):
        match = _STEP_RE.search(candidate.name)
        if match and (best is None or int(match.group(1)) > best[0]):
            best = (int(match.group(1)), candidate)
    return None if best is None else best[1]


def step_path(folder: str | Path, step: int) -> Path:
    """File name of the checkpoint at `step`."""
    return Path(folder) / f"step-{step:09d}.safetensors"


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a checkpoint file or run directory; clear errors for anything else."""
    path = resolve(path)
    try:
        tensors = load_file(str(path), device=str(device))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if "gantlitz" not in header:
        raise CheckpointError(f"{path}: safetensors file without gantlitz metadata (not a gantlitz checkpoint)")
    try:
        meta = json.loads(header["gantlitz"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt gantlitz metadata ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown format {meta.get('format')!r}")
    meta["path"] = str(path)
    return tensors, meta


def subset(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix.` with the prefix removed (a module's state dict)."""
    start = prefix + "."
    return {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A state dict with every key under `prefix.`."""
    return {f"{prefix}.{k}": v for k, v in state.items()}


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", *, which: str = "G_ema"
) -> tuple[Generator, dict[str, Any]]:
    """Rebuild the generator of a checkpoint or model file (EMA weights by default) in eval mode."""
    tensors, meta = load(path, device="cpu")
    preset = preset_from_dict(meta["preset"])
    state = subset(tensors, which) or subset(tensors, "G")
    if not state:
        raise CheckpointError(f"{meta['path']}: no generator weights ({which}. or G.) in this file")
    mask = state.get("mask")
    generator, _ = build(preset, mask=mask)
    missing, unexpected = generator.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{meta['path']}: generator weights do not match the preset {preset.name!r} "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    return generator.to(device).eval().requires_grad_(False), meta
