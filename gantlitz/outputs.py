"""Every file the package writes goes through here: atomic writes, the overwrite rule, JSON, PIL images, GIFs.

Rules, the same for every command:
- a write goes to a temporary file in the destination folder and is renamed into place (readers never
  see half a file; a killed writer leaves only a `.NAME.*.tmp*` file that `remove_temporaries` clears);
- an existing file is replaced only with `overwrite=True`;
- an output folder (`check_output_dir`) is never the input nor a folder containing it, and `--overwrite`
  removes only the entries the command itself writes (`remove_owned`, `install_dir`), never unknown files;
- a path that can not be written becomes an `OutputError` naming it (no traceback).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import FolderLockedError, OutputError, OutputExistsError

log = logging.getLogger(__name__)

__all__ = ["atomic_path", "make_dirs", "refuse_existing", "write_json", "write_text", "save_image", "write_gif",
           "contains", "check_output_dir", "remove_owned", "install_dir", "remove_temporaries", "run_info", "TEMP_GLOB",
           "FolderLock", "LOCK_NAME",
           "OUTPUT_MAPS", "FORMATS", "output_paths",
           "write_map"]

OUTPUT_MAPS: tuple[str, ...] = ("albedo", "specular", "displacement", "normal")
"""Map files written per texture, in contact-sheet order."""

FORMATS: dict[str, str] = {"exr": ".exr", "png16": ".png", "tiff": ".tif"}
"""Map formats → file suffix. EXR: half float (displacement float32); PNG: 16-bit; TIFF: 16-bit
(displacement float32)."""

TEMP_GLOB = ".*.tmp*"
"""Names of temporary files `atomic_path` creates (`.NAME.<random>.tmp<suffix>`)."""


LOCK_NAME = ".lock"
"""The lock file `FolderLock` keeps in a folder (hidden: never the user's, never installed)."""


class FolderLock:
    """An advisory `flock` on FOLDER/.lock holding the owner's pid and host: one process per run directory
    or dataset being prepared.

    The kernel drops the lock when its process dies (even by kill -9), so a lock file left behind is
    recognised as stale and taken over; the file itself is never deleted while in use (deleting it would
    let two processes lock two different files).
    """

    def __init__(self, folder: Path, holder: str) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `FolderLockedError` naming the process that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise OutputError(self.path, f"permission denied (can not lock the folder of this {self.holder})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = self._read(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise FolderLockedError(
                f"{self.path.parent} is in use by another {self.holder} (pid {owner.get('pid', '?')} on "
                f"{owner.get('host', '?')}, since {owner.get('since', '?')}); wait for it to end or stop it"
            ) from None
        stale = self._read(fd)
        if stale:
            log.warning("%s: taking over the lock left by pid %s on %s (that process no longer holds it)",
                        self.path.parent, stale.get("pid", "?"), stale.get("host", "?"))
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_dirs(folder: str | os.PathLike) -> Path:
    """`mkdir -p`, with an `OutputError` naming the folder when that is impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(folder, "exists and is not a folder") from None
    except NotADirectoryError:
        raise OutputError(folder, "a parent of this path is a file, not a folder") from None
    except PermissionError:
        raise OutputError(folder, "permission denied (can not create this folder)") from None
    except OSError as exc:
        raise OutputError(folder, f"can not create this folder ({exc.strerror})") from None
    return folder


def refuse_existing(paths: Iterable[str | os.PathLike], overwrite: bool) -> None:
    """Raise `OutputExistsError` naming the first existing path (and how many more), unless overwrite."""
    if overwrite:
        return
    found = [Path(p) for p in paths if Path(p).exists()]
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise OutputExistsError(found[0], f"exists{more}; nothing was written (pass --overwrite to replace)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); on success it is renamed onto `path`.

    Refuses an existing `path` unless overwrite (checked before and again just before the rename, in case
    it appeared meanwhile). On any exception the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    refuse_existing([path], overwrite)
    if path.is_dir():
        raise OutputError(path, "is a folder, expected a file name")
    make_dirs(path.parent)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except PermissionError:
        raise OutputError(path.parent, "permission denied (can not write in this folder)") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        refuse_existing([path], overwrite)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False, fsync: bool = False) -> Path:
    """Write a text file atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, overwrite: bool = False) -> Path:
    """Write JSON (indented, newline-terminated) atomically; refuse to replace unless overwrite."""
    return write_text(path, json.dumps(data, indent=2) + "\n", overwrite=overwrite)


