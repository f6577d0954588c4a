"""Reliability (issues 14 and 21): nothing a user owns is deleted, no traceback for a user's mistake, runs are
locked, impossible values are refused. Issue 14's reproductions one test each; issue 21's as a table-driven probe
over every input kind (ownership, inputs among outputs, regular files, settings, seeds, manifests, maps, values),
each variant asserting the exit code, the message and an unchanged workspace; then resume, provenance and a
full disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import numpy as np

import pytest
import torch
from click.testing import CliRunner, Result
from helpers import SMALL_PRESET, randomise, save_generator

from gantlitz import checkpoint
from gantlitz.cli import main
from gantlitz.networks import build
from gantlitz.outputs import TEMP_GLOB, FolderLock, record

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--set", "model.patch_size=32", "--set", "model.channel_max=16", "--set", "model.d_channel_max=16",
        "--set", "model.z_dim=16", "--set", "model.w_dim=16", "--set", "model.embed_dim=8",
        "--set", "model.pe_channels=16", "--batch", "2", "--group-size", "2", "--log-every", "1",
        "--checkpoint-every", "2", "--preview-every", "0", "--set", "train.r1_interval=2", "--no-progress"]


def _cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _user_error(r: Result, *needles: str) -> None:
    """A clear message (each needle in it), a non-zero exit and no traceback."""
    assert r.exit_code not in (0, None), r.output
    assert isinstance(r.exception, SystemExit), f"traceback: {r.exception!r}\n{r.output}"
    assert "Traceback" not in r.output
    for needle in needles:
        assert needle in r.output, r.output


def _visible(folder: Path) -> list[str]:
    """The names a user sees in `folder` (not the hidden record, lock or temporaries)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _train(data: Path, run: Path, steps: int, *extra: str) -> Result:
    return _cli("train", "--data", data, "--out", run, "--preset", "tiny", "--steps", str(steps), *FAST, *extra)


@pytest.fixture(scope="module")
def trained_run(prepared_store, tmp_path_factory) -> Path:
    """A `tiny` run of 4 steps (checkpoints at 2 and 4, model, metrics); copy it before changing it."""
    run = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # for this run only: the later tests keep the session's thread count
    try:
        r = _train(prepared_store, run, 4)
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    return run


@pytest.fixture()
def run_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory) -> Path:
    G, _ = build(SMALL_PRESET, seed=0)
    randomise(G, rgb_gain=0.1)
    return save_generator(tmp_path_factory.mktemp("ckpt") / "small.safetensors", G)


def _rewrite_meta(src: Path, dst: Path, change) -> Path:
    tensors, meta = checkpoint.load(src)
    meta.pop("path")
    meta.pop("format")
    meta.pop("version")
    change(meta)
    return checkpoint.save(dst, tensors, meta)


# 1. source scans deleted --------------------------------------------------------------------------------
def test_prepare_never_deletes_a_folder_holding_the_input(raw_dataset, tmp_path):
    parent = tmp_path / "trav" / "parent"
    shutil.copytree(raw_dataset, parent / "src")
    (parent / "notes.txt").write_text("mine")
    before = _tree(parent)
    r = _cli("prepare", parent / "src", parent, "--overwrite")
    _user_error(r, "contains the input")
    assert _tree(parent) == before
    r = _cli("prepare", parent / "src", parent / "src", "--overwrite")
    _user_error(r, "input")
    assert _tree(parent) == before


def test_prepare_overwrite_refuses_a_folder_that_is_not_a_dataset(raw_dataset, tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"not ours")
    r = _cli("prepare", raw_dataset, other, "--overwrite")
    _user_error(r, "no record of `gantlitz prepare`")
    assert _tree(other) == {"holiday.jpg": b"not ours"}


def test_synth_overwrite_replaces_only_a_synthetic_dataset(raw_dataset, tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"not ours")
    _user_error(_cli("synth", other, "--subjects", "1", "--size", "64x64", "--overwrite"), "gantlitz synth")
    assert _tree(other) == {"holiday.jpg": b"not ours"}
    ours = Path(shutil.copytree(raw_dataset, tmp_path / "raw"))
    r = _cli("synth", ours, "--subjects", "1", "--size", "64x64", "--overwrite")
    assert r.exit_code == 0, r.output
    assert _visible(ours) == ["README.txt", "mask.png", "subject000"]


