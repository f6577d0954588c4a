"""Folder locks: one process per run directory or dataset being prepared."""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import FolderLockedError, OutputError

log = logging.getLogger(__name__)

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
