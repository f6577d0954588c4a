"""Training objectives beside the paper's patch objective: the whole-canvas view and per-location moment
matching (`gantlitz.train.objectives`)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import SMALL_CANVAS, SMALL_PRESET, assert_roundoff_equal, ellipse_mask, randomise

from gantlitz.config import apply_overrides
from gantlitz.errors import ConfigError
from gantlitz.networks import build
from gantlitz.presets import resolve
from gantlitz.train import objectives
from gantlitz.train.loop import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

LEVEL = 1  # SMALL_PRESET has 4 levels (32-pixel patches): level 1 is the canvas at a quarter size


def _targets(preset, seed: int = 0) -> objectives.DataTargets:
    gen = torch.Generator().manual_seed(seed)
    h, w = objectives.whole_size(preset.model, LEVEL)
    cell = preset.model.patch_size // preset.train.moment_cells
    mask = ellipse_mask((h, w)).float()
    return objectives.DataTargets(
        moment_means=torch.rand(5, SMALL_CANVAS[0] // cell, SMALL_CANVAS[1] // cell, generator=gen) - 0.5,
        whole_reals=(torch.rand(6, 5, h, w, generator=gen) * 2 - 1) * mask, whole_mask=mask)


def _trainer(**overrides) -> Trainer:
    preset = apply_overrides(SMALL_PRESET, {"train.group_size": 2, **overrides})
    return Trainer(preset, ellipse_mask(), targets=_targets(preset))


def _batch(trainer: Trainer, seed: int = 0):
    p = trainer.preset.model.patch_size
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand(4, 5, p, p, generator=gen) * 2 - 1
    return real, torch.tensor([0, 0, 32, 32]), torch.tensor([32, 32, 0, 64])


def test_the_coarse_map_is_the_level_output_every_patch_computes():
    """The whole canvas at level k, cropped to a patch, equals that patch's own level-k output, and at the
    last level it is the generator's output itself (before masking)."""
    G, _ = build(SMALL_PRESET.model, seed=3)
    randomise(G)
    G.eval()
    ws = G.mapping(torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(0)))
    seeds = torch.tensor([5, 9])
    zero = torch.zeros(2, dtype=torch.long)
    h, w = SMALL_CANVAS
    p, shift = G.patch_size, G.num_levels - 1 - LEVEL
    with torch.no_grad():
        coarse = G(ws, zero, zero, seeds, height=h, width=w, level=LEVEL)
        assert coarse.shape == (2, 5, h >> shift, w >> shift) and coarse.abs().max() > 0.05
        top, left = 32, 64
        patch = G(ws, zero + top, zero + left, seeds, height=p, width=p, level=LEVEL)
        crop = coarse[:, :, top >> shift:(top + p) >> shift, left >> shift:(left + p) >> shift]
        assert_roundoff_equal(patch, crop, what="a patch's level output against the whole canvas's")
        last = G(ws, zero, zero, seeds, height=h, width=w, level=G.num_levels - 1)
        full = G(ws, zero, zero, seeds, height=h, width=w, apply_mask=False)
        assert torch.equal(last, full)


def test_whole_view_gradients_reach_only_the_levels_it_uses():
    trainer = _trainer(**{"train.whole_level": LEVEL})
    randomise(trainer.G)
    batch = objectives.StepBatch(0, *_batch(trainer), trainer.ada.p_tensor)
    trainer.G.requires_grad_(True)
    trainer.G.zero_grad(set_to_none=True)
    loss = trainer.whole.g_loss(batch)["whole/loss_G"]
    loss.backward()
    used = [p.grad for lvl in trainer.G.levels[: LEVEL + 1] for p in lvl.parameters()]
    unused = [p.grad for lvl in trainer.G.levels[LEVEL + 1:] for p in lvl.parameters()]
    assert all(g is not None for g in used) and sum(g.abs().sum() for g in used) > 0
    assert all(g is None for g in unused)
    assert trainer.G.mapper.net[0].weight.grad.abs().sum() > 0  # through the latents too


def test_whole_view_d_step_trains_its_own_discriminator_only():
    trainer = _trainer(**{"train.whole_level": LEVEL, "train.r1_interval": 1})
    before_patch_d = [p.detach().clone() for p in trainer.D.parameters()]
    before_whole_d = [p.detach().clone() for p in trainer.whole.D.parameters()]
    batch = objectives.StepBatch(0, *_batch(trainer), trainer.ada.p_tensor)
    out = trainer.whole.d_phase(batch)
    assert {"whole/loss_D", "whole/loss_R1"} <= set(out) and all(torch.isfinite(v) for v in out.values())
    assert all(torch.equal(a, b) for a, b in zip(before_patch_d, trainer.D.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_whole_d, trainer.whole.D.parameters()))


