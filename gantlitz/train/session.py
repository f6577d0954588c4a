"""The step loop of one process of a training run (`Session`): batches from the loader, the trainer's
steps, logging windows, divergence checks, checkpoints, previews, and stopping on time or on a signal."""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from .. import checkpoint
from ..config import Preset, to_dict
from ..data.sampling import raw_to_network, training_loader
from . import distributed, losses
from .monitor import Monitor, Previewer, memory_gb
from .run import RunDirectory, TrainingDiverged, TrainingInterrupted
from .state import RANK_SEED_STRIDE

__all__ = ["Session", "TrainResult", "StopFlag"]


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    model: Path | None
    stopped: str
    """"done" (all steps), "time" (max_minutes reached)."""
    history: list[dict[str, float]] = field(default_factory=list)


class StopFlag:
    """SIGINT/SIGTERM → finish the step, checkpoint, stop. A second SIGINT aborts at once."""

    def __init__(self, install: bool) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        if install and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: finishing this step, then writing a checkpoint "
              "(press Ctrl-C again to abort without one)", file=sys.stderr, flush=True)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def _resume_command(data: Any, out: Path, preset_name: str) -> str:
    return f"gantlitz train --data {data} --preset {preset_name} --out {out} --resume"



class Session:
    """The step loop of one process of a run: logging windows, divergence checks, checkpoints, stopping."""

    def __init__(self, trainer: Any, run: RunDirectory, store: Any, preset: Preset, info: Any,
                 dataset_meta: dict[str, Any], *, last_checkpoint: Path | None, max_minutes: float | None,
                 t_start: float, data: Any) -> None:
        self.trainer, self.run_dir, self.store, self.preset, self.info = trainer, run, store, preset, info
        self.cfg = preset.train
        self.meta_base = {"preset": to_dict(preset), "dataset": dataset_meta}
        self.last_checkpoint = last_checkpoint
        self.max_minutes, self.t_start, self.data = max_minutes, t_start, data
        self.history: list[dict[str, float]] = []
        self._reset_window()

    def _reset_window(self) -> None:
        self.acc: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.window_t, self.window_steps = time.time(), 0

    def _where(self) -> str:
        return f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
            "no checkpoint was written"

    def run(self, start_step: int, *, progress: bool, tensorboard: bool, previews: bool,
            handle_signals: bool) -> TrainResult:
        cfg, info, total = self.cfg, self.info, self.cfg.steps
        stop = StopFlag(handle_signals)
        monitor = Monitor(self.run_dir.path, enabled=info.is_main, total_steps=total, start_step=start_step,
                          progress=progress, tensorboard=tensorboard,
                          desc="train" if self.max_minutes is None else f"train (stops after {self.max_minutes:g} min)")
        previewer = Previewer(self.trainer, self.store, self.preset) if (
            info.is_main and previews and cfg.preview_every) else None
        loader = training_loader(self.store, self.preset, seed=cfg.seed + RANK_SEED_STRIDE * info.rank,
                              start_step=start_step, steps=total, pin=info.device.type == "cuda")
        step, stopped = start_step, "done"
        try:
            if previewer is not None and start_step == 0:
                previewer.render(monitor, 0)
            it: Iterator[dict[str, Any]] = iter(loader)
            while step < total:
                self._step(step, next(it))
                step += 1
                monitor.advance()
                is_ckpt = step % cfg.checkpoint_every == 0 or step == total
                want_stop = self._want_stop(stop)
                if step % cfg.log_every == 0 or step == total or is_ckpt or want_stop:
                    self._log(monitor, step)
                if is_ckpt or want_stop:
                    self._checkpoint(monitor, step)
                if previewer is not None and (step % cfg.preview_every == 0 or step == total or want_stop):
                    previewer.render(monitor, step)
                if want_stop:
                    if stop.signum is not None:
                        raise TrainingInterrupted(
                            f"{signal.Signals(stop.signum).name}: stopped at step {step}/{total}; checkpoint "
                            f"{self.last_checkpoint} written. Resume with: "
                            f"{_resume_command(self.data, self.run_dir.path, self.preset.name)}", stop.signum)
                    stopped = "time"
                    monitor.write(f"time limit of {self.max_minutes:g} min reached at step {step}/{total}")
                    break
            model_path = self._finish(monitor, step)
            return TrainResult(self.run_dir.path, step, self.last_checkpoint, model_path, stopped, self.history)
        finally:
            stop.restore()
            monitor.close()

    def _step(self, step: int, batch: dict[str, Any]) -> None:
        real = batch["image"]
        if "mask" in batch:  # raw store values: decode on the training device
            dev = self.info.device
            real = raw_to_network(real.to(dev, non_blocking=True), batch["mask"].to(dev, non_blocking=True))
        for k, v in self.trainer.step(step, real, batch["top"], batch["left"]).items():
            self.acc[k] = self.acc[k] + v if k in self.acc else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1
        self.window_steps += 1

    def _want_stop(self, stop: StopFlag) -> bool:
        want = stop.signum is not None or (self.max_minutes is not None and self.info.is_main
                                           and time.time() - self.t_start > self.max_minutes * 60)
        return distributed.any_flag(want, self.info.device) if self.info.world_size > 1 else want

    def _log(self, monitor: Monitor, step: int) -> None:
        """Mean losses of the window since the last log; a non-finite one stops the run."""
        cfg, trainer = self.cfg, self.trainer
        values = {k: float(v) / self.counts[k] for k, v in self.acc.items()}
        bad = losses.check_finite(values)
        if bad is not None:
            raise TrainingDiverged(
                f"non-finite loss ({bad}, mean over steps {step - self.window_steps + 1}-{step}): training stopped "
                f"at step {step}; {self._where()}. Lower the learning rate (--lr), raise R1 (--r1-gamma) or use "
                "--precision fp32/tf32, then --resume or start over."
            )
        if self.info.is_main:
            elapsed = max(time.time() - self.window_t, 1e-9)
            samples = self.window_steps * cfg.batch * self.info.world_size
            values.update({
                "augment/p": trainer.ada.p, "augment/r_t": trainer.ada.r_t,
                "lr": losses.warmup_lr(step - 1, cfg.lr, cfg.warmup_steps),
                "speed/steps_per_s": self.window_steps / elapsed, "speed/samples_per_s": samples / elapsed,
                "speed/modality_patches_per_s": samples * trainer.modalities_per_sample / elapsed,
                "memory/peak_gb": memory_gb(self.info.device),
                "progress/kimg": step * cfg.batch * self.info.world_size / 1000.0,
            })
            monitor.scalars(step, values, postfix={
                "G": f"{values['loss/G']:.3f}", "D": f"{values['loss/D']:.3f}", "p": f"{trainer.ada.p:.2f}",
                "patch/s": f"{values['speed/modality_patches_per_s']:.1f}"})
            self.history.append({"step": step, **values})
        self._reset_window()

    def _checkpoint(self, monitor: Monitor, step: int) -> None:
        if not self.trainer.weights_finite():
            raise TrainingDiverged(f"non-finite weights at step {step}: training stopped; {self._where()}")
        if self.info.is_main:
            self._save(step)
            monitor.flush()
        distributed.barrier()

    def _save(self, step: int) -> None:
        tensors, state_meta = self.trainer.state()
        meta = {**self.meta_base, "step": step, "kimg": step * self.cfg.batch * self.info.world_size / 1000.0,
                "world_size": self.info.world_size, **state_meta}
        self.last_checkpoint = self.run_dir.save_checkpoint(step, tensors, meta, self.cfg.keep_checkpoints)

    def _finish(self, monitor: Monitor, step: int) -> Path | None:
        """Final checkpoint (if none was written at this step) and the model file (G_ema)."""
        model_path = None
        if self.info.is_main:
            if self.last_checkpoint is None or checkpoint.latest(self.run_dir.checkpoints) is None:
                self._save(step)
            model_path = checkpoint.save(self.run_dir.model, checkpoint.prefixed(self.trainer.G_ema.state_dict(), "G_ema"),
                                         {**self.meta_base, "step": step, "augment_p": self.trainer.ada.p})
            monitor.write(f"done: step {step}, model {model_path}")
        distributed.barrier()
        return model_path
