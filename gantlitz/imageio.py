"""Image files in and out (OpenImageIO backend): EXR, 8/16-bit PNG, 16-bit/float TIFF, JPEG.

Arrays are NumPy H x W x C float32.  Integer files are normalised to [0, 1] on read; float files (EXR,
float TIFF) are returned as stored.  Every read is validated (readable, complete, finite), every write is
atomic (a temporary file in the destination folder, then ``os.replace``) and never replaces an existing
file unless ``overwrite=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from .errors import GantlitzError
from .outputs import atomic_path

__all__ = ["ImageError", "read_image", "to_unit_float", "write_image", "image_size", "READ_SUFFIXES",
           "WRITE_SUFFIXES"]

READ_SUFFIXES = (".exr", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
WRITE_SUFFIXES = READ_SUFFIXES


class ImageError(GantlitzError, ValueError):
    """An image file that can not be read or written; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _open(path: Path) -> "oiio.ImageInput":
    if not path.exists():
        raise ImageError(path, "file does not exist")
    if not path.is_file():
        raise ImageError(path, "not a regular file")
    if _suffix(path) not in READ_SUFFIXES:
        raise ImageError(path, f"unsupported format {path.suffix!r} (expected one of {', '.join(READ_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file")
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        msg = oiio.geterror().strip() or "unknown error"
        raise ImageError(path, f"unreadable image ({msg})")
    return inp


def image_size(path: str | os.PathLike) -> tuple[int, int, int]:
    """(height, width, channels) of an image, from its header only."""
    path = Path(path)
    inp = _open(path)
    try:
        spec = inp.spec()
        return int(spec.height), int(spec.width), int(spec.nchannels)
    finally:
        inp.close()


