"""The training loop (SPEC §7, paper §4.4.5): `train(data, out, preset, ...)`.

One step, per process:

1. a batch of real patches grouped by location (`gantlitz.data.sampling`; the global baseline reads
   whole textures resized to R×R at location (0, 0));
2. the generator synthesises a fake batch at the *same* locations, once per (kept) modality per sample,
   masked (modality dropout: two of three modalities per fake, one modality zeroed per real);
3. discriminator step: logistic loss on augmented fakes (detached) and augmented reals, one D pass over
   both; ADA's r_t accumulates sign(D(real));
4. every `r1_interval` steps a separate R1 step: (γ/2)‖∇_x D(x)‖²·interval on freshly augmented reals,
   x = D's input (detached after augmentation), Adam of D corrected for lazy regularisation;
5. generator step: non-saturating loss through D (frozen) on a fresh augmentation of the same fakes,
   generated again with autograd (the D step's fakes are made without a graph, so G's graph never
   coexists with D's); w_avg updated;
6. G_ema ← lerp towards G (decay 0.999), buffers copied; every `ada_interval` steps p adapts.

Every random draw is a pure function of (seed, step, rank, purpose), through a `torch.Generator` seeded
per step: latents, noise seeds, modality-dropout masks, augmentations; the sampler is a pure function of
(seed, step). A resumed run therefore reproduces an uninterrupted run exactly (the checkpoint still stores
the global torch / NumPy / Python RNG states, restored on resume).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from .. import checkpoint, networks, presets
from ..config import MODALITIES, Preset, apply_overrides, parse_overrides, to_dict, validate_model, validate_train
from ..data.sampling import GroupedBatchSampler, patch_loader, raw_to_network, training_locations
from ..data.store import PatchStore, StoreError
from ..nn.generator import check_regions
from ..device import configure_backends, precision_context
from ..errors import UsageError
from ..resample import block_mean
from . import distributed, losses
from .augment import AdaptiveP, Augment, drop_modalities, sample_modality_keep
from .monitor import Monitor, memory_gb, patch_grid_image, texture_image, texture_preview
from .run import (ConfigError, Resumable, RunDirectory, RunExistsError, TrainError, TrainingDiverged,
                  TrainingInterrupted, check_dataset, history_entry, versions)

log = logging.getLogger(__name__)

__all__ = [
    "TrainError",
    "ConfigError",
    "RunExistsError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainResult",
    "Trainer",
    "train",
    "parse_overrides",
    "apply_overrides",
    "resolve_preset",
    "step_generator",
    "GlobalDataset",
]

# Purposes of the per-step random streams (never reuse a number for a new purpose).
_Z, _KEEP_FAKE, _KEEP_REAL, _AUG_D, _AUG_R1, _AUG_G, _MIX, _PREVIEW = range(1, 9)
_RANK_SEED_STRIDE = 1_000_003


# --------------------------------------------------------------------------------------------------
# Configuration: overrides with type coercion, resolution against the dataset
# --------------------------------------------------------------------------------------------------

def resolve_preset(
    preset: str | Preset, overrides: Mapping[str, Any] | Sequence[str] | None = None, *,
    canvas: tuple[int, int] | None = None, data_path: str | os.PathLike | None = None,
) -> Preset:
    """Preset (by name) + overrides, on the dataset's canvas; clear errors for impossible combinations.

    The global baseline (`global_res` set) trains an R×R whole-image model: canvas = patch = R."""
    base = presets.get(preset) if isinstance(preset, str) else preset
    resolved = apply_overrides(base, overrides)
    validate_train(resolved.train)
    validate_model(resolved.model)
    where = f" ({data_path})" if data_path is not None else ""
    if resolved.global_res is not None:
        r = int(resolved.global_res)
        if r < 8 or r & (r - 1):
            raise ConfigError(f"global_res must be a power of two >= 8, got {r}")
        try:
            model = dataclasses.replace(resolved.model, canvas_height=r, canvas_width=r, patch_size=r)
        except ValueError as exc:
            raise ConfigError(f"global_res={r}: {exc}") from None
        return dataclasses.replace(resolved, model=model)
    if canvas is not None:
        h, w = canvas
        p = resolved.model.patch_size
        if h % p or w % p:
            raise ConfigError(
                f"the dataset canvas {w}x{h}{where} is not divisible by the patch size {p} of preset "
                f"{resolved.name!r}; choose another preset or --set model.patch_size=N (a power of two dividing both)"
            )
        try:
            resolved = resolved.with_canvas(h, w)
        except ValueError as exc:
            raise ConfigError(f"preset {resolved.name!r} on canvas {w}x{h}{where}: {exc}") from None
    return resolved


# --------------------------------------------------------------------------------------------------
# Randomness: a pure function of (seed, step, rank, purpose)
# --------------------------------------------------------------------------------------------------


def step_generator(seed: int, step: int, rank: int, purpose: int) -> torch.Generator:
    """A CPU torch.Generator whose stream depends only on (seed, step, rank, purpose)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step), int(rank), int(purpose), 0x6A17]).generate_state(
        2, np.uint32
    )
    return torch.Generator().manual_seed((int(state[0]) << 32) | int(state[1]))


