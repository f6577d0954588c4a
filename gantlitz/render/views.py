"""Views: the mesh seen from several head rotations, the maps relit in UV space, and the `render`
command's files (`map_sets`, `write_previews`)."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import UsageError
from ..outputs import refuse_existing, save_image, writing
from .assets import Maps, Mesh, RenderError, find_map_sets, find_maps, load_maps, load_mesh
from .gl import FRAGMENT_SHADER, VERTEX_MESH, VERTEX_UV, Material, Shading, gl_context, read_fbo, set_shading

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# Views


_VIEW_NAMES = {0.0: "front", 40.0: "three-quarter", 90.0: "profile", -40.0: "three-quarter left",
               -90.0: "profile left", 180.0: "back"}


def view_yaws(views: int) -> list[float]:
    """Head rotations (degrees about the vertical axis) for ``views`` views: front, three-quarter,
    profile, the other three-quarter, the other profile, back; more than 6 views: an even turntable."""
    if views < 1:
        raise RenderError(f"need at least one view, got {views}")
    order = [0.0, 40.0, 90.0, -40.0, -90.0, 180.0]
    if views <= len(order):
        return order[:views]
    return [float(x) for x in np.linspace(0.0, 360.0, views, endpoint=False)]


def _view_name(yaw: float) -> str:
    return _VIEW_NAMES.get(float(yaw), f"yaw {yaw:g}°")


def _perspective(fov_y: float, aspect: float, near: float, far: float) -> np.ndarray:
    f = 1.0 / math.tan(math.radians(fov_y) / 2.0)
    m = np.zeros((4, 4), np.float64)
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2.0 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    y, p = math.radians(yaw), math.radians(pitch)
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return rx @ ry


def _gl(m: np.ndarray) -> bytes:
    return np.ascontiguousarray(m.T, dtype=np.float32).tobytes()  # column-major for GLSL


def _label(image: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    size = max(12, image.shape[0] // 36)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.text((size // 2, size // 3), text, fill=(215, 215, 215), font=font)
    return np.asarray(im)


def render_views(
    maps: Maps,
    mesh: Mesh | str | os.PathLike | None = None,
    *,
    views: int | Sequence[float] = 3,
    size: int = 768,
    shading: Shading | None = None,
    pitch: float = 0.0,
    fov: float = 24.0,
    zoom: float = 1.1,
    background: tuple[float, float, float] = (0.16, 0.16, 0.17),
    samples: int = 8,
    labels: bool = False,
    max_texture: int | None = 2048,
    **shading_fields: Any,
) -> np.ndarray:
    """Render ``maps`` on ``mesh`` (a :class:`Mesh`, a path, or None for the bundled head) from several
    views, tiled left to right: uint8 array of shape (size, size * n_views, 3).

    ``views`` is a count (see :func:`view_yaws`) or explicit yaws in degrees; ``shading`` (a
    :class:`Shading`, whose fields may also be given as keywords: ``light=``, ``roughness=``, ...) sets
    the light and material. ``max_texture`` down-samples maps with a longer side first (None: upload as
    they are). The mesh's up axis is +y, its front +z.
    """
    if not isinstance(mesh, Mesh):
        mesh = load_mesh(mesh)
    yaws = view_yaws(views) if isinstance(views, int) else [float(y) for y in views]
    if size < 8:
        raise RenderError(f"size must be at least 8 pixels, got {size}")
    shading = Shading.of(shading, shading_fields)
    ctx = gl_context()
    program = ctx.program(vertex_shader=VERTEX_MESH, fragment_shader=FRAGMENT_SHADER)
    vertices = np.concatenate([mesh.positions - mesh.center, mesh.normals, mesh.tangents, mesh.uvs], axis=1)
    vbo = ctx.buffer(np.ascontiguousarray(vertices, np.float32).tobytes())
    ibo = ctx.buffer(np.ascontiguousarray(mesh.faces, np.uint32).tobytes())
    vao = ctx.vertex_array(program, [(vbo, "3f 3f 4f 2f", "in_pos", "in_nrm", "in_tan", "in_uv")],
                           index_buffer=ibo, index_element_size=4)
    material = Material(ctx, maps.resized(max_texture))
    radius = mesh.radius
    distance = radius / math.sin(math.radians(fov) / 2.0) / max(zoom, 1e-3)
    eye = np.array([0.0, 0.0, distance])
    view = np.eye(4)
    view[2, 3] = -distance
    proj = _perspective(fov, 1.0, max(distance - 2.0 * radius, 1e-3), distance + 2.0 * radius)
    tiles = []
    try:
        program["u_view_proj"].write(_gl(proj @ view))
        program["u_eye"].value = tuple(eye)
        program["u_orthographic"].value = False
        set_shading(program, shading)
        material.bind(program)
        import moderngl

        for yaw in yaws:
            model = np.eye(4)
            model[:3, :3] = _rotation(yaw, pitch)
            program["u_model"].write(_gl(model))

            def draw(fbo):
                fbo.clear(*background, 1.0)
                ctx.enable(moderngl.DEPTH_TEST)
                ctx.disable(moderngl.CULL_FACE)
                vao.render(moderngl.TRIANGLES)
                ctx.disable(moderngl.DEPTH_TEST)

            tile = read_fbo(ctx, (size, size), samples, draw)
            tiles.append(_label(tile, _view_name(yaw)) if labels else tile)
    finally:
        material.release()
        vao.release()
        vbo.release()
        ibo.release()
        program.release()
    return np.concatenate(tiles, axis=1)


def render_uv(
    maps: Maps,
    *,
    size: int | None = None,
    shading: Shading | None = None,
    max_texture: int | None = 2048,
    samples: int = 1,
    **shading_fields: Any,
) -> np.ndarray:
    """Relight the maps in UV space (no mesh): every texel is a surface facing the camera, shaded with its
    normal, albedo and specular under the same rig as :func:`render_views` (view along +z,
    orthographic). Works for any layout and aspect ratio. Returns uint8 (H, W, 3) with the maps' aspect
    ratio and a long side of ``size`` (default: the long side of the uploaded maps, at most
    ``max_texture``)."""
    maps = maps.resized(max_texture)
    long_side = size or max(maps.height, maps.width)
    if long_side < 1:
        raise RenderError(f"size must be positive, got {size}")
    scale = long_side / max(maps.height, maps.width)
    width, height = max(1, round(maps.width * scale)), max(1, round(maps.height * scale))
    shading = Shading.of(shading, shading_fields)
    # the rim light comes from behind the texture plane: it never reaches a camera-facing texel
    ctx = gl_context()
    program = ctx.program(vertex_shader=VERTEX_UV, fragment_shader=FRAGMENT_SHADER)
    quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32)
    vbo = ctx.buffer(quad.tobytes())
    vao = ctx.vertex_array(program, [(vbo, "2f", "in_xy")])
    material = Material(ctx, maps)
    try:
        program["u_eye"].value = (0.0, 0.0, 1.0)
        program["u_orthographic"].value = True
        set_shading(program, shading)
        material.bind(program)
        import moderngl

        def draw(fbo):
            fbo.clear(0.0, 0.0, 0.0, 1.0)
            vao.render(moderngl.TRIANGLE_STRIP)

        return read_fbo(ctx, (width, height), samples, draw)
    finally:
        material.release()
        vao.release()
        vbo.release()
        program.release()


def save_png(path: str | os.PathLike, image: np.ndarray, *, overwrite: bool = True) -> Path:
    """Write a uint8 H x W x 3 image as an 8-bit PNG (atomically: a temporary file, then rename)."""
    from PIL import Image

    return save_image(Image.fromarray(np.ascontiguousarray(image)), path, overwrite=overwrite)


def tile_rows(rows: Iterable[np.ndarray], gap: int = 0) -> np.ndarray:
    """Stack equally wide uint8 images vertically (one row per set of maps)."""
    rows = list(rows)
    if gap and len(rows) > 1:
        spacer = np.zeros((gap, rows[0].shape[1], 3), np.uint8)
        rows = [x for r in rows for x in (r, spacer)][:-1]
    return np.concatenate(rows, axis=0)


# ----------------------------------------------------------------------------------------------------
# The `render` command's files


MapSet = tuple[str, dict[str, Any]]


def map_sets(source: Path | None, albedo: Path | None = None, specular: Path | None = None,
             normal: Path | None = None) -> list[MapSet]:
    """[(name, `load_maps` keywords)] for each set of maps a command names: the sets under ``source``
    (one, or one per ``seed*/`` folder), or the explicit files (which override a single set's)."""
    if source is None:
        if albedo is None:
            raise UsageError("give a directory of maps (SOURCE) or at least --albedo FILE")
        return [("", {"albedo": albedo, "specular": specular, "normal": normal})]
    dirs = find_map_sets(source)
    if len(dirs) > 1 and (albedo or specular or normal) is not None:
        raise UsageError(f"--albedo/--specular/--normal apply to one set of maps; {source} holds {len(dirs)}")
    return [(d.name if d != source else "", {"source": d, "albedo": albedo, "specular": specular, "normal": normal})
            for d in dirs]


def map_inputs(sets: list[MapSet], mesh: str | os.PathLike | None = None) -> list[Path]:
    """Every file a command reads for `sets` (and `mesh`): never one of its outputs."""
    files = [Path(mesh)] if mesh is not None else []
    for _, kw in sets:
        files += list(find_maps(kw["source"]).values()) if kw.get("source") is not None else []
        files += [Path(kw[k]) for k in ("albedo", "specular", "normal") if kw.get(k) is not None]
    return files


def write_previews(
    sets: list[MapSet], out: Path, *, mode: str = "both", views: int = 3, size: int = 768, uv_size: int | None = None,
    shading: Shading | None = None, max_texture: int | None = 2048, labels: bool = True, zoom: float = 1.1,
    mesh: str | os.PathLike | None = None, flip_v: bool = False, convention: str = "opengl",
    overwrite: bool = False, echo: Any = log.info,
) -> list[Path]:
    """`out` (mesh views, one row per set) and/or `out_uv[_name].png` (UV-space relit views); every output
    is checked before anything is rendered."""
    uv_paths = []
    if mode in ("uv", "both"):
        stem = out.with_suffix("") if mode == "uv" else out.with_name(out.stem + "_uv")
        uv_paths = [Path(f"{stem}{'_' + name if len(sets) > 1 else ''}.png") for name, _ in sets]
    mesh_paths = [out] if mode != "uv" else []
    with writing("render"):
        refuse_existing(mesh_paths + uv_paths, overwrite, inputs=map_inputs(sets, mesh))
        _render_all(sets, mesh_paths, uv_paths, views=views, size=size, uv_size=uv_size, shading=shading,
                    max_texture=max_texture, labels=labels, zoom=zoom, mesh=mesh, flip_v=flip_v,
                    convention=convention, overwrite=overwrite, echo=echo)
    return mesh_paths + uv_paths


def _render_all(sets: list[MapSet], mesh_paths: list[Path], uv_paths: list[Path], *, views: int, size: int,
                uv_size: int | None, shading: Shading | None, max_texture: int | None, labels: bool, zoom: float,
                mesh: str | os.PathLike | None, flip_v: bool, convention: str, overwrite: bool, echo: Any) -> None:
    """`write_previews` after its pre-flight: the mesh views, then the UV views."""
    loaded = [load_maps(**kw, max_size=max_texture, convention=convention) for _, kw in sets]
    if mesh_paths:
        the_mesh = load_mesh(mesh, flip_v=flip_v)
        t0 = time.perf_counter()
        rows = [render_views(maps, the_mesh, views=views, size=size, labels=labels, zoom=zoom, shading=shading,
                             max_texture=max_texture) for maps in loaded]
        per_view = (time.perf_counter() - t0) / max(len(rows) * views, 1)
        image = tile_rows(rows)
        save_png(mesh_paths[0], image, overwrite=overwrite)
        echo(f"wrote {mesh_paths[0]} ({image.shape[1]}x{image.shape[0]}, {len(rows) * views} views, "
             f"{per_view:.2f} s/view)")
    for maps, path in zip(loaded, uv_paths):
        image = render_uv(maps, size=uv_size, shading=shading, max_texture=max_texture)
        save_png(path, image, overwrite=overwrite)
        echo(f"wrote {path} ({image.shape[1]}x{image.shape[0]}, UV-space relit)")
