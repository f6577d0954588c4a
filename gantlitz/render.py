"""Lit previews of texture maps: on a head mesh (several views) and in UV space (any layout).

Rendering runs on moderngl with a standalone EGL context, so it needs neither a GPU nor a display: on a
machine without a GPU Mesa's llvmpipe rasterises on the CPU (Debian packages ``libgl1 libegl1 libegl-mesa0
libgl1-mesa-dri``).

Shading (all in linear light, then an ACES-fitted filmic curve and sRGB encoding):

- albedo: sRGB-encoded on disk, decoded to linear before upload;
- normals: tangent-space map encoded ``n * 0.5 + 0.5``, OpenGL convention (green = +v, image up) unless
  ``convention="directx"``; the tangent frame comes from the mesh's UVs (per-triangle accumulation,
  Gram-Schmidt, handedness in ``tangent.w``, the same frame :mod:`gantlitz.export` writes);
- Lambert diffuse plus a GGX specular lobe (Smith height-correlated visibility, Schlick Fresnel) whose
  normal-incidence reflectance is ``F0 = specular_map * specular_scale``;
- a key, a fill and a rim light (directional, fixed relative to the camera, as in a turntable studio)
  plus a little hemispherical ambient.

UV convention: mesh UVs are handled as OpenGL UVs (v = 0 at the bottom row of the image), which is what
trimesh gives for both OBJ and glTF files. The bundled Lee Perry-Smith scan stores its TEXCOORD_0 with
v upside down with respect to the glTF rule (it was made for three.js' ``TextureLoader``), so its v is
flipped on load; ``flip_v`` overrides the automatic choice for other meshes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import GantlitzError, UsageError
from .maps import decode_normals, encode_normals, srgb_to_linear
from .outputs import refuse_existing, save_image, writing
from .resample import fit

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MESH",
    "MAP_NAMES",
    "RenderError",
    "MeshError",
    "MapsError",
    "Maps",
    "Mesh",
    "Light",
    "Lighting",
    "default_lighting",
    "Shading",
    "map_sets",
    "write_previews",
    "find_maps",
    "find_map_sets",
    "load_maps",
    "load_mesh",
    "compute_tangents",
    "view_yaws",
    "render_views",
    "render_uv",
    "save_png",
    "tile_rows",
    "gl_context",
]

DEFAULT_MESH = Path(__file__).resolve().parent / "data" / "head" / "LeePerrySmith.glb"
"""The Lee Perry-Smith head scan (CC BY 3.0, Infinite-Realities), shipped with the package."""

_LPS_SHA256_PREFIX = "402b8a8ac9f03232"
"""SHA-256 of LeePerrySmith.glb as distributed with three.js: its v coordinate needs flipping."""

MAP_NAMES = ("albedo", "specular", "normal", "displacement")
_SUFFIX_PRIORITY = (".exr", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
DEFAULT_SPECULAR = 0.25
"""Specular map value used when a set of maps has no specular map."""

APT_PACKAGES = "libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri"


class RenderError(GantlitzError, RuntimeError):
    """Rendering can not proceed; the message says what is missing and how to fix it."""


class MeshError(RenderError):
    """A mesh file is missing, unreadable, or has no texture coordinates."""


class MapsError(RenderError):
    """Texture maps are missing or have the wrong shape."""


# ----------------------------------------------------------------------------------------------------
# Maps


@dataclass
class Maps:
    """A set of texture maps in one UV layout, float32 H x W x C in [0, 1] (the on-disk value space).

    ``albedo`` (3 channels, sRGB-encoded), ``specular`` (1 channel) and ``normal`` (3 channels, tangent
    space encoded n * 0.5 + 0.5) share a layout but not necessarily a resolution. ``specular`` and
    ``normal`` may be None (a constant specular / the geometric normal is used then).
    """

    albedo: np.ndarray
    specular: np.ndarray | None = None
    normal: np.ndarray | None = None
    convention: str = "opengl"
    name: str = ""

    def __post_init__(self) -> None:
        self.albedo = _channels(self.albedo, 3, "albedo")
        if self.specular is not None:
            self.specular = _channels(self.specular, 1, "specular")
        if self.normal is not None:
            self.normal = _channels(self.normal, 3, "normal")
        if self.convention not in ("opengl", "directx"):
            raise MapsError(f"normal map convention must be 'opengl' or 'directx', not {self.convention!r}")

    @property
    def height(self) -> int:
        return int(self.albedo.shape[0])

    @property
    def width(self) -> int:
        return int(self.albedo.shape[1])

    def resized(self, max_size: int | None) -> "Maps":
        """A copy whose maps have a long side of at most ``max_size`` (area filter); None keeps them."""
        if max_size is None:
            return self
        return replace(
            self,
            albedo=fit(self.albedo, max_size),
            specular=None if self.specular is None else fit(self.specular, max_size),
            normal=None if self.normal is None else _renormalise(fit(self.normal, max_size)),
        )


def _channels(array: np.ndarray, channels: int, what: str) -> np.ndarray:
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise MapsError(f"{what} map must be an H x W x C array, got shape {a.shape}")
    c = a.shape[2]
    if channels == 1:
        if c == 1:
            return np.ascontiguousarray(a)
        # a grey map stored as RGB(A): average the colour channels
        return np.ascontiguousarray(a[:, :, : min(c, 3)].mean(axis=2, keepdims=True))
    if c >= channels:
        return np.ascontiguousarray(a[:, :, :channels])
    if c == 1 and what == "albedo":
        return np.ascontiguousarray(np.repeat(a, 3, axis=2))
    raise MapsError(f"{what} map needs {channels} channels, got {c}")


def _renormalise(normal: np.ndarray) -> np.ndarray:
    """Re-normalise an encoded normal map after filtering (keeps n * 0.5 + 0.5 encoding)."""
    return encode_normals(decode_normals(normal))


def find_maps(directory: str | os.PathLike) -> dict[str, Path]:
    """The map files in ``directory``: ``{"albedo": path, ...}`` for ``albedo.*``, ``specular.*``,
    ``normal.*`` and ``displacement.*`` (EXR preferred over TIFF over PNG over JPEG)."""
    d = Path(directory)
    found: dict[str, Path] = {}
    for name in MAP_NAMES:
        for suffix in _SUFFIX_PRIORITY:
            for candidate in (d / f"{name}{suffix}", d / f"{name}{suffix.upper()}"):
                if candidate.is_file():
                    found[name] = candidate
                    break
            if name in found:
                break
    return found


def find_map_sets(root: str | os.PathLike) -> list[Path]:
    """Directories holding an ``albedo.*`` map: ``root`` itself, or its sub-directories (e.g. the
    ``seed0000/`` folders that ``gantlitz generate`` writes), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise MapsError(f"{root}: not a directory")
    if "albedo" in find_maps(root):
        return [root]
    sets = [p for p in sorted(root.iterdir()) if p.is_dir() and "albedo" in find_maps(p)]
    if not sets:
        raise MapsError(
            f"{root}: no albedo.* map (EXR, TIFF, PNG or JPEG) in it or in its sub-directories; "
            "expected albedo.*, specular.* and normal.* as written by `gantlitz generate`"
        )
    return sets


