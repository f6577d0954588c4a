"""`gantlitz prepare`: raw scans → the memory-mapped patch store (paper §3, docs/architecture.md).

Input layout: one sub-folder per subject holding ``albedo.*``, ``specular.*`` and ``normal.*`` (or
``displacement.*``) as 8/16-bit PNG, TIFF, JPEG or float EXR; optionally ``mask.*`` at the top.

Two passes.  Pass 1 decodes and checks every file (missing maps, unreadable / truncated files, sizes,
channel counts, value ranges, NaN/Inf) and collects *all* problems; nothing is written if there is one.
It also integrates the normal maps to find the one dataset-wide displacement scale.  Pass 2 decodes again
and writes the store into a temporary sibling folder that is renamed to OUT at the very end, manifest
last, so an interrupted run leaves nothing that loads.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__, imageio, maps
from ..config import MODALITY_CHANNELS
from ..errors import GantlitzError, OutputExistsError
from ..outputs import check_output_dir, install_dir, make_dirs, write_text
from ..resample import resize
from .store import STORE_FORMAT, STORE_VERSION

log = logging.getLogger(__name__)

__all__ = [
    "PrepareError",
    "SubjectFiles",
    "find_subjects",
    "prepare",
    "STORE_FORMAT",
    "STORE_VERSION",
    "CANVAS_MULTIPLE",
    "PREVIEW_MAX",
]

CANVAS_MULTIPLE = 64
"""Canvas sides must be multiples of this (the patch size is chosen later, at training time)."""
PREVIEW_MAX = 1024
"""Long side of the whole-texture previews (preview.npy)."""
MAP_NAMES = ("albedo", "specular", "normal", "displacement")
RANGE_TOL = 1e-3


class PrepareError(GantlitzError, ValueError):
    """Input problems found by `prepare`; ``problems`` lists each as 'file: problem'."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) in the input, nothing was written:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in self.problems]))


@dataclass
class SubjectFiles:
    name: str
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)


def _find_map(folder: Path, name: str) -> tuple[Path | None, list[str]]:
    """The file ``name.<ext>`` in folder (case-insensitive), or the problem."""
    hits = sorted(p for p in folder.iterdir() if p.is_file() and p.stem.lower() == name and not p.name.startswith("."))
    if not hits:
        return None, []
    supported = [p for p in hits if p.suffix.lower() in imageio.READ_SUFFIXES]
    if len(supported) > 1:
        return None, [f"{folder}: several {name} maps ({', '.join(p.name for p in supported)}); keep one"]
    if not supported:
        return None, [f"{hits[0]}: unsupported format {hits[0].suffix!r} (use {', '.join(imageio.READ_SUFFIXES)})"]
    return supported[0], []


def find_subjects(src: str | os.PathLike) -> tuple[list[SubjectFiles], Path | None, list[str]]:
    """Subjects (sorted by folder name), the top-level mask file if any, and the layout problems found."""
    src = Path(src)
    problems: list[str] = []
    if not src.is_dir():
        return [], None, [f"{src}: not a folder"]
    mask_file, mp = _find_map(src, "mask")
    problems += mp
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    hidden = sorted(p.name for p in src.iterdir() if p.is_dir() and p.name.startswith("."))
    if hidden:
        log.warning("%s: skipping hidden folder(s) %s (rename them without the leading '.' to use them as subjects)",
                    src, ", ".join(hidden))
    odd = [p.name for p in folders if not p.name.isprintable()]
    if odd:
        log.warning("%s: subject folder name(s) %s contain unprintable characters; they are used as given",
                    src, ", ".join(map(repr, odd)))
    if not folders:
        return [], mask_file, [f"{src}: no subject folders (expected one sub-folder per subject with albedo.*, "
                               "specular.*, normal.* or displacement.*)"]
    subjects = []
    for folder in folders:
        subj = SubjectFiles(folder.name, folder)
        reported = set()
        for name in MAP_NAMES:
            path, mp = _find_map(folder, name)
            problems += mp
            if path is not None:
                subj.files[name] = path
            elif mp:
                reported.add(name)
        for name in ("albedo", "specular"):
            if name not in subj.files and name not in reported:
                problems.append(f"{folder}: missing {name} map ({name}.png/.tif/.exr/.jpg)")
        if not ({"normal", "displacement"} & (set(subj.files) | reported)):
            problems.append(f"{folder}: missing normal map (normal.*) or displacement map (displacement.*)")
        subjects.append(subj)
    return subjects, mask_file, problems


