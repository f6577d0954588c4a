"""The phases of one training step, each a small callable over the trainer's networks (docs/training.md).

A step runs, in order (`Trainer.step`):

1. `PatchD`: logistic loss on augmented fakes (made without a graph) and reals in one D pass;
   D's location head learns where reals belong; updates D and ADA's r_t.
2. `PatchR1`: every `r1_interval` steps, (γ/2)‖∇_x D(x)‖²·interval on freshly augmented reals
   (x = D's input, detached after augmentation).
3. `WholeCanvas.d_phase` (with `train.whole_level`): a second discriminator judges the generator's
   skip output at that level over the *whole* canvas against the real maps at that size; its own R1.
4. `GeneratorStep`: G is run again with autograd in chunks of location groups; the per-chunk terms
   (`PatchAdversarial`, `MomentMatch`) and the whole-canvas term add their gradients; one Adam step.

Every random draw comes from the trainer's per-step streams (`state.Purpose`), so a resumed run
repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import numpy as np
import torch

from ..config import DATA_CHANNELS, keep_channels
from ..geometry import level_canvas
from ..nn.discriminator import Discriminator
from ..nn.generator import canvas_crop
from ..resample import block_mean
from . import distributed, losses
from .augment import Augment
from .state import Purpose, optimizer_from_flat, optimizer_to_flat

if TYPE_CHECKING:  # the trainer owns the phases; only its type is needed here
    from .loop import Trainer

__all__ = ["DataTargets", "data_targets", "random_targets", "StepBatch", "PatchD", "PatchR1", "GeneratorStep", "PatchAdversarial",
           "MomentMatch", "WholeCanvas", "whole_size", "cell_means", "mean_matching"]


@dataclass
class DataTargets:
    """What the optional objectives need from the data, computed once before training."""

    moment_means: torch.Tensor | None = None
    """(5, H/cell, W/cell): per-cell means of the masked maps over all subjects (and flips)."""
    whole_reals: torch.Tensor | None = None
    """(N, 5, h, w): every subject (and its flip) at the whole-canvas level's size, masked."""
    whole_mask: torch.Tensor | None = None
    """(h, w): the mask at that size."""


def data_targets(store: Any, preset: Any) -> DataTargets | None:
    """The targets of `preset`'s options from a `PatchStore` (None when no option needs any).

    Read from the store's previews: whole maps are resized by area averaging, then masked, as the
    global baseline's inputs are; cell means average the masked maps at the finest preview size that
    is a whole number of cells (exact where the preview is the full canvas)."""
    cfg, model = preset.train, preset.model
    if cfg.moment_weight <= 0 and cfg.whole_level is None:
        return None
    flips = (False, True) if (cfg.flip and store.flip) else (False,)

    def stack(h: int, w: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([store.read_whole(i, h, w, flip=f)
                                          for i in range(len(store.subjects)) for f in flips]))

    out = DataTargets()
    if cfg.moment_weight > 0:
        cell = model.patch_size // cfg.moment_cells
        rows, cols = model.canvas_height // cell, model.canvas_width // cell
        k = 1
        while k < cell and rows * 2 * k <= store.preview_size[0] and cols * 2 * k <= store.preview_size[1]:
            k *= 2
        out.moment_means = cell_means(stack(rows * k, cols * k).mean(0), k)
    if cfg.whole_level is not None:
        h, w = whole_size(model, cfg.whole_level)
        out.whole_reals = stack(h, w)
        out.whole_mask = torch.from_numpy(np.asarray(store.mask_at(h, w), dtype=np.float32))
    return out


