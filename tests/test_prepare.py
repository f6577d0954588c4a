import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from click.testing import CliRunner

from gantlitz.outputs import record
from gantlitz import maps
from gantlitz.cli import main
import gantlitz.data.prepare as prep
from gantlitz.data.store import PatchStore, StoreError
from gantlitz.errors import InputError
from gantlitz.imageio import read_image, write_image
from gantlitz.outputs import FolderLock
from helpers import assert_roundoff_equal, quantisation_bound


def _run(*args):
    return CliRunner().invoke(main, ["prepare", *map(str, args)])


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_prepared_store_contents(prepared_store, raw_dataset):
    store = PatchStore(prepared_store)
    man = store.manifest
    assert man["format"] == "gantlitz-dataset" and man["version"] == 1
    assert store.canvas == (256, 256) and store.subjects == ["subject000", "subject001", "subject002"]
    assert man["modalities"] == {"albedo": 3, "specular": 1, "displacement": 1}
    assert man["normal_convention"] == "opengl" and man["flip"] is True and man["crop"] is None
    tex = np.load(prepared_store / "textures.npy", mmap_mode="r")
    assert tex.dtype == np.uint16 and tex.shape == (3, 256, 256, 5)
    assert np.load(prepared_store / "preview.npy").shape == (3, 256, 256, 5)
    mask = np.load(prepared_store / "mask.npy")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert (mask == (read_image(raw_dataset / "mask.png")[..., 0] > 0.5)).all()
    vis = mask > 0
    # albedo / specular are stored as given (16-bit), 0.5 outside the mask
    alb = read_image(raw_dataset / "subject001" / "albedo.png")
    assert_roundoff_equal(tex[1][..., :3][vis] / 65535.0, alb[vis], what="stored albedo")
    assert (tex[1][~vis] == 32768).all()
    # one dataset-wide scale: the widest subject spans [0, 1] inside the mask, the others less
    spans = [np.ptp(tex[i][..., 4][vis]) / 65535.0 for i in range(3)]
    assert max(spans) > 0.999 and all(0.2 < s <= 1.0 for s in spans)
    # the stored displacement gives the input normals back through the manifest's scale
    d = tex[2][..., 4] / 65535.0
    n = maps.displacement_to_normals(d, store.displacement_scale, "opengl")
    n0 = maps.decode_normals(read_image(raw_dataset / "subject002" / "normal.png"))
    inner = maps.clean_mask(vis) & (np.pad(vis, 2)[4:, 2:-2] & np.pad(vis, 2)[:-4, 2:-2]
                                    & np.pad(vis, 2)[2:-2, 4:] & np.pad(vis, 2)[2:-2, :-4])
    assert (n * n0).sum(-1)[inner > 0].mean() > 0.998


def test_derived_mask_crop_and_directx(raw_copy, tmp_path):
    (raw_copy / "mask.png").unlink()
    crop = ("--crop", "64,0,128,192")
    res = _run(raw_copy, tmp_path / "gl", *crop)
    assert res.exit_code == 0, res.output
    for sub in sorted(p for p in raw_copy.iterdir() if p.is_dir()):  # the same normals, DirectX-encoded
        img = read_image(sub / "normal.png")
        img[..., 1] = 1.0 - img[..., 1]
        write_image(sub / "normal.png", img, overwrite=True)
    out = tmp_path / "dx"
    res = _run(raw_copy, out, *crop, "--normal-convention", "directx", "--no-flip")
    assert res.exit_code == 0, res.output
    store, ref = PatchStore(out), PatchStore(tmp_path / "gl")
    assert store.canvas == (192, 128) and store.manifest["crop"] == [64, 0, 128, 192]
    assert store.flip is False and store.manifest["mask"] == "derived"
    assert store.manifest["normal_convention"] == "directx"
    assert store.mask.mean() > 0.8 and (store.mask == ref.mask).all()
    assert abs(store.displacement_scale - ref.displacement_scale) < 1e-3 * ref.displacement_scale
    diff = np.abs(store.textures.astype(np.int64) - ref.textures.astype(np.int64))
    assert diff.max() <= 40  # same data up to 16-bit rounding of the flipped green channel


