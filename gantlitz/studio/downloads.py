"""Downloads of the current identity at full resolution, written by the project's own writers.

A download is a job on the worker: the four maps are synthesised pass by pass (progress is the passes
done), then written as `gantlitz generate` writes them (`outputs.mapfiles.write_map`: EXR half / PNG
16-bit / TIFF 16-bit, displacement float) with a contact sheet and a JSON record, zipped; or as a .glb by
`export.export_gltf`. Files live in the server's private folder under a random id: a client names a
download only by that id, never by a path. Only the newest `keep` downloads are kept on disk.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
import zipfile
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GantlitzError
from ..outputs import atomic_path, run_info, save_image, write_json
from ..outputs.mapfiles import FORMATS, OUTPUT_MAPS, write_map
from ..sheets import contact_sheet
from .engine import Cancelled, Engine
from .params import DOWNLOAD_FORMATS, Identity
from .worker import Worker

__all__ = ["Download", "Downloads", "UnknownDownload", "ID_PATTERN"]

ID_PATTERN = re.compile(r"[0-9a-f]{32}")
GLB_MAX_TEXTURE = 4096
"""Longest texture side in a downloaded .glb (the `gantlitz export` default)."""


class UnknownDownload(GantlitzError, KeyError):
    """No download has this id (never made, removed, or malformed)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Download:
    """One download: its state (queued, running, writing, done, failed, cancelled) and progress."""

    id: str
    ident: Identity
    format: str
    name: str
    state: str = "queued"
    done: int = 0
    total: int = 1
    error: str | None = None
    path: Path | None = None
    future: Future | None = None
    created: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def status(self) -> dict[str, Any]:
        """What the page polls: state, progress in [0, 1], file name and size when done."""
        info: dict[str, Any] = {"id": self.id, "state": self.state, "format": self.format, "name": self.name,
                                "progress": round(self.done / self.total, 4), "identity": self.ident.to_dict()}
        if self.error:
            info["error"] = self.error
        if self.state == "done" and self.path is not None:
            info["bytes"] = self.path.stat().st_size
            info["url"] = f"/api/downloads/{self.id}/file"
        return info


class Downloads:
    """The downloads of one server: started on the worker, kept in `folder` (the newest `keep`)."""

    def __init__(self, engine: Engine, worker: Worker, folder: Path, keep: int = 4) -> None:
        self.engine, self.worker, self.folder, self.keep = engine, worker, Path(folder), keep
        self._items: dict[str, Download] = {}
        self._lock = threading.Lock()

    def start(self, ident: Identity, fmt: str) -> Download:
        """Queue a download (raises `worker.Busy` when the queue is full)."""
        name = f"{self.engine.model.name}-{ident.label()}-{fmt}{DOWNLOAD_FORMATS[fmt]}"
        item = Download(secrets.token_hex(16), ident, fmt, name, total=len(self.engine.passes) + 1)
        item.future = self.worker.submit(self._run, item)
        with self._lock:
            self._items[item.id] = item
        self._prune()
        return item

    def get(self, download_id: str) -> Download:
        with self._lock:
            item = self._items.get(download_id) if ID_PATTERN.fullmatch(download_id) else None
        if item is None:
            raise UnknownDownload(f"no download with id {download_id[:40]!r}")
        return item

    def cancel(self, download_id: str) -> Download:
        """Stop a download: dropped while queued, stopped at the next pass while running."""
        item = self.get(download_id)
        if not item.finished:
            if item.future is not None and item.future.cancel():
                item.state = "cancelled"
            else:
                item.state = "cancelling"
        return item

    def _prune(self) -> None:
        with self._lock:
            finished = sorted((d for d in self._items.values() if d.finished), key=lambda d: d.created)
            drop = finished[: max(0, len(self._items) - self.keep)]
            for item in drop:
                del self._items[item.id]
        for item in drop:
            shutil.rmtree(self.folder / item.id, ignore_errors=True)

    def _run(self, item: Download) -> None:
        """Worker thread: synthesise, then write; failures are recorded on the download."""
        if item.state == "cancelling":
            item.state = "cancelled"
            return
        item.state = "running"

        def progress(done: int, total: int) -> None:
            item.done = done

        try:
            maps = self.engine.full_maps(item.ident, progress, lambda: item.state == "cancelling")
            item.state = "writing"
            item.path = self._write(item, maps)
            item.done, item.state = item.total, "done"
        except Cancelled:
            item.state = "cancelled"
        except (GantlitzError, OSError) as exc:
            item.state, item.error = "failed", str(exc)
        finally:
            self._prune()

    def _write(self, item: Download, maps: dict[str, np.ndarray]) -> Path:
        folder = self.folder / item.id
        if item.format == "glb":
            return self.engine.write_glb(maps, folder / item.name, max_texture=GLB_MAX_TEXTURE)
        model = self.engine.model
        files = [write_map(folder / "maps" / f"{m}{FORMATS[item.format]}", maps[m], m) for m in OUTPUT_MAPS]
        title = f"{model.name}  {item.ident.label()}"
        files.append(save_image(contact_sheet(maps, model.mask, title=title), folder / "maps" / "contact.png"))
        files.append(write_json(folder / "maps" / "studio.json", run_info({
            "identity": item.ident.to_dict(), "format": item.format, "model": model.name,
            "checkpoint": str(model.path), "step": model.meta.get("step"), "canvas": list(model.canvas),
            "displacement_scale": model.displacement_scale, "normal_convention": model.normal_convention})))
        out = folder / item.name
        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for path in files:
                archive.write(path, f"{item.name[: -len('.zip')]}/{path.name}")
        shutil.rmtree(folder / "maps")
        return out

    def close(self) -> None:
        """Remove every download's files (the folder is the server's own)."""
        shutil.rmtree(self.folder, ignore_errors=True)
