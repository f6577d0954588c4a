"""The studio's HTTP API and page (Starlette): parameters checked first, synthesis queued on one worker.

Routes (docs/studio.md has the full reference):

    GET  /                              the page          GET  /static/NAME   packaged front-end files
    GET  /api/info                      model, pyramid, limits
    GET  /api/thumb?seed&truncation     albedo thumbnail (PNG)
    GET  /api/tile?IDENTITY&modality&level&row&col        pyramid tile (PNG)
    GET  /api/preview.glb?IDENTITY      lit-preview head (glTF binary)
    POST /api/downloads  {IDENTITY, format}               start a download -> {id, ...}
    GET  /api/downloads/ID   DELETE /api/downloads/ID     progress / cancel
    GET  /api/downloads/ID/file         the finished file

IDENTITY is seed, truncation, noise, seed_b and t (`params.parse_identity`). A user's mistake is a 4xx
JSON `{"error": ..., "param": ...}`; a full queue is 503 with Retry-After; nothing reaches the file
system by a path from the request (static files are a fixed table read at start-up, downloads go by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..config import SEED_MAX
from ..generate import TextureModel
from ..outputs.mapfiles import OUTPUT_MAPS
from .downloads import Downloads, UnknownDownload
from .engine import PREVIEW_TEXTURE, Engine, preview_key, thumb_key, tile_key
from .params import DOWNLOAD_FORMATS, IDENTITY_KEYS, TRUNCATION_RANGE, ParamError, check_known, parse_format, \
    parse_identity, parse_int, parse_modality
from .worker import Busy, Worker

__all__ = ["create_app", "Limits", "static_files"]

MAX_QUERY = 1024
"""Longest accepted query string (bytes): every real request is far shorter."""
MAX_BODY = 4096
"""Largest accepted request body (bytes): a download request is a few numbers."""
_NO_STORE = {"Cache-Control": "no-store"}
"""Results are cached by the server; a browser cache could show another run's tiles after a restart."""
DISCONNECT_POLL = 0.1
"""Seconds between checks that the client of a queued job is still there."""


@dataclass(frozen=True)
class Limits:
    """Bounds of one server: jobs waiting for the generator, cache memory (MiB), downloads kept on disk."""

    queue: int = 32
    cache_mb: int = 512
    downloads: int = 4


