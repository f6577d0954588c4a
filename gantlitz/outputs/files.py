"""The file-system steps under the one write path: folders, names beside a file, temporary files.

`temporary` (a temporary file beside the destination, removed on any failure), `write_all` (bytes, length
checked) and `finish` (fsync, check, rename) are the mechanics `atomic.atomic_path` and the folder records
(`ownership`) share; `remove_temporaries` clears what a killed writer left. `make_dirs`, `sibling` and
`human_bytes` serve every command that writes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import OutputError

log = logging.getLogger(__name__)

TEMP_GLOB = ".*.tmp*"
"""Names of temporary files `atomic_path` creates (`.NAME.<random>.tmp<suffix>`)."""

_NAME_MAX = 255


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


# -- the temporary file, its write, fsync and rename ------------------------------------------------------
def _failed(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = f"{reason}: the disk is full, free some space and run again"
    return OutputError(path, f"could not be written ({reason}); nothing was replaced")


@contextlib.contextmanager
def temporary(path: Path) -> Iterator[Path]:
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


def write_all(tmp: Path, data: bytes, path: Path) -> None:
    """Write `data` into `tmp`; fewer bytes on disk than given is an `OutputError` naming `path`."""
    with open(tmp, "wb") as handle:
        written = handle.write(data)
    if written != len(data) or tmp.stat().st_size != len(data):
        raise OutputError(path, f"short write ({tmp.stat().st_size} of {len(data)} bytes); nothing was replaced")


def finish(tmp: Path, path: Path, verify: Callable[[Path], None] | None) -> None:
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