def _rng_tensors_and_meta() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = st
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).view(np.int32).copy())
    py_version, py_state, py_gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
            "python": [py_version, list(py_state), py_gauss]}
    return tensors, meta


def _restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([c.to(torch.uint8) for c in cuda])
    if "rng.numpy" in tensors and "numpy" in meta:
        kind, pos, has_gauss, cached = meta["numpy"]
        keys = tensors["rng.numpy"].numpy().view(np.uint32)
        np.random.set_state((kind, keys, pos, has_gauss, cached))
    if "python" in meta:
        version, state, gauss = meta["python"]
        random.setstate((version, tuple(state), gauss))


# --------------------------------------------------------------------------------------------------
# Optimiser state ↔ flat tensors + JSON
# --------------------------------------------------------------------------------------------------


def optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                        prefix: str) -> None:
    start = f"{prefix}.state."
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(start):
            idx, name = key[len(start):].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


class GlobalDataset(torch.utils.data.Dataset):
    """Whole textures resized to R×R (the mmstylegan2-ada baseline), keyed like `PatchDataset`
    by (subject, top, left, flip) with top = left = 0."""

    def __init__(self, store: Any, resolution: int) -> None:
        self.store = store
        self.resolution = int(resolution)

    def __len__(self) -> int:
        return len(self.store.subjects)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        subject, _top, _left, flip = key if isinstance(key, tuple) else (int(key), 0, 0, False)
        r = self.resolution
        image = self.store.read_whole(subject, r, r, flip=bool(flip))
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "top": 0, "left": 0,
                "subject": int(subject), "flip": bool(flip)}