def _check_layouts(maps: Maps, paths: dict[str, Path]) -> None:
    """Maps of one UV layout may differ in resolution (said in a warning), never in aspect ratio."""
    ah, aw = maps.albedo.shape[:2]
    for key in ("specular", "normal"):
        arr = getattr(maps, key)
        if arr is None or arr.shape[:2] == (ah, aw):
            continue
        h, w = arr.shape[:2]
        if abs(w / h - aw / ah) > 0.01:
            raise MapsError(f"{paths[key]}: {key} map is {w}x{h}, the albedo {paths['albedo']} is {aw}x{ah}: "
                            "another aspect ratio, so not the same UV layout")
        log.warning("%s: %s map is %dx%d, the albedo %dx%d; the renderer samples each at its own resolution",
                    paths[key], key, w, h, aw, ah)


def load_maps(
    source: str | os.PathLike | None = None,
    *,
    albedo: str | os.PathLike | None = None,
    specular: str | os.PathLike | None = None,
    normal: str | os.PathLike | None = None,
    max_size: int | None = 2048,
    convention: str = "opengl",
) -> Maps:
    """Read a set of maps from a directory (``albedo.*``, ``specular.*``, ``normal.*``) and/or explicit
    files (which take precedence), down-sampled to a long side of ``max_size`` (None: full size)."""
    from .imageio import ImageError, read_image

    paths: dict[str, Path] = {}
    if source is not None:
        src = Path(source)
        if not src.exists():
            raise MapsError(f"{src}: no such file or directory")
        if not src.is_dir():
            raise MapsError(f"{src}: expected a directory of maps (albedo.*, specular.*, normal.*)")
        paths.update(find_maps(src))
    for key, value in (("albedo", albedo), ("specular", specular), ("normal", normal)):
        if value is not None:
            p = Path(value)
            if not p.is_file():
                raise MapsError(f"{p}: {key} map file not found")
            paths[key] = p
    if "albedo" not in paths:
        where = f" in {source}" if source is not None else ""
        raise MapsError(f"no albedo map{where}: give a directory with albedo.* or --albedo FILE")

    def read(key: str) -> np.ndarray | None:
        if key not in paths:
            return None
        try:
            a = read_image(paths[key])
        except ImageError as e:
            raise MapsError(str(e)) from e
        return fit(np.clip(a, 0.0, None), max_size) if max_size else a

    maps = Maps(
        albedo=np.clip(read("albedo"), 0.0, 1.0),
        specular=read("specular"),
        normal=read("normal"),
        convention=convention,
        name=str(source if source is not None else paths["albedo"].parent),
    )
    if maps.normal is not None:
        maps.normal = _renormalise(np.clip(maps.normal, 0.0, 1.0))
    _check_layouts(maps, paths)
    for key in ("specular", "normal"):
        if getattr(maps, key) is None:
            what = f"a constant specular of {DEFAULT_SPECULAR}" if key == "specular" else "the mesh normals"
            log.warning("%s: no %s map, shading with %s", maps.name, key, what)
    return maps


