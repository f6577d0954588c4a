"""Can the generator *represent* the facial layout, whatever D says? A capacity check without a GAN.

Fits G (one fixed latent) by least squares to the data's mean maps on random training patches, as many
steps and the same Adam settings as training, then measures the layout of the fitted canvas
(`gantlitz.metrics.layout`). A generator whose location pathway is slow to train scores low here even
with this direct, supervised signal; the adversarial signal is much weaker (docs/training.md).

    python benchmarks/layout_capacity.py --data DS --steps 300 --variant base: \
        --variant learned:model.pe_learned=true
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from layout_ablation import MODALITIES, real_maps

from gantlitz import presets
from gantlitz.config import apply_overrides
from gantlitz.data.sampling import training_locations
from gantlitz.data.store import PatchStore
from gantlitz.metrics.layout import layout_scores
from gantlitz.networks import build


def fit(preset, target: torch.Tensor, mask: np.ndarray, steps: int, seed: int = 0) -> np.ndarray:
    """G fitted to `target` (5, H, W) in [-1, 1] on random training patches → the canvas (H, W, 5) in [0, 1]."""
    p = preset.model.patch_size
    G, _ = build(preset, seed=seed, mask=torch.from_numpy(mask.astype(np.uint8)))
    opt = torch.optim.Adam(G.parameters(), lr=preset.train.lr, betas=tuple(float(b) for b in preset.train.betas))
    z = torch.randn(1, preset.model.z_dim, generator=torch.Generator().manual_seed(seed))
    locs = torch.tensor(training_locations(mask.astype(np.uint8), p))
    gen = torch.Generator().manual_seed(seed)
    inside = torch.from_numpy(mask).float()
    batch = preset.train.batch
    for _ in range(steps):
        pick = locs[torch.randint(len(locs), (batch,), generator=gen)]
        out = G(G.mapping(z).expand(batch, -1, -1), pick[:, 0], pick[:, 1], torch.zeros(batch, dtype=torch.long))
        want = torch.stack([target[:, a : a + p, b : b + p] for a, b in pick.tolist()])
        m = torch.stack([inside[a : a + p, b : b + p] for a, b in pick.tolist()])[:, None]
        loss = ((out - want) ** 2 * m).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    h, w = mask.shape
    with torch.no_grad():
        canvas = G(G.mapping(z), torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), height=h, width=w)
    return (canvas[0].permute(1, 2, 0).numpy() + 1) / 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", action="append", required=True, help="NAME:key=value,... as --set")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    store = PatchStore(args.data)
    real = real_maps(store)
    mask = np.asarray(store.mask) > 0
    target = torch.from_numpy(np.concatenate([real[m].mean(0) for m in MODALITIES], -1)).permute(2, 0, 1).float()
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        preset = apply_overrides(presets.get(args.preset), [s for s in sets.split(",") if s]).with_canvas(*store.canvas)
        t0 = time.perf_counter()
        canvas = fit(preset, target * 2 - 1, mask, args.steps)
        fake = {"albedo": canvas[None, ..., 0:3], "specular": canvas[None, ..., 3:4],
                "displacement": canvas[None, ..., 4:5]}
        scores = layout_scores(real, fake, mask)
        print(f"{name}: " + " ".join(f"{m} {s['mean_corr']:.2f}" for m, s in scores.items())
              + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
