"""Value space and resampling shared by every module: [-1, 1] ↔ [0, 1], one anti-aliased resize, one block mean.

Files and the public API hold values in [0, 1]; the networks work in [-1, 1]. Arrays are H×W×C float32
(the library's image convention). Shrinking averages the covered input pixels
(area / box filter), so previews, masks and metrics never alias; enlarging interpolates bilinearly.
"""

from __future__ import annotations

import typing

import numpy as np
import torch
import torch.nn.functional as F

Values = typing.TypeVar("Values", np.ndarray, torch.Tensor, float)


def network_to_unit(x: Values) -> Values:
    """Network space [-1, 1] → file/API space [0, 1] (no clipping)."""
    return x * 0.5 + 0.5


def unit_to_network(x: Values) -> Values:
    """File/API space [0, 1] → network space [-1, 1]."""
    return x * 2.0 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] values → uint8 (clipped, rounded half up): the one 8-bit quantisation of previews and PNGs."""
    return (np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """H×W×C → height×width×C float32: area average when shrinking, bilinear when enlarging."""
    img = np.asarray(image, dtype=np.float32)
    if img.shape[:2] == (height, width):
        return img.copy()
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    if height <= img.shape[0] and width <= img.shape[1]:
        t = F.interpolate(t, size=(int(height), int(width)), mode="area")
    else:
        t = F.interpolate(t, size=(int(height), int(width)), mode="bilinear", align_corners=False, antialias=True)
    return np.ascontiguousarray(t[0].permute(1, 2, 0).numpy())


def fit(image: np.ndarray, max_size: int) -> np.ndarray:
    """Shrink so the long side is at most `max_size` (aspect kept); smaller images are returned as they are."""
    h, w = image.shape[:2]
    if max(h, w) <= max_size:
        return image
    scale = max_size / max(h, w)
    return resize(image, max(1, round(h * scale)), max(1, round(w * scale)))


def area_downsample(image: np.ndarray, factor: int, *, trim: bool = False) -> np.ndarray:
    """Exact block mean of an H×W[×C] image by an integer factor (float32, accumulated in float64).

    `trim` drops the last rows/columns that do not fill a block (previews); otherwise they are an error.
    """
    img = np.asarray(image, dtype=np.float32)
    if factor <= 1:
        return img
    if img.ndim == 2:
        return area_downsample(img[:, :, None], factor, trim=trim)[:, :, 0]
    h, w, c = img.shape
    if trim:
        h, w = h // factor * factor, w // factor * factor
        img = img[:h, :w]
    elif h % factor or w % factor:
        raise ValueError(f"{w}x{h} is not divisible by {factor}")
    blocks = img.reshape(h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def block_mean(x: torch.Tensor, factor: int) -> torch.Tensor:
    """`area_downsample` for (B, C, H, W) tensors (differentiable; inversion's super-resolution loss)."""
    return x if factor == 1 else F.avg_pool2d(x, factor)