# ----------------------------------------------------------------------------------------------------
# Mesh


@dataclass
class Mesh:
    """A triangle mesh ready to render: float32 positions/normals (N, 3), OpenGL UVs (N, 2; v up),
    tangents (N, 4; w = handedness) and uint32 faces (F, 3)."""

    positions: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray
    tangents: np.ndarray
    faces: np.ndarray
    path: str = ""

    @property
    def center(self) -> np.ndarray:
        return (self.positions.min(0) + self.positions.max(0)) * 0.5

    @property
    def radius(self) -> float:
        return float(np.linalg.norm(self.positions - self.center, axis=1).max())


def _is_lee_perry_smith(path: Path) -> bool:
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return False
    return digest.startswith(_LPS_SHA256_PREFIX)


def load_mesh(path: str | os.PathLike | None = None, *, flip_v: bool | None = None) -> Mesh:
    """Load a textured triangle mesh (glTF/GLB, OBJ, anything trimesh reads with UVs).

    ``path=None`` loads the bundled Lee Perry-Smith head. ``flip_v`` flips v (v -> 1 - v); None flips
    only the Lee Perry-Smith scan, whose UVs are stored upside down for glTF (see the module docstring).
    Raises :class:`MeshError` naming the file when it is missing, unreadable or has no UVs.
    """
    import trimesh

    p = Path(path) if path is not None else DEFAULT_MESH
    if not p.is_file():
        if path is None:
            raise MeshError(f"the bundled head mesh is missing ({p}); reinstall gantlitz or pass --mesh")
        raise MeshError(f"{p}: mesh file not found")
    try:
        loaded = trimesh.load(str(p), process=False, force="scene")
    except Exception as e:  # trimesh raises many kinds of errors on bad files
        raise MeshError(f"{p}: can not read the mesh ({type(e).__name__}: {e})") from e
    parts = []
    for node in loaded.graph.nodes_geometry:
        transform, geometry_name = loaded.graph[node]
        geom = loaded.geometry[geometry_name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        uv = getattr(geom.visual, "uv", None)
        if uv is None or len(uv) != len(geom.vertices):
            raise MeshError(
                f"{p}: mesh {geometry_name!r} has no texture coordinates (TEXCOORD_0 / vt); "
                "a UV-mapped mesh is needed to put texture maps on it"
            )
        g = geom.copy()
        normals = np.asarray(g.vertex_normals, dtype=np.float64)  # from the file when present
        g.apply_transform(transform)
        rot = np.asarray(transform, dtype=np.float64)[:3, :3]
        normals = normals @ np.linalg.inv(rot)  # inverse-transpose, as row vectors
        parts.append((np.asarray(g.vertices), normals, np.asarray(uv, dtype=np.float64), np.asarray(g.faces)))
    if not parts:
        raise MeshError(f"{p}: no triangle mesh in the file")
    positions, normals, uvs, faces = [], [], [], []
    offset = 0
    for v, n, uv, f in parts:
        positions.append(v)
        normals.append(n)
        uvs.append(uv)
        faces.append(f + offset)
        offset += len(v)
    pos = np.concatenate(positions).astype(np.float32)
    nrm = np.concatenate(normals)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    uv = np.concatenate(uvs).astype(np.float32)
    fac = np.concatenate(faces).astype(np.uint32)
    if flip_v is None:
        flip_v = _is_lee_perry_smith(p)
    if flip_v:
        uv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)
    tangents = compute_tangents(pos, nrm.astype(np.float32), uv, fac)
    return Mesh(pos, nrm.astype(np.float32), uv, tangents, fac, str(p))


