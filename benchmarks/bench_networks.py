"""Generator forward speed at one patch size, per precision (issue: networks GPU check).

    python benchmarks/bench_networks.py --preset gantlitz-l --batch 8 --device cuda
    python benchmarks/bench_networks.py --preset tiny --batch 8 --device cpu

A "patch evaluation" is one modality of one patch. Prints a markdown row per precision with the date,
machine and command, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import time

import torch
from machine import short_name

from gantlitz.networks import build


def measure(preset: str, batch: int, device: str, precision: str, iters: int, warmup: int) -> dict:
    """Median-free simple timing: total time of `iters` forwards after `warmup`, synchronised."""
    G, _ = build(preset, seed=0)
    G = G.to(device).eval().requires_grad_(False)
    p = G.patch_size
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        torch.cuda.reset_peak_memory_stats()
    autocast = (
        torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16)
        if precision == "bf16" else contextlib.nullcontext()
    )
    gen = torch.Generator().manual_seed(0)
    ws = G.mapping(torch.randn(batch, G.cfg.z_dim, generator=gen).to(device))
    tops = torch.zeros(batch, dtype=torch.long, device=device)
    keep = torch.zeros(batch, 3, dtype=torch.bool, device=device)
    keep[:, 0] = True  # one modality per sample: batch patch evaluations per forward
    seeds = torch.arange(batch, device=device)

    def step() -> None:
        with torch.no_grad(), autocast:
            G(ws, tops, tops, seeds, keep=keep)

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / iters
    return {
        "precision": precision,
        "patch": p,
        "batch": batch,
        "ms_per_forward": seconds * 1e3,
        "patch_evals_per_s": batch / seconds,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gantlitz-l")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    today = datetime.date.today().isoformat()
    command = "python " + " ".join(sys.argv)
    print("| date | machine | preset | precision | batch | ms/forward | patch-evals/s | peak GB | command |")
    print("|---|---|---|---|---|---|---|---|---|")
    for precision in args.precisions.split(","):
        if precision == "tf32" and not args.device.startswith("cuda"):
            continue  # TF32 is a CUDA tensor-core mode; on a CPU it equals fp32
        r = measure(args.preset, args.batch, args.device, precision, args.iters, args.warmup)
        print(
            f"| {today} | {short_name(args.device)} | {args.preset} | {precision} | {args.batch} | "
            f"{r['ms_per_forward']:.1f} | {r['patch_evals_per_s']:.1f} | {r['peak_mem_gb']:.2f} | `{command}` |"
        )


if __name__ == "__main__":
    main()
