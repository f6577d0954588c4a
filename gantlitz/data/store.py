"""Read side of the prepared dataset (docs/architecture.md): memory-mapped random patch access.

`PatchStore` opens ``textures.npy`` / ``preview.npy`` as read-only memory maps lazily, on first use in
the process that reads, and drops them when pickled, so a store can be handed to DataLoader worker
processes (each worker maps the file itself; the page cache is shared).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DATA_CHANNELS, MODALITY_CHANNELS
from ..errors import GantlitzError
from ..resample import resize

__all__ = ["StoreError", "PatchStore", "to_stored", "to_network", "bits_to_network", "STORE_SCALE", "STORE_FORMAT", "STORE_VERSION"]

STORE_FORMAT = "gantlitz-dataset"
STORE_VERSION = 1
_REQUIRED = ("format", "version", "canvas", "modalities", "subjects", "displacement_scale")


class StoreError(GantlitzError, ValueError):
    """A missing, incomplete or corrupt prepared dataset; the message names the file."""


STORE_SCALE = 2.0 / 65535.0
"""The store's codec: value v in [0, 1] is stored as round(v · 65535); network space is u16 · STORE_SCALE − 1."""


def to_stored(x: np.ndarray, *, consume: bool = False) -> np.ndarray:
    """[0, 1] → uint16 (round(v · 65535)); ``consume`` works in ``x`` itself (an 8K subject's colours are
    400 MB as float32)."""
    y = np.clip(x, 0.0, 1.0, out=x if consume else None)
    y *= 65535.0
    np.rint(y, out=y)
    return y.astype(np.uint16)


