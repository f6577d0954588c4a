"""Contact sheets and previews: uint8 thumbnails of float maps laid out in captioned grids (PIL images).

Shared by generation, interpolation, noise variation and inversion; writing the images is
`gantlitz.outputs.save_image`'s job. Displacement is shown contrast-stretched to its 1-99 % range.
"""

from __future__ import annotations

import math

import numpy as np

from .outputs.mapfiles import OUTPUT_MAPS
from .resample import area_downsample, to_uint8

__all__ = ["shrink", "stretch_range", "to_rgb8", "thumbnails", "crop_box", "grid", "contact_sheet",
           "seeds_sheet", "frames_sheet", "vary_noise_sheet"]


def shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean by an integer factor, trimming the edge rows/columns that do not fill a block."""
    return area_downsample(image, factor, trim=True)


def stretch_range(arr: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """The 1 and 99 % values of a one-channel map (inside `mask` when given): its display range."""
    a = arr[..., 0]
    if mask is not None and mask.shape == a.shape and mask.any():
        vals = a[mask > 0]
    else:
        vals = a.ravel()
    if vals.size > 1_000_000:
        vals = vals[:: vals.size // 1_000_000]
    lo, hi = np.percentile(vals, [1.0, 99.0]) if vals.size else (0.0, 1.0)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def to_rgb8(arr: np.ndarray, stretch: tuple[float, float] | None = None) -> np.ndarray:
    """H×W×C values in [0, 1] (or in `stretch`) → H×W×3 uint8 for display (grey for one channel)."""
    a = np.asarray(arr, np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if stretch is not None:
        lo, hi = stretch
        a = (a - lo) / (hi - lo)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return to_uint8(a[:, :, :3])


def thumbnails(
    maps: dict[str, np.ndarray], long_side: int = 512, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Area-down-sampled uint8 RGB previews (long side <= long_side); displacement contrast-stretched
    to its 1-99 % range inside the mask."""
    out = {}
    for name, arr in maps.items():
        factor = max(1, math.ceil(max(arr.shape[:2]) / long_side))
        small = shrink(arr, factor)
        stretch = None
        if name == "displacement":
            small_mask = None if mask is None else shrink(mask[:, :, None], factor)[:, :, 0] > 0.99
            stretch = stretch_range(small, small_mask)
        out[name] = to_rgb8(small, stretch)
    return out


def crop_box(mask: np.ndarray, size: int) -> tuple[int, int, int]:
    """(top, left, size) of a square crop centred on the mask's centroid, inside the canvas."""
    h, w = mask.shape
    size = max(1, min(size, h, w))
    step = 8 if min(h, w) >= 256 else 1
    ys, xs = np.nonzero(mask[::step, ::step])
    cy, cx = (float(ys.mean()) * step, float(xs.mean()) * step) if ys.size else (h / 2, w / 2)
    top = int(min(max(cy - size / 2, 0), h - size))
    left = int(min(max(cx - size / 2, 0), w - size))
    return top, left, size


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def grid(cells: list[list[tuple[np.ndarray | None, str]]], title: str | None = None, pad: int = 6,
          label_h: int = 18, row_labels: list[str] | None = None):
    """Lay out rows of (uint8 image, caption) on a dark canvas; returns a PIL image."""
    from PIL import Image, ImageDraw

    font = _font()
    row_lab_w = 90 if row_labels else 0
    ncols = max(len(r) for r in cells)
    col_w = [0] * ncols
    row_h = []
    for r in cells:
        hmax = 0
        for j, (img, _) in enumerate(r):
            if img is not None:
                col_w[j] = max(col_w[j], img.shape[1])
                hmax = max(hmax, img.shape[0])
        row_h.append(hmax + label_h)
    title_h = 24 if title else 0
    width = row_lab_w + sum(col_w) + pad * (ncols + 1)
    height = title_h + sum(row_h) + pad * (len(cells) + 1)
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 4), title, fill=(235, 235, 235), font=font)
    y = title_h + pad
    for i, r in enumerate(cells):
        if row_labels:
            draw.text((pad, y + 2), row_labels[i], fill=(235, 235, 235), font=font)
        x = row_lab_w + pad
        for j, (img, caption) in enumerate(r):
            if img is not None:
                sheet.paste(Image.fromarray(img), (x, y))
                draw.text((x, y + img.shape[0] + 2), caption, fill=(200, 200, 200), font=font)
            x += col_w[j] + pad
        y += row_h[i] + pad
    return sheet