def compute_tangents(positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-vertex tangents (N, 4) from UVs: per-triangle dP/du, dP/dv accumulated at the vertices,
    orthogonalised against the normal; w = +1 / -1 is the handedness, bitangent = w * cross(n, t).
    UVs are OpenGL UVs (v up), so the bitangent points towards the top of the image (glTF's rule)."""
    p = positions.astype(np.float64)
    uv = uvs.astype(np.float64)
    f = faces.astype(np.int64)
    e1 = p[f[:, 1]] - p[f[:, 0]]
    e2 = p[f[:, 2]] - p[f[:, 0]]
    d1 = uv[f[:, 1]] - uv[f[:, 0]]
    d2 = uv[f[:, 2]] - uv[f[:, 0]]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-20
    r = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)[:, None]
    t_face = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    b_face = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    # weight each face by its area: normalise the per-face vectors, then scale by the area
    area = 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1, keepdims=True)
    t_face = t_face / np.maximum(np.linalg.norm(t_face, axis=1, keepdims=True), 1e-20) * area
    b_face = b_face / np.maximum(np.linalg.norm(b_face, axis=1, keepdims=True), 1e-20) * area
    t = np.zeros_like(p)
    b = np.zeros_like(p)
    for k in range(3):
        np.add.at(t, f[:, k], t_face)
        np.add.at(b, f[:, k], b_face)
    n = normals.astype(np.float64)
    t = t - n * np.sum(n * t, axis=1, keepdims=True)
    length = np.linalg.norm(t, axis=1, keepdims=True)
    # vertices without a usable UV gradient get any tangent perpendicular to the normal
    fallback = np.cross(n, np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
    fallback /= np.maximum(np.linalg.norm(fallback, axis=1, keepdims=True), 1e-20)
    t = np.where(length > 1e-12, t / np.maximum(length, 1e-20), fallback)
    w = np.where(np.sum(np.cross(n, t) * b, axis=1) < 0.0, -1.0, 1.0)
    return np.concatenate([t, w[:, None]], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Lighting


@dataclass(frozen=True)
class Light:
    """A directional light. ``azimuth`` / ``elevation`` in degrees, relative to the camera: azimuth 0
    is from the camera, +90 from the viewer's right; elevation +90 is from straight above."""

    azimuth: float
    elevation: float
    intensity: float = 1.0
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def direction(self) -> np.ndarray:
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        return np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)], np.float32)


@dataclass(frozen=True)
class Lighting:
    """Key, fill and rim lights plus a hemispherical ambient term (sky above, ground below)."""

    lights: tuple[Light, ...]
    ambient_sky: tuple[float, float, float] = (0.10, 0.11, 0.13)
    ambient_ground: tuple[float, float, float] = (0.05, 0.045, 0.04)


def default_lighting(key: tuple[float, float] = (35.0, 30.0), intensity: float = 1.1) -> Lighting:
    """The studio rig: a warm key at ``key`` = (azimuth, elevation), a cool fill opposite it and low,
    and a rim light from behind on the key's side."""
    az, el = key
    side = 1.0 if az >= 0 else -1.0
    return Lighting(
        lights=(
            Light(az, el, intensity, (1.0, 0.97, 0.92)),
            Light(-side * 55.0, 5.0, 0.32 * intensity, (0.85, 0.92, 1.0)),
            Light(side * 150.0, 35.0, 0.55 * intensity, (1.0, 1.0, 1.0)),
        )
    )


# ----------------------------------------------------------------------------------------------------
# OpenGL


_CONTEXT = None