def _parse_crop(crop: Sequence[int] | None, height: int, width: int) -> tuple[int, int, int, int] | None:
    if crop is None:
        return None
    x, y, w, h = (int(v) for v in crop)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise PrepareError([f"--crop {x},{y},{w},{h} does not fit in the {width}x{height} maps"])
    return x, y, w, h


def _crop(img: np.ndarray, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    if crop is None:
        return img
    x, y, w, h = crop
    return img[y : y + h, x : x + w]


def _check_range(path: Path, img: np.ndarray, lo: float, hi: float, what: str) -> list[str]:
    vmin, vmax = float(img.min()), float(img.max())
    if vmin < lo - RANGE_TOL or vmax > hi + RANGE_TOL:
        return [f"{path}: {what} values span [{vmin:.4g}, {vmax:.4g}], expected [{lo:g}, {hi:g}]"]
    return []


def _load_subject(subj: SubjectFiles, crop, convention: str, displacement_height: float):
    """Decode, check and convert one subject: (albedo HxWx3, specular HxW, height HxW px, problems)."""
    problems: list[str] = []
    images: dict[str, np.ndarray] = {}
    for name, path in subj.files.items():
        try:
            images[name] = imageio.read_image(path)
        except imageio.ImageError as exc:
            problems.append(str(exc))
    if problems:
        return None, problems
    albedo = images.get("albedo")
    spec = images.get("specular")
    if albedo is not None and albedo.shape[2] not in (3, 4):
        problems.append(f"{subj.files['albedo']}: albedo has {albedo.shape[2]} channel(s), expected 3 (RGB) or 4 (RGBA)")
    if spec is not None and spec.shape[2] not in (1, 2, 3, 4):
        problems.append(f"{subj.files['specular']}: specular has {spec.shape[2]} channels, expected 1 or 3")
    if "normal" in images and images["normal"].shape[2] not in (3, 4):
        problems.append(f"{subj.files['normal']}: normal map has {images['normal'].shape[2]} channel(s), expected 3")
    if "displacement" in images and "normal" not in images and images["displacement"].shape[2] not in (1, 2, 3, 4):
        problems.append(f"{subj.files['displacement']}: displacement has {images['displacement'].shape[2]} channels")
    if problems:
        return None, problems
    assert albedo is not None and spec is not None
    albedo = albedo[:, :, :3]
    spec = spec[:, :, :3].mean(axis=2) if spec.shape[2] >= 3 else spec[:, :, 0]
    problems += _check_range(subj.files["albedo"], albedo, 0.0, 1.0, "albedo")
    problems += _check_range(subj.files["specular"], spec, 0.0, 1.0, "specular")
    if "normal" in images:
        raw = images["normal"][:, :, :3]
        path = subj.files["normal"]
        if float(raw.min()) < -RANGE_TOL:  # float file storing n directly in [-1, 1]
            problems += _check_range(path, raw, -1.0, 1.0, "normal")
            encoded = raw * 0.5 + 0.5
        else:
            problems += _check_range(path, raw, 0.0, 1.0, "normal")
            encoded = raw
        if problems:
            return None, problems
        normals = maps.decode_normals(_crop(encoded, crop))
        kind, data = "normal", normals
    else:
        disp = images["displacement"][:, :, 0]
        kind, data = "displacement", _crop(disp, crop).astype(np.float32) * float(displacement_height)
    if problems:
        return None, problems
    return (kind, np.clip(_crop(albedo, crop), 0, 1), np.clip(_crop(spec, crop), 0, 1), data), []


def _height(kind: str, data: np.ndarray, mask: np.ndarray, convention: str) -> np.ndarray:
    """Height in canvas pixels; normals outside the mask are flattened before integrating."""
    if kind == "displacement":
        return data.astype(np.float32)
    normals = np.where(mask[..., None] > 0, data, np.array([0, 0, 1], np.float32)).astype(np.float32)
    return maps.normals_to_displacement(normals, convention)


def _preview_size(height: int, width: int) -> tuple[int, int]:
    s = min(1.0, PREVIEW_MAX / max(height, width))
    return max(1, round(height * s)), max(1, round(width * s))


def _quantise(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 65535.0).astype(np.uint16)


DATASET_FILES = frozenset({"manifest.json", "textures.npy", "mask.npy", "preview.npy"})
"""What `prepare` writes into OUT: all that `--overwrite` may replace there."""


def check_dataset_out(out: Path, inputs: Sequence[str | os.PathLike], overwrite: bool) -> None:
    """The overwrite rule for a dataset folder: never an input or a folder holding one; with --overwrite
    only an empty folder or a dataset `prepare` wrote (its manifest says so), never another folder."""
    entries = check_output_dir(out, inputs=inputs, overwrite=overwrite, what="dataset")
    if entries and not _is_dataset(out):
        raise OutputExistsError(out, "is not a prepared dataset (no gantlitz manifest.json); --overwrite only "
                                     "replaces a dataset written by `gantlitz prepare` (nothing was touched)")


def _is_dataset(folder: Path) -> bool:
    try:
        return json.loads((folder / "manifest.json").read_text()).get("format") == STORE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    crop: Sequence[int] | None = None,
    mask: str | os.PathLike | None = None,
    flip: bool = True,
    normal_convention: str = "opengl",
    displacement_height: float = 1.0,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Validate ``src`` and write the prepared store to ``out``; returns ``out``.

    ``crop`` is (x, y, w, h) in pixels of the input maps; ``mask`` an image file (first channel > 0.5
    = visible; default ``src/mask.*``, else derived where all maps equal their border fill);
    ``displacement_height`` converts values of displacement files (used when a subject has no normal
    map) into canvas pixels.  Raises `PrepareError` listing every problem, `OutputExistsError` (a
    `FileExistsError`) when ``out`` is not empty and ``overwrite`` is false, is or contains an input, or
    is a folder other than a prepared dataset (``out`` is then left untouched). ``overwrite`` replaces
    only the dataset's own files (`DATASET_FILES`); other files in ``out`` are kept.
    """
    src, out = Path(src), Path(out)
    if normal_convention not in maps.CONVENTIONS:
        raise PrepareError([f"--normal-convention must be one of {maps.CONVENTIONS}, got {normal_convention!r}"])
    if not (math.isfinite(displacement_height) and displacement_height > 0):
        raise PrepareError([f"--displacement-height must be a positive number, got {displacement_height}"])
    check_dataset_out(out, [src, *([mask] if mask is not None else [])], overwrite)
    subjects, mask_file, problems = find_subjects(src)
    if mask is not None:
        mask_file = Path(mask)
    height, width = _common_size(subjects, mask_file, problems)
    crop_box = _parse_crop(crop, height, width)
    plan = _Plan(subjects, crop_box, normal_convention, displacement_height, progress)
    ch, cw = plan.canvas(height, width)
    vis, mask_source, ranges, scale = _check_all(plan, src, mask_file, ch, cw)
    manifest = {
        "format": STORE_FORMAT, "version": STORE_VERSION, "canvas": {"height": ch, "width": cw},
        "modalities": dict(MODALITY_CHANNELS), "subjects": [s.name for s in subjects],
        "displacement_scale": float(scale), "normal_convention": normal_convention, "flip": bool(flip),
        "crop": list(crop_box) if crop_box else None, "mask": mask_source,
        "preview": dict(zip(("height", "width"), _preview_size(ch, cw))), "dtype": "uint16",
        "source": str(src.resolve()), "source_size": {"height": height, "width": width},
        "displacement_height": float(displacement_height), "canvas_multiple": CANVAS_MULTIPLE,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "gantlitz_version": __version__,
    }
    make_dirs(out.parent)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_store(plan, tmp, vis, ranges, scale, manifest)
        install_dir(tmp, out, owned=lambda entry: entry.name in DATASET_FILES, last="manifest.json")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass
class _Plan:
    """What every pass over the subjects needs."""

    subjects: list[SubjectFiles]
    crop_box: tuple[int, int, int, int] | None
    normal_convention: str
    displacement_height: float
    progress: bool

    def canvas(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the crop, checked against the canvas multiple."""
        ch, cw = (self.crop_box[3], self.crop_box[2]) if self.crop_box else (height, width)
        if ch % CANVAS_MULTIPLE or cw % CANVAS_MULTIPLE:
            raise PrepareError([
                f"canvas {cw}x{ch} (after crop) is not divisible by {CANVAS_MULTIPLE}; pass --crop X,Y,W,H with W and "
                f"H multiples of {CANVAS_MULTIPLE} (training later checks its own patch size against the canvas)"
            ])
        return ch, cw

    def load(self, subj: SubjectFiles) -> tuple[Any, list[str]]:
        return _load_subject(subj, self.crop_box, self.normal_convention, self.displacement_height)

    def each(self, desc: str):
        from tqdm.auto import tqdm

        return tqdm(self.subjects, desc=desc, unit="subject", disable=not self.progress)


def _common_size(subjects: list[SubjectFiles], mask_file: Path | None, problems: list[str]) -> tuple[int, int]:
    """Pass 0, headers only: the (height, width) all maps share; every unreadable or odd-sized file is a
    problem (raised together with the layout problems found so far)."""
    sizes: dict[Path, tuple[int, int, int]] = {}
    for path in [p for subj in subjects for p in subj.files.values()] + ([mask_file] if mask_file else []):
        try:
            sizes[path] = imageio.image_size(path)
        except imageio.ImageError as exc:
            problems.append(str(exc))
    hw = [s[:2] for s in sizes.values()]
    ref = max(set(hw), key=hw.count) if hw else (0, 0)
    problems += [f"{path}: size {s[1]}x{s[0]} differs from the other maps ({ref[1]}x{ref[0]})"
                 for path, s in sizes.items() if s[:2] != ref]
    if problems:
        raise PrepareError(problems)
    return ref


def _check_all(plan: _Plan, src: Path, mask_file: Path | None, ch: int, cw: int):
    """Pass 1: decode and check every file; returns the visibility mask, its source, every subject's
    height range and the dataset-wide displacement scale (the widest range)."""
    problems: list[str] = []
    file_mask = None
    if mask_file is not None:
        try:
            file_mask = (_crop(imageio.read_image(mask_file), plan.crop_box)[:, :, 0] > 0.5).astype(np.uint8)
            if not file_mask.any():
                problems.append(f"{mask_file}: mask is empty (no pixel > 0.5)")
        except imageio.ImageError as exc:
            problems.append(str(exc))
    loaded = []
    derived = np.zeros((ch, cw), np.uint8) if file_mask is None else None
    for subj in plan.each("check"):
        res, probs = plan.load(subj)
        problems += probs
        loaded.append(res)
        if res is not None and derived is not None:
            kind, albedo, spec, data = res
            extra = [maps.encode_normals(data)] if kind == "normal" else []
            derived |= maps.derive_mask([albedo, spec[..., None], *extra], background="border",
                                        tol=3.0 / 255.0, clean=False)
    if problems:
        raise PrepareError(problems)
    if file_mask is not None:
        vis, mask_source = file_mask, str(Path(mask_file).resolve())
    else:
        vis = maps.clean_mask(derived, min_island=max(16, int(1e-4 * derived.size)))
        mask_source = "derived"
        if not vis.any():
            raise PrepareError([f"{src}: the derived mask is empty (all maps equal their border value); pass --mask"])
    ranges = []
    for kind, _, _, data in loaded:
        hv = _height(kind, data, vis, plan.normal_convention)[vis > 0]
        ranges.append((float(hv.min()), float(hv.max())))
    scale = max(hi - lo for lo, hi in ranges)
    return vis, mask_source, ranges, scale if np.isfinite(scale) and scale > 0 else 1.0


def _write_store(plan: _Plan, tmp: Path, vis: np.ndarray, ranges: list[tuple[float, float]], scale: float,
                 manifest: dict[str, Any]) -> None:
    """Pass 2: textures, previews and mask into `tmp`, the manifest last (fsynced)."""
    n, (ch, cw) = len(plan.subjects), (manifest["canvas"]["height"], manifest["canvas"]["width"])
    ph, pw = manifest["preview"]["height"], manifest["preview"]["width"]
    tex = np.lib.format.open_memmap(tmp / "textures.npy", mode="w+", dtype=np.uint16, shape=(n, ch, cw, 5))
    prev = np.lib.format.open_memmap(tmp / "preview.npy", mode="w+", dtype=np.uint16, shape=(n, ph, pw, 5))
    inv = vis == 0
    for i, subj in enumerate(plan.each("write")):
        res, probs = plan.load(subj)
        if probs:  # the files changed since pass 1
            raise PrepareError(probs)
        kind, albedo, spec, data = res
        lo, hi = ranges[i]
        disp = 0.5 + (_height(kind, data, vis, plan.normal_convention) - 0.5 * (lo + hi)) / scale
        full = np.concatenate([albedo, spec[..., None], disp[..., None]], axis=2).astype(np.float32)
        full[inv] = 0.5
        tex[i] = _quantise(full)
        prev[i] = _quantise(resize(full, ph, pw))
        del full, disp
    tex.flush()
    prev.flush()
    del tex, prev
    np.save(tmp / "mask.npy", vis.astype(np.uint8))
    write_text(tmp / "manifest.json", json.dumps(manifest, indent=2), fsync=True)
