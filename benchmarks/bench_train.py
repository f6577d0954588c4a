"""Training step throughput: generated modality-patches/s, samples/s and peak memory per precision.

Runs the real `gantlitz.train.loop.Trainer.step` (G forward, D step, lazy R1, G step, EMA) on random
batches of the right shape at random training locations (no dataset needed), and prints one markdown
table row per precision with the date, machine and command.

    python benchmarks/bench_train.py --preset gantlitz-l --batch 4                 # CUDA: tf32 and bf16
    python benchmarks/bench_train.py --preset tiny --device cpu --precision fp32    # CPU smoke numbers

"Generated modality-patches" = samples x modalities generated per sample (3, or 2 with modality
dropout) per training step; the issue's target for GANtlitz-L at batch 4 is >= 26/s with <= 16 GB.
The measured window spans a whole number of R1 intervals, so lazy R1 is amortised as in training.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time

import torch
from machine import short_name

from gantlitz import presets
from gantlitz.data.sampling import training_locations
from gantlitz.config import parse_overrides
from gantlitz.presets import resolve as resolve_preset
from gantlitz.train.loop import Trainer
from gantlitz.train.objectives import random_targets
from gantlitz.train.monitor import memory_gb


def make_trainer(preset_name: str, batch: int | None, precision: str, device: torch.device, compile_: bool,
                 sets: list[str], batches: int = 4) -> tuple[Trainer, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """A Trainer on an all-visible canvas and `batches` random batches of the right shape at random training
    locations (grouped by location as the sampler groups them)."""
    overrides = parse_overrides(sets)
    overrides["train.precision"] = precision
    overrides["train.compile"] = compile_
    if batch is not None:
        overrides["train.batch"] = batch
        base = presets.get(preset_name).train.group_size
        overrides.setdefault("train.group_size", base if batch % base == 0 else 1)
    preset = resolve_preset(preset_name, overrides)
    cfg = preset.train
    h, w = preset.model.canvas_height, preset.model.canvas_width
    p = preset.model.patch_size
    trainer = Trainer(preset, torch.ones(h, w, dtype=torch.uint8), device=device,
                      targets=random_targets(preset))  # the step's cost does not depend on the targets' values
    locs = training_locations(torch.ones(h, w, dtype=torch.uint8).numpy(), p) if preset.global_res is None else [(0, 0)]
    gen = torch.Generator().manual_seed(0)
    groups = cfg.batch // cfg.group_size

    def batch_at() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(locs), (groups,), generator=gen).repeat_interleave(cfg.group_size)
        tops = torch.tensor([locs[j][0] for j in idx.tolist()])
        lefts = torch.tensor([locs[j][1] for j in idx.tolist()])
        real = torch.rand(cfg.batch, 5, p, p, generator=gen) * 2 - 1
        return real.to(device), tops, lefts

    return trainer, [batch_at() for _ in range(batches)]


def bench(preset_name: str, batch: int | None, precision: str, device: torch.device, steps: int | None, warmup: int,
          compile_: bool, sets: list[str]) -> dict[str, float]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer, data = make_trainer(preset_name, batch, precision, device, compile_, sets)
    cfg = trainer.cfg
    interval = cfg.r1_interval if cfg.r1_gamma > 0 else 1
    steps = steps or 2 * interval
    steps = max(interval, (steps // interval) * interval)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for i in range(warmup):  # compile / autotune / allocator warm-up, R1 included (step 0)
        trainer.step(i, *data[i % len(data)])
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        trainer.step(warmup + i, *data[i % len(data)])  # consecutive steps: steps / interval R1 steps
    sync()
    dt = time.perf_counter() - t0
    peak = memory_gb(device)  # CUDA: max allocated; CPU: peak resident set of the process
    return {
        "steps_per_s": steps / dt,
        "samples_per_s": steps * cfg.batch / dt,
        "modality_patches_per_s": steps * cfg.batch * trainer.modalities_per_sample / dt,
        "peak_gb": peak,
        "steps": steps,
        "batch": cfg.batch,
        "ms_per_step": 1000 * dt / steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gantlitz-l", choices=presets.names())
    ap.add_argument("--batch", type=int, default=None, help="Samples per step (default: the preset's).")
    ap.add_argument("--precision", default=None, help="Comma list of fp32,tf32,bf16 (default: tf32,bf16 on CUDA, fp32 on CPU).")
    ap.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available).")
    ap.add_argument("--steps", type=int, default=None, help="Timed steps (rounded to whole R1 intervals).")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile the G and D passes.")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precisions = (args.precision or ("tf32,bf16" if device.type == "cuda" else "fp32")).split(",")
    command = "python benchmarks/bench_train.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print("| date | machine | preset | batch | precision | compile | ms/step | modality-patches/s | samples/s | peak GB | command |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for precision in precisions:
        r = bench(args.preset, args.batch, precision.strip(), device, args.steps, args.warmup, args.compile, args.sets)
        print(f"| {datetime.date.today()} | {short_name(device)} | {args.preset} | {r['batch']} | {precision} | "
              f"{'yes' if args.compile else 'no'} | {r['ms_per_step']:.0f} | {r['modality_patches_per_s']:.2f} | "
              f"{r['samples_per_s']:.2f} | {r['peak_gb']:.2f} | `{command}` |", flush=True)


if __name__ == "__main__":
    main()