def gl_context():
    """A process-wide standalone moderngl context on EGL (headless; Mesa llvmpipe without a GPU)."""
    global _CONTEXT
    if _CONTEXT is None:
        try:
            import moderngl
        except ImportError as e:  # pragma: no cover - a dependency
            raise RenderError("moderngl is not installed: pip install moderngl") from e
        try:
            _CONTEXT = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as e:
            raise RenderError(
                f"can not create a headless OpenGL context through EGL ({type(e).__name__}: {e}). "
                f"On Debian/Ubuntu install the EGL and Mesa drivers: apt-get install {APT_PACKAGES}"
            ) from e
        log.debug("OpenGL: %s, %s", _CONTEXT.info.get("GL_RENDERER"), _CONTEXT.info.get("GL_VERSION"))
    return _CONTEXT


_VERTEX_MESH = """
#version 330
uniform mat4 u_model;
uniform mat4 u_view_proj;
in vec3 in_pos;
in vec3 in_nrm;
in vec4 in_tan;
in vec2 in_uv;
out vec3 v_pos;
out vec3 v_nrm;
out vec4 v_tan;
out vec2 v_uv;
void main() {
    vec4 world = u_model * vec4(in_pos, 1.0);
    mat3 rot = mat3(u_model);
    v_pos = world.xyz;
    v_nrm = rot * in_nrm;
    v_tan = vec4(rot * in_tan.xyz, in_tan.w);
    v_uv = in_uv;
    gl_Position = u_view_proj * world;
}
"""

_VERTEX_UV = """
#version 330
in vec2 in_xy;
out vec3 v_pos;
out vec3 v_nrm;
out vec4 v_tan;
out vec2 v_uv;
void main() {
    v_uv = in_xy * 0.5 + 0.5;
    v_pos = vec3(in_xy, 0.0);
    v_nrm = vec3(0.0, 0.0, 1.0);
    v_tan = vec4(1.0, 0.0, 0.0, 1.0);
    gl_Position = vec4(in_xy, 0.0, 1.0);
}
"""

_FRAGMENT = """
#version 330
const float PI = 3.14159265358979;
const int MAX_LIGHTS = 4;
uniform sampler2D u_albedo;
uniform sampler2D u_specular;
uniform sampler2D u_normal;
uniform bool u_use_normal_map;
uniform float u_normal_y;        // +1 OpenGL, -1 DirectX green channel
uniform float u_normal_strength;
uniform vec3 u_eye;              // camera position (perspective)
uniform bool u_orthographic;     // view direction is +z everywhere (UV view)
uniform int u_num_lights;
uniform vec3 u_light_dir[MAX_LIGHTS];    // towards the light, unit
uniform vec3 u_light_color[MAX_LIGHTS];  // colour * intensity
uniform vec3 u_ambient_sky;
uniform vec3 u_ambient_ground;
uniform float u_roughness;
uniform float u_specular_scale;  // F0 = specular map * scale
uniform float u_exposure;
in vec3 v_pos;
in vec3 v_nrm;
in vec4 v_tan;
in vec2 v_uv;
out vec4 f_color;

vec3 aces(vec3 x) {
    return clamp((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0);
}
vec3 srgb_encode(vec3 c) {
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c));
}

void main() {
    vec3 n_geo = normalize(v_nrm);
    vec3 v = u_orthographic ? vec3(0.0, 0.0, 1.0) : normalize(u_eye - v_pos);
    if (!gl_FrontFacing && !u_orthographic) n_geo = -n_geo;
    vec3 n = n_geo;
    if (u_use_normal_map) {
        vec3 t = v_tan.xyz - n_geo * dot(n_geo, v_tan.xyz);
        float tl = length(t);
        if (tl > 1e-6) {
            t /= tl;
            vec3 b = cross(n_geo, t) * (v_tan.w < 0.0 ? -1.0 : 1.0);
            vec3 m = texture(u_normal, v_uv).xyz * 2.0 - 1.0;
            m.y *= u_normal_y;
            m.xy *= u_normal_strength;
            if (dot(m, m) < 1e-6) m = vec3(0.0, 0.0, 1.0);
            m = normalize(m);
            n = normalize(t * m.x + b * m.y + n_geo * m.z);
        }
    }
    vec3 albedo = texture(u_albedo, v_uv).rgb;          // linear (decoded before upload)
    float spec = texture(u_specular, v_uv).r;
    vec3 f0 = vec3(clamp(spec * u_specular_scale, 0.0, 1.0));
    float a = max(u_roughness * u_roughness, 2e-3);
    float a2 = a * a;
    float nv = max(dot(n, v), 1e-4);
    vec3 color = albedo * mix(u_ambient_ground, u_ambient_sky, n.y * 0.5 + 0.5);
    for (int i = 0; i < MAX_LIGHTS; ++i) {
        if (i >= u_num_lights) break;
        vec3 l = u_light_dir[i];
        float nl = dot(n, l);
        // self-shadowing of the geometric surface: no light from below the macro surface
        float horizon = clamp(dot(n_geo, l) * 4.0 + 0.5, 0.0, 1.0);
        if (nl <= 0.0) continue;
        vec3 h = normalize(l + v);
        float nh = max(dot(n, h), 0.0);
        float vh = max(dot(v, h), 0.0);
        float d = a2 / (PI * pow(nh * nh * (a2 - 1.0) + 1.0, 2.0));
        float vis = 0.5 / (nl * sqrt(nv * nv * (1.0 - a2) + a2) + nv * sqrt(nl * nl * (1.0 - a2) + a2));
        vec3 f = f0 + (1.0 - f0) * pow(1.0 - vh, 5.0);
        vec3 specular = d * vis * f;
        vec3 diffuse = albedo / PI * (1.0 - f);
        // light colours are irradiance / PI, so a white Lambertian surface facing a unit light is 1
        color += (diffuse + specular) * PI * u_light_color[i] * nl * horizon;
    }
    f_color = vec4(srgb_encode(aces(color * u_exposure)), 1.0);
}
"""


