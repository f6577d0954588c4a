"""Ownership by record and the overwrite rule: which files a command wrote, and which it may replace.

Inside `writing(command)` every file written is recorded (size and modification time) in its folder's
`.gantlitz-record.json`; `--overwrite` replaces or removes only files that record names as that
command's and that are unchanged since (`refuse_existing`, `check_output_dir`, `remove_owned`,
`install_dir`); an input is never inside or equal to an output (`check_apart`); an unwritable path is
refused before the long work starts (`check_writable`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import OutputError, OutputExistsError
from .files import TEMP_GLOB, finish, make_dirs, temporary, write_all
from .locks import LOCK_NAME

log = logging.getLogger(__name__)

RECORD_NAME = ".gantlitz-record.json"
"""Each folder's record of the files gantlitz commands wrote into it: name → command, size, mtime."""

_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("gantlitz_command", default=None)


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
    with temporary(folder / RECORD_NAME) as tmp:
        write_all(tmp, data, folder / RECORD_NAME)
        finish(tmp, folder / RECORD_NAME, None)


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
