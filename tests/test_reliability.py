"""Reliability (issue 14): nothing a user owns is deleted, no traceback for a user's mistake, runs are locked,
impossible values are refused. One test per reproduction of the issue, through the CLI where it was found."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from helpers import SMALL_PRESET, randomise, save_generator

from gantlitz import checkpoint
from gantlitz.cli import main
from gantlitz.networks import build
from gantlitz.outputs import FolderLock

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
    _user_error(r, "not a prepared dataset")
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
    assert sorted(p.name for p in ours.iterdir()) == ["README.txt", "mask.png", "subject000"]


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
    assert sorted(p.name for p in (run_copy / "checkpoints").iterdir()) == ["step-000000002.safetensors"]


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
    (lambda m: m["preset"]["model"].update(channel_base=10**9), "do not match"),
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