def test_a_model_trained_with_the_options_has_the_same_generator():
    """The options add no generator weights: the saved model is the paper's generator, and it still
    stitches seamlessly."""
    plain = _trainer()
    trainer = _trainer(**{"train.whole_level": LEVEL, "train.moment_weight": 10.0})
    assert {k: v.shape for k, v in plain.G.state_dict().items()} == {k: v.shape for k, v in trainer.G.state_dict().items()}
    for step in range(2):
        out = trainer.step(step, *_batch(trainer, step))
    assert {"loss/G", "loss/moments", "whole/loss_G", "whole/loss_D"} <= set(out)
    G = trainer.G_ema
    ws = G.mapping(torch.randn(1, G.cfg.z_dim, generator=torch.Generator().manual_seed(1)))
    p = G.patch_size
    with torch.no_grad():
        block = G.synthesize(ws, "albedo", 0, 32, 2 * p, 2 * p, noise_seed=3)
        tiles = torch.cat([torch.cat([G.synthesize(ws, "albedo", i * p, 32 + j * p, p, p, noise_seed=3)
                                      for j in range(2)], 3) for i in range(2)], 2)
    assert_roundoff_equal(block, tiles, what="one pass against stitched patches")


def test_moment_loss_moves_a_group_together_towards_the_data_mean():
    """The value is (f̄ − μ)² per cell (f̄: the mean of a location group); the gradient moves every sample
    of the group by the same 2·(f̄ − μ)/n, so the samples' spread around f̄ is not pulled in."""
    trainer = _trainer(**{"train.moment_weight": 1.0, "train.moment_cells": 4})
    term = next(t for t in trainer.g_step.terms if isinstance(t, objectives.MomentMatch))
    real, tops, lefts = _batch(trainer)
    batch = objectives.StepBatch(0, real, tops, lefts, trainer.ada.p_tensor)
    fake = torch.randn(4, 5, 32, 32, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    got = term(batch, slice(None), fake)["loss/moments"]
    c = term.cell
    f = fake.detach().reshape(4, 5, 4, c, 4, c).mean((3, 5))
    mu = torch.stack([term.data_means[:, t // c:t // c + 4, l // c:l // c + 4] for t, l in zip(tops, lefts)])
    group_mean = (f - mu).reshape(2, 2, 5, 4, 4).mean(1)
    torch.testing.assert_close(got.detach(), group_mean.square().mean())
    (grad,) = torch.autograd.grad(got, fake)
    cell_grad = grad.reshape(4, 5, 4, c, 4, c).sum((3, 5)).reshape(2, 2, 5, 4, 4)
    torch.testing.assert_close(cell_grad[:, 0], cell_grad[:, 1])  # both samples of a group move alike
    torch.testing.assert_close(cell_grad[:, 0], 2 * group_mean / 2 / group_mean.numel())  # 2(f̄ − μ)/n, n = 2
    # samples spread symmetrically around the data's mean cost nothing and get no gradient
    mu_pixels = mu.repeat_interleave(c, 2).repeat_interleave(c, 3)
    spread = mu_pixels + torch.tensor([0.3, -0.3, 0.2, -0.2])[:, None, None, None]
    assert term(batch, slice(None), spread)["loss/moments"].abs().item() < 1e-10


def test_moment_loss_ignores_dropped_modalities():
    trainer = _trainer(**{"train.moment_weight": 1.0, "train.augment.modality_dropout": True})
    term = next(t for t in trainer.g_step.terms if isinstance(t, objectives.MomentMatch))
    real, tops, lefts = _batch(trainer)
    batch = objectives.StepBatch(3, real, tops, lefts, trainer.ada.p_tensor)
    keep = trainer.fake_keep(3, 4)
    fake = torch.randn(4, 5, 32, 32, generator=torch.Generator().manual_seed(4))
    channels = torch.cat([keep[:, :1].expand(-1, 3), keep[:, 1:]], 1)
    base = term(batch, slice(None), fake * channels[:, :, None, None])["loss/moments"]
    noisy = term(batch, slice(None), fake * channels[:, :, None, None] + 5 * (~channels)[:, :, None, None])
    torch.testing.assert_close(noisy["loss/moments"], base)


def test_resume_with_the_options_repeats_the_run(tmp_path):
    """The whole-canvas D and its optimiser are part of the checkpoint: steps after a reload equal the
    uninterrupted run's."""
    overrides = {"train.whole_level": LEVEL, "train.moment_weight": 5.0, "train.r1_interval": 2}
    straight, split = _trainer(**overrides), _trainer(**overrides)
    batches = [_batch(straight, s) for s in range(3)]
    for s in range(3):
        out_straight = straight.step(s, *batches[s])
    split.step(0, *batches[0])
    split.step(1, *batches[1])
    tensors, meta = split.state()
    resumed = _trainer(**overrides)
    resumed.load_state(tensors, meta)
    out_resumed = resumed.step(2, *batches[2])
    for key, value in out_straight.items():
        torch.testing.assert_close(out_resumed[key], value, rtol=1e-5, atol=1e-5 * max(1.0, value.abs().item()))
    for a, b in zip(straight.whole.D.parameters(), resumed.whole.D.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * max(1.0, a.abs().max().item()))


@pytest.mark.parametrize("setting, message", [
    ({"train.whole_level": 9}, "synthesis level"),
    ({"train.moment_cells": 3}, "power of two"),
    ({"train.moment_weight": float("nan")}, "moment_weight"),
    ({"train.whole_every": 0}, "whole_every"),
    ({"train.whole_moments": 3}, "whole_moments"),
])
def test_impossible_objective_settings_are_config_errors(setting, message):
    with pytest.raises(ConfigError, match=message):
        resolve("tiny", setting)


def test_whole_view_needs_the_data_targets():
    preset = apply_overrides(SMALL_PRESET, {"train.group_size": 2, "train.whole_level": LEVEL})
    with pytest.raises(ValueError, match="DataTargets"):
        Trainer(preset, ellipse_mask())


def test_data_targets_from_a_store(prepared_store):
    from gantlitz.data.store import PatchStore

    store = PatchStore(prepared_store)
    preset = resolve("tiny", {"train.whole_level": 2, "train.moment_weight": 1.0}, canvas=store.canvas)
    targets = objectives.data_targets(store, preset)
    h, w = objectives.whole_size(preset.model, 2)
    flips = 2 if store.flip else 1
    assert targets.whole_reals.shape == (len(store.subjects) * flips, 5, h, w)
    assert targets.whole_mask.shape == (h, w)
    assert targets.moment_means.shape == (5, store.canvas[0] // 8, store.canvas[1] // 8)
    # the means are the average over subjects of the same masked maps
    ref = torch.stack([torch.from_numpy(store.read_whole(i, *store.canvas, flip=f))
                       for i in range(len(store.subjects)) for f in ((False, True) if store.flip else (False,))])
    expect = ref.mean(0).reshape(5, store.canvas[0] // 8, 8, store.canvas[1] // 8, 8).mean((2, 4))
    torch.testing.assert_close(targets.moment_means, expect, rtol=1e-4, atol=1e-5)
    assert objectives.data_targets(store, dataclasses.replace(preset, train=SMALL_PRESET.train)) is None


@pytest.mark.parametrize("moments", [1, 2])
def test_whole_view_moments_alone_need_no_discriminator_step(moments):
    """The value is (batch mean − data mean)² per pixel, plus (mean of squares − the data's)² with two
    moments; no discriminator step runs when the view's adversarial weight is 0."""
    trainer = _trainer(**{"train.whole_level": LEVEL, "train.whole_weight": 0.0, "train.whole_moment_weight": 1.0,
                          "train.whole_moments": moments})
    batch = objectives.StepBatch(0, *_batch(trainer), trainer.ada.p_tensor)
    assert trainer.whole.d_phase(batch) == {}
    out = trainer.whole.g_loss(batch)
    assert set(out) == {"whole/loss_moments"}
    with torch.no_grad():
        fake = trainer.whole.fakes(0, update_w_avg=False)
    expect = (fake.mean(0) - trainer.whole.mean).square().mean()
    if moments == 2:
        expect = expect + (fake.square().mean(0) - trainer.whole.reals.square().mean(0)).square().mean()
    torch.testing.assert_close(out["whole/loss_moments"].detach(), expect)


def test_the_location_stride_sets_the_training_grid(prepared_store):
    from gantlitz.data.sampling import training_loader
    from gantlitz.data.store import PatchStore

    store = PatchStore(prepared_store)
    with pytest.raises(ConfigError, match="location_stride"):
        resolve("tiny", {"train.location_stride": 24}, canvas=store.canvas)
    preset = resolve("tiny", {"train.location_stride": 16, "train.workers": 0}, canvas=store.canvas)
    loader = training_loader(store, preset, seed=0, start_step=0, steps=1, pin=False)
    locations = loader.dataset.locations
    assert all(t % 16 == 0 and l % 16 == 0 for t, l in locations)
    assert any(t % 32 for t, _ in locations) and len(locations) > 49
