"""What the whole-canvas view costs per step, against the patch objective (docs/training.md).

Counts, without running any kernel (the networks run on PyTorch's `meta` device), the FLOPs of one
training step's forward passes and the bytes autograd keeps for the backward pass:

- patch objective: G over the batch's patches (every kept modality) and D over fakes + reals;
- whole-canvas view at level k: G's levels 0…k over the whole canvas for the batch, and the whole D
  over fakes + reals at that size.

Backward passes cost about twice their forward; R1 is lazy (every 16 steps) and left out of both.

    python benchmarks/whole_view_cost.py --preset tiny --level 1 --level 2
    python benchmarks/whole_view_cost.py --preset gantlitz-l --level 2 --level 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from gantlitz import presets
from gantlitz.networks import build
from gantlitz.nn.discriminator import Discriminator
from gantlitz.train.objectives import whole_size


def _cost(fn) -> tuple[float, float]:
    """(GFLOPs, GiB kept for backward) of `fn()` on the meta device."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return counter.get_total_flops() / 1e9, saved[0] / 2**30


def measure(name: str, levels: list[int]) -> dict:
    preset = presets.get(name)
    model, cfg = preset.model, preset.train
    with torch.device("meta"):
        G, D = build(model)
    b, p, kept = cfg.batch, model.patch_size, 2 if cfg.augment.modality_dropout else 3
    z = torch.randn(b, model.z_dim, device="meta")
    tops = torch.zeros(b, dtype=torch.long, device="meta")
    keep = torch.ones(b, 3, dtype=torch.bool, device="meta")
    keep[:, 0] = kept == 3

    def patch_g() -> None:
        G(G.mapping(z), tops, tops, tops, keep=keep, kept=kept)

    def patch_d() -> None:
        D(torch.randn(2 * b, 5, p, p, device="meta", requires_grad=True), torch.cat([tops, tops]),
          torch.cat([tops, tops]), cfg.group_size)

    out = {"preset": name, "batch": b, "patch": {"G": _cost(patch_g), "D": _cost(patch_d)}, "whole": {}}
    for level in levels:
        h, w = whole_size(model, level)
        d_cfg = dataclasses.replace(model, patch_size=min(h, w), disc_pos="none", disc_locate=False,
                                    disc_pos_inject="input")
        with torch.device("meta"):
            whole_d = Discriminator(d_cfg, size=(h, w))

        def whole_g(level: int = level) -> None:
            G(G.mapping(z), tops, tops, tops, height=model.canvas_height, width=model.canvas_width, level=level)

        def whole_dis(h: int = h, w: int = w, net: Discriminator = whole_d) -> None:
            net(torch.randn(2 * b, 5, h, w, device="meta", requires_grad=True), torch.cat([tops, tops]),
                torch.cat([tops, tops]), cfg.group_size)

        out["whole"][level] = {"size": [h, w], "G": _cost(whole_g), "D": _cost(whole_dis)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", required=True)
    ap.add_argument("--level", type=int, action="append", required=True)
    args = ap.parse_args(argv)
    print("| preset | pass | size | forward GFLOPs | kept for backward (GiB) |")
    print("|---|---|---|---|---|")
    for name in args.preset:
        r = measure(name, args.level)
        p = presets.get(name).model.patch_size
        for part in ("G", "D"):
            f, m = r["patch"][part]
            print(f"| {name} | patch {part} (batch {r['batch']}) | {p}² | {f:.1f} | {m:.2f} |")
        for level, w in r["whole"].items():
            for part in ("G", "D"):
                f, m = w[part]
                print(f"| {name} | whole view level {level}: {part} | {w['size'][1]}×{w['size'][0]} | {f:.1f} | {m:.2f} |")
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
