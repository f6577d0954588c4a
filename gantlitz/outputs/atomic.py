"""The one atomic write path (`atomic_path`) and the writers on it: bytes, text, JSON, PIL images,
matplotlib figures, GIFs."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import OutputError
from .files import finish, make_dirs, temporary, write_all
from .ownership import record, refuse_existing


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False,
                verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix) for a writer; then fsync it, run `verify` on it
    (raise if the encoder left it incomplete), rename it onto `path` and record it.

    Refuses an existing `path` unless overwrite (and, inside `writing`, unless the record names it as the
    command's); checked before and again just before the rename. On any failure the temporary file is
    removed, `path` is untouched, and an OS error (a full disk, EIO) is an `OutputError` naming `path`.
    """
    path = Path(path)
    refuse_existing([path], overwrite)
    if path.is_dir():
        raise OutputError(path, "is a folder, expected a file name")
    make_dirs(path.parent)
    with temporary(path) as tmp:
        yield tmp
        refuse_existing([path], overwrite)
        finish(tmp, path, verify)
    record([path])


def write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write bytes atomically; the size on disk is checked against `len(data)` before the rename."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        write_all(tmp, data, path)
    return path


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write a text file atomically (UTF-8)."""
    return write_bytes(path, text.encode(), overwrite=overwrite)


def write_json(path: str | os.PathLike, data: Any, overwrite: bool = False) -> Path:
    """Write JSON (indented, newline-terminated) atomically; refuse to replace unless overwrite."""
    return write_text(path, json.dumps(data, indent=2) + "\n", overwrite=overwrite)


def _encoded(save: Callable[[io.BytesIO], None]) -> bytes:
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


def save_image(image: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save a PIL image (contact sheets, figures) atomically; the format follows the suffix. Encoded in
    memory first, so the bytes on disk are checked against what the encoder produced."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper() or "PNG"
    return write_bytes(path, _encoded(lambda b: image.save(b, format="JPEG" if fmt == "JPG" else fmt)),
                       overwrite=overwrite)


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 110, overwrite: bool = True) -> Path:
    """Save a matplotlib figure as PNG through the one atomic path (encoded in memory, size checked).
    `overwrite` defaults on: a command's figures are checked with its other outputs before any work."""
    return write_bytes(path, _encoded(lambda b: fig.savefig(b, dpi=dpi, format="png")), overwrite=overwrite)


GIF_FPS = (0.01, 100.0)
"""Frame rates a GIF can hold: its delays are whole centiseconds below 655.36 s."""


def write_gif(frames: Sequence[Any], path: str | os.PathLike, fps: float, overwrite: bool = False) -> Path:
    """Ping-pong looping GIF of PIL frames, written atomically."""
    seq = list(frames) + list(frames[-2:0:-1])
    data = _encoded(lambda b: seq[0].save(b, format="GIF", save_all=True, append_images=seq[1:],
                                          duration=int(1000 / fps), loop=0))
    return write_bytes(path, data, overwrite=overwrite)
