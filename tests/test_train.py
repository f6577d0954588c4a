"""Training (issue 4): steps change weights, exact resume, SIGTERM / NaN handling, run-directory rules,
overrides, the global baseline, adaptive p, clear dataset errors, 2-process data parallelism on CPU."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gantlitz import checkpoint, networks
from gantlitz.cli import main
from gantlitz.train import losses
from gantlitz.train import loop as train_loop
from gantlitz.train.augment import AdaptiveP
from gantlitz.errors import ConfigError
from gantlitz.presets import resolve as resolve_preset
from gantlitz.train.loop import train
from gantlitz.train.run import RunExistsError, TrainingDiverged, TrainingInterrupted

# `tiny` shrunk further (32-pixel patches, 16 channels, batch 2) so each step takes a fraction of a second.
FAST = {
    "model.patch_size": 32, "model.channel_max": 16, "model.d_channel_max": 16, "model.z_dim": 16,
    "model.w_dim": 16, "model.embed_dim": 8, "model.pe_channels": 16,
    "train.batch": 2, "train.group_size": 2, "train.log_every": 1, "train.checkpoint_every": 2,
    "train.preview_every": 0, "train.r1_interval": 2, "train.augment.ada_interval": 2, "train.warmup_steps": 4,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(data, out, steps, **kw):
    kw.setdefault("overrides", FAST)
    kw.setdefault("progress", False)
    kw.setdefault("tensorboard", False)
    return train(data, out, kw.pop("preset", "tiny"), steps=steps, **kw)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


LOSS_KEYS = ("loss/G", "loss/D", "D/real", "D/fake", "loss/R1", "augment/p", "augment/r_t")


def test_steps_change_weights_and_config_is_saved(prepared_store, tmp_path):
    assert "WORLD_SIZE" not in os.environ  # a plain process: no torchrun needed
    run = tmp_path / "run"
    result = _train(prepared_store, run, 3, overrides={**FAST, "train.preview_every": 3, "train.lr": 0.002},
                    tensorboard=True)
    assert result.step == 3 and result.stopped == "done"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"]["train"]["lr"] == 0.002 and cfg["preset"]["model"]["patch_size"] == 32
    assert cfg["preset"]["model"]["canvas_height"] == 256  # the dataset drives the canvas
    assert cfg["steps"] == 3 and cfg["overrides"]["train.lr"] == 0.002
    assert "torch" in cfg["versions"]

    tensors, meta = checkpoint.load(run)
    assert meta["step"] == 3 and meta["dataset"]["canvas"] == [256, 256]
    preset = resolve_preset("tiny", FAST, canvas=(256, 256))
    G0, D0 = networks.build(preset, seed=preset.train.seed)
    for name, module in (("G", G0), ("D", D0)):
        trained = checkpoint.subset(tensors, name)
        changed = [k for k, v in module.state_dict().items() if v.is_floating_point() and not torch.equal(v, trained[k])]
        assert changed, f"{name} weights did not change"
    assert any(k.startswith("opt_G.state.") for k in tensors) and "rng.torch" in tensors
    assert (run / "model.safetensors").exists()
    G, model_meta = checkpoint.load_generator(run / "model.safetensors")
    assert G.canvas == (256, 256) and model_meta["preset"]["name"] == "tiny"
    assert len(_metrics(run)) == 3
    assert sorted(p.name for p in (run / "previews").glob("*.png"))  # step 0 and step 3
    assert list((run / "logs").iterdir())  # TensorBoard event file


def test_resume_gives_the_same_run(prepared_store, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _train(prepared_store, straight, 4)
    _train(prepared_store, split, 2)
    result = _train(prepared_store, split, 4, resume=True)
    assert result.step == 4
    a, b = _metrics(straight), _metrics(split)
    assert [m["step"] for m in a] == [m["step"] for m in b] == [1, 2, 3, 4]
    # Bit for bit, not within a round-off bound: on a CPU the arithmetic repeats exactly for one build and
    # thread count (this module runs on one thread), and any round-off difference would not stay small:
    # Adam divides each step by the gradient's own magnitude (see tests/test_step.py).
    for ma, mb in zip(a, b):
        for key in LOSS_KEYS:
            if key in ma:
                assert ma[key] == mb[key], (ma["step"], key)
    ta, _ = checkpoint.load(straight)
    tb, _ = checkpoint.load(split)
    for key in ta:
        if key.split(".")[0] in ("G", "G_ema", "D", "opt_G", "opt_D"):
            assert torch.equal(ta[key], tb[key]), key
    cfg = json.loads((split / "config.json").read_text())
    assert [r["start_step"] for r in cfg["runs"]] == [0, 2]


def test_refuses_to_reuse_a_run_without_resume(prepared_store, tmp_path):
    run = tmp_path / "run"
    _train(prepared_store, run, 1)
    with pytest.raises(RunExistsError, match="--resume"):
        _train(prepared_store, run, 1)
    again = _train(prepared_store, run, 1, overwrite=True)
    assert again.step == 1 and [p.name for p in (run / "checkpoints").glob("step-*")] == ["step-000000001.safetensors"]


def test_sigterm_checkpoints_and_stops(prepared_store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_step = train_loop.Trainer.step

    def step_then_signal(self, step, *args):
        out = real_step(self, step, *args)
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to the loop's handler
        return out

    monkeypatch.setattr(train_loop.Trainer, "step", step_then_signal)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="--resume") as info:
        _train(prepared_store, run, 10)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    _, meta = checkpoint.load(run)
    assert meta["step"] == 1
    monkeypatch.setattr(train_loop.Trainer, "step", real_step)
    assert _train(prepared_store, run, 2, resume=True).step == 2


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(prepared_store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    calls = {"n": 0}
    real_loss = losses.g_nonsaturating

    def poisoned(logits):
        calls["n"] += 1
        loss = real_loss(logits)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(losses, "g_nonsaturating", poisoned)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(loss/G=nan.*step-000000002"):
        # the patch objective alone, so the poisoned loss is called once per step
        _train(prepared_store, run, 10, overrides={**FAST, "train.whole_level": None})
    tensors, meta = checkpoint.load(run)
    assert meta["step"] == 2
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())
    assert not (run / "model.safetensors").exists()


def test_global_baseline_runs_at_a_tiny_resolution(prepared_store, tmp_path):
    run = tmp_path / "global"
    small = {"global_res": 32, "model.channel_max": 16, "model.d_channel_max": 16, "model.z_dim": 16,
             "model.w_dim": 16, "model.pe_channels": 16, "train.batch": 2, "train.log_every": 1,
             "train.preview_every": 2, "train.workers": 0, "train.precision": "fp32"}
    result = _train(prepared_store, run, 2, preset="mmstylegan2-ada", overrides=small)
    assert result.step == 2
    G, meta = checkpoint.load_generator(run)
    assert G.canvas == (32, 32) and G.patch_size == 32 and G.out_channels == 5
    assert tuple(G.mask.shape) == (32, 32) and 0 < int(G.mask.sum()) < 32 * 32
    assert meta["dataset"]["global_res"] == 32 and meta["dataset"]["source_canvas"] == [256, 256]


def test_adaptive_p_moves_the_right_way():
    winning, losing = AdaptiveP(0.6, interval=2, kimg=0.01), AdaptiveP(0.6, interval=2, kimg=0.01, p=0.5)
    for _ in range(6):
        winning.update(torch.full((4,), 3.0))  # D always right on reals: overfitting → more augmentation
        losing.update(torch.full((4,), -3.0))  # D always wrong: less augmentation
    assert winning.p > 0.0 and winning.r_t == 1.0
    assert losing.p < 0.5 and losing.r_t == -1.0


def test_augment_p_rises_when_d_always_wins(prepared_store, tmp_path, monkeypatch):
    """In the loop: a discriminator that always scores reals positive drives p up."""
    real_forward = networks.Discriminator.forward

    def confident(self, images, tops, lefts, group_size=1, **kw):
        out = real_forward(self, images, tops, lefts, group_size, **kw)
        return (out[0] * 0 + 5.0, out[1]) if isinstance(out, tuple) else out * 0 + 5.0

    monkeypatch.setattr(networks.Discriminator, "forward", confident)
    overrides = {**FAST, "train.augment.ada_kimg": 0.01, "train.augment.ada_interval": 1}
    result = _train(prepared_store, tmp_path / "run", 2, overrides=overrides)
    assert result.history[-1]["augment/p"] > 0.0 and result.history[-1]["augment/r_t"] == 1.0


def test_missing_or_corrupt_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no prepared dataset"):
        train(tmp_path / "nothing", tmp_path / "run", "tiny", steps=1, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="manifest"):
        train(bad, tmp_path / "run", "tiny", steps=1, progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_preset_checked_against_the_dataset(prepared_store, tmp_path):
    with pytest.raises(ConfigError, match=r"canvas 256x256.*patch size 512"):
        train(prepared_store, tmp_path / "run", "gantlitz-s", steps=1, progress=False)
    with pytest.raises(ConfigError, match="multiple of group_size"):
        train(prepared_store, tmp_path / "run", "tiny", overrides={"train.batch": 3}, steps=1, progress=False)


def test_loss_helpers():
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    logits = (x**2).sum(dim=(1, 2, 3))
    assert torch.allclose(losses.r1_penalty(logits, x), (2 * x).pow(2).sum(dim=(1, 2, 3)))
    lr, betas = losses.lazy_adam_hparams(0.003, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.003 * 16 / 17) and betas[1] == pytest.approx(0.99 ** (16 / 17))
    assert losses.warmup_lr(0, 0.003, 2000) == pytest.approx(0.003 / 2000)
    assert losses.warmup_lr(5000, 0.003, 2000) == 0.003
    assert losses.ema_beta(10, 0.999) == 0.999 and losses.ema_beta(0, 0.999, 0.05) == 0.0
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    losses.ema_update(a, b, 0.0)
    assert torch.equal(a.weight, b.weight)


def test_cli_train_and_refusal(prepared_store, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(prepared_store), "--preset", "tiny", "--out", str(run), "--steps", "1",
            "--no-progress", "--batch", "2", "--group-size", "2"]
    for key, value in FAST.items():
        if key not in ("train.batch", "train.group_size"):
            args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "model" in result.output and (run / "model.safetensors").exists()
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "--resume" in again.output
    bad = CliRunner().invoke(main, args[:-4] + ["--overwrite", "--set", "train.bogus=1"])
    assert bad.exit_code != 0 and "unknown setting" in bad.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    train(data, out, "tiny", overrides=FAST, steps=2, device="cpu", progress=False, tensorboard=False,
          handle_signals=False)


def test_two_process_data_parallel_on_cpu(prepared_store, tmp_path):
    import torch.multiprocessing as mp

    run = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(prepared_store), str(run)), nprocs=2, join=True)
    tensors, meta = checkpoint.load(run)
    assert meta["step"] == 2 and meta["world_size"] == 2
    assert meta["kimg"] == pytest.approx(2 * 2 * 2 / 1000)
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_cuda_steps(prepared_store, tmp_path, precision):
    result = _train(prepared_store, tmp_path / "cuda", 4, device="cuda",
                    overrides={**FAST, "train.precision": precision, "train.workers": 1})
    assert result.step == 4
    assert all(torch.isfinite(torch.tensor(h["loss/G"])) for h in result.history)
    assert result.history[-1]["memory/peak_gb"] > 0


def test_location_loss_and_a_located_run(prepared_store, tmp_path):
    """The location loss is zero for the true centres and grows with the error; a run whose D has a
    location head trains that head (on reals) and G against it, deterministically."""
    tops, lefts = torch.tensor([0, 32]), torch.tensor([64, 0])
    true = torch.tensor([[-0.75, -0.25], [-0.5, -0.75]])  # centres of 64-pixel patches on 256x256
    assert losses.location_loss(true, tops, lefts, 64, (256, 256)).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.location_loss(true + 0.1, tops, lefts, 64, (256, 256)).item() == pytest.approx(0.02, abs=1e-6)
    overrides = {**FAST, "model.disc_locate": True, "model.disc_pos_inject": "project", "model.pe_learned": True}
    runs = [_train(prepared_store, tmp_path / f"run{i}", 4, overrides=overrides) for i in range(2)]
    tensors = [checkpoint.load(r.checkpoint)[0] for r in runs]
    head = [k for k in tensors[0] if k.startswith("D.locate.")]
    weights = [k for k in tensors[0] if k.split(".")[0] in ("G", "D", "G_ema")]
    assert head and weights and all(torch.equal(tensors[0][k], tensors[1][k]) for k in weights)
    earlier = checkpoint.load(runs[0].run_dir / "checkpoints" / "step-000000002.safetensors")[0]
    assert not torch.equal(tensors[0]["D.locate.weight"], earlier["D.locate.weight"])
    assert not torch.equal(tensors[0]["G.pe_map"], earlier["G.pe_map"])