def _texture(ctx, array: np.ndarray):
    """Upload an H x W x C float array as a mipmapped half-float texture, t = 0 at the image's bottom row
    (so OpenGL UVs sample it directly)."""
    a = np.ascontiguousarray(np.flipud(array).astype(np.float16))
    h, w, c = a.shape
    tex = ctx.texture((w, h), c, a.tobytes(), dtype="f2", alignment=1)
    tex.build_mipmaps()
    import moderngl

    tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
    tex.anisotropy = 8.0
    tex.repeat_x = False
    tex.repeat_y = False
    return tex


class _Material:
    """Textures of one set of maps on the GPU, bound to units 0, 1, 2."""

    def __init__(self, ctx, maps: Maps):
        self.textures = [
            _texture(ctx, srgb_to_linear(maps.albedo)),
            _texture(ctx, maps.specular if maps.specular is not None else np.full((1, 1, 1), DEFAULT_SPECULAR)),
            _texture(ctx, maps.normal if maps.normal is not None else np.array([[[0.5, 0.5, 1.0]]])),
        ]
        self.has_normal = maps.normal is not None
        self.normal_y = 1.0 if maps.convention == "opengl" else -1.0

    def bind(self, program) -> None:
        for unit, (name, tex) in enumerate(zip(("u_albedo", "u_specular", "u_normal"), self.textures)):
            tex.use(unit)
            program[name].value = unit
        program["u_use_normal_map"].value = self.has_normal
        program["u_normal_y"].value = self.normal_y

    def release(self) -> None:
        for tex in self.textures:
            tex.release()


@dataclass(frozen=True)
class Shading:
    """How maps are lit and shaded, the same for the mesh views and the UV-space view.

    ``light`` is the key light (azimuth, elevation) in degrees relative to the camera; ``lighting``
    replaces the whole rig. ``specular_scale`` maps the specular map to normal-incidence reflectance F0
    (0.25 * 0.2 = 0.05 for a typical skin value); ``roughness`` is the GGX (perceptual) roughness.
    """

    light: tuple[float, float] = (35.0, 30.0)
    lighting: Lighting | None = None
    roughness: float = 0.5
    specular_scale: float = 0.2
    exposure: float = 1.0
    normal_strength: float = 1.0

    def __post_init__(self) -> None:
        problems = [f"{name} {value} must be a finite number" for name, value in
                    (("roughness", self.roughness), ("specular scale", self.specular_scale),
                     ("exposure", self.exposure), ("normal strength", self.normal_strength),
                     *(("light angle", a) for a in self.light)) if not math.isfinite(value)]
        if not 0.0 <= self.roughness <= 1.0:
            problems.append(f"roughness {self.roughness} must lie in [0, 1]")
        if self.specular_scale < 0 or self.exposure <= 0:
            problems.append(f"need specular scale >= 0 and exposure > 0, got {self.specular_scale}, {self.exposure}")
        if problems:
            raise RenderError("; ".join(problems))

    @classmethod
    def of(cls, shading: "Shading | None", fields: Mapping[str, Any]) -> "Shading":
        """`shading` (default: `Shading()`) with the given fields replaced (the renderers' keyword shortcuts)."""
        try:
            return replace(shading or cls(), **fields)
        except TypeError as exc:
            raise TypeError(f"unknown shading setting: {exc}") from None

    def rig(self) -> Lighting:
        return self.lighting or default_lighting(self.light)