def _make_loader(store: Any, preset: Preset, *, seed: int, start_step: int, steps: int, pin: bool) -> Any:
    cfg = preset.train
    flip = bool(cfg.flip and store.flip)
    if preset.global_res is None:
        return patch_loader(store, preset.model.patch_size, cfg.batch, cfg.group_size, seed=seed,
                            start_step=start_step, steps=steps, workers=cfg.workers, flip=flip, pin_memory=pin,
                            raw=True)
    sampler = GroupedBatchSampler([(0, 0)], len(store.subjects), cfg.batch, cfg.group_size, seed=seed,
                                  start_step=start_step, flip=flip, steps=steps)
    return torch.utils.data.DataLoader(
        GlobalDataset(store, preset.global_res), batch_sampler=sampler, num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0, pin_memory=pin, prefetch_factor=4 if cfg.workers > 0 else None,
    )


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
                 rank: int = 0, world_size: int = 1) -> None:
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

    # ---------------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def _gen(self, step: int, purpose: int) -> torch.Generator:
        """The purpose's device generator, seeded as `step_generator(seed, step, rank, purpose)` (host-side
        seeding only: no device synchronisation)."""
        gen = self._generators.get(purpose)
        if gen is None:
            gen = self._generators[purpose] = torch.Generator(device=self.device)
        return gen.manual_seed(step_generator(self.cfg.seed, step, self.rank, purpose).initial_seed())

    def latents(self, step: int, batch: int, *, update_w_avg: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(ws, noise seeds) for `batch` samples at `step`, style mixing included."""
        g, dev = self._gen(step, _Z), self.device
        z = torch.randn(batch, self.G.cfg.z_dim, generator=g, device=dev)
        seeds = torch.randint(0, 2**31 - 1, (batch,), generator=g, device=dev)
        ws = self.G.mapping(z, update_w_avg=update_w_avg)
        if self.cfg.style_mixing > 0:
            gm = self._gen(step, _MIX)
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
        keep, kept = None, None
        if self.modalities_per_sample < len(MODALITIES):  # modality dropout
            keep, kept = sample_modality_keep(b, self._gen(step, _KEEP_FAKE))[rows], self.modalities_per_sample
        with self._autocast():
            return self.G_fwd(ws[rows], tops[rows], lefts[rows], seeds[rows], keep=keep, kept=kept)

    def step(self, step: int, real: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training step (D step on fakes made without a graph, lazy R1 step, G step on a second G pass,
        EMA); returns detached 0-d losses. Nothing in it waits for the device.

        G runs twice (as in StyleGAN2-ADA): generating the D step's fakes without autograd and again for
        the G step means G's graph never coexists with D's, which bounds peak memory by the larger of the
        two phases instead of their sum. Both passes give the same fakes (same latents and noise)."""
        cfg = self.cfg
        b = real.shape[0]
        if tops.device.type == "cpu" and lefts.device.type == "cpu":
            check_regions(self.preset.model.patch_size, real.shape[-2], real.shape[-1], tops, lefts)
        real = real.to(self.device, non_blocking=True)
        tops = tops.to(self.device, non_blocking=True)
        lefts = lefts.to(self.device, non_blocking=True)
        self.set_lr(step)
        p = self.ada.p_tensor
        group = self.mbstd_group
        if self.modalities_per_sample < len(MODALITIES):
            real = drop_modalities(real, sample_modality_keep(b, self._gen(step, _KEEP_REAL)))

        loss_d, real_logits, fake_logits = self._d_step(step, real, tops, lefts, p, group)
        loss_r1 = self._r1_step(step, real, tops, lefts, p, group)
        loss_g = self._g_step(step, real, tops, lefts, p, group)
        losses.ema_update(self.G_ema, self.G, losses.ema_beta(step, cfg.ema_decay, cfg.ema_rampup))
        out = {
            "loss/G": loss_g,
            "loss/D": loss_d.detach(),
            "D/real": real_logits.detach().mean(),
            "D/fake": fake_logits.detach().mean(),
        }
        if loss_r1 is not None:
            out["loss/R1"] = loss_r1.detach() / max(self.r1_interval or 1, 1)
        return out

    def _d_step(self, step: int, real: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, p: torch.Tensor,
                group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logistic loss on fakes (made without a graph) and reals in one D pass (plus D's location loss
        on the reals when it has a location head); updates D and ADA. → (loss, real logits, fake logits)."""
        b = real.shape[0]
        with torch.no_grad():
            fake = self.fakes(step, tops, lefts, update_w_avg=False)
        self.D.requires_grad_(True)
        g_aug = self._gen(step, _AUG_D)
        with self._autocast():
            both = torch.cat([self.augment(fake, p, g_aug), self.augment(real, p, g_aug)])
            logits = self.D_fwd(both, torch.cat([tops, tops]), torch.cat([lefts, lefts]), group,
                                **self.locate_kw)
        del fake, both
        logits, where = logits if self.locate_kw else (logits, None)
        fake_logits, real_logits = logits[:b].float(), logits[b:].float()
        loss_d = losses.d_logistic(real_logits, fake_logits)
        if where is not None:  # D learns where real patches belong
            loss_d = loss_d + self.cfg.locate_weight * self.location_loss(where[b:], tops, lefts)
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        distributed.all_reduce_grads(self.D.parameters())
        self.opt_D.step()
        self.ada.update(real_logits)
        return loss_d, real_logits, fake_logits

    def _r1_step(self, step: int, real: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, p: torch.Tensor,
                 group: int) -> torch.Tensor | None:
        """Lazy R1 on the augmented reals (D's input), every `r1_interval` steps; None on the others."""
        if not self.r1_interval or step % self.r1_interval:
            return None
        with torch.no_grad():
            real_aug = self.augment(real, p, self._gen(step, _AUG_R1))
        real_aug = real_aug.detach().float().requires_grad_(True)
        with self._autocast():
            r_logits = self.D(real_aug, tops, lefts, group)
        loss_r1 = losses.r1_loss(r_logits, real_aug, self.cfg.r1_gamma, self.r1_interval)
        self.opt_D.zero_grad(set_to_none=True)
        loss_r1.backward()
        distributed.all_reduce_grads(self.D.parameters())
        self.opt_D.step()
        return loss_r1

    def _g_step(self, step: int, real: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, p: torch.Tensor,
                group: int) -> torch.Tensor:
        """Non-saturating loss through the frozen D on a second G pass, in chunks of location groups (plus
        the location loss of the fakes when D has a location head); updates G. → the detached loss."""
        b = real.shape[0]
        self.D.requires_grad_(False)
        self.G.requires_grad_(True)
        self.opt_G.zero_grad(set_to_none=True)
        draw = self.augment.draw(real, self._gen(step, _AUG_G))  # the whole batch's, whatever the chunks
        loss_g = torch.zeros((), device=self.device)
        for rows in self.g_chunks:  # each chunk's mean loss weighted by its share: the batch mean's gradient
            fake = self.fakes(step, tops, lefts, update_w_avg=rows.start == 0, rows=rows)
            with self._autocast():
                g_logits = self.D_fwd(self.augment(fake, p, draw=draw.rows(rows)), tops[rows], lefts[rows],
                                      group, **self.locate_kw)
            g_logits, where = g_logits if self.locate_kw else (g_logits, None)
            g_logits = g_logits.float()
            loss = losses.g_nonsaturating(g_logits)
            if where is not None:  # G is told where D would place its patch
                loss = loss + self.cfg.locate_weight * self.location_loss(where, tops[rows], lefts[rows])
            loss = loss * (g_logits.shape[0] / b)
            loss.backward()
            loss_g += loss.detach()
            del fake, g_logits, loss
        distributed.all_reduce_grads(self.G.parameters())
        self.opt_G.step()
        if self.world_size > 1:  # w_avg follows each rank's latents: keep the ranks identical
            distributed.all_reduce_mean_(self.G.mapper.w_avg)
        self.G.requires_grad_(False)
        return loss_g

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
        rng_t, rng_meta = _rng_tensors_and_meta()
        tensors.update(rng_t)
        meta = {"optimizers": {"opt_G": meta_g, "opt_D": meta_d}, "augment": self.ada.state_dict(),
                "augment_p": self.ada.p, "rng": rng_meta}
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
        self.ada.load_state_dict(meta["augment"])
        _restore_rng(tensors, meta.get("rng", {}))

    def weights_finite(self) -> bool:
        params = list(self.G.parameters()) + list(self.D.parameters()) + list(self.G_ema.parameters())
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


# --------------------------------------------------------------------------------------------------
# Run directory
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    model: Path | None
    stopped: str
    """"done" (all steps), "time" (max_minutes reached)."""
    history: list[dict[str, float]] = field(default_factory=list)


class _StopFlag:
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


def _dataset_meta(store: Any) -> dict[str, Any]:
    return {"canvas": [int(store.canvas[0]), int(store.canvas[1])], "displacement_scale": float(store.displacement_scale),
            "normal_convention": getattr(store, "normal_convention", "opengl"), "path": str(Path(store.path).resolve())}


def _mask_for(store: Any, preset: Preset) -> torch.Tensor:
    if preset.global_res is None:
        return torch.from_numpy(np.asarray(store.mask, dtype=np.uint8))
    r = preset.global_res
    return torch.from_numpy(np.asarray(store.mask_at(r, r), dtype=np.uint8))


def _resume_command(data: Any, out: Path, preset_name: str) -> str:
    return f"gantlitz train --data {data} --preset {preset_name} --out {out} --resume"


# --------------------------------------------------------------------------------------------------
# Previews
# --------------------------------------------------------------------------------------------------


class _Previewer:
    """Fixed latents and locations, so previews of successive steps are comparable."""

    def __init__(self, trainer: Trainer, store: Any, preset: Preset, samples: int = 4) -> None:
        self.trainer, self.store, self.preset = trainer, store, preset
        p = preset.model.patch_size
        n = min(samples, len(store.subjects))
        self.samples = max(n, 1)
        g = step_generator(preset.train.seed, 0, 0, _PREVIEW)
        self.z = torch.randn(self.samples, preset.model.z_dim, generator=g)
        self.noise_seeds = torch.arange(self.samples)
        if preset.global_res is None:
            locs = training_locations(store.mask, p)
            picks = sorted({locs[len(locs) // 2], locs[len(locs) // 3]})
            self.locations = picks
            self.reals = [
                torch.stack([torch.from_numpy(store.read_patch(i, t, l, p)) for i in range(self.samples)])
                for t, l in picks
            ]
        else:
            r = preset.global_res
            self.locations = [(0, 0)]
            self.reals = [torch.stack([torch.from_numpy(store.read_whole(i, r, r)) for i in range(self.samples)])]
        self.display = min(p, 128)

    def _shrink(self, x: torch.Tensor) -> torch.Tensor:
        f = x.shape[-1] // self.display
        return block_mean(x, f) if f > 1 else x

    @torch.no_grad()
    def render(self, monitor: Monitor, step: int) -> None:
        G = self.trainer.G_ema
        dev = self.trainer.device
        ws = G.mapping(self.z.to(dev))
        rows = []
        for (top, left), real in zip(self.locations, self.reals):
            t = torch.full((self.samples,), top, device=dev)
            l_ = torch.full((self.samples,), left, device=dev)
            fake = G(ws, t, l_, self.noise_seeds.to(dev)).float().cpu()
            rows += [self._shrink(real), self._shrink(fake)]
        monitor.image(step, "patches", patch_grid_image(rows))
        tex = texture_preview(G, ws[:1], 0, long_side=512)
        monitor.image(step, "texture", texture_image(tex))


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
            return resolve_preset(preset, overrides, canvas=store.canvas, data_path=data)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
    from ..config import preset_from_dict

    saved = preset_from_dict(resumed.meta["preset"])
    if isinstance(preset, str) and preset != saved.name:
        log.warning("--preset %s differs from the run's preset %s: continuing with %s", preset, saved.name, saved.name)
    resolved = resolve_preset(saved, overrides, canvas=None if saved.global_res else store.canvas, data_path=data)
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
) -> TrainResult:
    """Train `preset` (name or Preset, plus dotted `overrides`) on the prepared dataset `data` into run
    directory `out`.

    `steps` (total steps) or `kimg` (thousands of real samples over all processes) override
    `train.steps`; `resume` continues from the newest valid checkpoint of `out` (starting fresh if there
    is no run); `overwrite` clears a previous run's own files (never other files); `max_minutes` stops
    after that much wall time as if the run had ended (final checkpoint + model). Writes RUN/config.json,
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
    run.check(data=data, resume=resume, overwrite=overwrite)
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
                                  world_size=info.world_size)
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
                session = _Session(trainer, run, store, resolved, info, dataset_meta,
                                   last_checkpoint=resumed.path if resumed is not None else None,
                                   max_minutes=max_minutes, t_start=t_start, data=data)
                return session.run(start_step, progress=progress, tensorboard=tensorboard, previews=previews,
                                   handle_signals=handle_signals)
        finally:
            if info.is_main:
                run.close()
    finally:
        distributed.cleanup(info)


class _Session:
    """The step loop of one process of a run: logging windows, divergence checks, checkpoints, stopping."""

    def __init__(self, trainer: Trainer, run: RunDirectory, store: Any, preset: Preset, info: Any,
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
        stop = _StopFlag(handle_signals)
        monitor = Monitor(self.run_dir.path, enabled=info.is_main, total_steps=total, start_step=start_step,
                          progress=progress, tensorboard=tensorboard,
                          desc="train" if self.max_minutes is None else f"train (stops after {self.max_minutes:g} min)")
        previewer = _Previewer(self.trainer, self.store, self.preset) if (
            info.is_main and previews and cfg.preview_every) else None
        loader = _make_loader(self.store, self.preset, seed=cfg.seed + _RANK_SEED_STRIDE * info.rank,
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

    def _want_stop(self, stop: _StopFlag) -> bool:
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
