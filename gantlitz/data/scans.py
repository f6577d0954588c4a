"""The input side of `gantlitz prepare`: find each subject's scan files, decode, check and convert them.

Input layout: one sub-folder per subject holding ``albedo.*``, ``specular.*`` and ``normal.*`` (or
``displacement.*``) as 8/16-bit PNG, TIFF, JPEG or float EXR; optionally ``mask.*`` at the top.

Everything here works on one subject at a time, so memory does not grow with the dataset: a map is
decoded in the file's own sample type, cropped, and only then widened to float32 (an 8K map is never
held as float).  Every problem names its file; all of a subject's problems are reported together.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import imageio, maps
from ..errors import GantlitzError

log = logging.getLogger(__name__)

__all__ = ["PrepareError", "SubjectFiles", "Scan", "find_subjects", "common_size", "parse_crop", "load_subject",
           "read_mask", "MAP_NAMES"]

MAP_NAMES = ("albedo", "specular", "normal", "displacement")
RANGE_TOL = 1e-3
NORMAL_TOL = 0.25
"""How far an encoded normal's length may stray from 1 (JPEG-compressed maps: 99.5% of pixels within 0.2)."""
NORMAL_BAD_MAX = 0.05
"""Largest share of a face's normals that may fail the check (isolated bad pixels, not a wrong map)."""
Box = tuple[int, int, int, int]
"""A crop box (x, y, w, h) in pixels of the input maps."""


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


def common_size(subjects: list[SubjectFiles], mask_file: Path | None, problems: list[str]) -> tuple[int, int]:
    """Headers only: the (height, width) all maps share; every unreadable or odd-sized file is a problem
    (raised together with the layout problems found so far)."""
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


def parse_crop(crop: Sequence[int] | None, height: int, width: int) -> Box | None:
    """The crop box checked against the maps' size (None: the whole map)."""
    if crop is None:
        return None
    x, y, w, h = (int(v) for v in crop)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise PrepareError([f"--crop {x},{y},{w},{h} does not fit in the {width}x{height} maps"])
    return x, y, w, h


def _crop(img: np.ndarray, box: Box | None) -> np.ndarray:
    if box is None:
        return img
    x, y, w, h = box
    return img[y : y + h, x : x + w]


def _check_range(path: Path, img: np.ndarray, lo: float, hi: float, what: str) -> list[str]:
    vmin, vmax = float(img.min()), float(img.max())
    if vmin < lo - RANGE_TOL or vmax > hi + RANGE_TOL:
        return [f"{path}: {what} values span [{vmin:.4g}, {vmax:.4g}], expected [{lo:g}, {hi:g}]"]
    return []


_CHANNELS = {"albedo": ((3, 4), "3 (RGB) or 4 (RGBA)"), "specular": ((1, 2, 3, 4), "1 or 3"),
             "normal": ((3, 4), "3"), "displacement": ((1, 2, 3, 4), "1")}


def _read_cropped(path: Path, name: str, box: Box | None) -> tuple[np.ndarray | None, list[str]]:
    """One map, cropped, as float32 (integers normalised to [0, 1]); the native decode is dropped at once."""
    try:
        native = imageio.read_image(path, native=True)
    except imageio.ImageError as exc:
        return None, [str(exc)]
    allowed, expected = _CHANNELS[name]
    if native.shape[2] not in allowed:
        return None, [f"{path}: {name} has {native.shape[2]} channel(s), expected {expected}"]
    keep = 3 if name in ("albedo", "normal") or (name == "specular" and native.shape[2] >= 3) else 1
    return imageio.to_unit_float(_crop(native, box)[:, :, :keep]), []


@dataclass
class Scan:
    """One subject, cropped and converted: what the store is made of."""

    kind: str
    """"normal" (``data`` holds unit normals H x W x 3) or "displacement" (``data`` is height in canvas px)."""
    albedo: np.ndarray
    specular: np.ndarray
    data: np.ndarray

    def visible(self) -> np.ndarray:
        """Where any map differs from its border fill (uint8, uncleaned): this subject's share of a
        derived mask."""
        extra = [maps.encode_normals(self.data)] if self.kind == "normal" else []
        return maps.derive_mask([self.albedo, self.specular[..., None], *extra], background="border",
                                tol=3.0 / 255.0, clean=False)

    def height(self, mask: np.ndarray, convention: str, threads: int = -1) -> np.ndarray:
        """Height in canvas pixels (float32); normals outside the mask are flattened before integrating,
        so the unseen border does not bend the face.  The flattening is done in ``data`` itself (an 8K
        copy saved; the normals are not needed afterwards)."""
        if self.kind == "displacement":
            return self.data.astype(np.float32)
        self.data[mask == 0] = (0.0, 0.0, 1.0)
        return maps.normals_to_displacement(self.data, convention, workers=threads)


