"""gantlitz.evaluate and `gantlitz evaluate` with a fake dataset store and fake texture models."""

from __future__ import annotations

import csv
import json
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.ndimage import gaussian_filter

from gantlitz import evaluate as ev
from gantlitz.evaluate import command, reading
from gantlitz.metrics.features import LocalFeatures
from helpers import assert_roundoff_equal

CANVAS = (64, 96)
PATCH = 32


def _texture(seed: int, canvas=CANVAS, tint: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """H×W×5 in [0, 1]: a seeded face-like texture; `tint` shifts the albedo, `blur` removes detail."""
    rng = np.random.default_rng(seed)
    h, w = canvas
    base = rng.uniform(0.35, 0.65, 5)
    low = gaussian_filter(rng.normal(0, 1, (h, w, 5)), (6, 6, 0)) * 0.5
    high = rng.normal(0, 0.06, (h, w, 5))
    if blur:
        high = gaussian_filter(high, (blur, blur, 0))
    tex = base + low + high
    tex[:, :, :3] += tint
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


class FakeStore:
    """The PatchStore interface over in-memory textures (values in [-1, 1], channel-first reads)."""

    def __init__(self, n: int = 12, manifest=None):
        self.canvas = CANVAS
        self.subjects = [f"subject{i:03d}" for i in range(n)]
        self.manifest = manifest or {}
        self._tex = [_texture(1000 + i) * 2 - 1 for i in range(n)]
        self.mask = np.ones(CANVAS, np.uint8)

    def read_patch(self, subject, top, left, size):
        return np.transpose(self._tex[subject][top : top + size, left : left + size], (2, 0, 1)).copy()


class FakeModel:
    """The TextureModel interface: seeded textures, `region` crops the canvas."""

    patch_size = PATCH

    def __init__(self, tint: float = 0.0, blur: float = 0.0, canvas=CANVAS):
        self.tint, self.blur, self.canvas = tint, blur, canvas
        self.calls = []

    def sample(self, seed, modalities=("albedo",), truncation=1.0, region=None):
        self.calls.append((seed, tuple(modalities), region))
        tex = _texture(seed, self.canvas, self.tint, self.blur)
        if region is not None:
            top, left, h, w = region
            tex = tex[top : top + h, left : left + w]
        chans = {"albedo": slice(0, 3), "specular": slice(3, 4), "displacement": slice(4, 5)}
        return {m: tex[:, :, chans[m]] for m in modalities}


MODELS = {"good.ckpt": FakeModel(), "tinted.ckpt": FakeModel(tint=0.25), "blurry.ckpt": FakeModel(blur=3.0)}


def _loader(path):
    return MODELS[path.name if hasattr(path, "name") else str(path).rsplit("/", 1)[-1]]


def _ckpts(tmp_path, names=("good.ckpt", "tinted.ckpt", "blurry.ckpt")):
    paths = []
    for name in names:
        p = tmp_path / name
        p.write_bytes(b"x")
        paths.append(p)
    return paths


def _small_extractor():
    return LocalFeatures(resolution=32, widths=(8, 16))


# -------------------------------------------------------------------------------------- arrays


def test_evaluate_sets_reference_and_ordering():
    real = np.stack([_texture(i)[:, :, :3] for i in range(20)])
    same = np.stack([_texture(500 + i)[:, :, :3] for i in range(20)])
    shifted = np.clip(same + 0.25, 0, 1)
    res = ev.evaluate_sets(real, {"same": same, "shifted": shifted}, _small_extractor(), n_splits=64, seed=1)
    assert res["subset_size"] == 10 and res["n_splits"] == 64 and res["n_real"] == 20
    assert list(res["sets"]) == [ev.REAL, "same", "shifted"]
    for entry in res["sets"].values():
        assert entry["values"].shape == (64,)
    ref, good, bad = (res["sets"][k] for k in (ev.REAL, "same", "shifted"))
    assert abs(ref["mean"]) < 3 * ref["std"]  # the reference is centred on 0
    assert bad["mean"] > good["mean"] + 3 * good["std"]
    assert bad["kid_all"] > good["kid_all"]
    again = ev.evaluate_sets(real, {"same": same, "shifted": shifted}, _small_extractor(), n_splits=64, seed=1)
    np.testing.assert_array_equal(again["sets"]["shifted"]["values"], bad["values"])
    with pytest.raises(ValueError, match="subset_size"):
        ev.evaluate_sets(real, {"x": same}, _small_extractor(), n_splits=4, subset_size=11)
    with pytest.raises(ValueError, match="needs >= subset_size"):
        ev.evaluate_sets(real, {"x": same[:5]}, _small_extractor(), n_splits=4)


# ------------------------------------------------------------------------------------ geometry


def test_resolve_location_lips_and_overrides():
    # The 6144x4096 canvas: lips patch snapped to the 256-stride training grid.
    assert ev.resolve_location("lips", (4096, 6144), 512) == (1536, 2816)
    top, left = ev.resolve_location("lips", (4096, 4096), 512)
    assert (top % 256, left % 256) == (0, 0) and top <= 0.467 * 4096 <= top + 512
    assert ev.resolve_location("lips", (4096, 6144), 512, {"locations": {"lips": [1024, 2048]}}) == (1024, 2048)
    assert ev.resolve_location("nose", (4096, 6144), 512, {"locations": {"nose": [1280, 2816]}}) == (1280, 2816)
    assert ev.resolve_location((256, 512), (4096, 6144), 512) == (256, 512)
    assert ev.resolve_location("256,512", (4096, 6144), 512) == (256, 512)
    with pytest.raises(ValueError, match="unknown location"):
        ev.resolve_location("ear", (4096, 6144), 512)
    with pytest.raises(ValueError, match="leaves the canvas"):
        ev.resolve_location((3800, 0), (4096, 6144), 512)
    assert ev.whole_shape((4096, 6144), 768) == (512, 768, 8)
    assert ev.whole_shape((64, 96), 48) == (32, 48, 2)
    # Real whole maps: full-resolution tiles, block mean (not the store's resampled preview).
    store = FakeStore(2)
    whole = reading.read_whole(store, 1, CANVAS, 2, max_tile=16)
    full = store._tex[1] * 0.5 + 0.5
    assert_roundoff_equal(whole["albedo"], full[:, :, :3].reshape(32, 2, 48, 2, 3).mean(axis=(1, 3)), what="albedo")
    assert_roundoff_equal(whole["displacement"], full[:, :, 4:].reshape(32, 2, 48, 2, 1).mean(axis=(1, 3)),
                          what="displacement")
    assert ev.checkpoint_labels(["a/x.safetensors", "b/y.safetensors"]) == ["x", "y"]
    assert ev.checkpoint_labels(["a/latest.safetensors", "b/latest.safetensors"]) == ["a/latest", "b/latest"]


# -------------------------------------------------------------------------------------- end to end


def _run(tmp_path, out, **kw):
    args = dict(n_splits=40, patch=PATCH, whole_size=48, seed=3, progress=False, loader=_loader,
                extractor=_small_extractor())
    args.update(kw)
    return ev.evaluate(_ckpts(tmp_path), FakeStore(), out, **args)


def test_evaluate_writes_results_figures_and_is_deterministic(tmp_path):
    out = tmp_path / "eval"
    summary = _run(tmp_path, out)
    for name in ev.RESULT_FILES:
        assert (out / name).is_file(), name
    assert summary["location"] == [16, 32]  # lips on the 64x96 canvas, 16-pixel grid
    assert summary["whole_size"] == [32, 48] and summary["subset_size"] == 6 and summary["count"] == 12

    whole = json.loads((out / "kid_whole.json").read_text())
    patch = json.loads((out / "kid_patch.json").read_text())
    names = [ev.REAL, "good", "tinted", "blurry"]
    assert list(whole["sets"]) == names and list(patch["sets"]) == names
    for res in (whole, patch):
        assert res["n_splits"] == 40
        for entry in res["sets"].values():
            assert len(entry["values"]) == 40
            assert entry["mean"] == pytest.approx(np.mean(entry["values"]))
            assert entry["std"] == pytest.approx(np.std(entry["values"]))
        assert res["sets"]["tinted"]["mean"] > res["sets"]["good"]["mean"] + 2 * res["sets"]["good"]["std"]
    assert whole["checkpoints"]["good"].endswith("good.ckpt")
    with open(out / "kid_patch.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40 * 4 and {r["set"] for r in rows} == set(names)

    spectra = json.loads((out / "spectra.json").read_text())["modalities"]
    assert set(spectra) == {"albedo", "specular", "displacement"}
    real_hi = np.array(spectra["displacement"]["real"]["power"])[:, -4:].mean()
    blur_hi = np.array(spectra["displacement"]["blurry"]["power"])[:, -4:].mean()
    assert blur_hi < 0.2 * real_hi  # the blurry model lacks high frequencies

    layout = json.loads((out / "layout.json").read_text())["models"]
    assert set(layout) == {"good", "tinted", "blurry"} == set(summary["layout"])
    for scores in layout.values():
        assert set(scores) == {"albedo", "specular", "displacement"}
        for s in scores.values():
            assert -1 <= s["mean_corr"] <= 1 and s["fake_count"] == 12 and s["real_count"] == 12

    for name in ("kid_whole.png", "kid_patch.png", "spectra.png", "layout.png"):
        img = np.asarray(Image.open(out / name).convert("L"), dtype=np.float64)
        assert (out / name).stat().st_size > 10_000 and img.std() > 10, name

    # The same call again (overwrite) gives identical numbers.
    _run(tmp_path, out, overwrite=True)
    assert json.loads((out / "kid_whole.json").read_text())["sets"] == whole["sets"]
    # Generated maps: every modality over the whole canvas (layout needs them; patches are crops of them).
    assert {(c[1], c[2]) for c in MODELS["good.ckpt"].calls} == {(("albedo", "specular", "displacement"), None)}


def test_evaluate_refuses_overwrite_and_reports_missing(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite"):
        _run(tmp_path, out, n_splits=4)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        ev.evaluate([tmp_path / "missing.ckpt"], FakeStore(), tmp_path / "o2", loader=_loader, progress=False)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        ev.evaluate(_ckpts(tmp_path)[:1], tmp_path / "nodata", tmp_path / "o3", loader=_loader, progress=False)


def test_evaluate_other_canvas_skips_patch(tmp_path):
    MODELS["global.ckpt"] = FakeModel(canvas=(32, 32))
    summary = ev.evaluate(_ckpts(tmp_path, ("good.ckpt", "global.ckpt")), FakeStore(), tmp_path / "o",
                          n_splits=8, patch=PATCH, whole_size=48, progress=False, loader=_loader,
                          extractor=_small_extractor())
    assert set(summary["whole"]) == {ev.REAL, "good", "global"}
    assert set(summary["patch_kid"]) == {ev.REAL, "good"}


# ------------------------------------------------------------------------------------------ CLI


def test_cli_evaluate(tmp_path, monkeypatch):
    from gantlitz.cli import main

    data = tmp_path / "ds"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"format": "gantlitz-dataset"}))
    ckpts = _ckpts(tmp_path, ("good.ckpt", "tinted.ckpt"))
    fake_generate = types.ModuleType("gantlitz.generate")
    fake_generate.load = _loader
    monkeypatch.setitem(sys.modules, "gantlitz.generate", fake_generate)
    monkeypatch.setattr(command, "open_data", lambda d: (FakeStore(), {}))
    original = ev.evaluate

    def small(*args, **kwargs):  # keep the CLI's own arguments, make the network small
        return original(*args, **{**kwargs, "extractor": _small_extractor()})

    monkeypatch.setattr(ev, "evaluate", small)
    runner = CliRunner()
    out = tmp_path / "out"
    cmd = ["evaluate", *map(str, ckpts), "--data", str(data), "--out", str(out), "--splits", "20",
           "--patch-size", str(PATCH), "--whole-size", "48", "--label", "G", "--label", "T"]
    result = runner.invoke(main, cmd)
    assert result.exit_code == 0, result.output
    assert "real splits" in result.output and (out / "kid_patch.png").is_file()
    assert list(json.loads((out / "summary.json").read_text())["whole"]) == [ev.REAL, "G", "T"]
    again = runner.invoke(main, cmd)
    assert again.exit_code != 0 and "--overwrite" in again.output
    assert runner.invoke(main, cmd + ["--overwrite"]).exit_code == 0

    missing = runner.invoke(main, ["evaluate", str(tmp_path / "nope.ckpt"), "--data", str(data), "--out", str(out)])
    assert missing.exit_code != 0 and "checkpoint not found" in missing.output
    nodata = runner.invoke(main, ["evaluate", str(ckpts[0]), "--data", str(tmp_path / "x"), "--out", str(out)])
    assert nodata.exit_code != 0 and "manifest.json" in nodata.output
    noweights = runner.invoke(main, ["evaluate", str(ckpts[0]), "--data", str(data), "--out", str(out),
                                     "--features", "inception"])
    assert noweights.exit_code != 0 and "--weights" in noweights.output
