import hashlib

import numpy as np
import pytest
from click.testing import CliRunner

from gantlitz.outputs import RECORD_NAME
from gantlitz import maps
from gantlitz.cli import main
from gantlitz.data import synth
from gantlitz.imageio import read_image
from helpers import assert_roundoff_equal


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != RECORD_NAME:  # the record holds modification times
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_of_raw_dataset(raw_dataset):
    assert (raw_dataset / "mask.png").is_file()
    readme = (raw_dataset / "README.txt").read_text()
    assert "Lee Perry-Smith" in readme and "CC BY 3.0" in readme and "www.triplegangers.com" in readme
    subjects = sorted(p.name for p in raw_dataset.iterdir() if p.is_dir())
    assert subjects == ["subject000", "subject001", "subject002"]
    for name, ch in (("albedo", 3), ("specular", 1), ("normal", 3)):
        img = read_image(raw_dataset / "subject000" / f"{name}.png")
        assert img.shape == (256, 256, ch)


def test_deterministic_per_seed_via_cli(tmp_path):
    runner = CliRunner()
    args = ["--subjects", "2", "--size", "128x128", "--seed", "7"]
    r1 = runner.invoke(main, ["synth", str(tmp_path / "a"), *args])
    r2 = runner.invoke(main, ["synth", str(tmp_path / "b"), *args])
    r3 = runner.invoke(main, ["synth", str(tmp_path / "c"), *args[:-1], "8"])
    assert r1.exit_code == r2.exit_code == r3.exit_code == 0, r1.output
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    # existing OUT is refused without --overwrite, and left as it was
    before = _digest(tmp_path / "a")
    r4 = runner.invoke(main, ["synth", str(tmp_path / "a"), *args[:-1], "9"])
    assert r4.exit_code != 0 and "exists" in r4.output
    assert _digest(tmp_path / "a") == before
    r5 = runner.invoke(main, ["synth", str(tmp_path / "a"), *args[:-1], "8", "--overwrite"])
    assert r5.exit_code == 0 and _digest(tmp_path / "a") == _digest(tmp_path / "c")
    bad = runner.invoke(main, ["synth", str(tmp_path / "d"), "--size", "100x128"])
    assert bad.exit_code != 0 and "multiples of 64" in bad.output


def test_subjects_differ_and_look_like_skin():
    layout = synth.load_head(128, 128)
    m = layout.mask > 0
    assert 0.8 < m.mean() < 1.0
    subs = [synth.synthesize_subject(layout, 3, i) for i in range(4)]
    means = np.array([s["albedo"][m].mean(axis=0) for s in subs])
    for mu in means:  # skin: red >= green >= blue on average
        assert mu[0] >= mu[1] >= mu[2] > 0.02
    assert np.ptp(means[:, 1]) > 0.02  # skin tones differ between identities
    for s in subs:
        assert (s["albedo"][~m] == 0).all() and (s["specular"][~m] == 0).all()
        assert 0.0 < s["specular"][m].mean() < 0.8
        # fine detail: the high-pass energy of albedo and height is not negligible
        assert maps.high_pass(s["albedo"][..., 1], 2.0)[m].std() > 2e-3
        assert maps.high_pass(s["displacement"], 2.0)[m].std() > 0.02
        # the normal map is the displacement's normal map
        n = maps.displacement_to_normals(s["displacement"], 1.0)
        assert_roundoff_equal(maps.encode_normals(n)[m], s["normal"][m], what="normal map")


def test_specular_correlates_with_pores_and_hair():
    layout = synth.load_head(128, 128)
    s = synth.synthesize_subject(layout, 0, 1)
    m = layout.mask > 0
    hp_spec = maps.high_pass(s["specular"][..., 0], 1.5)[m]
    hp_disp = maps.high_pass(s["displacement"], 1.5)[m]
    hp_alb = maps.high_pass(s["albedo"][..., 1], 1.5)[m]
    # measured 0.53 and 0.39 at 128²: pits, creases and hair are lower, darker and less shiny together
    assert np.corrcoef(hp_spec, hp_disp)[0, 1] > 0.35
    assert np.corrcoef(hp_spec, hp_alb)[0, 1] > 0.25


def test_non_square_size_and_packaged_head_small():
    layout = synth.load_head(128, 192)
    assert layout.mask.shape == (128, 192) and layout.albedo.shape == (128, 192, 3)
    head = synth.packaged_head_dir()
    total = sum(p.stat().st_size for p in head.iterdir() if p.is_file())
    assert total < 3 * 1024 * 1024
    assert "CC BY 3.0" in (head / "LICENSE.txt").read_text()


def test_missing_head_folder_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no head maps"):
        synth.load_head(64, 64, tmp_path)
    monkeypatch.setenv(synth.HEAD_ENV, str(tmp_path / "nowhere"))
    try:
        found = synth.find_scan_dir()  # falls back to the repo-relative shared folder
        assert (found / synth.SCAN_FILES["albedo"]).is_file()
    except FileNotFoundError as exc:
        assert synth.HEAD_ENV in str(exc)
