"""Where `gantlitz prepare` builds a dataset: the hidden, resumable sibling folder ``.OUT.partial``.

Layout::

    .OUT.partial/
        .lock            one prepare at a time (`outputs.FolderLock`)
        progress.json    the journal: the inputs' fingerprint and every finished step of every subject
        derived.npy      the OR of the subjects' visible pixels so far (derived masks only)
        heights.npy      float32 heights of the written subjects (until the displacement scale is known)
        store/           the dataset itself, installed as OUT at the end (manifest.json written last)

The journal is updated (atomically) only after a subject's arrays are flushed, so after a kill the
journal never claims work that is not on disk; redoing an unjournaled subject writes the same bytes.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputError, OutputError
from ..outputs import LOCK_NAME, FolderLock, make_dirs, record, sibling, write_bytes, write_text

__all__ = ["Staging", "fingerprint", "fingerprint_changes"]

JOURNAL = "progress.json"
JOURNAL_VERSION = 1
_JOURNAL_KEYS = ("fingerprint", "subjects", "checked", "mask", "written", "finalised", "installing")


def _file_state(path: Path) -> list[int]:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def fingerprint(files: Mapping[str, Path], options: Mapping[str, Any]) -> dict[str, Any]:
    """What the store depends on: every input file's size and modification time, and the options that
    change pixels.  A resume is refused when it differs."""
    return {"options": dict(options), "files": {key: _file_state(path) for key, path in files.items()}}


def fingerprint_changes(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 6) -> list[str]:
    """What differs between two fingerprints, in words (at most ``limit`` items and a count)."""
    changes = [f"option {k}: was {old['options'].get(k)!r}, now {new['options'].get(k)!r}"
               for k in sorted(set(old["options"]) | set(new["options"]))
               if old["options"].get(k) != new["options"].get(k)]
    before, after = old["files"], new["files"]
    changes += [f"{k}: new since the interrupted prepare" for k in sorted(set(after) - set(before))]
    changes += [f"{k}: gone since the interrupted prepare" for k in sorted(set(before) - set(after))]
    changes += [f"{k}: changed since the interrupted prepare (size or modification time)"
                for k in sorted(set(before) & set(after)) if list(before[k]) != list(after[k])]
    if len(changes) > limit:
        changes = changes[:limit] + [f"... and {len(changes) - limit} more"]
    return changes


class Staging:
    """The partial dataset of OUT: its lock, journal and arrays.  Use as a context manager (locks)."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = sibling(self.out, "partial")
        self.store = self.path / "store"
        self.journal: dict[str, Any] = {}
        self._lock = FolderLock(self.path, "`gantlitz prepare`")

    # -- life cycle -------------------------------------------------------------------------------
    def __enter__(self) -> "Staging":
        created = not self.path.exists()
        make_dirs(self.path)
        try:
            self._lock.acquire()
        except BaseException:
            if created:  # e.g. no permission to lock: leave nothing behind
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def exists(self) -> bool:
        return (self.path / JOURNAL).is_file()

    def clear(self) -> None:
        """Start again: remove everything but the lock (held by this process), the journal first so a
        kill half-way never leaves a journal that claims removed work."""
        (self.path / JOURNAL).unlink(missing_ok=True)
        for entry in self.path.iterdir():  # the hidden folder is wholly this prepare's (and locked)
            if entry.name != LOCK_NAME:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        self.journal = {}

    def remove(self) -> None:
        """Delete the folder: nothing of a failed or finished prepare stays behind.  It is renamed aside
        while still locked, so a prepare starting meanwhile gets a fresh folder and loses nothing."""
        doomed = self.path.with_name(f"{self.path.name}.removing-{os.getpid()}")
        try:
            os.replace(self.path, doomed)
        except FileNotFoundError:
            doomed = None
        self._lock.release()
        if doomed is not None:
            shutil.rmtree(doomed, ignore_errors=True)

    # -- the journal ------------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """Read the journal of an interrupted prepare; a damaged one is an error that says what to do."""
        path = self.path / JOURNAL
        try:
            journal = json.loads(path.read_text())
            if journal.get("version") != JOURNAL_VERSION:
                raise ValueError(f"version {journal.get('version')!r}, expected {JOURNAL_VERSION}")
            missing = [k for k in _JOURNAL_KEYS if k not in journal]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(f"{path}: unreadable progress journal ({exc}); pass --overwrite to start the "
                             "prepare again") from None
        self.journal = journal
        record([path, self.path / "derived.npy"])  # the locked hidden folder's files are this prepare's
        return journal

    def start(self, fingerprint_: Mapping[str, Any], subjects: list[str]) -> None:
        """A new journal (after `clear`)."""
        self.journal = {"version": JOURNAL_VERSION, "fingerprint": dict(fingerprint_), "subjects": subjects,
                        "checked": [], "mask": False, "written": {}, "finalised": [], "installing": False}
        make_dirs(self.store)
        self.save()

    def save(self) -> None:
        write_text(self.path / JOURNAL, json.dumps(self.journal, indent=1), overwrite=True)

    def summary(self) -> str:
        """How far an interrupted prepare got, in words."""
        j = self.journal
        n = len(j.get("subjects", []))
        done = [] if j.get("mask") else [f"{len(j.get('checked', []))}/{n} checked"]
        done += [f"{len(j.get('written', {}))}/{n} written", f"{len(j.get('finalised', []))}/{n} finalised"]
        return "subjects: " + ", ".join(done) + (", being installed" if j.get("installing") else "")

    # -- arrays -----------------------------------------------------------------------------------
    def create_arrays(self, n: int, canvas: tuple[int, int], preview: tuple[int, int]) -> None:
        """Allocate the store's arrays and the heights, reserving their disk space now: a memory map that
        hits a full disk later would kill the process (SIGBUS) instead of saying so."""
        for name, (dtype, shape) in self._arrays(n, canvas, preview).items():
            path = self._path(name)
            np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
            fd = os.open(path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise OutputError(path, f"can not reserve {os.fstat(fd).st_size / 1e9:.1f} GB on disk "
                                            f"({exc.strerror}); free some space and run again") from None
                # a filesystem without reservations: the free-space check before is all there is
            finally:
                os.close(fd)

    @staticmethod
    def _arrays(n: int, canvas: tuple[int, int], preview: tuple[int, int]) -> dict[str, tuple[type, tuple]]:
        """name → (dtype, shape) of the per-subject arrays a prepare of n subjects writes."""
        return {"textures.npy": (np.uint16, (n, *canvas, 5)), "preview.npy": (np.uint16, (n, *preview, 5)),
                "heights.npy": (np.float32, (n, *canvas))}

    def _path(self, name: str) -> Path:
        """Where an array lives: the heights beside the store (never installed), the rest in it."""
        return self.path / name if name == "heights.npy" else self.store / name

    def drop_heights(self) -> None:
        self._path("heights.npy").unlink(missing_ok=True)

    @staticmethod
    def bytes_needed(n: int, canvas: tuple[int, int], preview: tuple[int, int]) -> int:
        """Disk for the store (the per-subject arrays and the uint8 mask) plus the temporary heights."""
        return canvas[0] * canvas[1] + sum(int(np.prod(shape)) * np.dtype(dtype).itemsize
                                           for dtype, shape in Staging._arrays(n, canvas, preview).values())

    def open_array(self, name: str) -> np.memmap:
        """A writable memory map of one of the arrays; drop it after each subject so the written pages
        leave this process's memory."""
        return np.load(self._path(name), mmap_mode="r+")

    def save_mask(self, mask: np.ndarray) -> None:
        """The dataset's visibility mask (uint8) into the store."""
        np.save(self._path("mask.npy"), mask.astype(np.uint8))

    def mask(self) -> np.ndarray:
        return np.load(self._path("mask.npy"))

    def save_partial_mask(self, mask: np.ndarray) -> None:
        """The derived mask so far, atomically and durably (the journal then counts its subjects in)."""
        buffer = io.BytesIO()
        np.save(buffer, mask)
        write_bytes(self.path / "derived.npy", buffer.getvalue(), overwrite=True)

    def record_store(self) -> None:
        """Record the store's arrays (written through memory maps, not `outputs`) as the command's files."""
        record(self.store.iterdir())

    def partial_mask(self, canvas: tuple[int, int]) -> np.ndarray:
        path = self.path / "derived.npy"
        return np.load(path) if path.is_file() else np.zeros(canvas, np.uint8)
