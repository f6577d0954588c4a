"""Checkpoints and model files: safetensors tensors + JSON metadata, written atomically, loaded without code.

A checkpoint holds tensors under prefixes (`G.`, `G_ema.`, `D.`, optimiser states, ...) and one metadata
entry `gantlitz` with JSON: the resolved preset, the dataset facts generation needs (canvas,
displacement scale, normal convention) and the training state. Loading parses JSON and raw tensors only:
no pickle, nothing executes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import preset_from_dict, validate
from .errors import GantlitzError
from .outputs import atomic_path
from .networks import build
from .nn.generator import Generator

FORMAT = "gantlitz-checkpoint"
VERSION = 1
CHECKPOINT_GLOB = "step-*.safetensors"
_STEP_RE = re.compile(r"step-(\d+)\.safetensors$")
_HEADER_MAX = 100_000_000
"""The safetensors library's own limit on a header (bytes)."""


class CheckpointError(GantlitzError, ValueError):
    """A checkpoint or model file that is missing, unreadable or not a gantlitz file."""


def save(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write tensors + metadata to `path` through the one atomic path (replacing the file of a run or
    command that owns it): fsynced, its size checked against its own header, then renamed."""
    path = Path(path)
    header = {"gantlitz": json.dumps({"format": FORMAT, "version": VERSION, **meta})}
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path, overwrite=True, verify=lambda tmp: _verify_size(tmp, path)) as tmp:
        save_file(flat, str(tmp), metadata=header)
    return path


def _header(path: Path) -> tuple[int, dict[str, Any]]:
    """(header length, header) of a safetensors file, read without its tensors."""
    with open(path, "rb") as handle:
        n = int.from_bytes(handle.read(8), "little")
        if not 2 <= n <= min(_HEADER_MAX, path.stat().st_size - 8):
            raise CheckpointError(f"{path}: not a safetensors file (header length {n})")
        header = json.loads(handle.read(n))
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (its header is not an object)")
    return n, header


def _verify_size(tmp: Path, path: Path) -> None:
    """The written file is exactly as long as its header says (8 + header + the last tensor's end)."""
    try:
        n, header = _header(tmp)
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (CheckpointError, ValueError, KeyError, TypeError, IndexError):
        end, n = -1, 0
    if tmp.stat().st_size != 8 + n + end:
        raise CheckpointError(f"{path}: could not be written: the writer left an incomplete file "
                              f"({tmp.stat().st_size} bytes; is the disk full?); nothing was replaced")


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
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file (a pipe or device is never read as a checkpoint)")
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
        with safe_open(str(path), framework="pt") as handle:  # the header first: nothing allocated yet
            header = handle.metadata() or {}
        if "gantlitz" in header:
            tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if "gantlitz" not in header:
        raise CheckpointError(f"{path}: safetensors file without gantlitz metadata (not a gantlitz checkpoint)")
    try:
        meta = json.loads(header["gantlitz"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt gantlitz metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the gantlitz metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown format {meta.get('format')!r}")
    meta["path"] = str(path)
    return tensors, meta


def digest(state: dict[str, torch.Tensor]) -> str:
    """A short digest of a state dict's names and values: which weights a file was made with."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def subset(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix.` with the prefix removed (a module's state dict)."""
    start = prefix + "."
    return {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A state dict with every key under `prefix.`."""
    return {f"{prefix}.{k}": v for k, v in state.items()}


def _preset_of(meta: dict[str, Any]) -> Any:
    """The preset recorded in `meta`, or a `CheckpointError` saying what is wrong with it."""
    if not isinstance(meta.get("preset"), dict):
        raise CheckpointError(f"{meta['path']}: metadata has no preset (not a complete gantlitz checkpoint)")
    try:
        return preset_from_dict(meta["preset"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta['path']}: the recorded preset is invalid ({exc})") from None


def check_shapes(preset: Any, state: dict[str, torch.Tensor], path: str, prefix: str = "G") -> None:
    """Compare the weights of network `prefix` (G, G_ema or D) with the one the metadata describes, built
    without memory (meta device), so a preset that disagrees with the tensors (or asks for absurd sizes)
    fails before any allocation."""
    try:
        validate(preset)
        with torch.device("meta"):
            G, D = build(preset)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the recorded preset {preset.name!r} does not build ({exc})") from None
    shell = D if prefix == "D" else G
    expected = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
            ", ".join(f"{k} is {tuple(state[k].shape)}, the preset says {expected[k]}" for k in wrong[:3]),
        ) if part)
        raise CheckpointError(f"{path}: {prefix} weights do not match the recorded preset {preset.name!r} ({detail})")


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", *, which: str = "G_ema"
) -> tuple[Generator, dict[str, Any]]:
    """Rebuild the generator of a checkpoint or model file (EMA weights by default) in eval mode.

    The metadata is checked against the tensors' shapes before the generator is allocated.
    """
    tensors, meta = load(path, device="cpu")
    preset = _preset_of(meta)
    state = subset(tensors, which) or subset(tensors, "G")
    if not state:
        raise CheckpointError(f"{meta['path']}: no generator weights ({which}. or G.) in this file")
    check_shapes(preset, state, meta["path"])
    broken = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:
        raise CheckpointError(f"{meta['path']}: generator weights hold NaN/Inf ({', '.join(broken[:3])}); "
                              "use an earlier checkpoint")
    generator, _ = build(preset, mask=state.get("mask"))
    generator.load_state_dict(state, strict=True)
    return generator.to(device).eval().requires_grad_(False), meta
