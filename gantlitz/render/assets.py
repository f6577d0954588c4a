"""The inputs of a render: a set of texture maps (`Maps`, read from a folder of map files) and a UV-mapped
triangle mesh (`Mesh`, with the tangent frame its UVs give). Conventions: `gantlitz.render`."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import GantlitzError
from ..maps import decode_normals, encode_normals
from ..resample import fit

log = logging.getLogger(__name__)

DEFAULT_MESH = Path(__file__).resolve().parent.parent / "data" / "head" / "LeePerrySmith.glb"
"""The Lee Perry-Smith head scan (CC BY 3.0, Infinite-Realities), shipped with the package."""

_LPS_SHA256_PREFIX = "402b8a8ac9f03232"
"""SHA-256 of LeePerrySmith.glb as distributed with three.js: its v coordinate needs flipping."""

MAP_NAMES = ("albedo", "specular", "normal", "displacement")
_SUFFIX_PRIORITY = (".exr", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
DEFAULT_SPECULAR = 0.25
"""Specular map value used when a set of maps has no specular map."""


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
    from ..imageio import ImageError, read_image

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
    only the Lee Perry-Smith scan, whose UVs are stored upside down for glTF (see `gantlitz.render`).
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