def _set_shading(program, shading: Shading) -> None:
    lighting = shading.rig()
    lights = lighting.lights[:4]
    dirs = np.zeros((4, 3), np.float32)
    cols = np.zeros((4, 3), np.float32)
    for i, light in enumerate(lights):
        dirs[i] = light.direction()
        cols[i] = np.asarray(light.color, np.float32) * light.intensity
    program["u_num_lights"].value = len(lights)
    program["u_light_dir"].write(dirs.tobytes())
    program["u_light_color"].write(cols.tobytes())
    program["u_ambient_sky"].value = tuple(lighting.ambient_sky)
    program["u_ambient_ground"].value = tuple(lighting.ambient_ground)
    program["u_roughness"].value = float(shading.roughness)
    program["u_specular_scale"].value = float(shading.specular_scale)
    program["u_exposure"].value = float(shading.exposure)
    program["u_normal_strength"].value = float(shading.normal_strength)


def _read_fbo(ctx, size: tuple[int, int], samples: int, draw) -> np.ndarray:
    """Render with ``draw()`` into an MSAA framebuffer of ``size`` = (width, height), resolve, read back
    as uint8 H x W x 3 (top row first)."""
    w, h = size
    samples = min(samples, ctx.max_samples) if samples > 1 else 0
    color = ctx.renderbuffer((w, h), 4, samples=samples)
    depth = ctx.depth_renderbuffer((w, h), samples=samples)
    fbo = ctx.framebuffer(color_attachments=[color], depth_attachment=depth)
    resolved_rb = out_fbo = None
    try:
        fbo.use()
        ctx.viewport = (0, 0, w, h)
        draw(fbo)
        if samples:
            resolved_rb = ctx.renderbuffer((w, h), 4)
            out_fbo = ctx.framebuffer(color_attachments=[resolved_rb])
            ctx.copy_framebuffer(out_fbo, fbo)
            src = out_fbo
        else:
            src = fbo
        data = src.read(components=3, alignment=1)
    finally:
        for obj in (fbo, color, depth, out_fbo, resolved_rb):
            if obj is not None:
                obj.release()
    return np.flipud(np.frombuffer(data, np.uint8).reshape(h, w, 3)).copy()


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
    program = ctx.program(vertex_shader=_VERTEX_MESH, fragment_shader=_FRAGMENT)
    vertices = np.concatenate([mesh.positions - mesh.center, mesh.normals, mesh.tangents, mesh.uvs], axis=1)
    vbo = ctx.buffer(np.ascontiguousarray(vertices, np.float32).tobytes())
    ibo = ctx.buffer(np.ascontiguousarray(mesh.faces, np.uint32).tobytes())
    vao = ctx.vertex_array(program, [(vbo, "3f 3f 4f 2f", "in_pos", "in_nrm", "in_tan", "in_uv")],
                           index_buffer=ibo, index_element_size=4)
    material = _Material(ctx, maps.resized(max_texture))
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
        _set_shading(program, shading)
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

            tile = _read_fbo(ctx, (size, size), samples, draw)
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
    program = ctx.program(vertex_shader=_VERTEX_UV, fragment_shader=_FRAGMENT)
    quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32)
    vbo = ctx.buffer(quad.tobytes())
    vao = ctx.vertex_array(program, [(vbo, "2f", "in_xy")])
    material = _Material(ctx, maps)
    try:
        program["u_eye"].value = (0.0, 0.0, 1.0)
        program["u_orthographic"].value = True
        _set_shading(program, shading)
        material.bind(program)
        import moderngl

        def draw(fbo):
            fbo.clear(0.0, 0.0, 0.0, 1.0)
            vao.render(moderngl.TRIANGLE_STRIP)

        return _read_fbo(ctx, (width, height), samples, draw)
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
