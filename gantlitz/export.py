"""Export generated maps on a head mesh as a glTF 2.0 binary (.glb) with a PBR material.

The file holds one mesh (POSITION, NORMAL, TANGENT, TEXCOORD_0, indices) and one material:

- ``pbrMetallicRoughness.baseColorTexture``: the albedo, 8-bit sRGB PNG;
- ``normalTexture``: the tangent-space normal map, 8-bit PNG, OpenGL convention (glTF's: green = up);
  the TANGENT attribute is the frame :mod:`gantlitz.render` shades with, so viewers agree with the preview;
- ``KHR_materials_specular``: ``specularTexture`` = the specular map in the alpha channel of an RGBA PNG
  (RGB white), and ``specularColorFactor`` = ``specular_scale / 0.04`` so that the extension's
  F0 = min(0.04 * specularColor, 1) * specular equals the preview's ``F0 = specular_map * specular_scale``;
- ``metallicFactor`` 0, ``roughnessFactor`` 0.5 (skin-like; a constant: the maps carry no roughness).

All images are embedded as PNG in the binary buffer. UVs are written with glTF's convention (v = 0 at the
image's top row), whatever the source mesh used.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .outputs import atomic_path, refuse_existing, writing
from .resample import to_uint8
from .render import Maps, Mesh, RenderError, Shading, load_maps, load_mesh, map_inputs

__all__ = ["ExportError", "export_gltf", "validate_glb", "SPECULAR_EXTENSION"]

SPECULAR_EXTENSION = "KHR_materials_specular"
_IOR_15_F0 = 0.04
_FLOAT, _UINT16, _UINT32, _UBYTE = 5126, 5123, 5125, 5121
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_COMPONENT_SIZE = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}


class ExportError(RenderError):
    """The glTF file can not be written or does not validate; the message names the problem."""


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


class _Buffer:
    """The binary chunk of a .glb being assembled: 4-byte aligned buffer views and their accessors."""

    def __init__(self) -> None:
        import pygltflib as g

        self.g = g
        self.blob = bytearray()
        self.views: list = []
        self.accessors: list = []

    def _align(self) -> None:
        while len(self.blob) % 4:
            self.blob.append(0)

    def view(self, data: bytes, target: int | None = None) -> int:
        self._align()
        self.views.append(self.g.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target))
        self.blob.extend(data)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, component: int, target: int, bounds: bool) -> int:
        view = self.view(np.ascontiguousarray(array).tobytes(), target)
        flat = array.reshape(len(array), -1) if kind != "SCALAR" else array.reshape(-1, 1)
        acc = self.g.Accessor(bufferView=view, byteOffset=0, componentType=component, count=len(array), type=kind)
        if bounds:
            acc.min = [float(x) for x in flat.min(axis=0)]
            acc.max = [float(x) for x in flat.max(axis=0)]
            if kind == "SCALAR":
                acc.min, acc.max = [int(acc.min[0])], [int(acc.max[0])]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def finish(self) -> bytes:
        self._align()
        return bytes(self.blob)


def _texture_images(maps: Maps) -> list[tuple[str, bytes]]:
    """baseColor, normal (OpenGL convention) and specular (in alpha) as PNG files."""
    normal = maps.normal if maps.normal is not None else np.full((1, 1, 3), (0.5, 0.5, 1.0), np.float32)
    if maps.convention == "directx":
        normal = normal.copy()
        normal[:, :, 1] = 1.0 - normal[:, :, 1]
    spec = maps.specular if maps.specular is not None else np.full((1, 1, 1), 0.25, np.float32)
    spec_rgba = np.concatenate([np.ones(spec.shape[:2] + (3,), np.float32), spec], axis=2)
    return [("baseColor", _png(to_uint8(maps.albedo))), ("normal", _png(to_uint8(normal))),
            ("specular", _png(to_uint8(spec_rgba)))]


def _geometry(mesh: Mesh, buf: _Buffer) -> tuple[int, dict[str, int]]:
    """Index and vertex attribute accessors of `mesh` (glTF UVs: v down)."""
    uv = mesh.uvs.astype(np.float32).copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # OpenGL UVs (v up) -> glTF UVs (v down)
    index_type = _UINT16 if len(mesh.positions) < 65535 else _UINT32
    indices = mesh.faces.astype(np.uint16 if index_type == _UINT16 else np.uint32).reshape(-1)
    index_accessor = buf.accessor(indices, "SCALAR", index_type, _ELEMENT_ARRAY_BUFFER, True)
    attributes = [("POSITION", mesh.positions.astype(np.float32), "VEC3"),
                  ("NORMAL", mesh.normals.astype(np.float32), "VEC3"),
                  ("TANGENT", mesh.tangents.astype(np.float32), "VEC4"), ("TEXCOORD_0", uv, "VEC2")]
    return index_accessor, {key: buf.accessor(array, kind, _FLOAT, _ARRAY_BUFFER, key == "POSITION")
                            for key, array, kind in attributes}


def _material(g: Any, name: str, roughness: float, specular_scale: float) -> Any:
    """Dielectric skin: base colour, normal map, KHR_materials_specular (texture in alpha, F0 scaled)."""
    return g.Material(
        name=f"{name}-skin",
        pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorTexture=g.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=float(roughness)
        ),
        normalTexture=g.NormalMaterialTexture(index=1, scale=1.0),
        doubleSided=True,
        extensions={SPECULAR_EXTENSION: {"specularFactor": 1.0, "specularTexture": {"index": 2},
                                         "specularColorFactor": [float(specular_scale) / _IOR_15_F0] * 3}},
    )


def export_gltf(
    maps: Maps,
    mesh: Mesh | str | os.PathLike | None = None,
    out: str | os.PathLike = "head.glb",
    *,
    roughness: float = 0.5,
    specular_scale: float = 0.2,
    max_texture: int | None = 4096,
    overwrite: bool = False,
    name: str = "gantlitz",
) -> Path:
    """Write ``maps`` on ``mesh`` (a :class:`~gantlitz.render.Mesh`, a path, or None for the bundled head)
    to ``out`` as a .glb; maps with a longer side than ``max_texture`` are down-sampled (None: as they
    are). Returns the path. The file is validated with :func:`validate_glb` before it is moved into place.
    """
    Shading(roughness=roughness, specular_scale=specular_scale)  # the renderer's range checks
    out = Path(out)
    if out.suffix.lower() != ".glb":
        raise ExportError(f"{out}: the output must be a .glb file (glTF 2.0 binary)")
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: exists (use --overwrite)")
    if not isinstance(mesh, Mesh):
        mesh = load_mesh(mesh)
    images = _texture_images(maps.resized(max_texture))
    buf = _Buffer()
    g = buf.g
    index_accessor, attribute_accessors = _geometry(mesh, buf)
    image_entries = [g.Image(bufferView=buf.view(data), mimeType="image/png", name=n) for n, data in images]
    primitive = g.Primitive(attributes=g.Attributes(**attribute_accessors), indices=index_accessor,
                            material=0, mode=4)
    blob = buf.finish()
    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="gantlitz export"),
        scene=0,
        scenes=[g.Scene(nodes=[0])],
        nodes=[g.Node(mesh=0, name=name)],
        meshes=[g.Mesh(primitives=[primitive], name=name)],
        materials=[_material(g, name, roughness, specular_scale)],
        samplers=[g.Sampler(magFilter=9729, minFilter=9987, wrapS=33071, wrapT=33071)],
        textures=[g.Texture(source=i, sampler=0, name=n) for i, (n, _) in enumerate(images)],
        images=image_entries,
        accessors=buf.accessors,
        bufferViews=buf.views,
        buffers=[g.Buffer(byteLength=len(blob))],
        extensionsUsed=[SPECULAR_EXTENSION],
    )
    gltf.set_binary_blob(blob)
    with atomic_path(out, overwrite=overwrite, verify=validate_glb) as tmp:
        gltf.save_binary(str(tmp))
    return out


def _read_glb(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    if len(data) < 20:
        raise ExportError(f"{path}: too short for a glTF binary")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise ExportError(f"{path}: not a glTF 2.0 binary (magic {magic!r}, version {version})")
    if length != len(data):
        raise ExportError(f"{path}: header length {length} != file size {len(data)}")
    offset, doc, blob = 12, None, b""
    while offset < length:
        chunk_len, chunk_type = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8 : offset + 8 + chunk_len]
        if len(chunk) != chunk_len:
            raise ExportError(f"{path}: truncated chunk at byte {offset}")
        if chunk_type == 0x4E4F534A:  # JSON
            doc = json.loads(chunk.decode("utf-8"))
        elif chunk_type == 0x004E4942:  # BIN
            blob = chunk
        offset += 8 + chunk_len
    if doc is None:
        raise ExportError(f"{path}: no JSON chunk")
    return doc, blob


def validate_glb(path: str | os.PathLike) -> dict:
    """Check a .glb written by :func:`export_gltf` (or any single-buffer glTF binary): header and chunks,
    asset version, every buffer view inside the buffer, every accessor inside its view with a valid
    type and count, indices within the vertex count, mesh attributes present (POSITION, NORMAL,
    TANGENT, TEXCOORD_0), images decode, and the material's base colour, normal and
    KHR_materials_specular textures resolve to images (specular with an alpha channel), with the
    extension listed in ``extensionsUsed``. Raises :class:`ExportError` listing every problem; returns
    a summary dict (vertex/triangle counts, image sizes, material)."""
    p = Path(path)
    doc, blob = _read_glb(p)
    check = _GlbCheck(doc, blob)
    check.meshes()
    check.images()
    check.material()
    if check.problems:
        raise ExportError(f"{p}: invalid glTF: " + "; ".join(check.problems))
    return check.summary


class _GlbCheck:
    """The parts of `validate_glb`; each appends what it finds wrong to `problems` and fills `summary`."""

    def __init__(self, doc: dict, blob: bytes) -> None:
        self.doc, self.blob = doc, blob
        self.problems: list[str] = []
        self.summary: dict = {"vertices": 0, "triangles": 0, "images": {}, "material": {}}
        self.decoded: dict[int, Any] = {}
        if doc.get("asset", {}).get("version") != "2.0":
            self.problems.append("asset.version is not '2.0'")
        buffers = doc.get("buffers", [])
        if len(buffers) != 1 or buffers[0].get("byteLength", -1) > len(blob):
            self.problems.append("expected one buffer that fits in the BIN chunk")
        self.views = doc.get("bufferViews", [])
        for i, v in enumerate(self.views):
            if v.get("byteOffset", 0) + v.get("byteLength", 0) > len(blob):
                self.problems.append(f"bufferView {i} runs past the buffer")
        self.accessors = doc.get("accessors", [])
        self.textures = doc.get("textures", [])

    def accessor_array(self, i: int) -> np.ndarray | None:
        a = self.accessors[i]
        kind, comp, count = a.get("type"), a.get("componentType"), a.get("count", 0)
        if kind not in _COMPONENTS or comp not in _COMPONENT_SIZE:
            self.problems.append(f"accessor {i}: bad type {kind} / componentType {comp}")
            return None
        view = self.views[a["bufferView"]]
        n = _COMPONENTS[kind]
        size = _COMPONENT_SIZE[comp] * n
        if view.get("byteStride") not in (None, size):
            self.problems.append(f"accessor {i}: interleaved views are not checked")
            return None
        start = view.get("byteOffset", 0) + a.get("byteOffset", 0)
        if a.get("byteOffset", 0) + size * count > view["byteLength"]:
            self.problems.append(f"accessor {i}: runs past its bufferView")
            return None
        dtype = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32,
                 5126: np.float32}[comp]
        arr = np.frombuffer(self.blob, dtype=dtype, count=count * n, offset=start).reshape(count, n)
        if comp == _FLOAT and not np.all(np.isfinite(arr)):
            self.problems.append(f"accessor {i}: non-finite values")
        return arr

    def meshes(self) -> None:
        meshes = self.doc.get("meshes", [])
        if not meshes:
            self.problems.append("no meshes")
        for mi, mesh in enumerate(meshes):
            for pi, prim in enumerate(mesh.get("primitives", [])):
                self._primitive(f"mesh {mi} primitive {pi}", prim)

    def _primitive(self, where: str, prim: dict) -> None:
        attrs = prim.get("attributes", {})
        self.problems += [f"{where}: no {key}" for key in ("POSITION", "NORMAL", "TANGENT", "TEXCOORD_0")
                          if key not in attrs]
        counts = set()
        for key, ai in attrs.items():
            arr = self.accessor_array(ai)
            if arr is None:
                continue
            counts.add(len(arr))
            want = {"POSITION": 3, "NORMAL": 3, "TANGENT": 4, "TEXCOORD_0": 2}.get(key)
            if want and arr.shape[1] != want:
                self.problems.append(f"{where}: {key} has {arr.shape[1]} components")
            if key == "POSITION" and ("min" not in self.accessors[ai] or "max" not in self.accessors[ai]):
                self.problems.append("POSITION accessor without min/max")
            if key == "TANGENT" and not np.all(np.isin(arr[:, 3], (-1.0, 1.0))):
                self.problems.append("TANGENT.w must be +1 or -1")
        if len(counts) > 1:
            self.problems.append(f"{where}: attributes have different counts {sorted(counts)}")
        n_vertices = counts.pop() if len(counts) == 1 else 0
        self.summary["vertices"] += n_vertices
        idx = self.accessor_array(prim["indices"]) if "indices" in prim else None
        if idx is not None:
            if len(idx) % 3:
                self.problems.append(f"{where}: index count not a multiple of 3")
            if len(idx) and int(idx.max()) >= n_vertices:
                self.problems.append(f"{where}: index {int(idx.max())} >= {n_vertices} vertices")
            self.summary["triangles"] += len(idx) // 3

    def images(self) -> None:
        from PIL import Image

        for i, im in enumerate(self.doc.get("images", [])):
            if "bufferView" not in im:
                self.problems.append(f"image {i}: not embedded in the buffer")
                continue
            v = self.views[im["bufferView"]]
            data = self.blob[v.get("byteOffset", 0) : v.get("byteOffset", 0) + v["byteLength"]]
            try:
                pil = Image.open(io.BytesIO(data))
                pil.load()
            except Exception as e:
                self.problems.append(f"image {i}: does not decode ({e})")
                continue
            if im.get("mimeType") != f"image/{pil.format.lower()}":
                self.problems.append(f"image {i}: mimeType {im.get('mimeType')} but the data is {pil.format}")
            self.decoded[i] = pil
            self.summary["images"][im.get("name", str(i))] = (pil.width, pil.height, pil.mode)

    def _texture(self, info: dict | None, what: str) -> Any:
        if info is None:
            self.problems.append(f"material has no {what} texture")
            return None
        ti = info.get("index", -1)
        if not 0 <= ti < len(self.textures) or self.textures[ti].get("source", -1) not in self.decoded:
            self.problems.append(f"{what} texture {ti} does not resolve to a decodable image")
            return None
        return self.decoded[self.textures[ti]["source"]]

    def material(self) -> None:
        materials = self.doc.get("materials", [])
        if not materials:
            self.problems.append("no material")
            return
        m = materials[0]
        pbr = m.get("pbrMetallicRoughness", {})
        self._texture(pbr.get("baseColorTexture"), "baseColor")
        self._texture(m.get("normalTexture"), "normal")
        ext = m.get("extensions", {}).get(SPECULAR_EXTENSION)
        if ext is None:
            self.problems.append(f"material has no {SPECULAR_EXTENSION}")
        else:
            if SPECULAR_EXTENSION not in self.doc.get("extensionsUsed", []):
                self.problems.append(f"{SPECULAR_EXTENSION} used but not listed in extensionsUsed")
            spec = self._texture(ext.get("specularTexture"), "specular")
            if spec is not None and "A" not in spec.mode:
                self.problems.append("specularTexture has no alpha channel (the extension reads alpha)")
            if not 0.0 <= ext.get("specularFactor", 1.0) <= 1.0:
                self.problems.append("specularFactor outside [0, 1]")
        self.summary["material"] = {"metallicFactor": pbr.get("metallicFactor", 1.0),
                                    "roughnessFactor": pbr.get("roughnessFactor", 1.0),
                                    "extensions": sorted(m.get("extensions", {}))}


def export_sets(
    sets: list[Any], gltf_out: Path, *, mesh: str | os.PathLike | None = None, flip_v: bool = False,
    convention: str = "opengl", roughness: float = 0.5, specular_scale: float = 0.2, max_texture: int | None = 4096,
    overwrite: bool = False, echo: Any = print,
) -> list[Path]:
    """One .glb per set of maps (`render.map_sets`): `gltf_out`, or `OUT_<name>.glb` for several; every
    output is checked before anything is written."""
    outs = [gltf_out if len(sets) == 1 else gltf_out.with_name(f"{gltf_out.stem}_{name}.glb") for name, _ in sets]
    with writing("export"):
        refuse_existing(outs, overwrite, inputs=map_inputs(sets, mesh))
        _export_all(sets, outs, mesh=mesh, flip_v=flip_v, convention=convention, roughness=roughness,
                    specular_scale=specular_scale, max_texture=max_texture, overwrite=overwrite, echo=echo)
    return outs


def _export_all(sets: list[Any], outs: list[Path], *, mesh: str | os.PathLike | None, flip_v: bool, convention: str,
                roughness: float, specular_scale: float, max_texture: int | None, overwrite: bool, echo: Any) -> None:
    """`export_sets` after its pre-flight: one .glb per set, each validated once written."""
    the_mesh = load_mesh(mesh, flip_v=flip_v)
    for (_, kw), path in zip(sets, outs):
        maps = load_maps(**kw, max_size=max_texture, convention=convention)
        export_gltf(maps, the_mesh, path, roughness=roughness, specular_scale=specular_scale,
                    max_texture=max_texture, overwrite=overwrite)
        summary = validate_glb(path)
        echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {summary['vertices']} vertices, "
             f"{summary['triangles']} triangles, textures {summary['images']})")