def test_displacement_and_exr_input(raw_copy, tmp_path):
    sub = raw_copy / "subject000"
    (sub / "normal.png").unlink()
    disp = np.random.default_rng(0).random((256, 256)).astype(np.float32) * 3.0  # float heights
    write_image(sub / "displacement.exr", disp, float_exr=True)
    alb = read_image(sub / "albedo.png")
    (sub / "albedo.png").unlink()
    write_image(sub / "albedo.exr", alb, float_exr=True)
    out = prep.prepare(raw_copy, tmp_path / "ds", progress=False, displacement_height=2.0)
    store = PatchStore(out)
    tex = store.textures
    vis = store.mask > 0
    assert np.abs(tex[0][..., :3][vis] / 65535.0 - alb[vis]).max() <= quantisation_bound(16)  # float EXR → 16 bits
    d = tex[0][..., 4][vis] / 65535.0
    assert np.corrcoef(d, disp[vis])[0, 1] > 0.999


def _expect_problem(src, out, *patterns, extra=()):
    res = _run(src, out, *extra)
    assert res.exit_code != 0
    for pat in patterns:
        assert pat in res.output, res.output
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temporary left behind
    return res.output


def test_mismatched_sizes_wrong_channels_nan_truncated_missing_all_reported(raw_copy, tmp_path):
    s0, s1, s2 = (raw_copy / f"subject00{i}" for i in range(3))
    write_image(s0 / "specular.png", np.zeros((128, 256, 1), np.float32), overwrite=True)  # size
    write_image(s1 / "albedo.png", np.zeros((256, 256, 1), np.float32), overwrite=True)  # channels
    (s2 / "specular.png").unlink()  # missing map
    out = _expect_problem(raw_copy, tmp_path / "ds", "subject000/specular.png: size 256x128 differs",
                          "subject002: missing specular map")
    assert "problem(s)" in out
    # channels, NaN and truncation are found by decoding: fix the header problems first
    write_image(s0 / "specular.png", np.zeros((256, 256, 1), np.float32), overwrite=True)
    shutil.copy(s0 / "specular.png", s2 / "specular.png")
    nan = np.zeros((256, 256, 3), np.float32)
    nan[5, 5, 0] = np.nan
    (s0 / "albedo.png").unlink()
    o = oiio.ImageOutput.create(str(s0 / "albedo.exr"))
    o.open(str(s0 / "albedo.exr"), oiio.ImageSpec(256, 256, 3, oiio.FLOAT))
    o.write_image(nan)
    o.close()
    data = (s2 / "normal.png").read_bytes()
    (s2 / "normal.png").write_bytes(data[: len(data) // 2])
    _expect_problem(raw_copy, tmp_path / "ds", "subject000/albedo.exr: contains 1 NaN/Inf",
                    "subject001/albedo.png: albedo has 1 channel(s)", "subject002/normal.png: truncated")


def test_value_range_and_canvas_and_empty(raw_copy, tmp_path):
    sub = raw_copy / "subject001"
    (sub / "specular.png").unlink()
    write_image(sub / "specular.exr", np.full((256, 256, 1), 1.5, np.float32))
    _expect_problem(raw_copy, tmp_path / "ds", "specular.exr: specular values span [1.5, 1.5]")
    (sub / "specular.exr").unlink()
    write_image(sub / "specular.png", np.full((256, 256, 1), 0.5, np.float32))
    _expect_problem(raw_copy, tmp_path / "ds", "not divisible by 64", extra=("--crop", "0,0,100,128"))
    _expect_problem(raw_copy, tmp_path / "ds", "does not fit", extra=("--crop", "200,0,128,128"))
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_problem(empty, tmp_path / "ds", "no subject folders")
    (sub / "normal.png").rename(sub / "normal.bmp")
    _expect_problem(raw_copy, tmp_path / "ds", "normal.bmp: unsupported format")


def test_existing_out_untouched_without_overwrite(raw_dataset, prepared_store, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(prepared_store, out)
    (out / "keep.txt").write_text("mine")
    before = _tree(out)
    res = _run(raw_dataset, out, "--no-flip")
    assert res.exit_code != 0 and "exists" in res.output
    assert _tree(out) == before
    res = _run(raw_dataset, out, "--no-flip", "--overwrite")
    assert res.exit_code == 0, res.output
    # --overwrite replaces the dataset's own files only: the user's file stays
    assert (out / "keep.txt").read_text() == "mine" and PatchStore(out).flip is False
    assert not list(tmp_path.glob(".ds*"))


def _same_store(a, b):
    """Two prepared stores hold the same bytes (the manifests differ only in their creation time)."""
    for name in ("textures.npy", "preview.npy", "mask.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb


def _interrupt(monkeypatch, step, at):
    """Make the `at`-th call of one pass's per-subject step raise KeyboardInterrupt (a Ctrl-C)."""
    real = getattr(prep, step)
    calls = {"n": 0}

    def wrapped(*args):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args)

    monkeypatch.setattr(prep, step, wrapped)


def _stop_in_the_write_pass(src, out, monkeypatch):
    """A prepare of src into out stopped by Ctrl-C while writing its second subject."""
    with monkeypatch.context() as m:
        _interrupt(m, "_write_step", at=2)
        with pytest.raises(KeyboardInterrupt):
            prep.prepare(src, out, progress=False)


@pytest.mark.parametrize("step, derived", [("_check_step", True), ("_write_step", True), ("_write_step", False),
                                           ("_finalise_step", False)])
def test_an_interrupted_prepare_resumes_to_the_same_store(raw_copy, tmp_path, monkeypatch, step, derived):
    if derived:  # no mask file: the check pass derives it
        (raw_copy / "mask.png").unlink()
    reference = prep.prepare(raw_copy, tmp_path / "reference", progress=False)
    out = tmp_path / "ds"
    with monkeypatch.context() as m:
        _interrupt(m, step, at=2)
        with pytest.raises(KeyboardInterrupt):
            prep.prepare(raw_copy, out, progress=False)
    staging = tmp_path / ".ds.partial"
    assert not out.exists() and (staging / "progress.json").is_file()
    with pytest.raises(StoreError, match="manifest.json: missing"):  # the staged store never loads
        PatchStore(staging / "store")
    # without --resume the interrupted work is neither lost nor silently redone
    with pytest.raises(FileExistsError, match="pass --resume to continue it"):
        prep.prepare(raw_copy, out, progress=False)
    done = json.loads((staging / "progress.json").read_text())
    redone = []
    real = getattr(prep, step)
    monkeypatch.setattr(prep, step, lambda job, i, *a: redone.append(i) or real(job, i, *a))
    prep.prepare(raw_copy, out, progress=False, resume=True)
    assert not staging.exists()
    _same_store(out, reference)
    finished = {"_check_step": done["checked"], "_write_step": done["written"], "_finalise_step": done["finalised"]}
    assert len(finished[step]) == 1 and redone == [1, 2]  # the journaled subject was not done again


def test_each_file_is_decoded_once_with_a_mask_file_twice_without(raw_copy, tmp_path, monkeypatch):
    decoded = []
    real = prep.load_subject
    monkeypatch.setattr(prep, "load_subject", lambda subj, *a: decoded.append(subj.name) or real(subj, *a))
    prep.prepare(raw_copy, tmp_path / "a", progress=False)
    assert sorted(decoded) == ["subject000", "subject001", "subject002"]
    (raw_copy / "mask.png").unlink()
    decoded.clear()
    prep.prepare(raw_copy, tmp_path / "b", progress=False)
    assert sorted(decoded) == sorted(["subject000", "subject001", "subject002"] * 2)


def test_a_prepare_killed_mid_subject_resumes_to_the_same_store(raw_dataset, prepared_store, tmp_path):
    """SIGKILL (no clean-up runs) after subject 1's colours are written but before its heights are."""
    out = tmp_path / "ds"
    script = (
        "import os, signal, sys\n"
        "import gantlitz.data.prepare as prep\n"
        "real = prep._put\n"
        "def put(staging, name, i, where, values):\n"
        "    if name == 'heights.npy' and i == 1:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(staging, name, i, where, values)\n"
        "prep._put = put\n"
        "prep.prepare(sys.argv[1], sys.argv[2], progress=False)\n"
    )
    res = subprocess.run([sys.executable, "-c", script, str(raw_dataset), str(out)], capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    journal = json.loads((tmp_path / ".ds.partial" / "progress.json").read_text())
    assert list(journal["written"]) == ["subject000"] and not out.exists()
    res = _run(raw_dataset, out, "--resume")
    assert res.exit_code == 0, res.output
    _same_store(out, prepared_store)


def test_resume_refuses_changed_inputs_and_overwrite_starts_again(raw_copy, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    _stop_in_the_write_pass(raw_copy, out, monkeypatch)
    albedo = raw_copy / "subject002" / "albedo.png"
    os.utime(albedo, ns=(albedo.stat().st_atime_ns, albedo.stat().st_mtime_ns + 10**9))
    with pytest.raises(InputError, match="subject002/albedo: changed since the interrupted prepare"):
        prep.prepare(raw_copy, out, progress=False, resume=True)
    with pytest.raises(InputError, match="option crop"):
        prep.prepare(raw_copy, out, progress=False, resume=True, crop=(0, 0, 128, 128))
    assert (tmp_path / ".ds.partial" / "progress.json").is_file()  # still there to resume
    prep.prepare(raw_copy, out, progress=False, overwrite=True)
    assert PatchStore(out).canvas == (256, 256) and not (tmp_path / ".ds.partial").exists()


def test_a_prepare_in_progress_is_not_disturbed(raw_dataset, tmp_path):
    staging = tmp_path / ".ds.partial"
    staging.mkdir()
    lock = FolderLock(staging, "`gantlitz prepare`")
    lock.acquire()
    try:
        res = _run(raw_dataset, tmp_path / "ds", "--overwrite")
        assert res.exit_code != 0 and "in use by another `gantlitz prepare` (pid" in res.output, res.output
    finally:
        lock.release()
    assert not (tmp_path / "ds").exists()


def test_workers_write_the_same_store(raw_dataset, prepared_store, tmp_path):
    out = prep.prepare(raw_dataset, tmp_path / "ds", progress=False, workers=2)
    _same_store(out, prepared_store)


def test_too_little_disk_is_said_before_anything_is_written(raw_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    res = _run(raw_dataset, tmp_path / "ds")
    assert res.exit_code != 0 and "not enough disk space: 3 subjects at 256x256 need" in res.output, res.output
    assert not list(tmp_path.iterdir())


def test_store_refuses_corrupt_arrays(prepared_store, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(prepared_store, out)
    with open(out / "textures.npy", "r+b") as f:
        f.truncate(4096)
    with pytest.raises(StoreError, match="textures.npy: corrupt or truncated"):
        PatchStore(out)
    shutil.copy(prepared_store / "textures.npy", out / "textures.npy")
    man = json.loads((out / "manifest.json").read_text())
    man["canvas"]["width"] = 128
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(StoreError, match="textures.npy: shape"):
        PatchStore(out)
    (out / "mask.npy").unlink()
    with pytest.raises(StoreError):
        PatchStore(out)
    with pytest.raises(StoreError, match="not a folder"):
        PatchStore(tmp_path / "nothing")


def test_the_prepare_benchmark_runs_and_reports_each_count(tmp_path):
    """benchmarks/bench_prepare.py at 512² inputs (the 8K run is documented in docs/benchmarks.md)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_prepare.py"
    report = tmp_path / "report.md"
    res = subprocess.run([sys.executable, str(script), "--work", str(tmp_path / "work"), "--size", "512",
                          "--counts", "1", "2", "--mask", "--out", str(report)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line.split("|") for line in report.read_text().splitlines() if line.startswith("| 1 |") or
            line.startswith("| 2 |")]
    assert [r[1].strip() for r in rows] == ["1", "2"]
    for r in rows:
        assert r[2].strip() == "512²" and r[4].strip() == "file" and float(r[6]) > 0
        assert float(r[9].split("/")[0]) > 0.1  # peak RSS in GB, measured


def _kill_script(patch: str) -> str:
    """A child that runs prepare(SRC, OUT, overwrite=True) with `patch` applied and dies by SIGKILL in it."""
    return ("import os, signal, sys\nimport gantlitz.data.prepare as prep\nimport gantlitz.outputs as outputs\n"
            + patch + "\nprep.prepare(sys.argv[1], sys.argv[2], progress=False, overwrite=True)\n")


@pytest.mark.parametrize("existing", [False, True])
def test_a_prepare_killed_while_installing_resumes(raw_dataset, prepared_store, tmp_path, existing):
    """SIGKILL after the first array moved into OUT (over an older dataset) or after the store was renamed
    to OUT (a new one): --resume completes OUT and removes the staging folder."""
    out = tmp_path / "ds"
    if existing:
        shutil.copytree(prepared_store, out)
        (out / "textures.npy").write_bytes(b"old")  # an older dataset, to be replaced
        record([out / "textures.npy"], "prepare")  # ... that an earlier prepare wrote (its record says so)
        patch = ("real = os.replace\n"
                 "def replace(a, b):\n"
                 "    real(a, b)\n"
                 "    if str(b).endswith('ds/preview.npy'):\n"
                 "        os.kill(os.getpid(), signal.SIGKILL)\n"
                 "os.replace = replace\n")
    else:
        patch = ("real = prep.Staging.remove\n"
                 "def remove(self):\n"
                 "    if not self.store.exists():\n"
                 "        os.kill(os.getpid(), signal.SIGKILL)\n"
                 "    real(self)\n"
                 "prep.Staging.remove = remove\n")
    res = subprocess.run([sys.executable, "-c", _kill_script(patch), str(raw_dataset), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert json.loads((tmp_path / ".ds.partial" / "progress.json").read_text())["installing"] is True
    prep.prepare(raw_dataset, out, progress=False, resume=True, overwrite=existing)
    assert not (tmp_path / ".ds.partial").exists()
    _same_store(out, prepared_store)


def test_a_damaged_journal_is_a_clear_error(raw_dataset, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    _stop_in_the_write_pass(raw_dataset, out, monkeypatch)
    journal = tmp_path / ".ds.partial" / "progress.json"
    data = json.loads(journal.read_text())
    del data["fingerprint"]
    journal.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"progress.json: unreadable progress journal \(no fingerprint\); pass "
                                         r"--overwrite"):
        prep.prepare(raw_dataset, out, progress=False, resume=True)
    journal.write_text("{")
    res = _run(raw_dataset, out, "--resume")
    assert res.exit_code != 0 and "unreadable progress journal" in res.output
    assert _run(raw_dataset, out, "--overwrite").exit_code == 0 and PatchStore(out).canvas == (256, 256)


def test_a_full_disk_is_said_and_the_prepare_resumes_after(raw_dataset, prepared_store, tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "ds"
    with monkeypatch.context() as m:
        m.setattr(os, "posix_fallocate", full)
        res = _run(raw_dataset, out)
    assert res.exit_code != 0 and "textures.npy: can not reserve" in res.output and "No space left" in res.output
    assert not out.exists()
    assert _run(raw_dataset, out, "--resume").exit_code == 0
    _same_store(out, prepared_store)
