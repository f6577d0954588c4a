"""How much of the data's layout does the patch discriminator get to see? (docs/training.md, "What hides
the albedo layout")

The real maps are cut into the training patches (non-overlapping tiles, so they can be put back), each
tile goes through one part of the discriminator's augmentation, every tile transformed (training
applies the mid-band filter to 85 % of the patches and each ADA transform at the adaptive p), and the
tiles are reassembled. Two numbers per modality say how much of the per-location signal survives what
D is shown (1: all of it): the correlation of the transformed maps' mean with the data's mean map, and
the mean per-sample correlation with the data's mean map, relative to the untouched subjects' own.

    python benchmarks/layout_visibility.py --data DS --out runs/visibility.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layout_ablation import real_maps  # noqa: E402

from gantlitz.config import AugmentConfig  # noqa: E402
from gantlitz.data.store import PatchStore  # noqa: E402
from gantlitz.metrics.layout import layout_scores  # noqa: E402
from gantlitz.train.augment import Augment  # noqa: E402

NONE = dict(noise=False, cutout=False, rotate=False, scale=False, translate=False, midband_p=0.0)
CASES = {
    "mid-band filter, every patch": ({**NONE, "midband_p": 1.0}, 0.0),
    "rotation, every patch": ({**NONE, "rotate": True}, 1.0),
    "scale, every patch": ({**NONE, "scale": True}, 1.0),
    "translation, every patch": ({**NONE, "translate": True}, 1.0),
    "cutout, every patch": ({**NONE, "cutout": True}, 1.0),
}


def transformed(maps: dict[str, np.ndarray], patch: int, cfg: AugmentConfig, p: float, seed: int) -> dict:
    """Every tile of every map through `Augment(cfg)` at probability p, reassembled."""
    x = np.concatenate([maps["albedo"], maps["specular"], maps["displacement"]], axis=-1)  # (N, H, W, 5)
    n, h, w, c = x.shape
    tiles = torch.from_numpy(x * 2 - 1).permute(0, 3, 1, 2).reshape(n, c, h // patch, patch, w // patch, patch)
    tiles = tiles.permute(0, 2, 4, 1, 3, 5).reshape(-1, c, patch, patch).float()
    aug = Augment(cfg, patch)
    with torch.no_grad():
        out = aug(tiles, p, torch.Generator().manual_seed(seed))
    out = out.reshape(n, h // patch, w // patch, c, patch, patch).permute(0, 1, 4, 2, 5, 3).reshape(n, h, w, c)
    y = ((out + 1) / 2).numpy()
    return {"albedo": y[..., 0:3], "specular": y[..., 3:4], "displacement": y[..., 4:5]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=4, help="augmented copies of each subject")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    store = PatchStore(args.data)
    real = real_maps(store)
    mask = np.asarray(store.mask) > 0
    rows = {}
    for name, (fields, p) in CASES.items():
        cfg = dataclasses.replace(AugmentConfig(), **fields)
        copies = [transformed(real, args.patch, cfg, p, seed) for seed in range(args.repeats)]
        seen = {m: np.concatenate([c[m] for c in copies]) for m in real}
        scores = layout_scores(real, seen, mask)
        rows[name] = {m: round(v["mean_corr"], 3) for m, v in scores.items()}
        rows[name].update({f"{m} per sample": round(v["sample_corr"] / v["real_sample_corr"], 3)
                           for m, v in scores.items()})
        print(name, rows[name], flush=True)
    Path(args.out).write_text(json.dumps({"patch": args.patch, "data": str(args.data), "cases": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
