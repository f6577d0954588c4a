"""Inversion (§5.2): recovery of a generated texture, modality completion, super-resolution, bad targets,
resume equivalence, latent files and the CLI. A tiny random generator (32-pixel patches, 64x96 canvas)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gantlitz
from gantlitz import checkpoint
from gantlitz.cli import main
from gantlitz.imageio import read_image, write_image
from gantlitz.resample import area_downsample
from gantlitz.invert import (
    InversionConfig,
    InversionError,
    TargetError,
    check_target,
    complete,
    invert,
    load_latent,
    load_target,
    psnr,
    reconstruction_psnr,
    save_latent,
    synthesize_maps,
)
from gantlitz.networks import build
from helpers import (
    SMALL_CANVAS,
    SMALL_PRESET,
    SMALL_SCALE,
    assert_roundoff_equal,
    ellipse_mask,
    randomise,
    save_generator,
)

CANVAS, SCALE, PRESET = SMALL_CANVAS, SMALL_SCALE, SMALL_PRESET

# Measured on this generator (CPU, fp32): inverting from the average w gives about 28.6 dB after 100 + 60
# steps, against 16.4 dB for the average-w texture itself; super-resolution ×4 reaches about 28.3 dB at
# the target's resolution after 60 + 40 steps. The thresholds leave a margin for other BLAS builds.
MIN_PSNR = 25.0
MIN_GAIN_OVER_AVERAGE = 8.0
MIN_SUPERRES_PSNR = 25.0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    G, _ = build(PRESET, seed=3, mask=ellipse_mask())
    randomise(G, scale=0.1, rgb_gain=0.15)
    with torch.no_grad():  # a trained generator tracks the average w; set it as training would have
        z = torch.randn(4000, G.cfg.z_dim, generator=torch.Generator().manual_seed(9))
        G.mapper.w_avg.copy_(G.mapper(z).mean(0))
    return save_generator(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", G)


@pytest.fixture(scope="module")
def model(ckpt: Path):
    return gantlitz.load(ckpt)


@pytest.fixture(scope="module")
def truth(model) -> dict[str, np.ndarray]:
    """All modalities of a known latent (seed 5) with the hashed noise of seed 7."""
    ws = model.ws_for_seed(5)
    return synthesize_maps(model.G, ws, None, noise_seed=7)


@pytest.fixture(scope="module")
def average(model) -> dict[str, np.ndarray]:
    ws = model.G.w_avg[None, None].expand(1, model.G.num_ws, -1)
    return synthesize_maps(model.G, ws, None, noise_seed=0)


@pytest.fixture(scope="module")
def completion(model, truth):
    cfg = InversionConfig(latent_steps=100, noise_steps=60, region_patches=None, seed=0)
    return invert(model, truth["albedo"], "albedo", "completion", cfg, device="cpu")


def _low(image: np.ndarray, f: int) -> np.ndarray:
    return area_downsample(image, f)


def test_inversion_recovers_a_generated_texture(model, truth, average, completion) -> None:
    mask = model.mask
    base = psnr(average["albedo"], truth["albedo"], mask)
    got = psnr(completion.reconstruction, truth["albedo"], mask)
    assert_roundoff_equal(np.float64(got), np.float64(completion.psnr), what="PSNR (dB)")
    assert got >= MIN_PSNR, (got, base)
    assert got >= base + MIN_GAIN_OVER_AVERAGE, (got, base)
    # Both stages ran and the loss went down.
    stages = completion.losses[:, 0]
    assert (stages == 1).sum() == 100 and (stages == 2).sum() == 60
    assert completion.losses[-1, 2] < 0.5 * completion.losses[0, 2]
    # Noise maps stay noise-like (mean/std penalties).
    for p in completion.noise.maps:
        assert abs(float(p.mean())) < 0.1 and 0.7 < float(p.std()) < 1.3


def test_completion_produces_every_modality(model, truth, average, completion) -> None:
    maps = complete(completion, model)
    assert set(maps) == {"albedo", "specular", "displacement", "normal"}
    h, w = CANVAS
    for name, c in (("albedo", 3), ("specular", 1), ("displacement", 1), ("normal", 3)):
        assert maps[name].shape == (h, w, c) and maps[name].dtype == np.float32
        assert np.isfinite(maps[name]).all() and maps[name].min() >= 0 and maps[name].max() <= 1
    assert_roundoff_equal(maps["albedo"], completion.reconstruction, what="completed albedo vs the reconstruction")
    # The completed modalities come from the recovered latent: closer to the truth than the average's.
    mask = model.mask
    for name in ("specular", "displacement"):
        assert psnr(maps[name], truth[name], mask) > psnr(average[name], truth[name], mask) + 1.0, name
    bare = complete(completion, model.G)  # a bare generator: no normals
    assert set(bare) == {"albedo", "specular", "displacement"}


def test_superres_output_size_and_consistency(model, truth) -> None:
    f = 4
    low = _low(truth["albedo"], f)
    cfg = InversionConfig(latent_steps=60, noise_steps=40, region_patches=1, seed=1)
    res = invert(model, low, "albedo", "superres", cfg, device="cpu")
    assert res.factor == f and res.mode == "superres"
    assert res.reconstruction.shape == (*CANVAS, 3)
    cov = _low(model.mask.astype(np.float32)[:, :, None], f)[:, :, 0]
    got = psnr(_low(res.reconstruction, f), low, cov)
    assert_roundoff_equal(np.float64(got), np.float64(res.psnr), what="PSNR (dB)")
    assert got >= MIN_SUPERRES_PSNR
    # Full-canvas maps of every modality.
    maps = complete(res, model)
    assert maps["specular"].shape == (*CANVAS, 1) and maps["normal"].shape == (*CANVAS, 3)


def test_superres_regularises_fine_noise_more(model, truth) -> None:
    low = _low(truth["albedo"], 4)
    seen = {}

    def grab(stage, step, values):
        seen.setdefault(stage, []).append(values["noise_reg"])

    cfg = InversionConfig(latent_steps=0, noise_steps=2, region_patches=None, seed=3)
    invert(model, low, "albedo", "superres", cfg, device="cpu", callback=grab)
    boosted = seen[2][0]
    cfg = dataclasses.replace(cfg, superres_noise_boost=1.0)
    seen.clear()
    invert(model, low, "albedo", "superres", cfg, device="cpu", callback=grab)
    assert boosted > seen[2][0] > 0


def test_noise_steps_only_touch_the_region_crops(model, truth) -> None:
    """Stochastic regions: one stage-2 step on a 1-patch region changes the finest noise map only inside
    the crop that region reads (margins included); coarse layers below the size limit change as a whole."""
    cfg = InversionConfig(latent_steps=0, noise_steps=1, region_patches=1, seed=2, lr_rampup=0.0,
                          whole_noise_samples=0)
    res = invert(model, truth["albedo"], "albedo", "completion", cfg, device="cpu")
    from gantlitz.noise import ExplicitNoise

    start = ExplicitNoise(model.G.noise_layouts(), init_seed=cfg.seed)
    p = model.G.patch_size
    finest = len(start.maps) - 2  # last level, first conv (margin 4)
    margin = model.G.noise_layouts()[finest].margin
    changed = (res.noise.maps[finest] != start.maps[finest])[0, 0]
    rows, cols = changed.any(dim=1).nonzero()[:, 0], changed.any(dim=0).nonzero()[:, 0]
    assert 0 < len(rows) <= p + 2 * margin and 0 < len(cols) <= p + 2 * margin
    assert int(rows.max() - rows.min()) < p + 2 * margin and int(cols.max() - cols.min()) < p + 2 * margin
    assert changed.float().mean() < 0.5
    cfg = dataclasses.replace(cfg, whole_noise_samples=1 << 18)
    res = invert(model, truth["albedo"], "albedo", "completion", cfg, device="cpu")
    assert (res.noise.maps[finest] != start.maps[finest]).float().mean() > 0.9


def test_bad_targets_give_clear_errors(model, tmp_path: Path) -> None:
    h, w = CANVAS
    rgb = np.full((h, w, 3), 0.5, np.float32)
    with pytest.raises(TargetError, match="aspect ratio"):
        check_target(rgb[:, : w // 2], "albedo", CANVAS, "completion")
    with pytest.raises(TargetError, match="aspect ratio"):
        check_target(np.zeros((16, 16, 3)), "albedo", CANVAS, "superres")
    with pytest.raises(TargetError, match="use --mode superres"):
        check_target(rgb[::4, ::4], "albedo", CANVAS, "completion")
    with pytest.raises(TargetError, match="integer factor"):
        check_target(np.zeros((48, 72, 3)), "albedo", (64, 96), "superres")  # 4/3
    with pytest.raises(TargetError, match="use --mode completion"):
        check_target(rgb, "albedo", CANVAS, "superres")
    with pytest.raises(TargetError, match="needs 3 channels"):
        check_target(rgb[:, :, :1], "albedo", CANVAS, "completion")
    with pytest.raises(TargetError, match="needs 1 channel"):
        check_target(np.zeros((h, w, 2)), "specular", CANVAS, "completion")
    colour = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    with pytest.raises(TargetError, match="colour"):
        check_target(colour, "displacement", CANVAS, "completion")
    with pytest.raises(TargetError, match="NaN"):
        check_target(np.full((h, w, 1), np.nan), "specular", CANVAS, "completion")
    with pytest.raises(InversionError, match="unknown modality"):
        check_target(rgb, "normal", CANVAS, "completion")
    # Accepted with normalisation: RGBA albedo (alpha dropped), grey RGB specular (averaged), 2-D arrays.
    arr, f = check_target(np.dstack([rgb, np.ones((h, w))]), "albedo", CANVAS, "completion")
    assert arr.shape == (h, w, 3) and f == 1
    arr, _ = check_target(rgb, "specular", CANVAS, "completion")
    assert arr.shape == (h, w, 1)
    arr, f = check_target(np.zeros((h // 2, w // 2)), "displacement", CANVAS, "superres")
    assert arr.shape == (h // 2, w // 2, 1) and f == 2
    # Files: unreadable / missing files name the file.
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(TargetError, match="broken.png"):
        load_target(bad, "albedo", CANVAS, "completion")
    with pytest.raises(TargetError, match="missing.exr"):
        load_target(tmp_path / "missing.exr", "albedo", CANVAS, "completion")
    small = tmp_path / "small.png"
    write_image(small, rgb[:, : w // 2])
    with pytest.raises(TargetError, match="small.png.*aspect ratio"):
        load_target(small, "albedo", CANVAS, "completion")


def test_resume_gives_the_uninterrupted_result(model, truth, tmp_path: Path) -> None:
    # whole_noise_samples=0: every noise layer takes the crop path (lazy Adam on the region's crops).
    cfg = InversionConfig(latent_steps=6, noise_steps=6, region_patches=1, seed=4, save_every=2, whole_noise_samples=0)
    target = truth["albedo"]
    full = invert(model, target, "albedo", "completion", cfg, device="cpu", state_path=tmp_path / "a.safetensors")
    state = tmp_path / "b.safetensors"
    # Interrupted in stage 1 (after step 5, last save at step 4), then in stage 2, then finished.
    assert invert(model, target, "albedo", "completion", cfg, device="cpu", state_path=state, stop_after=5) is None
    assert invert(model, target, "albedo", "completion", cfg, device="cpu", state_path=state, resume=True,
                  stop_after=3) is None
    _, meta = checkpoint.load(state)
    assert meta["stage"] == 2
    resumed = invert(model, target, "albedo", "completion", cfg, device="cpu", state_path=state, resume=True)
    assert torch.equal(full.ws, resumed.ws)
    for a, b in zip(full.noise.maps, resumed.noise.maps):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(full.losses, resumed.losses)
    # A different target or configuration refuses to resume.
    with pytest.raises(InversionError, match="target"):
        invert(model, target * 0.5, "albedo", "completion", cfg, device="cpu", state_path=state, resume=True)
    with pytest.raises(InversionError, match="configuration"):
        invert(model, target, "albedo", "completion", dataclasses.replace(cfg, seed=5), device="cpu",
               state_path=state, resume=True)


def test_latent_file_round_trip(model, completion, tmp_path: Path) -> None:
    path = save_latent(tmp_path / "latent.safetensors", completion, {"note": "test"})
    back = load_latent(path, model)
    assert torch.equal(back.ws, completion.ws) and back.modality == "albedo" and back.mode == "completion"
    assert back.extra["note"] == "test" and back.psnr == pytest.approx(completion.psnr)
    again = complete(back, model)
    np.testing.assert_array_equal(again["albedo"], complete(completion, model)["albedo"])
    other = dataclasses.replace(PRESET, model=dataclasses.replace(PRESET.model, w_dim=16))
    G2, _ = build(other, seed=0)
    with pytest.raises(InversionError, match="do not fit"):
        load_latent(path, G2)


def test_reconstruction_psnr_matches_definition() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((8, 8, 3)).astype(np.float32)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    mask = np.ones((8, 8))
    assert reconstruction_psnr(a, _low(a, 2), mask, 2) == float("inf")


def test_cli_invert_settings_through_set(ckpt: Path, truth, tmp_path: Path) -> None:
    """Every inversion setting is reachable by --set (coerced like a preset's); flags are shorthands; a
    setting given twice, an unknown key or an out-of-range value is refused before anything is written."""
    target = tmp_path / "albedo.png"
    write_image(target, truth["albedo"])
    out = tmp_path / "inv"
    runner = CliRunner()
    base = ["invert", str(ckpt), "--target", str(target), "--quiet", "--device", "cpu", "--format", "png16"]
    r = runner.invoke(main, [*base, "--out", str(out), "--steps", "3,2", "--set", "l1_weight=2",
                             "--set", "invert.region_patches=none", "--set", "lr_rampup=0"])
    assert r.exit_code == 0, r.output
    config = json.loads((out / "result.json").read_text())["config"]
    assert config == {**InversionConfig().to_dict(), "latent_steps": 3, "noise_steps": 2, "l1_weight": 2.0,
                      "region_patches": None, "lr_rampup": 0.0}
    r = runner.invoke(main, ["invert", str(ckpt), "--regenerate", str(out / "latent.safetensors"), "--out",
                             str(tmp_path / "regen"), "--set", "l1_weight=3"])
    assert r.exit_code != 0 and "takes no --target or --set" in r.output and not (tmp_path / "regen").exists()
    refused = {
        ("--set", "nope=1"): "latent_steps, noise_steps",
        ("--steps", "3,2", "--set", "noise_steps=4"): "noise_steps is given twice: by --steps",
        ("--set", "lr_latent=0"): "invert.lr_latent=0.0 must be > 0",
        ("--set", "loss_scales=two"): "invert.loss_scales: expected an integer",
        ("--set", "latent_steps=0", "--set", "noise_steps=0"): "nothing to do",
    }
    for extra, message in refused.items():
        bad = tmp_path / "bad"
        r = runner.invoke(main, [*base, "--out", str(bad), *extra])
        assert r.exit_code != 0 and message in r.output, (extra, r.output)
        assert not bad.exists(), extra


def test_docs_list_every_inversion_setting() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "inversion.md").read_text()
    missing = [f.name for f in dataclasses.fields(InversionConfig) if f"| `{f.name}` |" not in docs]
    assert not missing, f"docs/inversion.md's settings table lacks {missing}"


def test_cli_invert_regenerate_and_refusals(ckpt: Path, truth, tmp_path: Path) -> None:
    target = tmp_path / "albedo.png"
    write_image(target, truth["albedo"])
    out = tmp_path / "inv"
    runner = CliRunner()
    args = ["invert", str(ckpt), "--target", str(target), "--out", str(out), "--steps", "6,4",
            "--region-patches", "0", "--format", "png16", "--quiet", "--device", "cpu"]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.output
    for name in ("albedo.png", "specular.png", "displacement.png", "normal.png", "latent.safetensors",
                 "loss.png", "contact.png", "target.png", "result.json"):
        assert (out / name).is_file(), name
    assert not (out / "state.safetensors").exists()
    summary = json.loads((out / "result.json").read_text())
    assert summary["mode"] == "completion" and summary["steps"] == [6, 4]
    assert read_image(out / "specular.png").shape == (*CANVAS, 1)
    # Refuses to overwrite; --resume without an interrupted run is an error.
    r = runner.invoke(main, args)
    assert r.exit_code != 0 and "--overwrite" in r.output
    fresh = tmp_path / "fresh"
    r = runner.invoke(main, ["invert", str(ckpt), "--target", str(target), "--out", str(fresh), "--resume"])
    assert r.exit_code != 0 and "cannot resume" in r.output
    # Re-generation from the latent file reproduces the maps.
    out2 = tmp_path / "regen"
    r = runner.invoke(main, ["invert", str(ckpt), "--regenerate", str(out / "latent.safetensors"), "--out", str(out2),
                             "--format", "png16", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for name in ("albedo.png", "specular.png", "displacement.png", "normal.png"):
        np.testing.assert_array_equal(read_image(out2 / name), read_image(out / name))
    # Bad targets: clear messages naming the file.
    rgb = tmp_path / "wrong.png"
    write_image(rgb, truth["albedo"][:, :48])
    r = runner.invoke(main, ["invert", str(ckpt), "--target", str(rgb), "--out", str(tmp_path / "x"), "--quiet"])
    assert r.exit_code != 0 and "wrong.png" in r.output and "aspect ratio" in r.output
    r = runner.invoke(main, ["invert", str(ckpt), "--target", str(target), "--modality", "specular",
                             "--out", str(tmp_path / "y"), "--quiet"])
    assert r.exit_code != 0 and "needs 1 channel" in r.output
    r = runner.invoke(main, ["invert", str(ckpt), "--out", str(tmp_path / "z")])
    assert r.exit_code != 0 and "--target" in r.output
