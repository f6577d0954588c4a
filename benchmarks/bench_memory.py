"""Peak memory of one full training step: G forward, D step, lazy R1 step, G step, EMA.

Each configuration runs in a fresh process (peak resident memory is a per-process high-water mark) that
builds the `Trainer`, runs step 0 (an R1 step) and reports its peak: resident set on a CPU (VmHWM), max
allocated on CUDA. `--source DIR` imports gantlitz from another checkout (e.g. a `git worktree` of an
older commit) with the same benchmark code, for before/after figures.

    python benchmarks/bench_memory.py --preset gantlitz-l --batch 4 --device cpu --precision fp32,bf16
    git worktree add /tmp/before COMMIT && python benchmarks/bench_memory.py --source /tmp/before ...
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _status_gb(key: str) -> float:
    """A /proc/self/status memory line (VmRSS, VmHWM) in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """One configuration in this process; prints one JSON line."""
    import torch
    from bench_train import make_trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    trainer, data = make_trainer(args.preset, args.batch, args.precision, device, False, args.set, batches=1)
    built_gb = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else _status_gb("VmRSS")
    t0 = time.perf_counter()
    losses = trainer.step(0, *data[0])  # step 0 is a lazy-R1 step
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else _status_gb("VmHWM")
    print(json.dumps({"built_gb": built_gb, "peak_gb": peak, "step_s": seconds, "r1": "loss/R1" in losses,
                      "batch": trainer.cfg.batch, "modalities": trainer.modalities_per_sample}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gantlitz-l")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="Comma list of fp32,tf32,bf16.")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--source", default=None, help="Checkout to import gantlitz from (default: this one).")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    from machine import short_name

    source = Path(args.source).resolve() if args.source else HERE.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(HERE), os.environ.get("PYTHONPATH", "")])}
    rev = subprocess.run(["git", "-C", str(source), "describe", "--always", "--dirty"], capture_output=True, text=True,
                         check=False)
    label = rev.stdout.strip() or str(source)
    command = shlex.join(["python", "benchmarks/bench_memory.py", *sys.argv[1:]])
    print("| date | machine | source | preset | batch × modalities | precision | step s | after build GB | peak GB | command |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for precision in args.precision.split(","):
        cmd = [sys.executable, str(HERE / "bench_memory.py"), "--child", "--preset", args.preset, "--device", args.device,
               "--precision", precision.strip()]
        cmd += ["--batch", str(args.batch)] if args.batch else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        for item in args.set:
            cmd += ["--set", item]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=source, check=False)
        if proc.returncode != 0:
            print(f"| {precision}: failed | {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode} |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        kind = "allocated" if args.device.startswith("cuda") else "RSS"
        print(f"| {datetime.date.today()} | {short_name(args.device)} | {label} | {args.preset} | {r['batch']} × "
              f"{r['modalities']} | {precision} | {r['step_s']:.1f} | {r['built_gb']:.2f} | {r['peak_gb']:.2f} ({kind}) "
              f"| `{command}` |", flush=True)


if __name__ == "__main__":
    main()
