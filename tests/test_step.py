"""The training step (`Trainer.step`): offsets checked on the host, same fakes from both G passes, and on
CUDA no host synchronisation at all (`torch.cuda.set_sync_debug_mode("error")`)."""

from __future__ import annotations

import pytest
import torch
from helpers import SMALL_PRESET, assert_roundoff_equal, ellipse_mask

from gantlitz.config import apply_overrides
from gantlitz.train.loop import Trainer


def _batch(trainer: Trainer, seed: int = 0, pin: bool = False):
    p = trainer.preset.model.patch_size
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand(4, 5, p, p, generator=gen) * 2 - 1
    tops, lefts = torch.tensor([0, 0, 32, 32]), torch.tensor([32, 32, 0, 0])
    if pin:
        real, tops, lefts = real.pin_memory(), tops.pin_memory(), lefts.pin_memory()
    return real, tops, lefts


def _trainer(device: str = "cpu", **overrides) -> Trainer:
    preset = apply_overrides(SMALL_PRESET, {"train.group_size": 2, **overrides})
    return Trainer(preset, ellipse_mask(), device=device)


def test_unaligned_offsets_are_rejected_before_any_work(one_thread):
    trainer = _trainer()
    real, tops, lefts = _batch(trainer)
    before = [p.detach().clone() for p in trainer.G.parameters()]
    with pytest.raises(ValueError, match="aligned"):
        trainer.step(0, real, tops + 3, lefts)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.G.parameters()))


@pytest.mark.parametrize("dropout", [False, True])
def test_both_generator_passes_give_the_same_fakes(one_thread, dropout):
    trainer = _trainer(**{"train.augment.modality_dropout": dropout})
    _, tops, lefts = _batch(trainer)
    with torch.no_grad():
        first = trainer.fakes(5, tops, lefts, update_w_avg=False)
    second = trainer.fakes(5, tops, lefts, update_w_avg=True)
    assert second.requires_grad and torch.equal(first, second.detach())
    kept = (second.detach().flatten(2).abs().amax(2) > 0)
    assert (kept[:, [0, 3, 4]].sum(1) == (2 if dropout else 3)).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("dropout", [False, True])
def test_training_steps_never_synchronise(precision, dropout):
    """Steps 2..8 cover a lazy R1 step (4) and two ADA adjustments (3, 7 with interval 4)."""
    trainer = _trainer("cuda", **{"train.precision": precision, "train.augment.modality_dropout": dropout,
                                  "train.r1_interval": 4, "train.augment.ada_interval": 4,
                                  "train.augment.ada_kimg": 0.01})
    batches = [_batch(trainer, seed, pin=True) for seed in range(2)]
    for step in range(2):  # warm-up: lazy initialisation, cuDNN autotuning
        trainer.step(step, *batches[step % 2])
    torch.cuda.synchronize()
    outputs = []
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(2, 9):
            outputs.append(trainer.step(step, *batches[step % 2]))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(torch.isfinite(v).all() for out in outputs for v in out.values())
    assert "loss/R1" in outputs[2] and trainer.ada.adjustments == 2


def _gradients_at_step(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Filled with G's gradients as G's optimiser receives them."""
    grads: dict[str, torch.Tensor] = {}

    def keep(optimizer, args, kwargs) -> None:
        grads.update({n: p.grad.detach().clone() for n, p in trainer.G.named_parameters() if p.grad is not None})

    trainer.opt_G.register_step_pre_hook(keep)
    return grads


def test_g_step_in_chunks_gives_the_unchunked_update(one_thread):
    """Chunks of whole location groups, gradients accumulated, give G's optimiser the gradient of one pass.

    The gradients are compared, not the parameters after the step: Adam divides each element's step by
    that element's own gradient magnitude, so where a gradient is round-off-sized it moves by up to the
    learning rate either way, however close the two gradients are."""
    whole, chunked = _trainer(), _trainer(**{"train.g_chunks": 2})
    grads_whole, grads_chunked = _gradients_at_step(whole), _gradients_at_step(chunked)
    batch = _batch(whole)
    out_whole, out_chunked = whole.step(0, *batch), chunked.step(0, *batch)
    assert_roundoff_equal(out_chunked["loss/G"], out_whole["loss/G"], what="loss/G")
    assert grads_whole and grads_whole.keys() == grads_chunked.keys()
    for name, grad in grads_whole.items():
        assert_roundoff_equal(grads_chunked[name], grad, what=f"gradient of {name}")
    assert_roundoff_equal(whole.G.mapper.w_avg, chunked.G.mapper.w_avg, what="w_avg")
    with pytest.raises(ValueError, match="g_chunks"):
        _trainer(**{"train.g_chunks": 3})
