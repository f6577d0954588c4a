"""The training loop (paper §4.4.5): `Trainer` (the networks, their optimisers and one step) and
`train(data, out, preset, ...)` (the run: data, checkpoints, logging, stopping).

One step, per process: a batch of real patches grouped by location (`gantlitz.data.sampling`; the global
baseline reads whole textures resized to R×R at location (0, 0)), then the phases of
`gantlitz.train.objectives` in order: the patch D step, lazy R1, the optional whole-canvas D step, and
the G step with every G-side term (patch adversarial, optional moment matching and whole-canvas view);
finally G_ema ← lerp towards G and, every `ada_interval` steps, ADA's p adapts.

Every random draw is a pure function of (seed, step, rank, purpose) (`gantlitz.train.state`); the
sampler is a pure function of (seed, step). A resumed run therefore reproduces an uninterrupted run
exactly (the checkpoint still stores the global torch / NumPy / Python RNG states, restored on resume).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .. import checkpoint, networks, presets
from ..config import MODALITIES, Preset, parse_overrides, to_dict
from ..data.store import PatchStore, StoreError
from ..device import configure_backends, precision_context
from ..errors import ConfigError, UsageError
from ..geometry import check_regions
from . import distributed, losses, objectives
from .augment import AdaptiveP, Augment, drop_modalities, sample_modality_keep
from .run import Resumable, RunDirectory, check_dataset, history_entry, versions
from .session import Session, TrainResult
from .state import Purpose, optimizer_from_flat, optimizer_to_flat, restore_rng, rng_state, step_generator

log = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainResult", "train"]


def _mbstd_group(preset: Preset) -> int:
    """D's minibatch-stddev group: the location group; the global baseline (one location) uses
    StyleGAN2's group of up to 4."""
    if preset.global_res is None:
        return preset.train.group_size
    for g in (4, 3, 2, 1):
        if preset.train.batch % g == 0:
            return g
    return 1


# --------------------------------------------------------------------------------------------------
# The trainer: networks, optimisers, augmentation and one step
# --------------------------------------------------------------------------------------------------