def _check_normals(subject: str, path: Path, encoded: np.ndarray, rows: int = 512) -> list[str]:
    """A tangent normal map must hold unit normals with positive z where it differs from its border fill
    (an all-zero or inside-out map integrates to a huge, wrong height that would set the dataset's scale).
    Checked in bands of rows, so an 8K map needs no full-size copy."""
    border = encoded[0, 0, :3]
    face = bad = 0
    for top in range(0, encoded.shape[0], rows):
        band = encoded[top:top + rows, :, :3]
        inside = np.abs(band - border).max(axis=2) > 3.0 / 255.0
        n = band[inside] * np.float32(2) - np.float32(1)
        length = np.sqrt(np.einsum("pc,pc->p", n, n))
        face += int(inside.sum())
        bad += int(((np.abs(length - 1) > NORMAL_TOL) | (n[:, 2] <= 0)).sum())
    if face == 0:
        return [f"{subject}: {path}: the normal map is constant (every pixel equals its border); not a normal map"]
    if bad > NORMAL_BAD_MAX * face:
        return [f"{subject}: {path}: {100 * bad / face:.0f}% of its normals are not unit length (within "
                f"{NORMAL_TOL:g}) with positive z; is it a tangent-space normal map, encoded n*0.5+0.5, not "
                "inside out?"]
    return []


def load_subject(subj: SubjectFiles, box: Box | None, displacement_height: float) -> tuple[Scan | None, list[str]]:
    """Decode, check and convert one subject; (scan, []) or (None, every problem found)."""
    problems: list[str] = []
    maps_read: dict[str, np.ndarray] = {}
    wanted = ["albedo", "specular", "normal" if "normal" in subj.files else "displacement"]
    for name in wanted:
        img, probs = _read_cropped(subj.files[name], name, box)
        problems += probs
        if img is not None:
            maps_read[name] = img
    if problems:
        return None, problems
    albedo, spec = maps_read["albedo"], maps_read["specular"]
    spec = (spec[:, :, 0] + spec[:, :, 1] + spec[:, :, 2]) / np.float32(3) if spec.shape[2] == 3 else spec[:, :, 0]
    problems += _check_range(subj.files["albedo"], albedo, 0.0, 1.0, "albedo")
    problems += _check_range(subj.files["specular"], spec, 0.0, 1.0, "specular")
    if "normal" in maps_read:
        raw, path = maps_read["normal"], subj.files["normal"]
        if float(raw.min()) < -RANGE_TOL:  # a float file storing n directly in [-1, 1]
            problems += _check_range(path, raw, -1.0, 1.0, "normal")
            raw = raw * 0.5 + 0.5
        else:
            problems += _check_range(path, raw, 0.0, 1.0, "normal")
        problems += [] if problems else _check_normals(subj.name, path, raw)
    if problems:
        return None, problems
    if "normal" in maps_read:
        kind, data = "normal", maps.decode_normals(raw)
    else:
        kind, data = "displacement", maps_read["displacement"][:, :, 0] * np.float32(displacement_height)
    return Scan(kind, np.clip(albedo, 0, 1), np.clip(spec, 0, 1), data), []


def read_mask(mask_file: Path, box: Box | None) -> tuple[np.ndarray | None, list[str]]:
    """A mask file (first channel > 0.5 = visible), cropped, as uint8; or the problem."""
    try:
        native = imageio.read_image(mask_file, native=True)
    except imageio.ImageError as exc:
        return None, [str(exc)]
    mask = (imageio.to_unit_float(_crop(native, box)[:, :, :1])[:, :, 0] > 0.5).astype(np.uint8)
    if not mask.any():
        return None, [f"{mask_file}: mask is empty (no pixel > 0.5)"]
    return mask, []
