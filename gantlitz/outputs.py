"""Every file the package writes goes through here: atomic writes, the overwrite rule, JSON, PIL images, GIFs.

Rules, the same for every command:
- a write goes to a temporary file in the destination folder, is flushed and fsynced, checked (the size
  its encoder reports, or a decoder's look at it) and only then renamed into place; a failed write
  (a full disk, an I/O error, an encoder error) is an `OutputError` naming the file and leaves no
  temporary file (a killed writer leaves only a `.NAME.*.tmp*` file that `remove_temporaries` clears);
- ownership by record: inside `writing(command)` every file written is recorded (size and modification
  time) in its folder's `.gantlitz-record.json`; `--overwrite` replaces or removes only files that
  record names as that command's and that are unchanged since; anything else is kept and listed in a
  warning, and a folder without a record of the command is never emptied;
- an input (symlinks resolved) is never inside or equal to an output the command would replace;
- a path that can not be written becomes an `OutputError` naming it (no traceback), checked before the
  long work starts (`refuse_existing`, `check_output_dir`).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import FolderLockedError, OutputError, OutputExistsError

log = logging.getLogger(__name__)

__all__ = ["atomic_path", "write_bytes", "make_dirs", "refuse_existing", "write_json", "write_text", "save_image",
           "write_gif", "contains", "check_apart", "check_output_dir", "check_writable", "remove_owned", "install_dir",
           "remove_temporaries", "run_info", "TEMP_GLOB", "FolderLock", "LOCK_NAME", "RECORD_NAME", "writing",
           "record", "owned", "has_record", "sibling", "human_bytes", "OUTPUT_MAPS", "FORMATS", "output_paths",
           "write_map", "GIF_FPS", "save_figure"]

OUTPUT_MAPS: tuple[str, ...] = ("albedo", "specular", "displacement", "normal")
"""Map files written per texture, in contact-sheet order."""

FORMATS: dict[str, str] = {"exr": ".exr", "png16": ".png", "tiff": ".tif"}
"""Map formats → file suffix. EXR: half float (displacement float32); PNG: 16-bit; TIFF: 16-bit
(displacement float32)."""

TEMP_GLOB = ".*.tmp*"
"""Names of temporary files `atomic_path` creates (`.NAME.<random>.tmp<suffix>`)."""


LOCK_NAME = ".lock"
"""The lock file `FolderLock` keeps in a folder (hidden: never the user's, never installed)."""

RECORD_NAME = ".gantlitz-record.json"
"""Each folder's record of the files gantlitz commands wrote into it: name → command, size, mtime."""

_NAME_MAX = 255
_FAILED_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG, errno.ENAMETOOLONG)
_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("gantlitz_command", default=None)


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


def human_bytes(n: float) -> str:
    """1234567 → '1.2 MB' (the unit that keeps the figure readable; never '0.0 GB')."""
    units = ("kB", "MB", "GB", "TB")
    if abs(n) < 1000:
        return f"{n:.0f} bytes"
    for unit in units:
        n /= 1000
        if abs(n) < 1000 or unit == units[-1]:
            break
    return f"{n:.1f} {unit}"


def sibling(path: Path, tag: str) -> Path:
    """A hidden name beside `path` (`.NAME.tag`) that stays within the file-name limit, however long NAME
    is (a long name is shortened and a digest of it kept, so two long names never share a sibling)."""
    name = f".{path.name}.{tag}"
    if len(name.encode()) > _NAME_MAX:
        digest = hashlib.sha256(path.name.encode()).hexdigest()[:12]
        name = f".{path.name.encode()[:120].decode(errors='ignore')}-{digest}.{tag}"
    return path.parent / name


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