def to_network(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Stored uint16 → float32 network space [-1, 1] (into `out`, float32 of the same shape, when given)."""
    if out is None:
        out = np.empty(np.shape(values), np.float32)
    np.multiply(values, np.float32(STORE_SCALE), out=out, casting="unsafe")
    out -= np.float32(1.0)
    return out


def bits_to_network(bits: Any) -> Any:
    """`to_network` for a torch tensor of int16 holding the uint16 bits (torch has no uint16 arithmetic),
    computed on the tensor's device; the same float32 values."""
    import torch

    return bits.to(torch.int32).bitwise_and_(0xFFFF).to(torch.float32).mul_(STORE_SCALE).sub_(1.0)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _manifest_problems(m: dict[str, Any]) -> list[str]:
    """The manifest's fields checked for type and range before anything uses them."""
    bad = []
    canvas = m["canvas"]
    if not (isinstance(canvas, dict) and all(_is_int(canvas.get(k)) and 0 < canvas[k] <= 65536
                                             for k in ("height", "width"))):
        bad.append(f"canvas must be {{'height': H, 'width': W}} with sides 1 .. 65536, got {canvas!r}")
    subjects = m["subjects"]
    if not (isinstance(subjects, list) and subjects and all(isinstance(s, str) and s for s in subjects)):
        bad.append(f"subjects must be a non-empty list of names, got {type(subjects).__name__}")
    elif len(set(subjects)) != len(subjects):
        bad.append("subjects holds a name twice")
    scale = m["displacement_scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        bad.append(f"displacement_scale must be a finite positive number (canvas pixels), got {scale!r}")
    if not isinstance(m["modalities"], dict) or dict(m["modalities"]) != MODALITY_CHANNELS:
        bad.append(f"modalities {m['modalities']!r} differ from {MODALITY_CHANNELS}")
    if m.get("normal_convention", "opengl") not in ("opengl", "directx"):
        bad.append(f"normal_convention must be opengl or directx, got {m.get('normal_convention')!r}")
    if not isinstance(m.get("flip", True), bool):
        bad.append(f"flip must be true or false, got {m.get('flip')!r}")
    return bad


class PatchStore:
    """A prepared dataset on disk.

    - ``manifest`` (dict), ``canvas`` (H, W), ``subjects`` (names), ``mask`` (uint8 H x W),
      ``displacement_scale``, ``normal_convention``, ``flip`` (whether flipping is allowed).
    - `read_patch` returns float32 (5, size, size) in network space [-1, 1], multiplied by the mask.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: no prepared dataset here (not a folder); run `gantlitz prepare`")
        mpath = self.path / "manifest.json"
        if not mpath.is_file():
            raise StoreError(
                f"{mpath}: missing; {self.path} is not a complete prepared dataset (an interrupted "
                "`gantlitz prepare` leaves no manifest): prepare it again"
            )
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{mpath}: unreadable manifest ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
            raise StoreError(f"{mpath}: not a gantlitz dataset manifest (format must be {STORE_FORMAT!r})")
        missing = [k for k in _REQUIRED if k not in manifest]
        if missing:
            raise StoreError(f"{mpath}: manifest lacks {', '.join(missing)}")
        if manifest["version"] != STORE_VERSION:
            raise StoreError(f"{mpath}: dataset format version {manifest['version']}, this gantlitz reads {STORE_VERSION}")
        problems = _manifest_problems(manifest)
        if problems:
            raise StoreError(f"{mpath}: " + "; ".join(problems))
        self.manifest: dict[str, Any] = manifest
        self.canvas: tuple[int, int] = (int(manifest["canvas"]["height"]), int(manifest["canvas"]["width"]))
        self.subjects: list[str] = list(manifest["subjects"])
        self.displacement_scale = float(manifest["displacement_scale"])
        self.normal_convention: str = manifest.get("normal_convention", "opengl")
        self.flip: bool = bool(manifest.get("flip", True))
        n, (h, w) = len(self.subjects), self.canvas
        # Check the arrays' headers (and that the data is all there) once, then drop the maps.
        tex = self._open("textures.npy", (n, h, w, DATA_CHANNELS))
        prev = self._open("preview.npy", None)
        if prev.ndim != 4 or prev.shape[0] != n or prev.shape[3] != DATA_CHANNELS:
            raise StoreError(f"{self.path / 'preview.npy'}: shape {prev.shape} does not match {n} subjects x 5 channels")
        self.preview_size: tuple[int, int] = (int(prev.shape[1]), int(prev.shape[2]))
        del tex, prev
        mfile = self.path / "mask.npy"
        try:
            mask = np.load(mfile)
        except (OSError, ValueError, EOFError) as exc:
            raise StoreError(f"{mfile}: unreadable ({exc})") from exc
        if mask.shape != self.canvas:
            raise StoreError(f"{mfile}: shape {mask.shape} differs from the canvas {self.canvas}")
        self.mask: np.ndarray = (mask > 0).astype(np.uint8)
        if not self.mask.any():
            raise StoreError(f"{mfile}: the mask is empty (no visible pixel): nothing to train on or compare")
        self._mask_f = self.mask.astype(np.float32)
        self._textures: np.memmap | None = None
        self._previews: np.memmap | None = None

    # -- memory maps ------------------------------------------------------------------------------
    def _open(self, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
        f = self.path / name
        if not f.is_file():
            raise StoreError(f"{f}: missing from the prepared dataset")
        try:
            arr = np.load(f, mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            raise StoreError(f"{f}: corrupt or truncated ({exc})") from exc
        if arr.dtype != np.uint16:
            raise StoreError(f"{f}: dtype {arr.dtype}, expected uint16")
        if shape is not None and tuple(arr.shape) != shape:
            raise StoreError(f"{f}: shape {tuple(arr.shape)}, the manifest says {shape}")
        return arr

    @property
    def textures(self) -> np.ndarray:
        """uint16 (N, H, W, 5) read-only memory map (opened on first use in this process)."""
        if self._textures is None:
            self._textures = self._open("textures.npy", (len(self.subjects), *self.canvas, DATA_CHANNELS))
        return self._textures

    @property
    def previews(self) -> np.ndarray:
        """uint16 (N, h, w, 5) area-down-sampled whole textures."""
        if self._previews is None:
            self._previews = self._open("preview.npy", None)
        return self._previews

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_textures"] = None
        state["_previews"] = None
        return state

    def __len__(self) -> int:
        return len(self.subjects)

    def __repr__(self) -> str:
        h, w = self.canvas
        return f"PatchStore({str(self.path)!r}, subjects={len(self.subjects)}, canvas={w}x{h})"

    # -- reads ------------------------------------------------------------------------------------
    def _check_subject(self, subject: int) -> int:
        subject = int(subject)
        if not 0 <= subject < len(self.subjects):
            raise IndexError(f"subject {subject} out of range (dataset has {len(self.subjects)})")
        return subject

    def _raw(self, subject: int, top: int, left: int, size: int, flip: bool) -> np.ndarray:
        """View (size, size, 5) uint16 of the memory map (mirrored when ``flip``), bounds checked."""
        subject = self._check_subject(subject)
        h, w = self.canvas
        top, left, size = int(top), int(left), int(size)
        if size <= 0 or top < 0 or left < 0 or top + size > h or left + size > w:
            raise ValueError(f"patch ({top}, {left}) of size {size} does not fit the {w}x{h} canvas")
        if flip:
            c0 = w - left - size
            return self.textures[subject, top : top + size, c0 : c0 + size][:, ::-1]
        return self.textures[subject, top : top + size, left : left + size]

    def read_patch(
        self, subject: int, top: int, left: int, size: int, flip: bool = False, out: np.ndarray | None = None
    ) -> np.ndarray:
        """float32 (5, size, size) in [-1, 1] of subject's texture at (top, left), times the mask there.

        ``flip`` reads the horizontally mirrored texture: the patch at (top, left) of the mirror image.
        The mask applied is the dataset mask at (top, left) in both cases: the same support the
        generator's output masking gives a patch at that location.  ``out`` (float32, C-contiguous,
        (5, size, size)) receives the result instead of a new array.
        """
        raw = self._raw(subject, top, left, size, flip)
        if out is None:
            out = np.empty((DATA_CHANNELS, size, size), np.float32)
        elif out.shape != (DATA_CHANNELS, size, size) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {(DATA_CHANNELS, size, size)}, got {out.dtype} {out.shape}")
        to_network(raw.transpose(2, 0, 1), out=out)  # one pass from the memory map: cast, scale, channels first
        m = self.mask[top : top + size, left : left + size]
        if not m.all():
            out *= self._mask_f[top : top + size, left : left + size]
        return out

    def read_patch_raw(
        self, subject: int, top: int, left: int, size: int, flip: bool = False, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The stored uint16 values (size, size, 5) at (top, left), unmasked: a plain copy, the cheapest
        read (training loaders convert on the device with `sampling.raw_to_network`)."""
        raw = self._raw(subject, top, left, size, flip)
        if out is None:
            return np.array(raw)
        if out.shape != raw.shape or out.dtype != np.uint16:
            raise ValueError(f"out must be uint16 {raw.shape}, got {out.dtype} {out.shape}")
        np.copyto(out, raw)
        return out

    def mask_at(self, height: int, width: int) -> np.ndarray:
        """The mask resized to height x width (area average, threshold 0.5), uint8."""
        m = resize(self._mask_f[:, :, None], height, width)[:, :, 0]
        return (m > 0.5).astype(np.uint8)

    def read_whole(self, subject: int, height: int, width: int, flip: bool = False) -> np.ndarray:
        """float32 (5, height, width) in [-1, 1]: the whole texture from the preview, resized, masked."""
        subject = self._check_subject(subject)
        prev = to_network(np.asarray(self.previews[subject])).transpose(2, 0, 1)
        if flip:
            prev = prev[:, :, ::-1]
        x = resize(prev.transpose(1, 2, 0), height, width).transpose(2, 0, 1)
        return np.ascontiguousarray(x * self.mask_at(height, width)[None].astype(np.float32))
