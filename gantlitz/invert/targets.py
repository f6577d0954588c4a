"""Inversion targets: validation of a target image against the model's canvas (completion at canvas size,
super-resolution at the canvas divided by an integer factor), reading target files, and PSNR."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np

from ..config import MODALITIES, MODALITY_CHANNELS
from ..errors import GantlitzError
from ..resample import area_downsample

log = logging.getLogger(__name__)

Mode = Literal["completion", "superres"]
MODES: tuple[str, ...] = ("completion", "superres")


class InversionError(GantlitzError, ValueError):
    """An inversion that can not start or continue (bad options, mismatching state, existing outputs)."""


class TargetError(InversionError):
    """A target image that can not be inverted; the message names the file (if any) and the problem."""



def superres_factor(canvas: tuple[int, int], shape: tuple[int, int], name: str = "target") -> int:
    """The integer factor canvas / target; clear errors for another aspect or a non-integer factor."""
    ch, cw = canvas
    th, tw = shape
    if th <= 0 or tw <= 0:
        raise TargetError(f"{name}: empty image ({tw}x{th})")
    if th * cw != tw * ch:
        raise TargetError(
            f"{name}: aspect ratio {tw}x{th} does not match the model's canvas {cw}x{ch} "
            f"(width:height must be {cw}:{ch})"
        )
    if ch % th or cw % tw:
        raise TargetError(
            f"{name}: {tw}x{th} is not the canvas {cw}x{ch} divided by an integer factor "
            f"(e.g. {cw // 4}x{ch // 4} or {cw // 8}x{ch // 8})"
        )
    if th > ch:
        raise TargetError(f"{name}: {tw}x{th} is larger than the model's canvas {cw}x{ch}")
    return ch // th


def check_target(
    image: np.ndarray, modality: str, canvas: tuple[int, int], mode: str, name: str = "target"
) -> tuple[np.ndarray, int]:
    """Validate and normalise a target array → (H×W×C float32 in [0, 1], factor).

    Albedo needs 3 channels (a 4th, alpha, channel is dropped with a warning); specular and displacement
    need 1 channel (3 or 4 channels are accepted when the colour channels are equal: they are averaged).
    Completion needs the canvas size, super-resolution the canvas divided by an integer factor >= 2.
    """
    if modality not in MODALITIES:
        raise InversionError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    if mode not in MODES:
        raise InversionError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise TargetError(f"{name}: expected an H x W x C image, got an array of shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TargetError(f"{name}: not a numeric image (dtype {arr.dtype})")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise TargetError(f"{name}: contains NaN/Inf values")
    c = arr.shape[2]
    want = MODALITY_CHANNELS[modality]
    if want == 3:
        if c == 4:
            log.warning("%s: dropping the 4th (alpha) channel of the albedo target", name)
            arr = arr[:, :, :3]
        elif c != 3:
            raise TargetError(f"{name}: an albedo target needs 3 channels (RGB), got {c}")
    else:
        if c == 4:
            log.warning("%s: dropping the 4th (alpha) channel of the %s target", name, modality)
            arr, c = arr[:, :, :3], 3
        if c == 3:
            spread = float(np.abs(arr - arr.mean(axis=2, keepdims=True)).max())
            if spread > 2.0 / 255.0:
                raise TargetError(
                    f"{name}: a {modality} target needs 1 channel; got 3 channels that differ "
                    f"(by up to {spread:.3f}) — is this a colour (albedo) image?"
                )
            arr = arr.mean(axis=2, keepdims=True)
        elif c != 1:
            raise TargetError(f"{name}: a {modality} target needs 1 channel, got {c}")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -0.01 or hi > 1.01:
        log.warning("%s: values span [%.3g, %.3g]; clipping to [0, 1]", name, lo, hi)
    arr = np.clip(arr, 0.0, 1.0)
    h, w = arr.shape[:2]
    if mode == "completion":
        if (h, w) != tuple(canvas):
            if h * canvas[1] != w * canvas[0]:
                superres_factor(canvas, (h, w), name)  # raises the aspect-ratio error
            hint = ""
            if h < canvas[0] and canvas[0] % h == 0 and canvas[1] % w == 0:
                hint = f"; it is the canvas / {canvas[0] // h}: use --mode superres"
            raise TargetError(
                f"{name}: completion needs a target at the model's canvas size {canvas[1]}x{canvas[0]}, "
                f"got {w}x{h}{hint}"
            )
        return arr, 1
    factor = superres_factor(canvas, (h, w), name)
    if factor == 1:
        raise TargetError(f"{name}: the target is already at the canvas size {w}x{h}; use --mode completion")
    return arr, factor


def load_target(path: str | Path, modality: str, canvas: tuple[int, int], mode: str) -> tuple[np.ndarray, int]:
    """Read and validate a target image file (any format `gantlitz.imageio` reads) → (array, factor)."""
    from ..imageio import ImageError, read_image

    try:
        image = read_image(path)
    except ImageError as exc:
        raise TargetError(str(exc)) from None
    return check_target(image, modality, canvas, mode, name=str(path))


def psnr(a: np.ndarray, b: np.ndarray, weight: np.ndarray | None = None) -> float:
    """PSNR in dB of two [0, 1] images (H×W×C), optionally weighted per pixel (H×W)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    err = (a - b) ** 2
    if weight is None:
        mse = float(err.mean())
    else:
        wgt = np.asarray(weight, np.float64)[:, :, None] * np.ones((1, 1, err.shape[2]))
        total = wgt.sum()
        if total <= 0:
            raise ValueError("psnr: the weight is zero everywhere")
        mse = float((err * wgt).sum() / total)
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)



def reconstruction_psnr(reconstruction: np.ndarray, target: np.ndarray, mask: np.ndarray, factor: int) -> float:
    """PSNR of a full-canvas reconstruction against a (possibly low-res) target, at the target resolution.

    Pixels are weighted by the mask coverage (area-down-sampled mask for super-resolution).
    """
    rec = area_downsample(reconstruction, factor)
    cov = area_downsample(mask.astype(np.float32), factor)
    return psnr(rec, target, cov)
