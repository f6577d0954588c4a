import numpy as np
import pytest
from scipy import ndimage

from gantlitz import maps
from gantlitz.imageio import read_image

from conftest import lps_dir
from helpers import ROUNDOFF_K, assert_roundoff_equal


def _height(shape, seed=0):
    rng = np.random.default_rng(seed)
    h = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) * 30.0
    return h + np.linspace(0, 20, shape[1])[None, :] + np.linspace(0, -5, shape[0])[:, None]


@pytest.mark.parametrize("shape", [(64, 96), (37, 20)])
@pytest.mark.parametrize("convention", ["opengl", "directx"])
def test_round_trip_displacement_normals_displacement(shape, convention):
    """The pair is an exact inverse up to round-off, in float64 and in float32.

    The integration is a DCT Poisson solve, which amplifies the round-off of its input with the grid size
    (measured in float64: 9 eps · scale at 37 x 20, 123 at 64 x 96, 660 at 256 x 384; in float32: 1.5, 4
    and 9): the bound is ROUNDOFF_K · max(H, W) eps · scale, at 64 x 96 and ~27 px heights 4e-11 px in
    float64 and 0.02 px in float32; a wrong inverse errs by whole pixels."""
    h = _height(shape)
    k = ROUNDOFF_K * max(shape)
    scale = 3.5
    n = maps.displacement_to_normals(h / scale, scale, convention)
    assert n.shape == (*shape, 3)
    assert np.allclose(np.linalg.norm(n, axis=-1), 1.0)
    assert np.abs(n).max() <= 1.0
    back = maps.normals_to_displacement(n, convention)
    assert_roundoff_equal(back, h - h.mean(), k, what="float64 round trip")
    n32 = maps.displacement_to_normals((h / scale).astype(np.float32), scale, convention)
    back32 = maps.normals_to_displacement(n32, convention)
    assert back32.dtype == np.float32
    assert_roundoff_equal(back32, h - h.mean(), k, what="float32 round trip")


def test_conventions_flip_green_and_slope_sign():
    ramp = np.tile(np.arange(8, dtype=np.float64), (8, 1))  # rises to the right
    n = maps.displacement_to_normals(ramp, 1.0, "opengl")
    assert (n[:, :-1, 0] < 0).all()  # surface faces left (-x) where it rises to the right
    up = np.tile(np.arange(8, 0, -1, dtype=np.float64)[:, None], (1, 8))  # rises towards row 0 (up)
    n_gl = maps.displacement_to_normals(up, 1.0, "opengl")
    n_dx = maps.displacement_to_normals(up, 1.0, "directx")
    assert (n_gl[1:, :, 1] < 0).all()
    assert np.allclose(n_dx[..., 1], -n_gl[..., 1]) and np.allclose(n_dx[..., [0, 2]], n_gl[..., [0, 2]])
    with pytest.raises(ValueError, match="convention"):
        maps.displacement_to_normals(up, 1.0, "vulkan")


def test_encode_decode_normals():
    n = maps.displacement_to_normals(_height((16, 16)), 0.2)
    img = maps.encode_normals(n)
    assert img.min() >= 0 and img.max() <= 1
    assert_roundoff_equal(maps.decode_normals(img), n, what="decoded normals")
    assert np.allclose(maps.decode_normals(np.full((2, 2, 3), 0.5, np.float32)), [0, 0, 1])  # degenerate → flat


def test_derive_mask_black_and_border():
    a = np.zeros((40, 40, 3), np.float32)
    s = np.zeros((40, 40, 1), np.float32)
    a[10:30, 5:20] = 0.6
    s[12:20, 25:35] = 0.3
    a[0, 0] = 0.9  # a stray pixel is dropped as a tiny island
    m = maps.derive_mask([a, s], min_island=4)
    assert m.dtype == np.uint8
    assert m[15, 10] == 1 and m[15, 30] == 1 and m[35, 35] == 0 and m[0, 0] == 0
    assert m.sum() == 20 * 15 + 8 * 10
    fill = np.full((40, 40, 3), [0.8, 0.6, 0.5], np.float32)
    fill[10:30, 10:30] = 0.3
    fill[18:22, 18:22] = [0.8, 0.6, 0.5]  # a hole inside an island is filled
    mb = maps.derive_mask([fill], background="border")
    assert mb.sum() == 400 and mb[20, 20] == 1


@pytest.mark.skipif(lps_dir() is None, reason="Lee Perry-Smith scan not available")
def test_lee_perry_smith_integrated_normals_match_real_displacement():
    """Integrate the scan's tangent normal map (1024², OpenGL) and compare with the artist's displacement
    (4096² 8-bit, area-down-sampled to 1024²) inside the UV mask.

    Measured: Pearson r = 0.22 as is, 0.58 after removing a Gaussian blur of sigma 32 px from both
    (the normal map lacks the low frequencies); the DirectX reading of the same map anti-correlates
    (r = -0.18), which confirms the OpenGL convention.  Bounds leave a margin for decoder differences.
    """
    d = lps_dir()
    normals = maps.decode_normals(read_image(d / "Infinite-Level_02_Tangent_SmoothUV.jpg")).astype(np.float64)
    disp = read_image(d / "Infinite-Level_02_Disp_NoSmoothUV-4096.jpg")[..., 0].astype(np.float64)
    disp = disp.reshape(1024, 4, 1024, 4).mean(axis=(1, 3))
    mask = maps.derive_mask([read_image(d / "Map-COL.jpg"), read_image(d / "Map-SPEC.jpg")],
                            background="border", tol=6 / 255).astype(bool)
    assert 0.8 < mask.mean() < 1.0

    def corr(a, b):
        a, b = a[mask] - a[mask].mean(), b[mask] - b[mask].mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    h = maps.normals_to_displacement(normals, "opengl")
    r_raw = corr(h, disp)
    r_hp = corr(maps.high_pass(h, 32), maps.high_pass(disp, 32))
    r_dx = corr(maps.high_pass(maps.normals_to_displacement(normals, "directx"), 32), maps.high_pass(disp, 32))
    assert r_raw > 0.15
    assert r_hp > 0.5
    assert r_dx < 0.0