# 2. finished model replaced without --overwrite --------------------------------------------------------
def test_resume_without_checkpoints_keeps_the_finished_run(prepared_store, run_copy):
    for f in (run_copy / "checkpoints").iterdir():
        f.unlink()
    before = _tree(run_copy)
    r = _train(prepared_store, run_copy, 2, "--resume")
    _user_error(r, "no checkpoint to resume from", "--overwrite")
    assert _tree(run_copy) == before


def test_existing_model_without_checkpoints_is_not_replaced_by_a_new_run(prepared_store, run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    before = _tree(run_copy)
    _user_error(_train(prepared_store, run_copy, 2), "already holds a run")
    assert _tree(run_copy) == before


def test_overwrite_removes_only_the_run_s_own_files(prepared_store, run_copy):
    (run_copy / "my-notes.txt").write_text("keep me")
    r = _train(prepared_store, run_copy, 2, "--overwrite")
    assert r.exit_code == 0, r.output
    assert (run_copy / "my-notes.txt").read_text() == "keep me"
    assert _visible(run_copy / "checkpoints") == ["step-000000002.safetensors"]


def test_train_overwrite_refuses_a_run_folder_holding_the_dataset(prepared_store, tmp_path):
    parent = tmp_path / "p"
    shutil.copytree(prepared_store, parent / "ds")
    before = _tree(parent)
    _user_error(_train(parent / "ds", parent, 2, "--overwrite"), "contains the input")
    assert _tree(parent) == before


# 3. seeds alias modulo 2^32 -----------------------------------------------------------------------------
def test_seeds_beyond_32_bits_are_refused(small_ckpt, tmp_path):
    r = _cli("generate", small_ckpt, "--seeds", "4294967296", "--out", tmp_path / "o", "--no-progress")
    assert r.exit_code == 2 and "2^32" in r.output, r.output
    assert not (tmp_path / "o").exists()
    r = _cli("vary-noise", small_ckpt, "--seed", "4294967296", "--out", tmp_path / "v", "--no-progress")
    _user_error(r, "2^32")


# 4. no lock on a run --------------------------------------------------------------------------------------
def test_a_run_in_use_is_refused_with_its_holder(prepared_store, run_copy):
    lock = FolderLock(run_copy, "training process")
    lock.acquire()
    try:
        before = _tree(run_copy)
        r = _train(prepared_store, run_copy, 6, "--resume")
        _user_error(r, "in use", f"pid {os.getpid()}", socket.gethostname())
        assert _tree(run_copy) == before
    finally:
        lock.release()


def test_a_stale_lock_is_taken_over(prepared_store, run_copy, caplog):
    (run_copy / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"}))
    with caplog.at_level(logging.WARNING):
        r = _train(prepared_store, run_copy, 6, "--resume")
    assert r.exit_code == 0, r.output
    assert "999999" in caplog.text
    steps = [json.loads(line)["step"] for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6


# 5. a corrupt or non-finite newest checkpoint ------------------------------------------------------------
def test_resume_falls_back_past_corrupt_and_nonfinite_checkpoints(prepared_store, run_copy, caplog):
    ckpts = run_copy / "checkpoints"
    newest = ckpts / "step-000000004.safetensors"
    tensors, meta = checkpoint.load(newest)
    key = next(k for k, v in tensors.items() if k.startswith("G.") and v.is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    for k in ("path", "format", "version"):
        meta.pop(k)
    checkpoint.save(ckpts / "step-000000006.safetensors", tensors, meta)  # newest: NaN weights
    newest.write_bytes(newest.read_bytes()[:1000])  # next: truncated
    orphan = ckpts / ".step-000000008.safetensors.x1y2.tmp.safetensors"
    orphan.write_bytes(b"\0" * 64)
    with caplog.at_level(logging.WARNING):
        r = _train(prepared_store, run_copy, 4, "--resume")
    assert r.exit_code == 0, r.output
    assert "step-000000006.safetensors" in caplog.text and "NaN" in caplog.text
    assert "step-000000004.safetensors" in caplog.text
    assert not orphan.exists()
    history = json.loads((run_copy / "config.json").read_text())["runs"]
    assert history[-1]["start_step"] == 2


# 6. tracebacks for user mistakes -------------------------------------------------------------------------
def test_outputs_under_a_file_are_clear_errors(prepared_store, raw_dataset, small_ckpt, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _user_error(_cli("prepare", raw_dataset, blocker / "ds"), str(blocker))
    _user_error(_train(prepared_store, blocker / "run", 2), str(blocker))
    _user_error(_cli("generate", small_ckpt, "--out", blocker / "o", "--no-progress"), str(blocker))
    assert blocker.read_text() == "x"


def test_export_under_a_file_is_a_clear_error(tmp_path):
    from gantlitz.imageio import write_image

    maps = tmp_path / "maps"
    write_image(maps / "albedo.png", torch.rand(64, 64, 3).numpy())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _user_error(_cli("export", maps, "--gltf", blocker / "head.glb"), str(blocker))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(prepared_store, small_ckpt, tmp_path):
    _user_error(_cli("generate", small_ckpt, "--out", tmp_path / "o", "--device", "cuda"), "CUDA is not available")
    _user_error(_train(prepared_store, tmp_path / "run", 2, "--device", "cuda"), "CUDA is not available")
    _user_error(_cli("evaluate", small_ckpt, "--data", prepared_store, "--out", tmp_path / "e", "--device", "cuda"),
                "CUDA is not available")
    target = tmp_path / "t.png"
    from gantlitz.imageio import write_image

    write_image(target, torch.rand(64, 96, 3).numpy())
    _user_error(_cli("invert", small_ckpt, "--target", target, "--out", tmp_path / "i", "--device", "cuda"),
                "CUDA is not available")
    assert not any((tmp_path / d).exists() for d in ("run", "o", "e", "i"))


@pytest.mark.parametrize("flag", [["--kimg", "-1"], ["--minutes", "-1"], ["--kimg", "nan"]])
def test_impossible_training_lengths_leave_nothing(prepared_store, tmp_path, flag):
    r = _cli("train", "--data", prepared_store, "--out", tmp_path / "run", "--preset", "tiny", *flag, *FAST)
    _user_error(r, flag[0])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting, needle", [
    (["--lr", "nan"], "finite"), (["--set", "train.augment.midband_p=2"], "midband_p"),
    (["--set", "model.channel_max=-5"], "channel_max"), (["--set", "train.ema_decay=inf"], "finite"),
])
def test_impossible_training_settings_are_refused(prepared_store, tmp_path, setting, needle):
    _user_error(_train(prepared_store, tmp_path / "run", 2, *setting), needle)
    assert not (tmp_path / "run").exists()


def test_impossible_displacement_height_is_refused(raw_dataset, tmp_path):
    for value in ("nan", "-1", "0"):
        _user_error(_cli("prepare", raw_dataset, tmp_path / "ds", "--displacement-height", value), "displacement-height")
    assert not (tmp_path / "ds").exists()


def test_resume_with_fewer_steps_than_done_is_a_clear_error(prepared_store, run_copy):
    before = _tree(run_copy)
    _user_error(_train(prepared_store, run_copy, 2, "--resume"), "step 4", "--steps")
    assert _tree(run_copy) == before


def test_garbage_config_json_on_resume_is_a_clear_error(prepared_store, run_copy):
    (run_copy / "config.json").write_text("{not json")
    _user_error(_train(prepared_store, run_copy, 6, "--resume"), "config.json")
    assert (run_copy / "config.json").read_text() == "{not json"


@pytest.mark.parametrize("change, needle", [
    (lambda m: m["preset"]["model"].update(channel_max=64), "do not match"),
    (lambda m: m["preset"]["model"].update(channel_base=10**9), "channel_base"),
    (lambda m: m.pop("preset"), "no preset"),
    (lambda m: m["preset"]["model"].update(surprise=1), "preset is invalid"),
    (lambda m: m["dataset"].update(displacement_scale="abc"), "malformed dataset facts"),
    (lambda m: m.update(dataset=[1, 2]), "must be a mapping"),
])
def test_checkpoint_metadata_is_checked_before_use(small_ckpt, raw_dataset, tmp_path, change, needle):
    bad = _rewrite_meta(small_ckpt, tmp_path / "bad.safetensors", change)
    _user_error(_cli("generate", bad, "--out", tmp_path / "o", "--no-progress"), needle, "bad.safetensors")
    target = tmp_path / "t.png"
    from gantlitz.imageio import write_image

    write_image(target, torch.rand(64, 96, 3).numpy())
    _user_error(_cli("invert", bad, "--target", target, "--out", tmp_path / "inv", "--steps", "1"), needle)
    assert not (tmp_path / "o").exists() and not (tmp_path / "inv").exists()


def test_a_generator_with_nan_weights_is_refused_at_load(small_ckpt, tmp_path):
    tensors, meta = checkpoint.load(small_ckpt)
    for k in ("path", "format", "version"):
        meta.pop(k)
    key = next(k for k, v in tensors.items() if k.startswith("G_ema.") and v.is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    bad = checkpoint.save(tmp_path / "nan.safetensors", tensors, meta)
    _user_error(_cli("generate", bad, "--out", tmp_path / "o", "--no-progress"), "NaN/Inf")
    assert not (tmp_path / "o").exists()


# 8. silent acceptances -------------------------------------------------------------------------------------
def test_impossible_sampling_values_are_refused(small_ckpt, tmp_path):
    r = _cli("generate", small_ckpt, "--truncation", "nan", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "finite" in r.output
    r = _cli("vary-noise", small_ckpt, "--crop", "4096", "--out", tmp_path / "v", "--no-progress")
    _user_error(r, "--crop 4096", "canvas")
    assert not (tmp_path / "o").exists() and not (tmp_path / "v").exists()


@pytest.mark.parametrize("command", [["invert", "--target", "t.png", "--lr", "nan"], ["evaluate", "--truncation", "nan"],
                                     ["render", "--exposure", "inf"], ["train", "--minutes", "nan"]])
def test_non_finite_numbers_are_refused_by_every_command(small_ckpt, prepared_store, tmp_path, command):
    args = {"invert": [small_ckpt, "--out", tmp_path / "o"],
            "evaluate": [small_ckpt, "--data", prepared_store, "--out", tmp_path / "o"],
            "render": [tmp_path, "--out", tmp_path / "o.png"],
            "train": ["--data", prepared_store, "--out", tmp_path / "o", "--preset", "tiny"]}[command[0]]
    r = _cli(command[0], *args, *command[1:])
    assert r.exit_code == 2 and "finite" in r.output, r.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.png").exists()


def test_skipped_subject_folders_are_named(raw_dataset, tmp_path, caplog):
    src = tmp_path / "raw"
    shutil.copytree(raw_dataset, src)
    shutil.copytree(src / "subject000", src / ".subject-backup")
    with caplog.at_level(logging.WARNING):
        r = _cli("prepare", src, tmp_path / "ds")
    assert r.exit_code == 0, r.output
    assert ".subject-backup" in caplog.text


def test_resuming_on_another_dataset_is_said(prepared_store, run_copy, tmp_path, caplog):
    other = tmp_path / "other-ds"
    shutil.copytree(prepared_store, other)
    with caplog.at_level(logging.WARNING):
        r = _train(other, run_copy, 6, "--resume")
    assert r.exit_code == 0, r.output
    assert str(other.resolve()) in caplog.text and "trained on" in caplog.text


def test_maps_of_another_layout_are_refused_by_render(tmp_path):
    from gantlitz import render as R
    from gantlitz.imageio import write_image

    write_image(tmp_path / "albedo.png", torch.rand(64, 64, 3).numpy())
    write_image(tmp_path / "normal.png", torch.rand(32, 64, 3).numpy())
    with pytest.raises(R.MapsError, match="aspect ratio"):
        R.load_maps(tmp_path)


@pytest.mark.parametrize("flag, needle", [(["--roughness", "nan"], "finite"), (["--roughness", "2"], "[0, 1]"),
                                          (["--specular-scale", "-1"], "specular scale")])
def test_impossible_material_values_are_refused_by_export(tmp_path, flag, needle):
    from gantlitz.imageio import write_image

    write_image(tmp_path / "maps" / "albedo.png", torch.rand(64, 64, 3).numpy())
    _user_error(_cli("export", tmp_path / "maps", "--gltf", tmp_path / "head.glb", *flag), needle)
    assert not (tmp_path / "head.glb").exists()


# ===================================================================================================
# Issue 21: a table-driven probe. Every variant asserts the exit code, the message, and that nothing
# outside the command's own record changed (the whole workspace is hashed before and after).
# ===================================================================================================
def _hashes(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every file below `folder`, the records included (a refusal writes none)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not stat.S_ISFIFO(p.stat().st_mode)}


@pytest.fixture()
def ws(tmp_path, raw_dataset, prepared_store, small_ckpt) -> Path:
    """A workspace: raw scans, a prepared dataset and a small checkpoint, each a private copy."""
    shutil.copytree(raw_dataset, tmp_path / "raw")
    shutil.copytree(prepared_store, tmp_path / "ds")
    shutil.copy2(small_ckpt, tmp_path / "g.safetensors")
    from gantlitz.imageio import write_image

    write_image(tmp_path / "t.png", np.full((64, 96, 3), 0.4, np.float32))
    return tmp_path


def _user_files(w: Path, folder: str, *names: str) -> None:
    for name in names:
        (w / folder / name).parent.mkdir(parents=True, exist_ok=True)
        (w / folder / name).write_text(f"the user's {name}")


def _set_manifest(w: Path, **fields) -> None:
    path = w / "ds" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def _normal_map(w: Path, change) -> None:
    """Replace subject001's normal map by `change(encoded map)`."""
    from gantlitz.imageio import read_image, write_image

    path = w / "raw" / "subject001" / "normal.png"
    encoded = read_image(path)
    path.unlink()
    write_image(path, change(encoded))


def _inside_out(encoded: np.ndarray) -> np.ndarray:
    flipped = encoded.copy()
    flipped[..., 2] = 1 - flipped[..., 2]
    return flipped


TRAIN = ["train", "--data", "ds", "--out", "run", "--preset", "tiny", "--steps", "1", *FAST]
PROBE = [
    # kind, name, setup(workspace), command, exit code, message needles
    ("ownership", "synth-into-user-folder", lambda w: _user_files(w, "mine", "mine.txt"),
     ["synth", "mine", "--subjects", "1", "--size", "64x64", "--overwrite"], 1, ["no record of `gantlitz synth`"]),
    ("ownership", "prepare-into-user-folder", lambda w: _user_files(w, "photos", "a.jpg"),
     ["prepare", "raw", "photos", "--overwrite"], 1, ["no record of `gantlitz prepare`"]),
    ("ownership", "train-into-folder-never-a-run", lambda w: _user_files(w, "run", "config.json", "logs/x", "previews/y"),
     [*TRAIN, "--overwrite"], 1, ["config.json", "recorded"]),
    ("ownership", "generate-over-a-user-file", lambda w: _user_files(w, "o/seed0000", "albedo.exr"),
     ["generate", "g.safetensors", "--out", "o", "--overwrite", "--no-progress"], 1, ["albedo.exr", "move it away"]),
    ("ownership", "evaluate-over-a-user-summary", lambda w: _user_files(w, "e", "summary.json"),
     ["evaluate", "g.safetensors", "--data", "ds", "--out", "e", "--overwrite", "--splits", "2"], 1,
     ["summary.json", "not a file `gantlitz evaluate`"]),
    ("ownership", "export-over-a-user-glb", lambda w: (_user_files(w, "x", "head.glb"), shutil.copy(w / "t.png", w / "albedo.png")),
     ["export", "--albedo", "albedo.png", "--gltf", "x/head.glb", "--overwrite"], 1, ["head.glb", "`gantlitz export`"]),
    ("inputs", "invert-into-its-target's-folder", lambda w: None,
     ["invert", "g.safetensors", "--target", "raw/subject000/albedo.png", "--out", "raw/subject000", "--format",
      "png16", "--overwrite", "--steps", "1"], 1, ["albedo.png", "is an input"]),
    ("inputs", "render-onto-its-own-map", lambda w: shutil.copy(w / "t.png", w / "albedo.png"),
     ["render", "--albedo", "albedo.png", "--out", "albedo.png", "--overwrite", "--mode", "uv"], 1, ["is an input"]),
    ("inputs", "prepare-out-inside-src", lambda w: None, ["prepare", "raw", "raw/ds"], 1, ["lies inside the input"]),
    ("inputs", "train-out-is-the-dataset", lambda w: None,
     ["train", "--data", "ds", "--out", "ds", "--preset", "tiny", "--overwrite"], 1, ["contains the input"]),
    ("inputs", "generate-onto-its-checkpoint", lambda w: (w / "o" / "seed0000").mkdir(parents=True),
     ["generate", "g.safetensors", "--out", "o", "--overwrite", "--no-progress"], 0, []),
    ("regular", "fifo-checkpoint-generate", lambda w: os.mkfifo(w / "f.safetensors"),
     ["generate", "f.safetensors", "--out", "o"], 1, ["not a regular file"]),
    ("regular", "fifo-checkpoint-invert", lambda w: os.mkfifo(w / "f.safetensors"),
     ["invert", "f.safetensors", "--target", "t.png", "--out", "o"], 1, ["not a regular file"]),
    ("regular", "fifo-target", lambda w: os.mkfifo(w / "f.png"),
     ["invert", "g.safetensors", "--target", "f.png", "--out", "o"], 1, ["not a regular file"]),
    ("regular", "fifo-manifest", lambda w: ((w / "ds" / "manifest.json").unlink(), os.mkfifo(w / "ds" / "manifest.json")),
     TRAIN, 1, ["manifest.json"]),
    *[("config", f"set-{s}", lambda w: None, [*TRAIN, "--set", s], 1, [s.split("=")[0].split(".")[-1]]) for s in (
        "train.betas=2,5", "train.g_chunks=0", "model.pe_min_period=0", "model.layout_level=99",
        "model.channel_max=100000000", "model.z_dim=1000000", "model.conv_clamp=-1", "train.warmup_steps=-1",
        "train.ema_rampup=-1", "train.locate_weight=-1", "augment.ratio_min=1", "train.lr=inf",
        "model.canvas_height=abc")],
    ("seeds", "train-negative", lambda w: None, [*TRAIN, "--seed", "-1"], 2, ["seed"]),
    ("seeds", "generate-2^64", lambda w: None, ["generate", "g.safetensors", "--seeds", str(2**64), "--out", "o"], 2,
     ["2^32"]),
    ("seeds", "generate-too-many", lambda w: None, ["generate", "g.safetensors", "--seeds", "0-99999,200000-200005",
                                                    "--out", "o"], 2, ["more than"]),
    ("seeds", "vary-noise-last-beyond", lambda w: None,
     ["vary-noise", "g.safetensors", "--first-noise-seed", str(2**32 - 2), "--count", "4", "--out", "o"], 2, ["2^32"]),
    ("seeds", "vary-noise-count-cap", lambda w: None,
     ["vary-noise", "g.safetensors", "--count", str(10**9), "--out", "o"], 2, ["--count"]),
    ("seeds", "evaluate-count-cap", lambda w: None,
     ["evaluate", "g.safetensors", "--data", "ds", "--out", "o", "--count", str(10**9)], 1, ["count"]),
    ("seeds", "synth", lambda w: None, ["synth", "s", "--seed", str(2**32)], 2, ["2^32"]),
    ("seeds", "invert", lambda w: None, ["invert", "g.safetensors", "--target", "t.png", "--out", "o", "--seed", "-5"],
     2, ["seed"]),
    ("seeds", "evaluate", lambda w: None, ["evaluate", "g.safetensors", "--data", "ds", "--out", "o", "--seed",
                                           str(2**40)], 2, ["2^32"]),
    ("manifest", "nan-scale", lambda w: _set_manifest(w, displacement_scale=float("nan")), TRAIN, 1,
     ["displacement_scale"]),
    ("manifest", "negative-scale", lambda w: _set_manifest(w, displacement_scale=-2.0), TRAIN, 1, ["displacement_scale"]),
    ("manifest", "scale-a-string", lambda w: _set_manifest(w, displacement_scale="7"), TRAIN, 1, ["displacement_scale"]),
    ("manifest", "subjects-a-string", lambda w: _set_manifest(w, subjects="subject000"), TRAIN, 1, ["subjects"]),
    ("manifest", "canvas-a-list", lambda w: _set_manifest(w, canvas=[256, 256]), TRAIN, 1, ["canvas"]),
    ("manifest", "empty-mask", lambda w: np.save(w / "ds" / "mask.npy", np.zeros((256, 256), np.uint8)), TRAIN, 1,
     ["mask is empty"]),
    ("maps", "all-zero-normal-map", lambda w: _normal_map(w, np.zeros_like), ["prepare", "raw", "ds2"], 1,
     ["subject001", "normal"]),
    ("maps", "inside-out-normal-map", lambda w: _normal_map(w, _inside_out), ["prepare", "raw", "ds2"], 1,
     ["subject001", "positive z"]),
    ("values", "displacement-height-huge", lambda w: None, ["prepare", "raw", "ds2", "--displacement-height", "1e38"],
     1, ["displacement-height"]),
    ("values", "displacement-height-tiny", lambda w: None, ["prepare", "raw", "ds2", "--displacement-height", "1e-30"],
     1, ["displacement-height"]),
    ("values", "truncation-huge", lambda w: None, ["generate", "g.safetensors", "--truncation", "1e6", "--out", "o"], 2,
     ["--truncation"]),
    ("values", "fps-tiny", lambda w: None,
     ["interpolate", "g.safetensors", "--seeds", "1,2", "--steps", "2", "--fps", "0.0001", "--out", "o"], 2, ["--fps"]),
    ("values", "synth-huge-size", lambda w: None, ["synth", "s", "--size", "6400000x6400000"], 2, ["--size"]),
]


@pytest.mark.parametrize("kind, name, setup, command, code, needles", PROBE, ids=[f"{k}:{n}" for k, n, *_ in PROBE])
def test_probe(ws, monkeypatch, kind, name, setup, command, code, needles):
    setup(ws)
    monkeypatch.chdir(ws)
    before = _hashes(ws)
    r = _cli(*command)
    if code == 0:
        assert r.exit_code == 0, r.output
        after = _hashes(ws)
        assert {k: v for k, v in after.items() if k in before} == before  # what was there is untouched
        return
    _user_error(r, *needles)
    assert r.exit_code == code, r.output
    assert _hashes(ws) == before
    assert not any(p.match(TEMP_GLOB) for p in ws.rglob("*"))


# -- resume: a checkpoint failing the gate is skipped and named; another dataset is refused -----------
@pytest.mark.parametrize("change", [
    lambda m: m.update(step="4"), lambda m: m.update(optimizers=[1]), lambda m: m.update(augment=None),
    lambda m: m.update(rng="x"), lambda m: m["preset"]["model"].update(canvas_height=2**20),
    lambda m: m["preset"]["model"].update(channel_max=10**6),
], ids=["step", "optimizers", "augment", "rng", "canvas-360GB", "channels"])
def test_resume_skips_a_checkpoint_failing_the_gate(prepared_store, run_copy, caplog, change):
    newest = run_copy / "checkpoints" / "step-000000004.safetensors"
    bad = _rewrite_meta(newest, newest.with_name("step-000000006.safetensors"), change)
    record([bad], "train")  # as if the run had written it: only its content is wrong
    with caplog.at_level(logging.WARNING):
        r = _train(prepared_store, run_copy, 6, "--resume")
    assert r.exit_code == 0, r.output
    assert "skipping checkpoint step-000000006.safetensors" in caplog.text
    assert json.loads((run_copy / "config.json").read_text())["runs"][-1]["start_step"] == 4


@pytest.mark.parametrize("subjects", [lambda s: s[:-1] + ["someone-else"], lambda s: list(reversed(s))],
                         ids=["renamed", "reordered"])
def test_resume_on_a_changed_dataset_is_refused(prepared_store, run_copy, tmp_path, subjects):
    other = Path(shutil.copytree(prepared_store, tmp_path / "other"))
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "subjects": subjects(manifest["subjects"])}))
    before = _hashes(run_copy)
    _user_error(_train(other, run_copy, 6, "--resume"), "not the dataset", "--allow-data-change")
    assert _hashes(run_copy) == before
    assert _train(other, run_copy, 6, "--resume", "--allow-data-change").exit_code == 0  # when asked


def test_a_run_stopped_before_its_first_checkpoint_resumes(prepared_store, run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    (run_copy / "model.safetensors").unlink()
    r = _train(prepared_store, run_copy, 2, "--resume")
    assert r.exit_code == 0, r.output
    assert json.loads((run_copy / "config.json").read_text())["runs"][-1]["start_step"] == 0


def test_an_empty_checkpoints_folder_is_no_run(prepared_store, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    r = _train(prepared_store, tmp_path / "run", 1)
    assert r.exit_code == 0, r.output


def test_overwrite_keeps_what_the_user_changed_or_added(prepared_store, run_copy):
    (run_copy / "logs" / "my-plot.png").write_bytes(b"mine")
    r = _train(prepared_store, run_copy, 2, "--overwrite")
    assert r.exit_code == 0, r.output
    assert (run_copy / "logs" / "my-plot.png").read_bytes() == b"mine"
    assert _visible(run_copy / "checkpoints") == ["step-000000002.safetensors"]


def test_synth_overwrite_keeps_user_files_and_removes_its_stale_subjects(raw_dataset, tmp_path):
    ours = Path(shutil.copytree(raw_dataset, tmp_path / "raw"))
    _user_files(tmp_path, "raw", "notes.txt", "mysubject/albedo.png", "subject002/notes.txt")
    r = _cli("synth", ours, "--subjects", "1", "--size", "64x64", "--overwrite")
    assert r.exit_code == 0, r.output
    assert _visible(ours) == ["README.txt", "mask.png", "mysubject", "notes.txt", "subject000", "subject002"]
    assert _visible(ours / "subject002") == ["notes.txt"]  # its maps were synth's; the note is the user's


def test_invert_regenerate_refuses_another_model(small_ckpt, tmp_path):
    from gantlitz.imageio import write_image

    write_image(tmp_path / "t.png", np.full((64, 96, 3), 0.4, np.float32))
    r = _cli("invert", small_ckpt, "--target", tmp_path / "t.png", "--out", tmp_path / "inv", "--steps", "1")
    assert r.exit_code == 0, r.output
    G, _ = build(SMALL_PRESET, seed=3)
    other = save_generator(tmp_path / "other.safetensors", G)
    _user_error(_cli("invert", other, "--regenerate", tmp_path / "inv" / "latent.safetensors", "--out",
                     tmp_path / "re"), "made with another model")
    assert not (tmp_path / "re").exists()


def test_checkpoint_metadata_that_is_no_object_is_refused(small_ckpt, tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "list.safetensors"), metadata={"gantlitz": "[1, 2]"})
    _user_error(_cli("generate", tmp_path / "list.safetensors", "--out", tmp_path / "o"), "not an object")


# -- a full disk: every writer says so, names the file and leaves neither a temporary nor a partial file ---
@pytest.fixture()
def full_disk(tmp_path):
    """A 2 MB tmpfs filled to its last few kB (root only; skipped elsewhere)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (and a system that allows it)")
    try:
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * (free - 24 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("command", [
    lambda d, c: ["generate", c, "--out", d / "o", "--format", "png16", "--no-progress"],
    lambda d, c: ["generate", c, "--out", d / "o", "--format", "exr", "--no-progress"],
    lambda d, c: ["synth", d / "s", "--subjects", "2", "--size", "128x128"],
    lambda d, c: ["vary-noise", c, "--out", d / "v", "--save-maps", "tiff", "--no-progress"],
], ids=["generate-png16", "generate-exr", "synth", "vary-noise-tiff"])
def test_a_full_disk_is_a_clear_error_without_partial_files(full_disk, small_ckpt, command):
    _user_error(_cli(*command(full_disk, small_ckpt)), "could not be written", "full")
    assert not [p for p in full_disk.rglob("*") if p.match(TEMP_GLOB) or ".synth-" in p.name]
    from gantlitz.imageio import read_image

    for image in (p for p in full_disk.rglob("*") if p.suffix in (".png", ".exr", ".tif")):
        read_image(image)  # whatever got its final name is complete


def test_overwrite_after_a_killed_run_replaces_its_grown_metrics(prepared_store, run_copy):
    with open(run_copy / "metrics.jsonl", "a") as handle:  # logged after the run's last record, then killed
        handle.write('{"step": 5}\n')
    r = _train(prepared_store, run_copy, 2, "--overwrite")
    assert r.exit_code == 0, r.output
    assert '"step": 5' not in (run_copy / "metrics.jsonl").read_text()


def test_a_non_empty_folder_without_overwrite_is_said_so(raw_dataset, tmp_path):
    _user_files(tmp_path, "photos", "a.jpg")
    _user_error(_cli("prepare", raw_dataset, tmp_path / "photos"), "not empty", "--overwrite")
    assert _visible(tmp_path / "photos") == ["a.jpg"]
