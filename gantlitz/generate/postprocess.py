"""Maps on the host after synthesis: normals derived from the displacement in row bands
(`normals_from_displacement`) and the §5.4 fill outside the mask (`extrapolate_fill`)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import maps as maps_mod
from ..errors import UsageError

DEFAULT_NORMAL_CONVENTION = "opengl"


def normals_from_displacement(
    displacement: np.ndarray, scale: float, convention: str = DEFAULT_NORMAL_CONVENTION, *, band: int = 512,
    encode: bool = True,
) -> np.ndarray:
    """Tangent normals of displacement (H x W[x1], values in [0, 1]; height = d * scale pixels).

    Computed in row bands with one row of overlap (exactly equal to `maps.displacement_to_normals` on
    the whole map, bounded temporary memory). `encode=True` returns the image values n * 0.5 + 0.5.
    """
    d = np.asarray(displacement)
    if d.ndim == 3:
        d = d[:, :, 0]
    height, width = d.shape
    out = np.empty((height, width, 3), np.float32)
    for y0 in range(0, height, band):
        y1 = min(y0 + band, height)
        start = max(y0 - 1, 0)
        n = maps_mod.displacement_to_normals(d[start:y1], scale, convention)  # type: ignore[arg-type]
        n = n[y0 - start :]
        out[y0:y1] = maps_mod.encode_normals(n) if encode else n
    return out


def _resize_torch(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "area":
        return torch.nn.functional.interpolate(x, size=size, mode="area")
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)


def extrapolate_fill(
    image: np.ndarray, mask: np.ndarray, *, detail_sigma: float | None = None, blur_sigma: float | None = None,
    feather: float | None = None,
) -> np.ndarray:
    """§5.4: outside `mask`, replace the low frequencies of an unmasked synthesis by a strong blur of them.

    image H x W x C (any value space), mask H x W (nonzero = trained region). With L = Gσd(image) (the
    low frequencies; σd = long side / 128) and L' = Gσb(L) (σb = long side / 16), the result is
    image + t · (L' − L), where t = 0 inside the mask and ramps smoothly to 1 within `feather` pixels
    (long side / 64) outside it. High-frequency detail is kept everywhere; inside the mask the image
    is returned unchanged. The blurs run on an area-down-sampled copy (the removed content is low-pass,
    so bilinear up-sampling of it is accurate) so the cost is small at 6144 x 4096.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float32)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    height, width = img.shape[:2]
    m = np.asarray(mask) > 0
    if m.shape != (height, width):
        raise UsageError(f"mask {m.shape} does not match the image {img.shape[:2]}")
    if m.all():
        return img[:, :, 0].copy() if squeeze else img.copy()
    long = max(height, width)
    detail_sigma = long / 128.0 if detail_sigma is None else float(detail_sigma)
    blur_sigma = long / 16.0 if blur_sigma is None else float(blur_sigma)
    feather = long / 64.0 if feather is None else float(feather)
    f = max(1, int(detail_sigma // 4))
    small = (max(1, round(height / f)), max(1, round(width / f)))
    fy, fx = height / small[0], width / small[1]
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
        xs = _resize_torch(x, small, "area")[0].numpy() if f > 1 else x[0].numpy()
        sd = detail_sigma / f
        sb = math.sqrt(detail_sigma**2 + blur_sigma**2) / f
        low = np.stack([ndimage.gaussian_filter(c, sd, mode="reflect") for c in xs])
        low2 = np.stack([ndimage.gaussian_filter(c, sb, mode="reflect") for c in xs])
        delta = torch.from_numpy((low2 - low).astype(np.float32))[None]
        if f > 1:
            delta = _resize_torch(delta, (height, width), "bilinear")
        # Distance (full-resolution pixels) to the trained region, from a down-sampled mask.
        mt = torch.from_numpy(m.astype(np.float32))[None, None]
        ms = (_resize_torch(mt, small, "area")[0, 0].numpy() > 0) if f > 1 else m
        dist = ndimage.distance_transform_edt(~ms, sampling=(fy, fx)).astype(np.float32)
        dist_t = torch.from_numpy(dist)[None, None]
        if f > 1:
            dist_t = _resize_torch(dist_t, (height, width), "bilinear")
        t = (dist_t[0, 0].numpy() / max(feather, 1e-6)).clip(0.0, 1.0)
        t = t * t * (3.0 - 2.0 * t)  # smoothstep
        t[m] = 0.0
        out = img + t[:, :, None] * delta[0].numpy().transpose(1, 2, 0)
    return out[:, :, 0] if squeeze else out