def read_image(path: str | os.PathLike, *, check_finite: bool = True, native: bool = False) -> np.ndarray:
    """Read an image as float32 H x W x C (C >= 1).

    Integer formats are normalised to [0, 1]; float EXR/TIFF values are returned as stored.  With
    ``native=True`` the samples keep the file's own type (uint8, uint16, float16, ...; convert with
    `to_unit_float`): decoding an 8K JPEG that way is 2.6x faster and a quarter of the memory, so large
    inputs can be cropped before they are widened.  Raises `ImageError` for a missing, unreadable,
    truncated or unsupported file and (unless ``check_finite=False``) for NaN or Inf values.
    """
    path = Path(path)
    inp = _open(path)
    try:
        spec = inp.spec()
        if spec.width <= 0 or spec.height <= 0 or spec.nchannels <= 0:
            raise ImageError(path, f"invalid image header ({spec.width}x{spec.height}x{spec.nchannels})")
        data = inp.read_image(0, 0, 0, spec.nchannels, oiio.UNKNOWN if native else oiio.FLOAT)
        err = inp.geterror().strip()
        if data is None or err:
            raise ImageError(path, f"truncated or corrupt image ({err or 'no pixel data'})")
    finally:
        inp.close()
    # Some decoders (libjpeg) only warn about a premature end; OIIO then reports it globally.
    glob_err = oiio.geterror().strip()
    if glob_err and ("premature" in glob_err.lower() or "truncat" in glob_err.lower() or "corrupt" in glob_err.lower()):
        raise ImageError(path, f"truncated or corrupt image ({glob_err})")
    arr = np.asarray(data) if native else np.asarray(data, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = arr.reshape(spec.height, spec.width, spec.nchannels)
    if check_finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ImageError(path, f"contains {bad} NaN/Inf values")
    return arr


def to_unit_float(samples: np.ndarray) -> np.ndarray:
    """Samples of any file type as float32, integers normalised by their type's maximum (uint8 / 255,
    uint16 / 65535: within 1 ulp of OpenImageIO's own float decode); float samples are returned as stored."""
    if samples.dtype.kind in "ui":
        return np.divide(samples, np.float32(np.iinfo(samples.dtype).max), dtype=np.float32)
    return samples.astype(np.float32, copy=False)


def _as_hwc(array: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]  # OIIO writes a 2-D array wrongly: always pass H x W x 1.
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(path, f"cannot write an array of shape {np.shape(array)} (expected H x W or H x W x 1..4)")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise ImageError(path, f"cannot write an array of dtype {arr.dtype}")
    return arr


def write_image(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    bits: int = 16,
    float_exr: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write H x W x C (or H x W) values atomically; the format follows the suffix.

    - ``.exr``: half float (``float_exr=True``: float32), ZIP compressed, values as given.
    - ``.png``: 16-bit (``bits=8``: 8-bit), values clipped to [0, 1].
    - ``.tif``/``.tiff``: 16-bit integer, 8-bit (``bits=8``) or float32 (``bits=32``).
    - ``.jpg``/``.jpeg``: 8-bit, quality 95 (1 or 3 channels).
    Integer arrays are taken as already quantised for their dtype (uint8 → /255, uint16 → /65535).
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise ImageError(path, f"unsupported format {path.suffix!r} (expected one of {', '.join(WRITE_SUFFIXES)})")
    if path.exists() and not overwrite:
        raise ImageError(path, "file exists (pass overwrite=True to replace it)")
    arr = _as_hwc(array, path)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    else:
        arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ImageError(path, "refusing to write NaN/Inf values")
    c = arr.shape[2]

    attrs: dict[str, object] = {}
    if suffix == ".exr":
        fmt = oiio.FLOAT if float_exr else oiio.HALF
        attrs["compression"] = "zip"
    elif suffix == ".png":
        if bits not in (8, 16):
            raise ImageError(path, f"PNG supports bits=8 or 16, got {bits}")
        fmt = oiio.UINT16 if bits == 16 else oiio.UINT8
        arr = np.clip(arr, 0.0, 1.0)
        attrs["png:compressionLevel"] = 3
    elif suffix in (".tif", ".tiff"):
        if bits not in (8, 16, 32):
            raise ImageError(path, f"TIFF supports bits=8, 16 or 32, got {bits}")
        fmt = {8: oiio.UINT8, 16: oiio.UINT16, 32: oiio.FLOAT}[bits]
        if bits != 32:
            arr = np.clip(arr, 0.0, 1.0)
        attrs["compression"] = "zip"
    else:  # jpeg
        if c not in (1, 3):
            raise ImageError(path, f"JPEG needs 1 or 3 channels, got {c}")
        fmt = oiio.UINT8
        arr = np.clip(arr, 0.0, 1.0)
        attrs["CompressionQuality"] = 95

    with atomic_path(path, overwrite=overwrite, verify=lambda tmp: _verify(tmp, path, arr.shape)) as tmp:
        _write_oiio(tmp, path, np.ascontiguousarray(arr), fmt, attrs)
    return path


_TRAILERS = {".png": b"IEND\xaeB`\x82", ".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9"}
"""The bytes a complete PNG / JPEG stream ends with (a writer that ignored a full disk leaves them out)."""


def _verify(tmp: Path, path: Path, shape: tuple[int, ...]) -> None:
    """Check the encoded file before it gets its name: a PNG/JPEG ends with its trailer; an EXR/TIFF (no
    trailer) decodes completely at the written size. Some encoders report success on a full disk."""
    size = tmp.stat().st_size
    trailer = _TRAILERS.get(_suffix(path))
    if trailer is not None:
        with open(tmp, "rb") as handle:
            handle.seek(max(size - len(trailer), 0))
            complete = size > len(trailer) and handle.read() == trailer
    else:
        try:
            complete = read_image(tmp, check_finite=False).shape == shape
        except ImageError:
            complete = False
    if not complete:
        raise ImageError(path, f"could not be written: the encoder left an incomplete file ({size} bytes; is the "
                               "disk full?); nothing was replaced")


def _write_oiio(tmp: Path, path: Path, arr: np.ndarray, fmt: object, attrs: dict[str, object]) -> None:
    """Encode `arr` into the file `tmp` (its suffix picks the format); errors name the destination `path`."""
    h, w, c = arr.shape
    spec = oiio.ImageSpec(w, h, c, fmt)
    for key, value in attrs.items():
        spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(tmp))
    if out is None:
        raise ImageError(path, f"no writer for this format ({oiio.geterror().strip()})")
    if not out.open(str(tmp), spec):
        raise ImageError(path, f"could not be written: can not open it ({out.geterror().strip()})")
    ok = out.write_image(arr)
    msg = out.geterror().strip().replace(str(tmp), "the temporary file")
    ok = out.close() and ok
    if not ok:
        raise ImageError(path, f"could not be written ({msg or 'the encoder failed'}; is the disk full?); nothing "
                               "was replaced")
