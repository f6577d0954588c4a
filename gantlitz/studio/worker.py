"""One synthesis thread with a bounded queue: however many clients ask, the generator runs one job at a time.

The model is not thread-safe and its memory grows with concurrent passes, so every job that touches it
goes through here. A full queue refuses new work (`Busy`, answered 503) instead of growing; a job whose
client went away is cancelled while it waits (a job already running finishes and fills the cache).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..errors import GantlitzError

__all__ = ["Busy", "Worker"]


class Busy(GantlitzError, RuntimeError):
    """The queue is full: the client should retry later."""


class Worker:
    """Runs submitted callables in order on one daemon thread; at most `max_pending` queued or running."""

    def __init__(self, max_pending: int = 32) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = int(max_pending)
        self._queue: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self.completed = 0
        self.cancelled = 0
        self._thread = threading.Thread(target=self._loop, name="gantlitz-studio-worker", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs queued or running (cancelled jobs leave at once)."""
        return self._pending

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue `fn(*args)`; returns its future. Raises `Busy` when `max_pending` jobs are waiting."""
        future: Future = Future()
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy(f"the studio is busy ({self._pending} requests queued); retry shortly")
            self._pending += 1
        future.add_done_callback(self._finished)
        self._queue.put((future, fn, args))
        return future

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._pending -= 1
            if future.cancelled():
                self.cancelled += 1
            else:
                self.completed += 1

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued: its client is gone
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the waiting request, which decides what it means
                future.set_exception(exc)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel the queued jobs and stop the thread after the running one."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self._queue.put(None)
        self._thread.join(timeout)