def static_files() -> dict[str, tuple[bytes, str]]:
    """Every packaged front-end file, read once: URL name → (content, media type)."""
    root = resources.files("gantlitz.studio") / "static"
    table: dict[str, tuple[bytes, str]] = {}

    def walk(folder: Any, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif not entry.name.startswith("."):
                kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                if entry.name.endswith(".js"):
                    kind = "text/javascript"
                table[f"{prefix}{entry.name}"] = (entry.read_bytes(), kind)

    walk(root, "")
    return table


def _error(status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if param is not None:
        body["param"] = param
    return JSONResponse(body, status_code=status, headers=headers)


def _query(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query as a dict, refusing unknown and repeated parameters."""
    items = request.query_params.multi_items()
    params: dict[str, str] = {}
    for key, value in items:
        if key in params:
            raise ParamError(key[:40], "given more than once")
        params[key] = value
    check_known(params, allowed)
    return params


async def _json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, read up to `MAX_BODY` bytes."""
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > MAX_BODY:
            raise HTTPException(413, f"request body larger than {MAX_BODY} bytes")
    try:
        body = json.loads(data or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ParamError("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise ParamError("body", "must be a JSON object")
    return body


class _Bounds:
    """ASGI middleware: refuse an over-long query string (414) or a declared body over `MAX_BODY` (413)
    before any route runs."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            problem = None
            if len(scope.get("query_string", b"")) > MAX_QUERY:
                problem = (414, f"query string longer than {MAX_QUERY} bytes")
            length = dict(scope.get("headers", [])).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > MAX_BODY:
                problem = (413, f"request body larger than {MAX_BODY} bytes")
            if problem is not None:
                await _error(problem[0], problem[1])(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Studio:
    """The routes' shared state: engine, worker, downloads, packaged files."""

    def __init__(self, model: TextureModel, limits: Limits, folder: Path) -> None:
        self.model = model
        self.engine = Engine(model, cache_bytes=limits.cache_mb << 20, scratch=folder)
        self.worker = Worker(limits.queue)
        self.downloads = Downloads(self.engine, self.worker, folder / "downloads", keep=limits.downloads)
        self.files = static_files()
        self.limits = limits

    async def run(self, request: Request, key: tuple, fn: Callable[..., bytes], *args: Any) -> bytes | None:
        """A cached result at once; else `fn(*args)` queued on the worker, cancelled if the client leaves
        while it waits (returns None then)."""
        found = self.engine.results.get(key)
        if found is not None:
            return found
        future = self.worker.submit(fn, *args)
        waiter = asyncio.wrap_future(future)
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=DISCONNECT_POLL)
            if done:
                return waiter.result()
            if await request.is_disconnected():
                future.cancel()
                return None

    def info(self) -> dict[str, Any]:
        m = self.model
        return {"model": m.name, "checkpoint": str(m.path), "step": m.meta.get("step"),
                "canvas": {"height": m.canvas[0], "width": m.canvas[1]}, "patch": m.patch_size,
                "device": str(m.device), "precision": m.precision, "levels": self.engine.pyramid.describe(),
                "preview_level": self.engine.pyramid.level_for(PREVIEW_TEXTURE), "modalities": list(OUTPUT_MAPS),
                "formats": list(DOWNLOAD_FORMATS), "seed_max": SEED_MAX, "truncation_range": list(TRUNCATION_RANGE),
                "limits": {"queue": self.limits.queue, "cache_mb": self.limits.cache_mb, "max_query": MAX_QUERY,
                           "max_body": MAX_BODY},
                "queue": self.worker.pending, "cache": self.engine.stats()}


# ================================================================================================ routes
def _studio(request: Request) -> Studio:
    return request.app.state.studio


def _png(data: bytes | None) -> Response:
    if data is None:  # the client left; nobody reads this
        return Response(status_code=499)
    return Response(data, media_type="image/png", headers=_NO_STORE)


async def index(request: Request) -> Response:
    return await static(request, "index.html")


async def static(request: Request, name: str | None = None) -> Response:
    """A packaged file by its name in the table read at start-up (no file-system lookup)."""
    _query(request, ())
    found = _studio(request).files.get(name or request.path_params["name"])
    if found is None:
        return _error(404, "no such file")
    data, kind = found
    return Response(data, media_type=kind, headers={"Cache-Control": "no-cache"})


async def info(request: Request) -> Response:
    _query(request, ())
    return JSONResponse(_studio(request).info())


async def thumb(request: Request) -> Response:
    """The albedo of a seed at the coarsest level (the seed browser's grid)."""
    params = _query(request, ("seed", "truncation"))
    ident = parse_identity(params)
    studio = _studio(request)
    return _png(await studio.run(request, thumb_key(ident), studio.engine.thumbnail, ident))


async def tile(request: Request) -> Response:
    """One pyramid tile of one modality."""
    params = _query(request, (*IDENTITY_KEYS, "modality", "level", "row", "col"))
    ident, modality = parse_identity(params), parse_modality(params)
    studio = _studio(request)
    pyramid = studio.engine.pyramid
    level = parse_int(params, "level", 0, pyramid.finest)
    rows, cols = pyramid.level_grid(level)
    row, col = parse_int(params, "row", 0, rows - 1), parse_int(params, "col", 0, cols - 1)
    key = tile_key(ident, modality, level, row, col)
    return _png(await studio.run(request, key, studio.engine.tile, ident, modality, level, row, col))


async def preview(request: Request) -> Response:
    """The bundled head with this identity's maps at preview resolution (glTF binary)."""
    ident = parse_identity(_query(request, IDENTITY_KEYS))
    studio = _studio(request)
    data = await studio.run(request, preview_key(ident), studio.engine.preview, ident)
    if data is None:
        return Response(status_code=499)
    return Response(data, media_type="model/gltf-binary", headers=_NO_STORE)


async def start_download(request: Request) -> Response:
    _query(request, ())
    body = await _json_body(request)
    check_known(body, (*IDENTITY_KEYS, "format"))
    ident, fmt = parse_identity(body), parse_format(body)
    item = _studio(request).downloads.start(ident, fmt)
    return JSONResponse(item.status(), status_code=202, headers={"Location": f"/api/downloads/{item.id}"})


async def download_status(request: Request) -> Response:
    _query(request, ())
    downloads = _studio(request).downloads
    if request.method == "DELETE":
        return JSONResponse(downloads.cancel(request.path_params["id"]).status())
    return JSONResponse(downloads.get(request.path_params["id"]).status())


async def download_file(request: Request) -> Response:
    """The finished file of a download, by id; its name is the server's."""
    _query(request, ())
    item = _studio(request).downloads.get(request.path_params["id"])
    if item.state != "done" or item.path is None:
        return _error(409, f"download {item.id} is {item.state}, not done", "id")
    kind = "model/gltf-binary" if item.format == "glb" else "application/zip"
    return FileResponse(item.path, media_type=kind, filename=item.name)


# ======================================================================================== errors, app
async def _param_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ParamError)
    return _error(400, str(exc), exc.param)


async def _busy(request: Request, exc: Exception) -> Response:
    return _error(503, str(exc), headers={"Retry-After": "1"})


async def _unknown_download(request: Request, exc: Exception) -> Response:
    return _error(404, str(exc), "id")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), headers=exc.headers)


def create_app(model: TextureModel, limits: Limits | None = None) -> Starlette:
    """The studio over a loaded model; its worker and download folder live as long as the app runs."""
    limits = limits or Limits()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="gantlitz-studio-") as folder:
            app.state.studio = Studio(model, limits, Path(folder))
            try:
                yield
            finally:
                app.state.studio.worker.close()
                app.state.studio.downloads.close()

    routes = [
        Route("/", index), Route("/static/{name:path}", static), Route("/api/info", info),
        Route("/api/thumb", thumb), Route("/api/tile", tile), Route("/api/preview.glb", preview),
        Route("/api/downloads", start_download, methods=["POST"]),
        Route("/api/downloads/{id}", download_status, methods=["GET", "DELETE"]),
        Route("/api/downloads/{id}/file", download_file),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        ParamError: _param_error, Busy: _busy, UnknownDownload: _unknown_download, HTTPException: _http_error})
    app.add_middleware(_Bounds)
    return app