def save_image(image: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save a PIL image (contact sheets, figures) atomically; the format follows the suffix."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        image.save(tmp, format=path.suffix.lstrip(".").upper() or "PNG")
    return path


def write_gif(frames: Sequence[Any], path: str | os.PathLike, fps: float, overwrite: bool = False) -> Path:
    """Ping-pong looping GIF of PIL frames, written atomically."""
    seq = list(frames) + list(frames[-2:0:-1])
    with atomic_path(path, overwrite=overwrite) as tmp:
        seq[0].save(tmp, format="GIF", save_all=True, append_images=seq[1:], duration=int(1000 / fps), loop=0)
    return Path(path)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder` (not recursive); returns them."""
    removed = []
    for tmp in Path(folder).glob(TEMP_GLOB):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.warning("removed %d leftover temporary file(s) of an interrupted write in %s: %s", len(removed),
                    folder, ", ".join(p.name for p in removed))
    return removed


def contains(outer: str | os.PathLike, inner: str | os.PathLike) -> bool:
    """Whether `inner` is `outer` or lies below it (paths resolved)."""
    a, b = Path(outer).resolve(), Path(inner).resolve()
    return a == b or a in b.parents


def check_output_dir(
    out: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (), overwrite: bool = False,
    what: str = "output",
) -> list[Path]:
    """The first half of the overwrite rule, touching nothing: refuse an `out` that is or contains an input
    (even with overwrite), that is a file, or that is non-empty without overwrite. Returns its entries."""
    out = Path(out)
    for source in inputs:
        if contains(out, source):
            raise OutputExistsError(out, f"is or contains the input {source}; choose another {what} folder "
                                         "(nothing was touched)")
    if out.exists() and not out.is_dir():
        raise OutputError(out, f"exists and is not a folder; choose another {what} folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if entries and not overwrite:
        raise OutputExistsError(out, f"exists and is not empty; pass --overwrite to replace its {what} "
                                     "(only the files this command writes are replaced; nothing was touched)")
    return entries


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _warn_kept(out: Path, kept: Sequence[Path]) -> None:
    kept = [e for e in kept if not e.name.startswith(".")]  # locks and temporaries are not the user's
    if kept:
        log.warning("%s: kept %d file(s) this command did not write: %s", out, len(kept),
                    ", ".join(e.name for e in kept[:5]) + (" ..." if len(kept) > 5 else ""))


def remove_owned(out: str | os.PathLike, owned: Callable[[Path], bool]) -> None:
    """Remove the top-level entries of `out` that `owned` claims; list the others in a warning."""
    out = Path(out)
    entries = sorted(out.iterdir()) if out.is_dir() else []
    for entry in entries:
        if owned(entry):
            _remove(entry)
    _warn_kept(out, [e for e in entries if not owned(e)])


def install_dir(staging: str | os.PathLike, out: str | os.PathLike, *, owned: Callable[[Path], bool],
                last: str | None = None) -> Path:
    """Move the finished entries of `staging` into `out` (replacing them), then remove `out`'s other owned
    entries; unknown entries stay. `last` (e.g. a manifest) is removed first and moved in last, so a
    reader never sees it beside a half-replaced folder. A new `out` is `staging` renamed (atomic)."""
    staging, out = Path(staging), Path(out)
    if not out.exists():
        os.replace(staging, out)
        return out
    new = {e.name for e in staging.iterdir()}
    if last is not None:
        (out / last).unlink(missing_ok=True)
    for entry in sorted(staging.iterdir(), key=lambda e: e.name == last):
        if (out / entry.name).is_dir() and not (out / entry.name).is_symlink():
            shutil.rmtree(out / entry.name)
        os.replace(entry, out / entry.name)
    for entry in sorted(out.iterdir()):
        if entry.name not in new and owned(entry):
            _remove(entry)
    _warn_kept(out, [e for e in sorted(out.iterdir()) if not owned(e)])
    staging.rmdir()
    return out


def run_info(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance block for the JSON records: command, versions, machine."""
    import torch

    from . import __version__

    info: dict[str, Any] = {
        "command": shlex.join(["gantlitz", *sys.argv[1:]]),
        "gantlitz_version": __version__,
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info.update(extra or {})
    return info


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
    from .imageio import write_image

    path = Path(path)
    suffix = path.suffix.lower()
    precise = name == "displacement"
    if suffix == ".exr":
        return write_image(path, array, float_exr=precise, overwrite=overwrite)
    if suffix in (".tif", ".tiff"):
        return write_image(path, array, bits=32 if precise else 16, overwrite=overwrite)
    return write_image(path, array, bits=16, overwrite=overwrite)
