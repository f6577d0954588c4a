"""Equal-budget ablations of what lets the patch model learn the facial layout (docs/training.md).

Each variant is a preset plus `--set`-style overrides, trained with the same seed, data and step budget;
then 16 textures are generated and measured as a user would see them:
layout per modality (`gantlitz.metrics.layout`, mean-map correlation against the data and its
split-half reference), patch KID at the lips and whole-albedo KID (download-free local features),
wall time. One JSON line per variant is appended to OUT/results.jsonl; a variant whose result exists is
skipped, and an interrupted training resumes from its last checkpoint.

    python benchmarks/layout_ablation.py --data DS --out runs/ablation --steps 1500 \
        --variant base: --variant proj:model.disc_pos_inject=project
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from gantlitz.data.store import PatchStore
from gantlitz.evaluate import REAL, evaluate_sets, resolve_location
from gantlitz.generate import load
from gantlitz.metrics.features import LocalFeatures
from gantlitz.metrics.layout import layout_plot, layout_scores
from gantlitz.metrics.spectra import peak_excess, power_spectrum_2d
from gantlitz.train.loop import train

MODALITIES = ("albedo", "specular", "displacement")


def real_maps(store: PatchStore) -> dict[str, np.ndarray]:
    """Every subject (unflipped) at full canvas resolution, in [0, 1]."""
    h, w = store.canvas
    stack = np.stack([store.read_whole(i, h, w) for i in range(len(store.subjects))])  # (N, 5, H, W)
    stack = (stack.transpose(0, 2, 3, 1) + 1.0) / 2.0
    return {"albedo": stack[..., 0:3], "specular": stack[..., 3:4], "displacement": stack[..., 4:5]}


def generated_maps(model_path: Path, seeds: int) -> dict[str, np.ndarray]:
    model = load(model_path, device="cpu")
    samples = [model.sample(s, MODALITIES) for s in range(seeds)]
    return {m: np.stack([s[m] for s in samples]) for m in MODALITIES}


def measure(real: dict[str, np.ndarray], fake: dict[str, np.ndarray], mask: np.ndarray, patch: int,
            canvas: tuple[int, int], splits: int) -> dict[str, object]:
    scores = layout_scores(real, fake, mask)
    extractor = LocalFeatures()
    top, left = resolve_location("lips", canvas, patch)
    crop = lambda a: a[:, top : top + patch, left : left + patch]  # noqa: E731
    subset = min(real["albedo"].shape[0] // 2, fake["albedo"].shape[0])
    whole = evaluate_sets(real["albedo"], {"gen": fake["albedo"]}, extractor, splits, subset)
    lips = evaluate_sets(crop(real["albedo"]), {"gen": crop(fake["albedo"])}, extractor, splits, subset)
    return {
        "layout": scores,
        "peak_excess": {m: {"real": peak_excess(power_spectrum_2d(real[m])),
                            "generated": peak_excess(power_spectrum_2d(fake[m]))} for m in MODALITIES},
        "kid_whole": whole["sets"]["gen"]["mean"], "kid_whole_real": whole["sets"][REAL]["mean"],
        "kid_patch": lips["sets"]["gen"]["mean"], "kid_patch_real": lips["sets"][REAL]["mean"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", type=int, default=16, help="generated textures per variant")
    ap.add_argument("--splits", type=int, default=200, help="KID splits")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", action="append", required=True,
                    help="NAME:key=value,key=value (dotted preset fields, as --set); 'NAME:' for the preset as is")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = {json.loads(line)["variant"] for line in results.read_text().splitlines()} if results.exists() else set()
    store = PatchStore(args.data)
    real = real_maps(store)
    mask = np.asarray(store.mask) > 0
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        if name in done:
            print(f"{name}: done, skipped", flush=True)
            continue
        overrides = [s for s in sets.split(",") if s]
        run = out / name
        res = train(args.data, run, args.preset, overrides=overrides, steps=args.steps, resume=run.exists(),
                    progress=False, previews=False, tensorboard=False, command=sys.argv)
        # wall time of the training itself, summed over resumed sessions (the run's own log)
        train_s = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["time"]
        fake = generated_maps(res.model, args.seeds)
        row = {"variant": name, "overrides": overrides, "preset": args.preset, "steps": res.step,
               "train_s": round(train_s, 1), "threads": args.threads,
               **measure(real, fake, mask, load(res.model).patch_size, tuple(store.canvas), args.splits)}
        layout_plot(real, {name: fake}, mask, out / f"{name}-layout.png", {name: row["layout"]})
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        summary = " ".join(f"{m[:4]} {v['mean_corr']:.2f}/{v['real_split_half']:.2f}" for m, v in row["layout"].items())
        print(f"{name}: {summary} kid_patch {row['kid_patch']:.4f} kid_whole {row['kid_whole']:.4f} "
              f"train {train_s:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
