"""Start-up of `gantlitz studio`: load and try the model, bind the socket, serve with uvicorn.

Everything that can be wrong with a run (missing, corrupt, non-finite, the wrong device) or with the
address (in use, not permitted) is found here, before the first request, and raised as a `GantlitzError`
that the CLI prints as one line.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import GantlitzError
from ..generate import TextureModel, load
from .app import Limits, create_app

__all__ = ["StudioError", "open_model", "bind", "is_loopback", "serve", "running"]


class StudioError(GantlitzError, RuntimeError):
    """The studio can not start: the message names the run or the address and the problem."""


def open_model(run: str, device: str = "auto") -> TextureModel:
    """Load a run or checkpoint (`generate.load` names a missing or corrupt one) and synthesise one patch,
    so a model that can not run on the device (out of memory, an unsupported GPU) fails now, not on a click."""
    model = load(run, device=device)
    try:
        model.sample(0, ("albedo",), region=(0, 0, model.patch_size, model.patch_size))
    except RuntimeError as exc:
        raise StudioError(f"{run}: the model does not run on {model.device}: {exc}") from None
    return model


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, reuse_port=False)
    except socket.gaierror as exc:
        raise StudioError(f"can not listen on {host}:{port}: unknown host ({exc.strerror})") from None
    except OSError as exc:
        hint = " (choose another --port)" if exc.errno in (98, 48) else ""
        raise StudioError(f"can not listen on {host}:{port}: {exc.strerror}{hint}") from None


def _server(app: Any) -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))


def serve(model: TextureModel, sock: socket.socket, limits: Limits | None = None) -> None:
    """Serve the studio on `sock` until interrupted (Ctrl-C stops it; queued work is dropped)."""
    _server(create_app(model, limits)).run(sockets=[sock])


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """A studio app (`create_app`) on a free port of `host` in a background thread (tests, benchmarks,
    notebooks); yields its URL and stops it on exit."""
    sock = bind(host, 0)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise StudioError("the studio server stopped during start-up")
            threading.Event().wait(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
