"""glTF 2.0 export: structure, embedded images, material channels, round trip through trimesh."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from PIL import Image

from gantlitz import export as E
from gantlitz import render as R
from helpers import assert_roundoff_equal, quantisation_bound


@pytest.fixture(scope="module")
def head() -> R.Mesh:
    return R.load_mesh()


def _maps(h: int = 40, w: int = 60) -> R.Maps:
    rng = np.random.default_rng(0)
    albedo = rng.uniform(0.2, 0.9, (h, w, 3)).astype(np.float32)
    specular = np.linspace(0.0, 1.0, h * w, dtype=np.float32).reshape(h, w, 1)
    n = np.dstack([rng.normal(0, 0.1, (h, w, 2)), np.ones((h, w, 1))])
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    return R.Maps(albedo=albedo, specular=specular, normal=(n * 0.5 + 0.5).astype(np.float32))


def _json(path: Path) -> dict:
    data = path.read_bytes()
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A
    return json.loads(data[20 : 20 + length])


def test_export_validates_and_has_the_material_channels(tmp_path, head):
    maps = _maps()
    out = E.export_gltf(maps, head, tmp_path / "head.glb", roughness=0.5, specular_scale=0.2)
    summary = E.validate_glb(out)
    assert summary["vertices"] == len(head.positions) and summary["triangles"] == len(head.faces)
    assert summary["images"] == {"baseColor": (60, 40, "RGB"), "normal": (60, 40, "RGB"),
                                 "specular": (60, 40, "RGBA")}
    doc = _json(out)
    assert doc["asset"]["version"] == "2.0"
    assert doc["extensionsUsed"] == ["KHR_materials_specular"]
    material = doc["materials"][0]
    assert material["pbrMetallicRoughness"]["metallicFactor"] == 0.0
    assert material["pbrMetallicRoughness"]["roughnessFactor"] == 0.5
    assert "normalTexture" in material and "baseColorTexture" in material["pbrMetallicRoughness"]
    ext = material["extensions"]["KHR_materials_specular"]
    # F0 = min(0.04 * specularColorFactor, 1) * specular == specular map * 0.2, as in the preview
    assert np.allclose(np.array(ext["specularColorFactor"]) * 0.04, 0.2)
    attrs = doc["meshes"][0]["primitives"][0]["attributes"]
    assert set(attrs) == {"POSITION", "NORMAL", "TANGENT", "TEXCOORD_0"}
    assert all(img["mimeType"] == "image/png" and "bufferView" in img for img in doc["images"])

    # the specular map sits in the alpha channel of its texture
    blob_start = 20 + struct.unpack_from("<I", out.read_bytes(), 12)[0] + 8
    spec_image = doc["images"][doc["textures"][ext["specularTexture"]["index"]]["source"]]
    view = doc["bufferViews"][spec_image["bufferView"]]
    import io

    raw = out.read_bytes()[blob_start + view.get("byteOffset", 0): blob_start + view["byteOffset"] + view["byteLength"]]
    alpha = np.asarray(Image.open(io.BytesIO(raw)))[:, :, 3].astype(float) / 255
    assert np.abs(alpha - maps.specular[:, :, 0]).max() <= quantisation_bound(8)  # an 8-bit PNG channel


def test_export_round_trips_through_trimesh(tmp_path, head):
    out = E.export_gltf(_maps(), head, tmp_path / "head.glb")
    scene = trimesh.load(out)
    (mesh,) = scene.geometry.values()
    assert mesh.vertices.shape == head.positions.shape and len(mesh.faces) == len(head.faces)
    assert_roundoff_equal(mesh.vertices, head.positions, what="vertex positions")
    # trimesh reads glTF UVs into the OpenGL convention that the renderer uses
    assert_roundoff_equal(mesh.visual.uv, head.uvs, what="UVs")
    material = mesh.visual.material
    assert material.baseColorTexture.size == (60, 40)
    assert material.normalTexture.size == (60, 40)
    assert material.metallicFactor == 0.0


def test_export_refuses_to_overwrite_and_bad_suffix(tmp_path, head):
    out = E.export_gltf(_maps(8, 8), head, tmp_path / "a.glb")
    with pytest.raises(E.ExportError, match="exists"):
        E.export_gltf(_maps(8, 8), head, out)
    E.export_gltf(_maps(8, 8), head, out, overwrite=True)
    with pytest.raises(E.ExportError, match=r"\.glb"):
        E.export_gltf(_maps(8, 8), head, tmp_path / "a.gltf")


def test_validate_catches_broken_files(tmp_path, head):
    out = E.export_gltf(_maps(8, 8), head, tmp_path / "a.glb")
    data = bytearray(out.read_bytes())
    truncated = tmp_path / "truncated.glb"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(E.ExportError, match="header length"):
        E.validate_glb(truncated)
    # drop the extension from extensionsUsed (same length JSON: pad with spaces)
    length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + length])
    doc["extensionsUsed"] = []
    doc["materials"][0].pop("normalTexture")
    text = json.dumps(doc, separators=(",", ":")).encode()
    assert len(text) <= length
    data[20 : 20 + length] = text + b" " * (length - len(text))
    broken = tmp_path / "broken.glb"
    broken.write_bytes(bytes(data))
    with pytest.raises(E.ExportError, match="extensionsUsed") as info:
        E.validate_glb(broken)
    assert "no normal texture" in str(info.value)


def test_export_mesh_without_uvs_is_a_clear_error(tmp_path):
    obj = tmp_path / "no_uv.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(R.MeshError, match="no texture coordinates"):
        E.export_gltf(_maps(8, 8), obj, tmp_path / "x.glb")


def test_cli_export(tmp_path):
    from gantlitz.cli import main

    d = tmp_path / "maps"
    d.mkdir()
    maps = _maps(16, 24)
    Image.fromarray(np.round(maps.albedo * 255).astype(np.uint8)).save(d / "albedo.png")
    Image.fromarray(np.round(maps.specular[:, :, 0] * 255).astype(np.uint8)).save(d / "specular.png")
    Image.fromarray(np.round(maps.normal * 255).astype(np.uint8)).save(d / "normal.png")
    out = tmp_path / "out.glb"
    result = CliRunner().invoke(main, ["export", str(d), "--gltf", str(out)])
    assert result.exit_code == 0, result.output
    assert E.validate_glb(out)["images"]["baseColor"] == (24, 16, "RGB")
    missing = CliRunner().invoke(main, ["export", str(d), "--gltf", str(out), "--overwrite",
                                        "--mesh", str(tmp_path / "none.obj")])
    assert missing.exit_code != 0 and "none.obj: mesh file not found" in missing.output
