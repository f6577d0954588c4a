"""Device and numeric precision: one resolver and one context for training, generation and inversion.

`resolve_device` turns "auto"/None/"cuda:1" into a checked `torch.device`; `resolve_precision` maps
"auto" to tf32 on CUDA and fp32 elsewhere; `precision_context` switches TF32 (and bf16 autocast) for a
block of work and restores the process-wide flags afterwards, so a library caller's settings survive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .errors import UsageError

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision", "precision_context", "configure_backends",
           "default_device"]

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "tf32", "bf16")


def default_device(local_rank: int = 0) -> torch.device:
    """The local rank's GPU when CUDA is present, else the CPU."""
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """`auto`/None → `default_device`; anything else validated (a CUDA device needs CUDA)."""
    if device is None or str(device) == "auto":
        return default_device(local_rank)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"unknown device {device!r} ({exc}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} requested but CUDA is not available on this machine "
                             "(use --device cpu)")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
        elif dev.index >= torch.cuda.device_count():
            raise UsageError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise UsageError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` → tf32 on CUDA, fp32 elsewhere; tf32 on CPU is fp32 (there is no TF32 there)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "tf32" if device.type == "cuda" else "fp32"
    if precision == "tf32" and device.type != "cuda":
        return "fp32"
    return precision


def _get_tf32() -> tuple[Any, ...]:
    try:
        return ("legacy", torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the process already uses the fp32_precision API (PyTorch >= 2.9)
        return ("new", torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)


def _set_tf32(state: tuple[Any, ...]) -> None:
    kind, matmul, conv = state
    if kind == "legacy":
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = conv
    else:
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.conv.fp32_precision = conv


def _apply_tf32(precision: str, device: torch.device) -> None:
    if device.type != "cuda":
        return
    allow = precision in ("tf32", "bf16")
    if _get_tf32()[0] == "legacy":
        _set_tf32(("legacy", allow, allow))
    else:
        mode = "tf32" if allow else "ieee"
        _set_tf32(("new", mode, mode))


def configure_backends(precision: str, device: torch.device) -> None:
    """TF32 for tf32/bf16 (strict fp32 only for precision=fp32) and cuDNN autotuning on CUDA, process-wide.

    Prefer `precision_context`, which restores the previous flags; this is for a process that does one
    thing (a training run).
    """
    _apply_tf32(precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str, *, autocast: bool = True) -> Iterator[None]:
    """TF32 switches (restored afterwards) and, for bf16 with `autocast`, bf16 autocast of the block.

    fp32 turns TF32 off for convolutions and matmuls (cuDNN allows it by default); tf32 and bf16 turn
    it on (bf16 autocasts the convolutions, TF32 covers what stays in float32).
    """
    saved = _get_tf32() if device.type == "cuda" else None
    benchmark = torch.backends.cudnn.benchmark
    _apply_tf32(precision, device)
    try:
        if precision == "bf16" and autocast:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
        if saved is not None:
            _set_tf32(saved)
