"""Generation: stitched canvases, file formats, normals, seams, determinism, extrapolation, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gantlitz
from gantlitz import checkpoint, maps
from gantlitz.cli import main
from gantlitz.config import to_dict
from gantlitz.generate import (
    TextureModel,
    extrapolate_fill,
    normals_from_displacement,
    parse_seeds,
    synthesize_texture,
    tile_layout,
)
from gantlitz.imageio import read_image
from gantlitz.networks import build
from gantlitz.outputs.mapfiles import OUTPUT_MAPS
from helpers import (
    HALF_FLOAT_QUANTISATION,
    ROUNDOFF_K,
    SMALL_CANVAS,
    SMALL_PRESET,
    SMALL_SCALE,
    assert_roundoff_equal,
    quantisation_bound,
)

CANVAS, SCALE, PRESET = SMALL_CANVAS, SMALL_SCALE, SMALL_PRESET


@pytest.fixture(scope="module")
def sample0(model: TextureModel) -> dict[str, np.ndarray]:
    return model.sample(0, OUTPUT_MAPS)


# ------------------------------------------------------------------------------------------------ API
def test_parse_seeds() -> None:
    assert parse_seeds("0-7") == list(range(8))
    assert parse_seeds("1,5,9") == [1, 5, 9]
    assert parse_seeds("0-2, 8,1") == [0, 1, 2, 8]
    assert parse_seeds(4) == [4]
    for bad in ("", "a", "5-2", "-1", "1,,2", "1.5"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_tile_layout_covers_region_once() -> None:
    region = (0, 0, 4096, 6144)
    for ppp, passes in ((1, 96), (4, 24), (12, 8), (24, 4), (96, 1), (None, 8)):
        tiles = tile_layout(region, 512, ppp)
        assert len(tiles) == passes
        assert sum(t.patches for t in tiles) == 96
        cover = np.zeros((8, 12), int)
        for t in tiles:
            cover[t.top // 512 : (t.top + t.height) // 512, t.left // 512 : (t.left + t.width) // 512] += 1
        assert (cover == 1).all()


def test_load_exposes_model_facts(model: TextureModel) -> None:
    assert model.canvas == CANVAS
    assert model.patch_size == 32
    assert model.displacement_scale == SCALE
    assert model.normal_convention == "opengl"
    assert model.mask.shape == CANVAS and model.mask.dtype == np.uint8
    assert 0 < model.mask.mean() < 1
    assert model.precision == "fp32" and model.device.type == "cpu"


def test_synthesize_texture_is_independent_of_tiling(model: TextureModel) -> None:
    ws = model.ws_for_seed(5)
    with torch.no_grad():
        one = synthesize_texture(model.G, ws, "albedo", 7, patches_per_pass=1)
        four = synthesize_texture(model.G, ws, "albedo", 7, patches_per_pass=4)
        whole = synthesize_texture(model.G, ws, "albedo", 7, patches_per_pass=6)
    assert one.shape == (1, 3, *CANVAS)
    assert one.abs().max() > 0.1
    assert_roundoff_equal(one, four, what="1 vs 4 patches per pass")
    assert_roundoff_equal(one, whole, what="1 vs 6 patches per pass")


def test_sample_sizes_dtypes_ranges(model: TextureModel, sample0: dict[str, np.ndarray]) -> None:
    assert list(sample0) == list(OUTPUT_MAPS)
    for name, channels in (("albedo", 3), ("specular", 1), ("displacement", 1), ("normal", 3)):
        arr = sample0[name]
        assert arr.shape == (*CANVAS, channels) and arr.dtype == np.float32
        assert arr.min() >= 0.0 and arr.max() <= 1.0
    outside = model.mask == 0
    assert np.allclose(sample0["albedo"][outside], 0.5) and np.allclose(sample0["displacement"][outside], 0.5)
    inside = sample0["albedo"][model.mask > 0]
    assert inside.std() > 0.05 and ((inside > 0.0) & (inside < 1.0)).mean() > 0.5  # a real, mostly unclipped signal


def test_region_matches_full_canvas(model: TextureModel) -> None:
    mods = ("albedo", "displacement")
    full = model.sample(2, mods)
    part = model.sample(2, mods, region=(32, 24, 32, 48))
    for m in mods:
        assert part[m].shape[:2] == (32, 48)
        assert_roundoff_equal(part[m], full[m][32:64, 24:72], what=f"{m}: region vs full canvas")
    with pytest.raises(ValueError, match="aligned"):
        model.sample(2, mods, region=(1, 0, 32, 32))
    with pytest.raises(ValueError, match="outside"):
        model.sample(2, mods, region=(32, 0, 64, 32))


def test_normals_are_unit_and_match_finite_differences(sample0: dict[str, np.ndarray]) -> None:
    n = sample0["normal"] * 2.0 - 1.0
    assert_roundoff_equal(np.linalg.norm(n, axis=-1), np.ones(n.shape[:2], np.float32), what="normal lengths")
    h = sample0["displacement"][:, :, 0].astype(np.float64) * SCALE
    gx = h[1:-1, 2:] - h[1:-1, 1:-1]  # towards +x (right)
    gy = h[:-2, 1:-1] - h[1:-1, 1:-1]  # towards +y (up = previous row)
    ref = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    assert_roundoff_equal(n[1:-1, 1:-1], ref, what="normals vs float64 finite differences")
    assert np.abs(ref[..., 2] - 1).max() > 1e-3  # the displacement is not flat: the comparison means something
    banded = normals_from_displacement(sample0["displacement"], SCALE, band=7)
    whole = maps.encode_normals(maps.displacement_to_normals(sample0["displacement"], SCALE))
    assert_roundoff_equal(banded, whole, what="normals in row bands vs in one piece")


def _border_jump_ratios(x: np.ndarray, p: int, axis: int) -> tuple[float, float]:
    """(mean, max) |jump| across patch borders over the mean |jump| inside patches, along `axis` of CxHxW."""
    grad = np.abs(np.diff(x, axis=axis)).mean(axis=(0, 3 - axis))
    borders = np.arange(p - 1, x.shape[axis] - 1, p)
    inside = np.setdiff1d(np.arange(grad.size), borders)
    return float(grad[borders].mean() / grad[inside].mean()), float(grad[borders].max() / grad[inside].mean())


@pytest.mark.parametrize("modality", ["albedo", "displacement"])
def test_no_seams_at_patch_borders(model: TextureModel, modality: str) -> None:
    """On the unmasked canvas, jumps across patch borders are no larger than jumps inside patches."""
    G, p = model.G, model.patch_size
    ws = model.ws_for_seed(11)
    with torch.no_grad():
        x = synthesize_texture(G, ws, modality, 11, patches_per_pass=1, apply_mask=False)[0].numpy()
        # The same canvas stitched wrongly (each patch with its own noise) shows seams: the check is sensitive.
        broken = np.concatenate([
            np.concatenate([
                G.synthesize(ws, modality, i, j, p, p, noise_seed=i * 7 + j, apply_mask=False)[0].numpy()
                for j in range(0, CANVAS[1], p)
            ], axis=2)
            for i in range(0, CANVAS[0], p)
        ], axis=1)
    for axis in (2, 1):  # horizontal gradient (columns), vertical gradient (rows)
        mean_ratio, max_ratio = _border_jump_ratios(x, p, axis)
        assert mean_ratio <= 1.2 and max_ratio <= 1.5, (axis, mean_ratio, max_ratio)
        assert _border_jump_ratios(broken, p, axis)[0] > 1.25  # ~1.4-1.9 with this model


def test_same_seed_same_maps_different_seed_different(model: TextureModel, sample0: dict[str, np.ndarray]) -> None:
    again = model.sample(0, OUTPUT_MAPS)
    for m in OUTPUT_MAPS:
        assert np.array_equal(again[m], sample0[m])
    other = model.sample(1, ("albedo",))
    assert np.abs(other["albedo"] - sample0["albedo"]).max() > 0.05
    assert torch.equal(model.ws_for_seed(3), model.ws_for_seed(3))


@pytest.mark.parametrize("fmt", ["exr", "png16", "tiff"])
def test_write_formats(model: TextureModel, tmp_path: Path, fmt: str) -> None:
    res = model.write(4, tmp_path, fmt)
    ref = model.sample(4, OUTPUT_MAPS)
    suffix = {"exr": ".exr", "png16": ".png", "tiff": ".tif"}[fmt]
    folder = tmp_path / "seed0004"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{m}{suffix}" for m in OUTPUT_MAPS] + ["contact.png"])
    quantisation = HALF_FLOAT_QUANTISATION if fmt == "exr" else quantisation_bound(16)
    for name, channels in (("albedo", 3), ("specular", 1), ("displacement", 1), ("normal", 3)):
        arr = read_image(folder / f"{name}{suffix}")
        assert arr.shape == (*CANVAS, channels) and arr.dtype == np.float32
        assert arr.min() >= 0.0 and arr.max() <= 1.0
        if name == "displacement" and fmt in ("exr", "tiff"):  # stored as float32: no quantisation
            assert_roundoff_equal(arr, ref[name], what=f"{name}.{fmt}")
        else:
            assert np.abs(arr - ref[name]).max() <= quantisation, name
    n = read_image(folder / f"normal{suffix}") * 2 - 1
    # n = 2x - 1 moves each of the 3 channels by <= 2 quantisation, so the length by <= that vector's length
    length_bound = 2 * np.sqrt(3) * quantisation + ROUNDOFF_K * np.finfo(np.float32).eps
    assert np.abs(np.linalg.norm(n, axis=-1) - 1).max() <= length_bound
    from PIL import Image

    with Image.open(folder / "contact.png") as im:
        assert im.mode == "RGB" and im.width > 4 * CANVAS[1] // 2
    assert res["timings"]["patch_evaluations"] == 3 * 6
    assert set(res["paths"]) == {*OUTPUT_MAPS, "contact"}


def test_write_refuses_to_overwrite_and_is_deterministic(model: TextureModel, tmp_path: Path) -> None:
    model.write(0, tmp_path / "a", "png16")
    model.write(0, tmp_path / "b", "png16")
    for name in OUTPUT_MAPS:  # same seed -> same files, byte for byte
        first, second = (tmp_path / d / "seed0000" / f"{name}.png" for d in ("a", "b"))
        assert first.read_bytes() == second.read_bytes()
    target = tmp_path / "a/seed0000/albedo.png"
    before = target.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="albedo.png"):
        model.write(0, tmp_path / "a", "png16")
    assert target.stat().st_mtime_ns == before
    model.write(0, tmp_path / "a", "png16", overwrite=True)


def test_extrapolate_changes_only_the_untrained_region(model: TextureModel) -> None:
    mods = ("albedo", "displacement")
    masked = model.sample(6, mods)
    filled = model.sample(6, mods, extrapolate=True)
    inside, outside = model.mask > 0, model.mask == 0
    for m in mods:
        assert np.array_equal(filled[m][inside], masked[m][inside])
        assert np.abs(filled[m][outside] - 0.5).mean() > 1e-3  # the untrained region is filled
    with pytest.raises(ValueError, match="full canvas"):
        model.sample(6, mods, region=(0, 0, 32, 32), extrapolate=True)


def test_extrapolate_fill_is_identity_inside_and_smooth_outside() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    blotches = ndimage.gaussian_filter(rng.normal(size=(192, 256, 2)), (6, 6, 0)) * 10.0
    detail = rng.normal(size=(192, 256, 2)) * 0.1
    img = (blotches + detail).astype(np.float32)
    mask = np.zeros((192, 256), np.uint8)
    mask[48:144, 64:192] = 1
    out = extrapolate_fill(img, mask)
    assert out.shape == img.shape and np.isfinite(out).all()
    assert np.array_equal(out[mask > 0], img[mask > 0])
    far = ndimage.distance_transform_edt(mask == 0) > 16

    def high(a: np.ndarray) -> np.ndarray:
        return a - ndimage.gaussian_filter(a, (1, 1, 0))

    def low(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, (6, 6, 0))

    for c in range(2):
        assert low(out)[far, c].std() < 0.5 * low(img)[far, c].std()  # the blotches are blurred away
        keep = np.corrcoef(high(out)[far, c], high(img)[far, c])[0, 1]
        assert keep > 0.9  # the fine detail stays


def test_vary_noise_and_interpolate(model: TextureModel) -> None:
    varied = list(model.vary_noise(3, 2, modalities=("albedo",)))
    assert [k for k, _ in varied] == [0, 1]
    a, b = varied[0][1]["albedo"], varied[1][1]["albedo"]
    assert np.abs(a - b).max() > 1e-3
    again = list(model.vary_noise(3, 1, modalities=("albedo",)))[0][1]["albedo"]
    assert np.array_equal(a, again)
    frames = list(model.interpolate(1, 2, 3, modalities=("albedo",)))
    assert [t for t, _ in frames] == [0.0, 0.5, 1.0]
    start = model.sample(1, ("albedo",))["albedo"]
    end = model.sample_ws(model.ws_for_seed(2), ("albedo",), noise_seed=1)["albedo"]
    assert_roundoff_equal(frames[0][1]["albedo"], start, what="interpolation at t = 0")
    assert_roundoff_equal(frames[-1][1]["albedo"], end, what="interpolation at t = 1")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(ckpt: Path, model: TextureModel) -> None:
    gpu = gantlitz.load(ckpt, device="cuda", precision="fp32")
    ref = model.sample(9, OUTPUT_MAPS)
    out = gpu.sample(9, OUTPUT_MAPS)
    for m in OUTPUT_MAPS:
        assert np.abs(out[m] - ref[m]).max() < 1e-3
    bf16 = gantlitz.load(ckpt, device="cuda", precision="bf16").sample(9, ("albedo",))
    assert np.abs(bf16["albedo"] - ref["albedo"]).mean() < 0.05


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_generate_and_refusal(ckpt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "gen"
    r = runner.invoke(main, ["generate", str(ckpt), "--seeds", "0,2", "--out", str(out), "--format", "png16",
                             "--no-progress"])
    assert r.exit_code == 0, r.output
    for s in ("seed0000", "seed0002"):
        expected = sorted([f"{m}.png" for m in OUTPUT_MAPS] + ["contact.png"])
        assert sorted(p.name for p in (out / s).iterdir() if not p.name.startswith(".")) == expected
    assert (out / "contact.png").exists()
    record = json.loads((out / "generate.json").read_text())
    assert record["seeds"] == [0, 2] and record["format"] == "png16" and record["gantlitz_version"]
    # A second run refuses before writing anything, naming the existing file.
    r = runner.invoke(main, ["generate", str(ckpt), "--seeds", "1-2", "--out", str(out), "--format", "png16"])
    assert r.exit_code != 0 and "exists" in r.output and "seed0002" in r.output
    assert not (out / "seed0001").exists()


def test_cli_errors(ckpt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["generate", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "no such checkpoint" in r.output
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00garbage" * 100)
    r = runner.invoke(main, ["generate", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "cannot load the checkpoint" in r.output and "corrupt.safetensors" in r.output
    r = runner.invoke(main, ["generate", str(ckpt), "--out", str(tmp_path / "o"), "--format", "jpeg"])
    assert r.exit_code == 2 and "jpeg" in r.output
    r = runner.invoke(main, ["generate", str(ckpt), "--out", str(tmp_path / "o"), "--device", "gpu"])
    assert r.exit_code != 0 and "unknown device" in r.output
    r = runner.invoke(main, ["generate", str(ckpt), "--out", str(tmp_path / "o"), "--seeds", "7-3"])
    assert r.exit_code == 2 and "--seeds" in r.output
    assert not (tmp_path / "o").exists()


def test_cli_interpolate_and_vary_noise(ckpt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "interp"
    r = runner.invoke(main, ["interpolate", str(ckpt), "--seeds", "1,2", "--steps", "3", "--out", str(out),
                             "--save-frames", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (out / "contact.png").exists() and (out / "interpolate.gif").exists()
    assert len(list((out / "frames").glob("frame*.png"))) == 3
    r = runner.invoke(main, ["interpolate", str(ckpt), "--seeds", "1", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    out = tmp_path / "vary"
    r = runner.invoke(main, ["vary-noise", str(ckpt), "--seed", "3", "--count", "2", "--out", str(out),
                             "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (out / "contact.png").exists() and json.loads((out / "vary-noise.json").read_text())["noise_seeds"] == [0, 1]
    r = runner.invoke(main, ["vary-noise", str(ckpt), "--seed", "3", "--count", "2", "--out", str(out)])
    assert r.exit_code != 0 and "exists" in r.output


def test_missing_dataset_facts_default_with_warning(tmp_path: Path) -> None:
    preset = PRESET
    G, _ = build(preset, seed=0)
    path = tmp_path / "bare.safetensors"
    checkpoint.save(path, checkpoint.prefixed(G.state_dict(), "G"), meta={"preset": to_dict(preset), "step": 0})
    with pytest.warns(UserWarning, match="displacement_scale"):
        m = gantlitz.load(path)
    assert m.displacement_scale == CANVAS[1] / 256 and m.normal_convention == "opengl"
    assert m.patch_size == PRESET.model.patch_size
