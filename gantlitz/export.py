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

import numpy as np

from .outputs import atomic_path
from .render import Maps, Mesh, RenderError, load_mesh

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


def _to8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


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
    import pygltflib as g

    out = Path(out)
    if out.suffix.lower() != ".glb":
        raise ExportError(f"{out}: the output must be a .glb file (glTF 2.0 binary)")
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: exists (use --overwrite)")
    if not isinstance(mesh, Mesh):
        mesh = load_mesh(mesh)
    maps = maps.resized(max_texture)

    normal = maps.normal if maps.normal is not None else np.full((1, 1, 3), (0.5, 0.5, 1.0), np.float32)
    if maps.convention == "directx":
        normal = normal.copy()
        normal[:, :, 1] = 1.0 - normal[:, :, 1]
    spec = maps.specular if maps.specular is not None else np.full((1, 1, 1), 0.25, np.float32)
    spec_rgba = np.concatenate([np.ones(spec.shape[:2] + (3,), np.float32), spec], axis=2)
    images = [("baseColor", _png(_to8(maps.albedo))), ("normal", _png(_to8(normal))),
              ("specular", _png(_to8(spec_rgba)))]

    uv = mesh.uvs.astype(np.float32).copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # OpenGL UVs (v up) -> glTF UVs (v down)
    n_vertices = len(mesh.positions)
    index_type = _UINT16 if n_vertices < 65535 else _UINT32
    indices = mesh.faces.astype(np.uint16 if index_type == _UINT16 else np.uint32).reshape(-1)
    attributes = [
        ("POSITION", mesh.positions.astype(np.float32), "VEC3"),
        ("NORMAL", mesh.normals.astype(np.float32), "VEC3"),
        ("TANGENT", mesh.tangents.astype(np.float32), "VEC4"),
        ("TEXCOORD_0", uv, "VEC2"),
    ]

    blob = bytearray()
    buffer_views: list = []
    accessors: list = []

    def add_view(data: bytes, target: int | None = None) -> int:
        while len(blob) % 4:
            blob.append(0)
        buffer_views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        return len(buffer_views) - 1

    def add_accessor(array: np.ndarray, kind: str, component: int, target: int, bounds: bool) -> int:
        view = add_view(np.ascontiguousarray(array).tobytes(), target)
        flat = array.reshape(len(array), -1) if kind != "SCALAR" else array.reshape(-1, 1)
        acc = g.Accessor(bufferView=view, byteOffset=0, componentType=component, count=len(array), type=kind)
        if bounds:
            acc.min = [float(x) for x in flat.min(axis=0)]
            acc.max = [float(x) for x in flat.max(axis=0)]
            if kind == "SCALAR":
                acc.min, acc.max = [int(acc.min[0])], [int(acc.max[0])]
        accessors.append(acc)
        return len(accessors) - 1

    index_accessor = add_accessor(indices, "SCALAR", index_type, _ELEMENT_ARRAY_BUFFER, True)
    attribute_accessors = {
        key: add_accessor(array, kind, _FLOAT, _ARRAY_BUFFER, key == "POSITION") for key, array, kind in attributes
    }
    image_entries = []
    for image_name, data in images:
        image_entries.append(g.Image(bufferView=add_view(data), mimeType="image/png", name=image_name))
    while len(blob) % 4:
        blob.append(0)

    color_factor = float(specular_scale) / _IOR_15_F0
    material = g.Material(
        name=f"{name}-skin",
        pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorTexture=g.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=float(roughness)
        ),
        normalTexture=g.NormalMaterialTexture(index=1, scale=1.0),
        doubleSided=True,
        extensions={
            SPECULAR_EXTENSION: {
                "specularFactor": 1.0,
                "specularTexture": {"index": 2},
                "specularColorFactor": [color_factor] * 3,
            }
        },
    )
    primitive = g.Primitive(attributes=g.Attributes(**attribute_accessors), indices=index_accessor,
                            material=0, mode=4)
    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="gantlitz export"),
        scene=0,
        scenes=[g.Scene(nodes=[0])],
        nodes=[g.Node(mesh=0, name=name)],
        meshes=[g.Mesh(primitives=[primitive], name=name)],
        materials=[material],
        samplers=[g.Sampler(magFilter=9729, minFilter=9987, wrapS=33071, wrapT=33071)],
        textures=[g.Texture(source=i, sampler=0, name=n) for i, (n, _) in enumerate(images)],
        images=image_entries,
        accessors=accessors,
        bufferViews=buffer_views,
        buffers=[g.Buffer(byteLength=len(blob))],
        extensionsUsed=[SPECULAR_EXTENSION],
    )
    gltf.set_binary_blob(bytes(blob))
    with atomic_path(out, overwrite=overwrite) as tmp:
        gltf.save_binary(str(tmp))
        validate_glb(tmp)
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
    from PIL import Image

    p = Path(path)
    doc, blob = _read_glb(p)
    problems: list[str] = []
    if doc.get("asset", {}).get("version") != "2.0":
        problems.append("asset.version is not '2.0'")
    buffers = doc.get("buffers", [])
    if len(buffers) != 1 or buffers[0].get("byteLength", -1) > len(blob):
        problems.append("expected one buffer that fits in the BIN chunk")
    views = doc.get("bufferViews", [])
    for i, v in enumerate(views):
        if v.get("byteOffset", 0) + v.get("byteLength", 0) > len(blob):
            problems.append(f"bufferView {i} runs past the buffer")
    accessors = doc.get("accessors", [])

    def accessor_array(i: int) -> np.ndarray | None:
        a = accessors[i]
        kind, comp, count = a.get("type"), a.get("componentType"), a.get("count", 0)
        if kind not in _COMPONENTS or comp not in _COMPONENT_SIZE:
            problems.append(f"accessor {i}: bad type {kind} / componentType {comp}")
            return None
        view = views[a["bufferView"]]
        stride = view.get("byteStride")
        n = _COMPONENTS[kind]
        size = _COMPONENT_SIZE[comp] * n
        if stride not in (None, size):
            problems.append(f"accessor {i}: interleaved views are not checked")
            return None
        start = view.get("byteOffset", 0) + a.get("byteOffset", 0)
        if a.get("byteOffset", 0) + size * count > view["byteLength"]:
            problems.append(f"accessor {i}: runs past its bufferView")
            return None
        dtype = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32,
                 5126: np.float32}[comp]
        arr = np.frombuffer(blob, dtype=dtype, count=count * n, offset=start).reshape(count, n)
        if comp == _FLOAT and not np.all(np.isfinite(arr)):
            problems.append(f"accessor {i}: non-finite values")
        return arr

    summary: dict = {"vertices": 0, "triangles": 0, "images": {}, "material": {}}
    meshes = doc.get("meshes", [])
    if not meshes:
        problems.append("no meshes")
    for mi, mesh in enumerate(meshes):
        for pi, prim in enumerate(mesh.get("primitives", [])):
            attrs = prim.get("attributes", {})
            for key in ("POSITION", "NORMAL", "TANGENT", "TEXCOORD_0"):
                if key not in attrs:
                    problems.append(f"mesh {mi} primitive {pi}: no {key}")
            counts = set()
            for key, ai in attrs.items():
                arr = accessor_array(ai)
                if arr is not None:
                    counts.add(len(arr))
                    want = {"POSITION": 3, "NORMAL": 3, "TANGENT": 4, "TEXCOORD_0": 2}.get(key)
                    if want and arr.shape[1] != want:
                        problems.append(f"mesh {mi} primitive {pi}: {key} has {arr.shape[1]} components")
                    if key == "POSITION":
                        a = accessors[ai]
                        if "min" not in a or "max" not in a:
                            problems.append("POSITION accessor without min/max")
                    if key == "TANGENT" and not np.all(np.isin(arr[:, 3], (-1.0, 1.0))):
                        problems.append("TANGENT.w must be +1 or -1")
            if len(counts) > 1:
                problems.append(f"mesh {mi} primitive {pi}: attributes have different counts {sorted(counts)}")
            n_vertices = counts.pop() if len(counts) == 1 else 0
            summary["vertices"] += n_vertices
            if "indices" in prim:
                idx = accessor_array(prim["indices"])
                if idx is not None:
                    if len(idx) % 3:
                        problems.append(f"mesh {mi} primitive {pi}: index count not a multiple of 3")
                    if len(idx) and int(idx.max()) >= n_vertices:
                        problems.append(f"mesh {mi} primitive {pi}: index {int(idx.max())} >= {n_vertices} vertices")
                    summary["triangles"] += len(idx) // 3

    images = doc.get("images", [])
    decoded: dict[int, Image.Image] = {}
    for i, im in enumerate(images):
        if "bufferView" not in im:
            problems.append(f"image {i}: not embedded in the buffer")
            continue
        v = views[im["bufferView"]]
        data = blob[v.get("byteOffset", 0) : v.get("byteOffset", 0) + v["byteLength"]]
        try:
            pil = Image.open(io.BytesIO(data))
            pil.load()
        except Exception as e:
            problems.append(f"image {i}: does not decode ({e})")
            continue
        if im.get("mimeType") != f"image/{pil.format.lower()}":
            problems.append(f"image {i}: mimeType {im.get('mimeType')} but the data is {pil.format}")
        decoded[i] = pil
        summary["images"][im.get("name", str(i))] = (pil.width, pil.height, pil.mode)
    textures = doc.get("textures", [])

    def texture_image(info: dict | None, what: str) -> Image.Image | None:
        if info is None:
            problems.append(f"material has no {what} texture")
            return None
        ti = info.get("index", -1)
        if not 0 <= ti < len(textures) or textures[ti].get("source", -1) not in decoded:
            problems.append(f"{what} texture {ti} does not resolve to a decodable image")
            return None
        return decoded[textures[ti]["source"]]

    materials = doc.get("materials", [])
    if not materials:
        problems.append("no material")
    else:
        m = materials[0]
        pbr = m.get("pbrMetallicRoughness", {})
        texture_image(pbr.get("baseColorTexture"), "baseColor")
        texture_image(m.get("normalTexture"), "normal")
        ext = m.get("extensions", {}).get(SPECULAR_EXTENSION)
        if ext is None:
            problems.append(f"material has no {SPECULAR_EXTENSION}")
        else:
            if SPECULAR_EXTENSION not in doc.get("extensionsUsed", []):
                problems.append(f"{SPECULAR_EXTENSION} used but not listed in extensionsUsed")
            spec = texture_image(ext.get("specularTexture"), "specular")
            if spec is not None and "A" not in spec.mode:
                problems.append("specularTexture has no alpha channel (the extension reads alpha)")
            if not 0.0 <= ext.get("specularFactor", 1.0) <= 1.0:
                problems.append("specularFactor outside [0, 1]")
        summary["material"] = {
            "metallicFactor": pbr.get("metallicFactor", 1.0),
            "roughnessFactor": pbr.get("roughnessFactor", 1.0),
            "extensions": sorted(m.get("extensions", {})),
        }
    if problems:
        raise ExportError(f"{p}: invalid glTF: " + "; ".join(problems))
    return summary
