"""Lit previews: mesh views and UV-space relighting (moderngl on EGL, Mesa llvmpipe on CPU).

These tests do not skip when EGL is missing: they fail with the message naming the Debian packages
to install (libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gantlitz import render as R

BACKGROUND = (0.16, 0.16, 0.17)


def _save(path: Path, array: np.ndarray) -> Path:
    a = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).save(path)
    return path


def _bump_normals(h: int, w: int, amplitude: float = 6.0, convention: str = "opengl") -> np.ndarray:
    """Encoded tangent normals of a Gaussian bump in the middle (height in pixels)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    height = amplitude * np.exp(-(((x - w / 2) / (w / 6)) ** 2 + ((y - h / 2) / (h / 6)) ** 2))
    dh_dx = np.gradient(height, axis=1)
    dh_dup = -np.gradient(height, axis=0)  # rows grow downwards; +y (OpenGL) is up the image
    if convention == "directx":
        dh_dup = -dh_dup
    n = np.stack([-dh_dx, -dh_dup, np.ones_like(height)], axis=2)
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    return (n * 0.5 + 0.5).astype(np.float32)


def _wrinkles(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    n = np.stack([0.6 * np.sin(x / 2.0), 0.6 * np.cos(y / 3.0), np.ones((h, w))], axis=2)
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    return (n * 0.5 + 0.5).astype(np.float32)


def _flat(h: int, w: int) -> np.ndarray:
    return np.broadcast_to(np.array([0.5, 0.5, 1.0], np.float32), (h, w, 3)).copy()


def _maps(normal: np.ndarray | None, h: int = 64, w: int = 64, convention: str = "opengl") -> R.Maps:
    albedo = np.broadcast_to(np.array([0.75, 0.58, 0.5], np.float32), (h, w, 3)).copy()
    return R.Maps(albedo=albedo, specular=np.full((h, w, 1), 0.3, np.float32), normal=normal,
                  convention=convention)


@pytest.fixture(scope="module")
def head() -> R.Mesh:
    return R.load_mesh()


def _foreground(image: np.ndarray) -> np.ndarray:
    bg = np.array(BACKGROUND) * 255  # the clear colour is written as it is (display values)
    return np.abs(image.astype(float) - bg).sum(axis=2) > 6


def test_render_views_size_and_content(head):
    image = R.render_views(_maps(_flat(64, 64)), head, views=2, size=96)
    assert image.shape == (96, 192, 3) and image.dtype == np.uint8
    fg = _foreground(image)
    assert 0.1 < fg[:, :96].mean() < 0.9  # the head fills part of the frame
    assert image[0, 0].tolist() == image[0, 100].tolist()  # background corners agree


def test_lit_pixels_change_when_normal_map_changes(head):
    flat = R.render_views(_maps(_flat(64, 64)), head, views=1, size=128)
    again = R.render_views(_maps(_flat(64, 64)), head, views=1, size=128)
    wrinkled = R.render_views(_maps(_wrinkles(64, 64)), head, views=1, size=128)
    assert np.array_equal(flat, again)  # deterministic
    fg = _foreground(flat)
    diff = np.abs(flat.astype(int) - wrinkled.astype(int)).sum(axis=2)
    assert (diff[fg] > 6).mean() > 0.2, "normal map has no visible effect on the lit head"


def test_head_tangent_frame_matches_the_face(head):
    """The bundled scan's v is flipped on load: on the forehead u runs to the right (+x) and v up (+y),
    so an OpenGL normal map tilts where it should."""
    c = head.positions - head.center
    sel = (head.normals[:, 2] > 0.9) & (c[:, 1] > 0.5)
    t = head.tangents[sel, :3]
    b = np.cross(head.normals[sel], t) * head.tangents[sel, 3:]
    assert sel.sum() > 50
    assert t.mean(0)[0] > 0.8 and b.mean(0)[1] > 0.8


def test_uv_view_size_aspect_and_normal_effect():
    flat = R.render_uv(_maps(_flat(48, 96), 48, 96), size=128)
    assert flat.shape == (64, 128, 3)
    wrinkled = R.render_uv(_maps(_wrinkles(48, 96), 48, 96), size=128)
    assert np.abs(flat.astype(int) - wrinkled.astype(int)).mean() > 5


@pytest.mark.parametrize("convention", ["opengl", "directx"])
def test_uv_view_lights_the_side_facing_the_light(convention):
    maps = _maps(_bump_normals(96, 96, convention=convention), 96, 96, convention=convention)
    from_right = R.render_uv(maps, size=96, light=(70.0, 0.0)).astype(float).mean(axis=2)
    from_above = R.render_uv(maps, size=96, light=(0.0, 60.0)).astype(float).mean(axis=2)
    mid = slice(40, 56)
    assert from_right[mid, 56:72].mean() > from_right[mid, 24:40].mean() + 10
    assert from_above[24:40, mid].mean() > from_above[56:72, mid].mean() + 10


def test_load_maps_from_directory_and_big_maps_are_downsampled(tmp_path):
    _save(tmp_path / "albedo.png", np.full((300, 450, 3), 0.6, np.float32))
    _save(tmp_path / "specular.png", np.full((300, 450, 1), 0.3, np.float32))
    _save(tmp_path / "normal.png", _flat(300, 450))
    maps = R.load_maps(tmp_path, max_size=150)
    assert maps.albedo.shape == (100, 150, 3) and maps.specular.shape == (100, 150, 1)
    assert maps.normal.shape == (100, 150, 3)
    assert R.find_map_sets(tmp_path) == [tmp_path]


def test_missing_maps_and_mesh_give_clear_errors(tmp_path):
    with pytest.raises(R.MapsError, match="no albedo"):
        R.load_maps(tmp_path)
    with pytest.raises(R.MapsError, match="no albedo"):
        R.find_map_sets(tmp_path)
    with pytest.raises(R.MeshError, match="missing.glb: mesh file not found"):
        R.load_mesh(tmp_path / "missing.glb")
    obj = tmp_path / "no_uv.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1\n")
    with pytest.raises(R.MeshError, match=r"no_uv.obj: .*no texture coordinates"):
        R.load_mesh(obj)
    with pytest.raises(R.MeshError, match="no texture coordinates"):
        R.render_views(_maps(_flat(8, 8), 8, 8), obj)