def random_targets(preset: Any, seed: int = 0) -> DataTargets | None:
    """Targets of the right shapes with random values in [-1, 1], for timing a step without a dataset
    (benchmarks); None when no option needs any."""
    cfg, model = preset.train, preset.model
    if cfg.moment_weight <= 0 and cfg.whole_level is None:
        return None
    gen = torch.Generator().manual_seed(seed)
    out = DataTargets()
    cell = model.patch_size // cfg.moment_cells
    out.moment_means = torch.rand(5, model.canvas_height // cell, model.canvas_width // cell, generator=gen) * 2 - 1
    if cfg.whole_level is not None:
        h, w = whole_size(model, cfg.whole_level)
        out.whole_reals = torch.rand(8, 5, h, w, generator=gen) * 2 - 1
        out.whole_mask = torch.ones(h, w)
    return out


@dataclass
class StepBatch:
    """What every phase of one step sees: the real batch (modalities already dropped), its locations,
    the step number (for the random streams) and ADA's current p (a device tensor)."""

    step: int
    real: torch.Tensor
    tops: torch.Tensor
    lefts: torch.Tensor
    p: torch.Tensor


class ChunkTerm(Protocol):
    """A G loss on one chunk of the step's fakes (rows of the batch), already weighted by the chunk's share."""

    def __call__(self, batch: StepBatch, rows: slice, fake: torch.Tensor) -> dict[str, torch.Tensor]: ...


# --------------------------------------------------------------------------------------------------
# The paper's patch objective
# --------------------------------------------------------------------------------------------------


class PatchD:
    """D step on fakes made without a graph and reals, in one D pass."""

    def __init__(self, trainer: "Trainer") -> None:
        self.t = trainer

    def __call__(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        t, real, tops, lefts = self.t, batch.real, batch.tops, batch.lefts
        b = real.shape[0]
        with torch.no_grad():
            fake = t.fakes(batch.step, tops, lefts, update_w_avg=False)
        t.D.requires_grad_(True)
        g_aug = t.gen(batch.step, Purpose.AUG_D)
        with t.autocast():
            both = torch.cat([t.augment(fake, batch.p, g_aug), t.augment(real, batch.p, g_aug)])
            logits = t.D_fwd(both, torch.cat([tops, tops]), torch.cat([lefts, lefts]), t.mbstd_group,
                             **t.locate_kw)
        del fake, both
        logits, where = logits if t.locate_kw else (logits, None)
        fake_logits, real_logits = logits[:b].float(), logits[b:].float()
        loss_d = losses.d_logistic(real_logits, fake_logits)
        if where is not None:  # D learns where real patches belong
            loss_d = loss_d + t.cfg.locate_weight * t.location_loss(where[b:], tops, lefts)
        t.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        distributed.all_reduce_grads(t.D.parameters())
        t.opt_D.step()
        t.ada.update(real_logits)
        return {"loss/D": loss_d.detach(), "D/real": real_logits.detach().mean(),
                "D/fake": fake_logits.detach().mean()}


class PatchR1:
    """Lazy R1 on the augmented reals (D's input), every `r1_interval` steps."""

    def __init__(self, trainer: "Trainer") -> None:
        self.t = trainer

    def __call__(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        t = self.t
        if not t.r1_interval or batch.step % t.r1_interval:
            return {}
        with torch.no_grad():
            real_aug = t.augment(batch.real, batch.p, t.gen(batch.step, Purpose.AUG_R1))
        loss = _r1_update(t, t.D, t.opt_D, real_aug, batch.tops, batch.lefts, t.mbstd_group)
        return {"loss/R1": loss / t.r1_interval}


def _r1_update(t: "Trainer", D: torch.nn.Module, opt: torch.optim.Optimizer, real_aug: torch.Tensor,
               tops: torch.Tensor, lefts: torch.Tensor, group: int) -> torch.Tensor:
    """One lazy R1 step of `D` (eager: double backward) on its detached augmented input."""
    real_aug = real_aug.detach().float().requires_grad_(True)
    D.requires_grad_(True)
    with t.autocast():
        logits = D(real_aug, tops, lefts, group)
    loss = losses.r1_loss(logits, real_aug, t.cfg.r1_gamma, t.r1_interval)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    distributed.all_reduce_grads(D.parameters())
    opt.step()
    return loss.detach()


class PatchAdversarial:
    """Non-saturating loss of the chunk's fakes through the frozen patch D (plus the location loss of the
    fakes when D has a location head). The augmentation is drawn once per step for the whole batch."""

    def __init__(self, trainer: "Trainer") -> None:
        self.t = trainer
        self._draw: tuple[int, Any] | None = None

    def __call__(self, batch: StepBatch, rows: slice, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        t = self.t
        if self._draw is None or self._draw[0] != batch.step:
            self._draw = (batch.step, t.augment.draw(batch.real, t.gen(batch.step, Purpose.AUG_G)))
        tops, lefts = batch.tops[rows], batch.lefts[rows]
        with t.autocast():
            logits = t.D_fwd(t.augment(fake, batch.p, draw=self._draw[1].rows(rows)), tops, lefts, t.mbstd_group,
                             **t.locate_kw)
        logits, where = logits if t.locate_kw else (logits, None)
        loss = losses.g_nonsaturating(logits.float())
        if where is not None:  # G is told where D would place its patch
            loss = loss + t.cfg.locate_weight * t.location_loss(where, tops, lefts)
        return {"loss/G": loss}


def cell_means(maps: torch.Tensor, cell: int) -> torch.Tensor:
    """(..., H, W) → (..., H/cell, W/cell) exact block means."""
    return block_mean(maps, cell) if cell > 1 else maps


class MomentMatch:
    """Per-location moment matching: the generated mean of every `cell`×`cell` cell at a patch's location
    against the data's mean there (`data_means`, (5, H/cell, W/cell) over all subjects and flips).

    A direct, non-adversarial signal for what every subject shares (where brows, eyes and lips are),
    the classical feature-matching idea applied per location. Its gradient is that of ‖E[f] − μ‖² per
    cell, estimated from the group of samples at one location: every sample of the group moves by the
    same 2·(f̄ − μ)/n, with f̄ the group's (detached) mean. The squared error of the group mean itself
    would add Var(f)/n to the objective and pull the samples together (collapse); the unbiased pairwise
    product Σ_{i≠j}(f_i − μ)(f_j − μ) is unbounded below, and G then drives the samples of a group
    apart (measured: it diverged within 130 steps). The logged value is (f̄ − μ)². Modalities dropped
    for a sample (modality dropout) do not count."""

    def __init__(self, trainer: "Trainer", data_means: torch.Tensor) -> None:
        self.t = trainer
        patch = trainer.preset.model.patch_size
        self.cell = patch // trainer.cfg.moment_cells
        self.data_means = data_means.to(trainer.device, torch.float32)

    def __call__(self, batch: StepBatch, rows: slice, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        t, c = self.t, self.cell
        tops, lefts = batch.tops[rows], batch.lefts[rows]
        n = fake.shape[0]
        group = min(t.mbstd_group, n)
        cells = fake.shape[-1] // c
        f = cell_means(fake.float(), c)
        mu = canvas_crop(self.data_means, tops // c, lefts // c, cells, cells)
        return {"loss/moments": t.cfg.moment_weight * mean_matching(f, mu, kept_channels(t, batch, rows, n), group)}


def kept_channels(t: "Trainer", batch: StepBatch, rows: slice, n: int) -> torch.Tensor:
    """(n, 5) float 0/1: the channels each of the chunk's fakes kept (all without modality dropout)."""
    keep = t.fake_keep(batch.step, batch.real.shape[0])
    if keep is None:
        return torch.ones(n, DATA_CHANNELS, device=t.device)
    return keep_channels(keep[rows]).to(t.device, torch.float32)


def mean_matching(f: torch.Tensor, mu: torch.Tensor, kept: torch.Tensor, group: int) -> torch.Tensor:
    """Mean over groups, channels and cells of (f̄ − μ)², with the gradient of ‖E[f] − μ‖²: every kept
    sample of a group moves by 2·(f̄ − μ)/n (f̄ detached). f, mu: (B, C, h, w); kept: (B, C) 0/1;
    groups are `group` consecutive samples."""
    n = f.shape[0]
    k = kept.reshape(n // group, group, -1, 1, 1)
    d = (f - mu).reshape(n // group, group, *f.shape[1:]) * k
    count = k.sum(1, keepdim=True)
    mean_d = (d.sum(1, keepdim=True) / count.clamp_min(1.0)).detach()  # f̄ − μ per group, channel, cell
    surrogate = (2 * mean_d * d).sum(1) / count[:, 0].clamp_min(1.0) - mean_d[:, 0].square() * (count[:, 0] > 0)
    return surrogate.mean()


# --------------------------------------------------------------------------------------------------
# The whole-canvas view
# --------------------------------------------------------------------------------------------------


def whole_size(model: Any, level: int) -> tuple[int, int]:
    """The model's canvas at synthesis level `level`."""
    return level_canvas(model.canvas_height, model.canvas_width, model.patch_size, level)


class WholeCanvas:
    """A second, whole-image discriminator over G's skip output at `train.whole_level`, run over the
    whole canvas, against the real maps (`reals`, (N, 5, h, w) masked, flips included) at that size.

    The coarse map is the function every patch computes at that level, so the view trains the same
    generator inference uses: weights, stitching and seams are untouched. Augmentation: the adaptive
    geometric / noise / cutout transforms at the patch objective's p, but no mid-band filter (it would
    remove the low frequencies this view exists to judge)."""

    def __init__(self, trainer: "Trainer", reals: torch.Tensor, mask: torch.Tensor, seed: int) -> None:
        t = self.t = trainer
        cfg, model = trainer.cfg, trainer.preset.model
        self.level = int(cfg.whole_level)
        self.size = whole_size(model, self.level)
        if tuple(reals.shape[-2:]) != self.size or reals.shape[0] < 1:
            raise ValueError(f"whole-canvas reals must be (N>=1, 5, {self.size[0]}, {self.size[1]}), "
                             f"got {tuple(reals.shape)}")
        self.reals = reals.to(t.device, torch.float32)
        self.mean = self.reals.mean(0)
        self.mean_square = self.reals.square().mean(0)
        self.mask = mask.to(t.device, torch.float32).reshape(1, 1, *self.size)
        d_cfg = dataclasses.replace(model, patch_size=min(self.size), disc_pos="none", disc_locate=False,
                                    disc_pos_inject="input")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.D = Discriminator(d_cfg, size=self.size).to(t.device).train()
        distributed.broadcast_module(self.D)
        d_lr, d_betas = losses.lazy_adam_hparams(cfg.lr, tuple(cfg.betas), t.r1_interval)
        self.opt = torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=d_betas, eps=1e-8)
        aug_cfg = dataclasses.replace(cfg.augment, midband_p=0.0, adaptive_freq=False)
        self.augment = Augment(aug_cfg, min(self.size)).to(t.device)
        self.zeros = torch.zeros(t.cfg.batch, dtype=torch.long, device=t.device)
        self.group = t.mbstd_group

    def active(self, step: int) -> bool:
        return step % self.t.cfg.whole_every == 0

    def fakes(self, step: int, *, update_w_avg: bool) -> torch.Tensor:
        """The step's latents (the same identities as its patches) over the whole canvas at the level."""
        t = self.t
        ws, seeds = t.latents(step, t.cfg.batch, update_w_avg=update_w_avg)
        h, w = t.preset.model.canvas_height, t.preset.model.canvas_width
        with t.autocast():
            out = t.G_fwd(ws, self.zeros, self.zeros, seeds, height=h, width=w, level=self.level)
        return out * self.mask.to(out.dtype)

    def _reals(self, step: int) -> torch.Tensor:
        gen = self.t.gen(step, Purpose.WHOLE_SUBJECTS)
        index = torch.randint(self.reals.shape[0], (self.t.cfg.batch,), generator=gen, device=gen.device)
        return self.reals[index]

    def d_phase(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        t = self.t
        if not self.active(batch.step) or t.cfg.whole_weight <= 0:
            return {}
        real = self._reals(batch.step)
        with torch.no_grad():
            fake = self.fakes(batch.step, update_w_avg=False)
        self.D.requires_grad_(True)
        g_aug = t.gen(batch.step, Purpose.WHOLE_AUG_D)
        zeros = torch.cat([self.zeros, self.zeros])
        with t.autocast():
            logits = self.D(torch.cat([self.augment(fake, batch.p, g_aug), self.augment(real, batch.p, g_aug)]),
                            zeros, zeros, self.group).float()
        b = real.shape[0]
        loss = losses.d_logistic(logits[b:], logits[:b])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.all_reduce_grads(self.D.parameters())
        self.opt.step()
        out = {"whole/loss_D": loss.detach(), "whole/D_real": logits[b:].detach().mean(),
               "whole/D_fake": logits[:b].detach().mean()}
        if t.r1_interval and batch.step % t.r1_interval == 0:
            with torch.no_grad():
                real_aug = self.augment(real, batch.p, t.gen(batch.step, Purpose.WHOLE_AUG_R1))
            out["whole/loss_R1"] = _r1_update(t, self.D, self.opt, real_aug, self.zeros, self.zeros,
                                              self.group) / t.r1_interval
        return out

    def g_loss(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        """The whole view's non-saturating G loss and its moment matching (weighted), with autograd
        through G."""
        t, cfg = self.t, self.t.cfg
        if not self.active(batch.step):
            return {}
        fake = self.fakes(batch.step, update_w_avg=False)
        out = {}
        if cfg.whole_weight > 0:
            self.D.requires_grad_(False)
            with t.autocast():
                logits = self.D(self.augment(fake, batch.p, t.gen(batch.step, Purpose.WHOLE_AUG_G)),
                                self.zeros, self.zeros, self.group).float()
            out["whole/loss_G"] = cfg.whole_weight * losses.g_nonsaturating(logits)
        if cfg.whole_moment_weight > 0:  # every sample is at the same (whole-canvas) location: one group
            f, kept, n = fake.float(), torch.ones(fake.shape[:2], device=fake.device), fake.shape[0]
            loss = mean_matching(f, self.mean[None], kept, n)
            if cfg.whole_moments == 2:  # E[f²] too: with the mean matched, the per-pixel spread
                loss = loss + mean_matching(f.square(), self.mean_square[None], kept, n)
            out["whole/loss_moments"] = cfg.whole_moment_weight * loss
        return out

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"whole_D.{k}": v for k, v in self.D.state_dict().items()}
        opt_t, opt_meta = optimizer_to_flat(self.opt, "opt_whole_D")
        return {**tensors, **opt_t}, opt_meta

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        prefix = "whole_D."
        self.D.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        optimizer_from_flat(self.opt, tensors, meta, "opt_whole_D")


# --------------------------------------------------------------------------------------------------
# The generator step
# --------------------------------------------------------------------------------------------------


class GeneratorStep:
    """G's update: a second G pass with autograd, in chunks of whole location groups; each chunk's terms
    are weighted by its share of the batch (the batch mean's gradient), then the whole-canvas term; one
    optimiser step. Returns each term's loss (detached, summed over chunks)."""

    def __init__(self, trainer: "Trainer", terms: list[ChunkTerm], whole: WholeCanvas | None) -> None:
        self.t, self.terms, self.whole = trainer, terms, whole

    def __call__(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        t = self.t
        b = batch.real.shape[0]
        t.D.requires_grad_(False)
        t.G.requires_grad_(True)
        t.opt_G.zero_grad(set_to_none=True)
        out: dict[str, torch.Tensor] = {}
        for rows in t.g_chunks:
            fake = t.fakes(batch.step, batch.tops, batch.lefts, update_w_avg=rows.start == 0, rows=rows)
            share = fake.shape[0] / b
            parts = {k: v * share for term in self.terms for k, v in term(batch, rows, fake).items()}
            sum(parts.values()).backward()
            _accumulate(out, parts)
            del fake, parts
        if self.whole is not None:
            parts = self.whole.g_loss(batch)
            if parts:
                sum(parts.values()).backward()
                _accumulate(out, parts)
        distributed.all_reduce_grads(t.G.parameters())
        t.opt_G.step()
        if t.world_size > 1:  # w_avg follows each rank's latents: keep the ranks identical
            distributed.all_reduce_mean_(t.G.mapper.w_avg)
        t.G.requires_grad_(False)
        return out


def _accumulate(out: dict[str, torch.Tensor], parts: Mapping[str, torch.Tensor]) -> None:
    for k, v in parts.items():
        out[k] = out[k] + v.detach() if k in out else v.detach()