def contact_sheet(
    maps: dict[str, np.ndarray], mask: np.ndarray | None = None, *, title: str | None = None,
    crop: int = 512, thumbs: dict[str, np.ndarray] | None = None,
):
    """All maps side by side (down-sampled) above a full-resolution crop of each around the mask centre."""
    from PIL import Image, ImageDraw

    names = [n for n in OUTPUT_MAPS if n in maps] + [n for n in maps if n not in OUTPUT_MAPS]
    thumbs = thumbs or thumbnails(maps, mask=mask)
    first = maps[names[0]]
    h, w = first.shape[:2]
    m = mask if mask is not None and mask.shape == (h, w) else np.ones((h, w), np.uint8)
    size = min(crop, max(h, w) // 2) if max(h, w) > crop else min(h, w) // 2
    top, left, size = crop_box(m, max(size, 1))
    row1, row2 = [], []
    for n in names:
        th = thumbs[n]
        img = Image.fromarray(th)
        sy, sx = th.shape[0] / h, th.shape[1] / w
        ImageDraw.Draw(img).rectangle(
            [left * sx, top * sy, (left + size) * sx - 1, (top + size) * sy - 1], outline=(255, 64, 64)
        )
        row1.append((np.asarray(img), f"{n} {w}x{h}"))
        patch = maps[n][top : top + size, left : left + size]
        stretch = stretch_range(patch, m[top : top + size, left : left + size]) if n == "displacement" else None
        row2.append((to_rgb8(patch, stretch), f"{n} 1:1 crop @({left},{top})"))
    return grid([row1, row2], title=title)


def seeds_sheet(rows: list[tuple[str, dict[str, np.ndarray]]], title: str | None = None, long_side: int = 256):
    """One row per seed of thumbnails (from `thumbnails`), shrunk to `long_side`."""
    cells, labels = [], []
    for label, thumbs in rows:
        row = []
        for n in OUTPUT_MAPS:
            if n in thumbs:
                t = thumbs[n]
                f = max(1, math.ceil(max(t.shape[:2]) / long_side))
                row.append((shrink(t, f).round().astype(np.uint8) if f > 1 else t, n))
        cells.append(row)
        labels.append(label)
    return grid(cells, title=title, row_labels=labels)


def frames_sheet(frames: list[tuple[str, np.ndarray]], title: str | None = None, columns: int = 8):
    """Frames (uint8 images with captions) in a grid of `columns`."""
    cells = [frames[i : i + columns] for i in range(0, len(frames), columns)]
    return grid(cells, title=title)


def vary_noise_sheet(
    results: list[tuple[int, dict[str, np.ndarray]]], mask: np.ndarray, *, title: str | None = None,
    crop: int = 256, long_side: int = 384, gain: float = 8.0,
):
    """Paper Fig. 10: per noise seed a down-sampled albedo, 1:1 crops of albedo and displacement, and the
    amplified absolute albedo difference to the first noise seed (fine detail changes, layout stays)."""
    _, first = results[0]
    h, w = first["albedo"].shape[:2]
    top, left, size = crop_box(mask, min(crop, h // 2, w // 2) if max(h, w) > crop else min(h, w) // 2)
    ref_a = first["albedo"][top : top + size, left : left + size]
    disp_range = None
    rows: list[list[tuple[np.ndarray | None, str]]] = [[], [], [], []]
    for k, res in results:
        a = res["albedo"]
        f = max(1, math.ceil(max(h, w) / long_side))
        rows[0].append((to_rgb8(shrink(a, f)), f"noise {k}"))
        ca = a[top : top + size, left : left + size]
        rows[1].append((to_rgb8(ca), f"albedo 1:1 @({left},{top})"))
        if "displacement" in res:
            cd = res["displacement"][top : top + size, left : left + size]
            disp_range = disp_range or stretch_range(cd, mask[top : top + size, left : left + size])
            rows[2].append((to_rgb8(cd, disp_range), "displacement 1:1"))
        diff = np.abs(ca - ref_a).mean(axis=2, keepdims=True) * gain
        rows[3].append((to_rgb8(diff), f"|albedo - noise {results[0][0]}| x{gain:g}"))
    return grid([r for r in rows if r], title=title)
