"""The training step's networks trace into one graph each (`torch.compile(..., fullgraph=True)`): no host
synchronisation or data-dependent Python hides in the generator forward or the discriminator."""

from __future__ import annotations

import pytest
import torch
from helpers import SMALL_PRESET, assert_roundoff_equal, ellipse_mask

from gantlitz.networks import build
from gantlitz.train.augment import sample_modality_keep

pytestmark = pytest.mark.compile


def _batch(G, b: int = 4):
    gen = torch.Generator().manual_seed(0)
    ws = G.mapping(torch.randn(b, G.cfg.z_dim, generator=gen))
    tops = torch.tensor([0, 0, 32, 32])[:b]
    lefts = torch.tensor([0, 32, 64, 32])[:b]
    return ws, tops, lefts, torch.arange(b)


@pytest.mark.parametrize("dropout", [False, True])
def test_generator_forward_is_one_graph(compile_backend, dropout):
    G, _ = build(SMALL_PRESET, seed=0, mask=ellipse_mask())
    ws, tops, lefts, seeds = _batch(G)
    keep = sample_modality_keep(4, torch.Generator().manual_seed(1)) if dropout else None
    kept = 2 if dropout else None
    compiled = torch.compile(G, fullgraph=True, backend=compile_backend)
    out = compiled(ws, tops, lefts, seeds, keep=keep, kept=kept)
    assert_roundoff_equal(out, G(ws, tops, lefts, seeds, keep=keep, kept=kept), what="compiled vs eager G")
    out.square().mean().backward()  # the backward graph traces too
    assert G.levels[0].conv0.conv.weight.grad is not None


def test_discriminator_is_one_graph(compile_backend):
    G, D = build(SMALL_PRESET, seed=0)
    ws, tops, lefts, seeds = _batch(G)
    with torch.no_grad():
        images = G(ws, tops, lefts, seeds)
    compiled = torch.compile(D, fullgraph=True, backend=compile_backend)
    logits = compiled(images, tops, lefts, 2)
    assert_roundoff_equal(logits, D(images, tops, lefts, 2), what="compiled vs eager D")
    logits.sum().backward()
    assert D.from_rgb.weight.grad is not None