def test_obj_mesh_with_uvs_renders(tmp_path):
    obj = tmp_path / "quad.obj"
    obj.write_text("v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                   "f 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    mesh = R.load_mesh(obj)
    assert np.allclose(mesh.tangents[:, :3], [1, 0, 0], atol=1e-5) and np.all(mesh.tangents[:, 3] == 1)
    image = R.render_views(_maps(_bump_normals(64, 64), 64, 64), mesh, views=1, size=64)
    assert image.shape == (64, 64, 3)


def test_egl_failure_names_the_packages(monkeypatch):
    import moderngl

    def fail(*args, **kwargs):
        raise Exception("libEGL.so.1: cannot open shared object file")

    monkeypatch.setattr(R.gl, "_CONTEXT", None)
    monkeypatch.setattr(moderngl, "create_standalone_context", fail)
    with pytest.raises(R.RenderError, match="apt-get install libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri"):
        R.gl_context()


def test_cli_render_writes_mesh_and_uv_previews(tmp_path):
    from gantlitz.cli import main

    for seed in ("seed0000", "seed0001"):
        d = tmp_path / "gen" / seed
        d.mkdir(parents=True)
        _save(d / "albedo.png", np.full((32, 48, 3), 0.6, np.float32))
        _save(d / "specular.png", np.full((32, 48, 1), 0.3, np.float32))
        _save(d / "normal.png", _wrinkles(32, 48))
    out = tmp_path / "preview.png"
    args = ["render", str(tmp_path / "gen"), "--out", str(out), "--views", "2", "--size", "64",
            "--light", "30,20", "--uv-size", "96"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (128, 128)  # two views, one row per seed
    assert Image.open(tmp_path / "preview_uv_seed0001.png").size == (96, 64)
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "exists" in again.output
    bad = CliRunner().invoke(main, ["render", str(tmp_path / "gen"), "--mesh", str(tmp_path / "nope.glb"),
                                    "--out", str(tmp_path / "x.png")])
    assert bad.exit_code != 0 and "nope.glb: mesh file not found" in bad.output
