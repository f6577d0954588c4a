"""Map files: which maps a texture writes, their formats and names on disk, and the one map writer.

Above `gantlitz.imageio` (which writes through `outputs.atomic`), so not part of the package's low-level
API: import it from `gantlitz.outputs.mapfiles`. `write_map` imports `imageio` when it is called, so that
naming the maps loads no image-file library (training and generation never do; tests/test_imports.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

OUTPUT_MAPS: tuple[str, ...] = ("albedo", "specular", "displacement", "normal")
"""Map files written per texture, in contact-sheet order."""

FORMATS: dict[str, str] = {"exr": ".exr", "png16": ".png", "tiff": ".tif"}
"""Map formats → file suffix. EXR: half float (displacement float32); PNG: 16-bit; TIFF: 16-bit
(displacement float32)."""


def output_paths(out_dir: str | os.PathLike, seed: int, format: str = "exr") -> dict[str, Path]:
    """`out_dir/seedNNNN/<map>.<ext>` for the four maps and `contact.png`."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    folder = Path(out_dir) / f"seed{int(seed):04d}"
    paths = {name: folder / f"{name}{FORMATS[format]}" for name in OUTPUT_MAPS}
    paths["contact"] = folder / "contact.png"
    return paths


def write_map(path: str | os.PathLike, array: Any, name: str, *, overwrite: bool = False) -> Path:
    """One map file: EXR half float / PNG 16-bit / TIFF 16-bit; displacement float32 in EXR and TIFF."""
    from ..imageio import write_image

    path = Path(path)
    suffix = path.suffix.lower()
    precise = name == "displacement"
    if suffix == ".exr":
        return write_image(path, array, float_exr=precise, overwrite=overwrite)
    if suffix in (".tif", ".tiff"):
        return write_image(path, array, bits=32 if precise else 16, overwrite=overwrite)
    return write_image(path, array, bits=16, overwrite=overwrite)