# -- ownership by record --------------------------------------------------------------------------------
@contextlib.contextmanager
def writing(command: str) -> Iterator[None]:
    """Mark the writes inside as `command`'s: each is recorded in its folder's record, and an overwrite
    replaces only files that record names as `command`'s and that are unchanged since. Outside any
    `writing` block (the Python API used directly) nothing is recorded and `overwrite` replaces by name."""
    token = _COMMAND.set(command)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def _stamp(path: Path, command: str) -> dict[str, Any]:
    st = path.stat()
    return {"command": command, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _load_record(folder: Path) -> dict[str, dict[str, Any]]:
    """name → entry of `folder`'s record; an unreadable record is said and taken as empty (owns nothing)."""
    path = folder / RECORD_NAME
    if not path.is_file():  # absent, or a pipe that would block the read
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning("%s: unreadable record (%s): nothing in %s counts as gantlitz's", path, exc, folder)
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {k: v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def _save_record(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Write `folder`'s record (atomically; not itself recorded); no entries left: no record file."""
    files = {k: v for k, v in files.items() if (folder / k).exists()}
    if not files:
        (folder / RECORD_NAME).unlink(missing_ok=True)
        return
    data = json.dumps({"format": "gantlitz-record", "version": 1, "files": files}, indent=1).encode()
    with _temporary(folder / RECORD_NAME) as tmp:
        _write_all(tmp, data, folder / RECORD_NAME)
        _finish(tmp, folder / RECORD_NAME, None)


def record(paths: Iterable[str | os.PathLike], command: str | None = None) -> None:
    """Record existing files as written by `command` (default: the active one): for files other writers
    made (memory maps, TensorBoard), or a run's own files adopted when it is resumed."""
    command = command or _COMMAND.get()
    if command is None:
        return
    by_folder: dict[Path, list[Path]] = {}
    for p in map(Path, paths):
        if p.is_file() and p.name != RECORD_NAME:
            by_folder.setdefault(p.parent, []).append(p)
    for folder, files in by_folder.items():
        entries = _load_record(folder)
        entries.update({f.name: _stamp(f, command) for f in files})
        _save_record(folder, entries)


def owned(path: str | os.PathLike, command: str | None = None) -> bool:
    """Whether `path` is a file its folder's record names as `command`'s (default: the active command's)
    and that is unchanged since (same size and modification time)."""
    path, command = Path(path), command or _COMMAND.get()
    entry = _load_record(path.parent).get(path.name)
    if entry is None or entry.get("command") != command or path.is_symlink() or not path.is_file():
        return False
    now = _stamp(path, command)
    return entry.get("size") == now["size"] and entry.get("mtime_ns") == now["mtime_ns"]


def has_record(folder: str | os.PathLike, command: str | None = None) -> bool:
    """Whether `folder`'s record names at least one file of `command` (default: the active one)."""
    command = command or _COMMAND.get()
    return any(e.get("command") == command for e in _load_record(Path(folder)).values())


def _is_ours(entry: Path) -> bool:
    """Bookkeeping that is never the user's: the lock, the record, temporaries."""
    return entry.name in (LOCK_NAME, RECORD_NAME) or entry.match(TEMP_GLOB)


def _user_entries(folder: Path) -> list[Path]:
    return sorted(e for e in folder.iterdir() if not _is_ours(e)) if folder.is_dir() else []


# -- the one atomic write path ----------------------------------------------------------------------------
def _failed(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = f"{reason}: the disk is full, free some space and run again"
    return OutputError(path, f"could not be written ({reason}); nothing was replaced")


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`; removed on any failure, OS errors become an `OutputError`."""
    try:
        fd, name = tempfile.mkstemp(prefix=sibling(path, "").name[:100], suffix=f".tmp{path.suffix[:16]}",
                                    dir=path.parent)
    except PermissionError:
        raise OutputError(path.parent, "permission denied (can not write in this folder)") from None
    except OSError as exc:
        raise _failed(path, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except OutputError:
        raise
    except OSError as exc:
        raise _failed(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def _write_all(tmp: Path, data: bytes, path: Path) -> None:
    with open(tmp, "wb") as handle:
        written = handle.write(data)
    if written != len(data) or tmp.stat().st_size != len(data):
        raise OutputError(path, f"short write ({tmp.stat().st_size} of {len(data)} bytes); nothing was replaced")


def _finish(tmp: Path, path: Path, verify: Callable[[Path], None] | None) -> None:
    """fsync, check, rename: the file is complete on disk before its final name exists."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if verify is not None:
        verify(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file ordinary permissions
    os.replace(tmp, path)


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
    with _temporary(path) as tmp:
        yield tmp
        refuse_existing([path], overwrite)
        _finish(tmp, path, verify)
    record([path])


def write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write bytes atomically; the size on disk is checked against `len(data)` before the rename."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        _write_all(tmp, data, path)
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


# -- the overwrite rule -------------------------------------------------------------------------------------
def contains(outer: str | os.PathLike, inner: str | os.PathLike) -> bool:
    """Whether `inner` is `outer` or lies below it (paths resolved)."""
    a, b = Path(outer).resolve(), Path(inner).resolve()
    return a == b or a in b.parents


def check_writable(paths: Iterable[str | os.PathLike]) -> None:
    """Refuse, before any long work and creating nothing, output paths whose folder can not be made or
    written: the nearest existing ancestor of each must be a folder this process may write in."""
    for folder in {Path(p).parent for p in paths}:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise OutputError(existing, "is a file, not a folder: the outputs can not be written below it")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(existing, "permission denied (can not write in this folder)")


def refuse_existing(paths: Iterable[str | os.PathLike], overwrite: bool,
                    inputs: Sequence[str | os.PathLike] = ()) -> None:
    """The file outputs' pre-flight, touching nothing: no output is an input; an existing one needs
    overwrite and, inside `writing`, must be the command's own unchanged file by its folder's record;
    every folder must be writable. Raises `OutputExistsError` naming the first offender (and how many more)."""
    paths = [Path(p) for p in paths]
    sources = {Path(i).resolve() for i in inputs}
    for p in paths:
        if p.resolve() in sources:
            raise OutputExistsError(p, "is an input of this command and would be replaced by an output; choose "
                                       "another output (nothing was written)")
    found = [p for p in paths if p.exists() or p.is_symlink()]
    command = _COMMAND.get()
    if found and not overwrite:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise OutputExistsError(found[0], f"exists{more}; nothing was written (pass --overwrite to replace)")
    foreign = [p for p in found if command is not None and not owned(p, command)]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise OutputExistsError(foreign[0], f"exists{more} and is not a file `gantlitz {command}` wrote here (no "
                                            f"record names it, or it changed since); --overwrite replaces only the "
                                            "command's own unchanged files: move it away (nothing was written)")
    check_writable(paths)


def check_apart(out: str | os.PathLike, inputs: Sequence[str | os.PathLike], what: str = "output") -> None:
    """Refuse an output folder that is, contains or lies inside an input (symlinks resolved), or that is a
    file; touches nothing and holds even with --overwrite."""
    out = Path(out)
    for source in inputs:
        if contains(out, source) or contains(source, out):
            where = "is or contains" if contains(out, source) else "lies inside"
            raise OutputExistsError(out, f"{where} the input {source}; choose another {what} folder "
                                         "(nothing was touched)")
    if out.exists() and not out.is_dir():
        raise OutputError(out, f"exists and is not a folder; choose another {what} folder")


def check_output_dir(
    out: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (), overwrite: bool = False,
    what: str = "output",
) -> list[Path]:
    """The overwrite rule for a folder a command owns, touching nothing: `check_apart`; then a non-empty
    `out` needs overwrite and (inside `writing`) a record of the command. Returns its user-visible entries."""
    out = Path(out)
    check_apart(out, inputs, what)
    entries = _user_entries(out)
    if entries and not overwrite:
        raise OutputExistsError(out, f"exists and is not empty; pass --overwrite to replace its {what} "
                                     "(only the files this command wrote are replaced; nothing was touched)")
    command = _COMMAND.get()
    if entries and command is not None and not has_record(out, command):
        raise OutputExistsError(out, f"holds files but no record of `gantlitz {command}` ({RECORD_NAME}): "
                                     f"--overwrite never empties a folder gantlitz did not write; choose an empty "
                                     f"or new {what} folder (nothing was touched)")
    check_writable([out / "x"])
    return entries


def _warn_kept(out: Path, kept: Sequence[Path]) -> None:
    if kept:
        log.warning("%s: kept %d file(s) this command did not write (or that changed since): %s", out, len(kept),
                    ", ".join(str(e.relative_to(out)) for e in kept[:5]) + (" ..." if len(kept) > 5 else ""))


def _remove_owned(folder: Path, root: Path, keep: Collection[str]) -> list[Path]:
    """Remove the active command's unchanged recorded files below `folder` (but those whose path relative
    to `root` is in `keep`); returns what stays. Subfolders emptied this way go too; a folder without a
    record loses nothing."""
    entries, kept = _load_record(folder), []
    recorded = bool(entries)
    for entry in _user_entries(folder):
        if str(entry.relative_to(root)) in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            had_record = (entry / RECORD_NAME).exists()
            kept += _remove_owned(entry, root, keep)
            if had_record and not any(entry.iterdir()):
                entry.rmdir()
        elif owned(entry):
            entry.unlink()
            entries.pop(entry.name, None)
        else:
            kept.append(entry)
    if recorded:
        _save_record(folder, entries)
    return kept


def remove_owned(out: str | os.PathLike, keep: Collection[str] = ()) -> None:
    """--overwrite for a folder a command owns: remove only the files the record names as the active
    command's and unchanged (recursively, but the paths relative to `out` in `keep`); list the others in
    a warning. Outside `writing` nothing is anyone's, so nothing is removed."""
    out = Path(out)
    if out.is_dir() and _COMMAND.get() is not None:
        _warn_kept(out, _remove_owned(out, out, set(keep)))


def _merge(staging: Path, out: Path, last: str | None, prefix: str = "") -> set[str]:
    """Move `staging`'s files onto `out`'s (record entries with them), `last` last, subfolders merged;
    returns the installed paths relative to the top."""
    make_dirs(out)
    src, dst, installed = _load_record(staging), _load_record(out), set()
    for entry in sorted(_user_entries(staging), key=lambda e: e.name == last):
        target, rel = out / entry.name, f"{prefix}{entry.name}"
        if entry.is_dir() and not entry.is_symlink():
            installed |= _merge(entry, target, None, f"{rel}/")
            continue
        if (target.exists() or target.is_symlink()) and not owned(target):
            raise OutputExistsError(target, "appeared while the command ran and is not its own; it was kept, "
                                            f"the finished output stays in {staging}")
        os.replace(entry, target)
        installed.add(rel)
        if entry.name in src:
            dst[entry.name] = src[entry.name]
        _save_record(out, dst)
    (staging / RECORD_NAME).unlink(missing_ok=True)
    staging.rmdir()
    return installed


def install_dir(staging: str | os.PathLike, out: str | os.PathLike, *, keep: Collection[str] = (),
                last: str | None = None) -> Path:
    """Move the finished `staging` folder into `out`, replacing the active command's own files there; then
    remove that command's other unchanged recorded files (but the paths in `keep`, relative to `out`);
    unknown files stay and are listed. `last` (e.g. a manifest) is removed first and moved in last, so a
    reader never sees it beside a half-replaced folder. A new `out` is `staging` renamed (atomic)."""
    staging, out = Path(staging), Path(out)
    if not out.exists():
        os.replace(staging, out)
        return out
    if last is not None and owned(out / last):
        (out / last).unlink()
    installed = _merge(staging, out, last)
    remove_owned(out, keep=installed | set(keep))
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