class Trainer:
    """G, G_ema, D, their optimisers, the augmentation and its adaptive p; `step()` runs one training step.

    Usable without a dataset (benchmarks): feed `step(step, real, tops, lefts)` any batch of the right shape.
    """

    def __init__(self, preset: Preset, mask: torch.Tensor | None = None, *, device: str | torch.device = "cpu",
                 rank: int = 0, world_size: int = 1, targets: objectives.DataTargets | None = None) -> None:
        self.preset = preset
        self.cfg = cfg = preset.train
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.mbstd_group = _mbstd_group(preset)
        self.modalities_per_sample = 2 if (cfg.augment.modality_dropout and cfg.augment.enabled) else len(MODALITIES)
        configure_backends(cfg.precision, self.device)
        G, D = networks.build(preset, seed=cfg.seed, mask=mask)
        self.G = G.to(self.device).train()
        self.D = D.to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        distributed.broadcast_module(self.G)
        distributed.broadcast_module(self.D)
        distributed.broadcast_module(self.G_ema)
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8, **fused)
        self.r1_interval = cfg.r1_interval if cfg.r1_gamma > 0 else None
        d_lr, d_betas = losses.lazy_adam_hparams(cfg.lr, tuple(cfg.betas), self.r1_interval)
        self.d_lr_ratio = d_lr / cfg.lr
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=d_betas, eps=1e-8, **fused)
        self.augment = Augment(cfg.augment, preset.model.patch_size).to(self.device)
        self.ada = AdaptiveP.from_config(cfg.augment, reduce=distributed.all_reduce_sum if world_size > 1 else None,
                                         device=self.device)
        # One generator per purpose on the training device, re-seeded every step: no per-call generators,
        # no random numbers copied from host memory.
        self._generators: dict[int, torch.Generator] = {}
        groups = cfg.batch // self.mbstd_group
        if cfg.g_chunks < 1 or groups % cfg.g_chunks:
            raise ValueError(f"train.g_chunks={cfg.g_chunks} must divide the batch's {groups} location groups")
        rows = cfg.batch // cfg.g_chunks
        self.g_chunks = [slice(i * rows, (i + 1) * rows) for i in range(cfg.g_chunks)]
        self.autocast_dtype = torch.bfloat16 if cfg.precision == "bf16" else None
        # torch.compile: the main G and D passes; R1 (double backward) runs the eager D.
        if cfg.compile:
            self.G_fwd = torch.compile(self.G)
            self.D_fwd = torch.compile(self.D)
        else:
            self.G_fwd, self.D_fwd = self.G, self.D
        # location-consistency loss when D has a location head (ModelConfig.disc_locate)
        self.locate_kw = {"locate": True} if self.D.locate is not None else {}
        model = preset.model
        self.location_loss = functools.partial(losses.location_loss, patch=model.patch_size,
                                               canvas=(model.canvas_height, model.canvas_width))
        self._phases(targets)

    def _phases(self, targets: objectives.DataTargets | None) -> None:
        """The step's phases (`train.objectives`): the paper's patch objective, plus the options."""
        cfg = self.cfg
        if targets is None and (cfg.moment_weight > 0 or cfg.whole_level is not None):
            raise ValueError("train.moment_weight / train.whole_level need the data's targets (DataTargets)")
        self.whole = None
        if cfg.whole_level is not None:
            self.whole = objectives.WholeCanvas(self, targets.whole_reals, targets.whole_mask, seed=cfg.seed)
        terms: list[objectives.ChunkTerm] = [objectives.PatchAdversarial(self)]
        if cfg.moment_weight > 0:
            terms.append(objectives.MomentMatch(self, targets.moment_means))
        self.d_phases = [objectives.PatchD(self), objectives.PatchR1(self)]
        if self.whole is not None:
            self.d_phases.append(self.whole.d_phase)
        self.g_step = objectives.GeneratorStep(self, terms, self.whole)

    # ---------------------------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        """The forward passes' autocast context (bf16 when the run asks for it)."""
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def gen(self, step: int, purpose: int) -> torch.Generator:
        """The purpose's device generator, seeded as `step_generator(seed, step, rank, purpose)` (host-side
        seeding only: no device synchronisation)."""
        gen = self._generators.get(purpose)
        if gen is None:
            gen = self._generators[purpose] = torch.Generator(device=self.device)
        return gen.manual_seed(step_generator(self.cfg.seed, step, self.rank, purpose).initial_seed())

    def latents(self, step: int, batch: int, *, update_w_avg: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(ws, noise seeds) for `batch` samples at `step`, style mixing included."""
        g, dev = self.gen(step, Purpose.Z), self.device
        z = torch.randn(batch, self.G.cfg.z_dim, generator=g, device=dev)
        seeds = torch.randint(0, 2**31 - 1, (batch,), generator=g, device=dev)
        ws = self.G.mapping(z, update_w_avg=update_w_avg)
        if self.cfg.style_mixing > 0:
            gm = self.gen(step, Purpose.MIX)
            z2 = torch.randn(batch, self.G.cfg.z_dim, generator=gm, device=dev)
            mix = torch.rand(batch, generator=gm, device=dev) < self.cfg.style_mixing
            cut = torch.randint(1, self.G.num_ws, (batch,), generator=gm, device=dev)
            cut = torch.where(mix, cut, torch.full_like(cut, self.G.num_ws))
            ws2 = self.G.mapping(z2, update_w_avg=False)
            sel = (torch.arange(self.G.num_ws, device=dev)[None, :] >= cut[:, None])[:, :, None]
            ws = torch.where(sel, ws2, ws)
        return ws, seeds

    def set_lr(self, step: int) -> float:
        lr = losses.warmup_lr(step, self.cfg.lr, self.cfg.warmup_steps)
        for group in self.opt_G.param_groups:
            group["lr"] = lr
        for group in self.opt_D.param_groups:
            group["lr"] = lr * self.d_lr_ratio
        return lr

    def fakes(self, step: int, tops: torch.Tensor, lefts: torch.Tensor, *, update_w_avg: bool,
              rows: slice = slice(None)) -> torch.Tensor:
        """The step's fakes at the real batch's locations (`rows` of them): the same values at every call."""
        b = tops.shape[0]
        ws, seeds = self.latents(step, b, update_w_avg=update_w_avg)
        keep, kept = self.fake_keep(step, b), None
        if keep is not None:  # modality dropout
            keep, kept = keep[rows], self.modalities_per_sample
        with self.autocast():
            return self.G_fwd(ws[rows], tops[rows], lefts[rows], seeds[rows], keep=keep, kept=kept)

    def fake_keep(self, step: int, batch: int) -> torch.Tensor | None:
        """The step's modality-dropout keep mask of the fakes (B, 3), or None without dropout."""
        if self.modalities_per_sample == len(MODALITIES):
            return None
        return sample_modality_keep(batch, self.gen(step, Purpose.KEEP_FAKE))

    def step(self, step: int, real: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training step: the D phases (`self.d_phases`), the G step, EMA; returns detached 0-d
        losses. Nothing in it waits for the device.

        G runs twice (as in StyleGAN2-ADA): generating the D step's fakes without autograd and again for
        the G step means G's graph never coexists with D's, which bounds peak memory by the larger of the
        two phases instead of their sum. Both passes give the same fakes (same latents and noise)."""
        b = real.shape[0]
        if tops.device.type == "cpu" and lefts.device.type == "cpu":
            check_regions(self.preset.model.patch_size, real.shape[-2], real.shape[-1], tops, lefts)
        real = real.to(self.device, non_blocking=True)
        tops = tops.to(self.device, non_blocking=True)
        lefts = lefts.to(self.device, non_blocking=True)
        self.set_lr(step)
        if self.modalities_per_sample < len(MODALITIES):
            real = drop_modalities(real, sample_modality_keep(b, self.gen(step, Purpose.KEEP_REAL)))
        batch = objectives.StepBatch(step, real, tops, lefts, self.ada.p_tensor)
        out: dict[str, torch.Tensor] = {}
        for phase in self.d_phases:
            out.update(phase(batch))
        out.update(self.g_step(batch))
        losses.ema_update(self.G_ema, self.G, losses.ema_beta(step, self.cfg.ema_decay, self.cfg.ema_rampup))
        return out

    # ---------------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Checkpoint tensors (G., G_ema., D., opt_G., opt_D., rng.*) and JSON state."""
        tensors: dict[str, torch.Tensor] = {}
        tensors.update(checkpoint.prefixed(self.G.state_dict(), "G"))
        tensors.update(checkpoint.prefixed(self.G_ema.state_dict(), "G_ema"))
        tensors.update(checkpoint.prefixed(self.D.state_dict(), "D"))
        opt_g, meta_g = optimizer_to_flat(self.opt_G, "opt_G")
        opt_d, meta_d = optimizer_to_flat(self.opt_D, "opt_D")
        tensors.update(opt_g)
        tensors.update(opt_d)
        rng_t, rng_meta = rng_state()
        tensors.update(rng_t)
        meta = {"optimizers": {"opt_G": meta_g, "opt_D": meta_d}, "augment": self.ada.state_dict(),
                "augment_p": self.ada.p, "rng": rng_meta}
        if self.whole is not None:
            whole_t, meta["optimizers"]["opt_whole_D"] = self.whole.state()
            tensors.update(whole_t)
        return tensors, meta

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        for name, module in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            state = checkpoint.subset(dict(tensors), name)
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ConfigError(f"{meta.get('path', 'checkpoint')}: {name} weights do not match the preset ({exc})") from None
        optimizer_from_flat(self.opt_G, tensors, meta["optimizers"]["opt_G"], "opt_G")
        optimizer_from_flat(self.opt_D, tensors, meta["optimizers"]["opt_D"], "opt_D")
        if self.whole is not None:
            if "opt_whole_D" not in meta["optimizers"]:
                raise ConfigError(f"{meta.get('path', 'checkpoint')}: it has no whole-canvas discriminator; "
                                  "train.whole_level can not be turned on when resuming this run")
            self.whole.load_state(tensors, meta["optimizers"]["opt_whole_D"])
        self.ada.load_state_dict(meta["augment"])
        restore_rng(tensors, meta.get("rng", {}))

    def weights_finite(self) -> bool:
        params = list(self.G.parameters()) + list(self.D.parameters()) + list(self.G_ema.parameters())
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


def _dataset_meta(store: Any) -> dict[str, Any]:
    return {"canvas": [int(store.canvas[0]), int(store.canvas[1])], "displacement_scale": float(store.displacement_scale),
            "normal_convention": getattr(store, "normal_convention", "opengl"), "path": str(Path(store.path).resolve())}


def _mask_for(store: Any, preset: Preset) -> torch.Tensor:
    if preset.global_res is None:
        return torch.from_numpy(np.asarray(store.mask, dtype=np.uint8))
    r = preset.global_res
    return torch.from_numpy(np.asarray(store.mask_at(r, r), dtype=np.uint8))


# --------------------------------------------------------------------------------------------------
# train()
# --------------------------------------------------------------------------------------------------


def _check_budget(steps: int | None, kimg: float | None, max_minutes: float | None) -> None:
    """Refuse impossible lengths before anything is created."""
    if steps is not None and kimg is not None:
        raise UsageError("give steps or kimg, not both")
    if steps is not None and steps < 0:
        raise UsageError(f"--steps {steps}: must be 0 or more")
    if kimg is not None and not (math.isfinite(kimg) and kimg > 0):
        raise UsageError(f"--kimg {kimg}: must be a positive number of thousand samples")
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise UsageError(f"--minutes {max_minutes}: must be a positive number of minutes")


def _open_store(data: str | os.PathLike) -> PatchStore:
    try:
        return PatchStore(data)
    except StoreError as exc:
        raise ConfigError(f"dataset: {exc}") from None


def _resolve_run_preset(
    preset: str | Preset | None, overrides: Any, store: Any, data: Any, resumed: Resumable | None,
) -> Preset:
    """The preset of a fresh run (preset + overrides against the dataset), or of the run being resumed
    (only train.* settings may change)."""
    if resumed is None:
        if preset is None:
            raise ConfigError(f"choose a preset (--preset NAME): {', '.join(presets.names())}")
        try:
            return presets.resolve(preset, overrides, canvas=store.canvas, data_path=data)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
    from ..config import preset_from_dict

    saved = preset_from_dict(resumed.meta["preset"])
    if isinstance(preset, str) and preset != saved.name:
        log.warning("--preset %s differs from the run's preset %s: continuing with %s", preset, saved.name, saved.name)
    resolved = presets.resolve(saved, overrides, canvas=None if saved.global_res else store.canvas, data_path=data)
    if resolved.model != saved.model or resolved.global_res != saved.global_res:
        raise ConfigError(f"{resumed.path}: the overrides change the model of the run being resumed; only train.* "
                          "settings may change on --resume")
    return resolved


def _with_length(resolved: Preset, steps: int | None, kimg: float | None, world: int, start_step: int) -> Preset:
    """Apply --steps / --kimg; a total behind the resumed step is an error, not a silent restart."""
    if steps is not None or kimg is not None:
        total = int(steps) if steps is not None else math.ceil(float(kimg) * 1000 / (resolved.train.batch * world))
        resolved = dataclasses.replace(resolved, train=dataclasses.replace(resolved.train, steps=total))
    if resolved.train.steps < start_step:
        raise ConfigError(f"the run is at step {start_step}, past the requested total of {resolved.train.steps} "
                          "steps; ask for more steps (--steps/--kimg) to continue it")
    return resolved


def _run_dataset_meta(store: Any, resolved: Preset) -> dict[str, Any]:
    meta = _dataset_meta(store)
    if resolved.global_res is not None:
        # The global model's canvas is R x R: heights in its pixels are scaled by R / source width.
        r = resolved.global_res
        meta.update({"source_canvas": meta["canvas"], "canvas": [r, r], "global_res": r,
                     "displacement_scale": meta["displacement_scale"] * r / store.canvas[1]})
    return meta


def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    preset: str | Preset | None = None,
    *,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    steps: int | None = None,
    kimg: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    max_minutes: float | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    previews: bool = True,
    command: Sequence[str] | None = None,
    handle_signals: bool = True,
    allow_data_change: bool = False,
) -> TrainResult:
    """Train `preset` (name or Preset, plus dotted `overrides`) on the prepared dataset `data` into run
    directory `out`.

    `steps` (total steps) or `kimg` (thousands of real samples over all processes) override
    `train.steps`; `resume` continues from the newest valid checkpoint of `out` (starting fresh if there
    is no run); `overwrite` clears a previous run's own files (never other files); `max_minutes` stops
    after that much wall time as if the run had ended (final checkpoint + model); `allow_data_change`
    lets a resumed run continue on a dataset whose subjects or canvas differ from the run's record. Writes RUN/config.json,
    RUN/checkpoints/step-*.safetensors (every train.checkpoint_every steps, the last
    train.keep_checkpoints kept), RUN/model.safetensors (G_ema) at the end, TensorBoard logs, previews.
    The run directory is locked while training (`gantlitz.train.run`).

    Raises `ConfigError`, `RunExistsError`, `FolderLockedError`, `TrainingDiverged` (NaN/Inf; last good
    checkpoint kept) or `TrainingInterrupted` (SIGINT/SIGTERM; checkpoint written). Launch with torchrun
    for several GPUs.
    """
    _check_budget(steps, kimg, max_minutes)
    t_start = time.time()
    store = _open_store(data)
    run = RunDirectory(Path(out))
    run.check(data=data, resume=resume, overwrite=overwrite, allow_data_change=allow_data_change)
    info = distributed.setup(device)
    try:
        resumed = run.resumable() if resume else None
        start_step = resumed.step if resumed is not None else 0
        resolved = _resolve_run_preset(preset, overrides, store, data, resumed)
        resolved = _with_length(resolved, steps, kimg, info.world_size, start_step)
        if info.is_main:
            run.open(overwrite=overwrite, resume=resume)
        try:
            distributed.barrier()
            # TF32 / cuDNN flags as the run needs them, restored for the caller afterwards
            with precision_context(info.device, resolved.train.precision, autocast=False):
                trainer = Trainer(resolved, _mask_for(store, resolved), device=info.device, rank=info.rank,
                                  world_size=info.world_size, targets=objectives.data_targets(store, resolved))
                dataset_meta = _run_dataset_meta(store, resolved)
                if resumed is not None:
                    check_dataset(resumed, dataset_meta)
                    trainer.load_state(resumed.tensors, resumed.meta)
                    resumed.tensors.clear()
                if info.is_main:
                    run.record_start(history_entry(command, start_step, info.world_size, info.device), {
                        "preset": to_dict(resolved), "base_preset": resolved.name,
                        "overrides": dict(overrides) if isinstance(overrides, Mapping) else
                        parse_overrides(list(overrides or [])),
                        "steps": resolved.train.steps, "data": dataset_meta, "versions": versions(),
                    }, resume=resume)
                    run.trim_metrics(start_step)
                session = Session(trainer, run, store, resolved, info, dataset_meta,
                                   last_checkpoint=resumed.path if resumed is not None else None,
                                   max_minutes=max_minutes, t_start=t_start, data=data)
                return session.run(start_step, progress=progress, tensorboard=tensorboard, previews=previews,
                                   handle_signals=handle_signals)
        finally:
            if info.is_main:
                run.close()
    finally:
        distributed.cleanup(info)
