"""Time to layout: how many minutes and kimg of training until the generated textures put the face
where the data has it (docs/training.md, "Time to layout").

Every variant (a preset plus `--set` overrides) trains **side by side** with the others, each in its own
process on one thread, for the same wall time, so the machine's noise is shared. Checkpoints are
written every `--checkpoint-every` steps and all are kept. Each checkpoint is then measured as a user
would see it, from `--seeds` generated textures: the layout of every modality (`gantlitz.metrics.layout`),
the per-location spread against the data's (`std_ratio`), patch KID at the lips and whole-albedo KID
(download-free local features), the spectral peak (lattices). The **time to layout** of a variant is the
first checkpoint at which every modality's layout correlation reaches `--target` × the data's
split-half value.

Resumable: a variant that has not reached `--minutes` of training continues from its last checkpoint,
and measured checkpoints are read back from OUT/measures.jsonl. OUT/summary.json and OUT/curves.png
hold the result; OUT/tensorboard the curves as TensorBoard scalars (`tensorboard --logdir OUT/tensorboard`).

    python benchmarks/time_to_layout.py --data DS --out runs/ttl --minutes 20 \
        --variant base: --variant moments:train.moment_weight=10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layout_ablation import generated_maps, measure, real_maps  # noqa: E402
from machine import describe  # noqa: E402

from gantlitz.data.store import PatchStore  # noqa: E402

MODALITIES = ("albedo", "specular", "displacement")


def parse_variant(spec: str) -> tuple[str, list[str]]:
    name, _, sets = spec.partition(":")
    if not name:
        raise SystemExit(f"--variant {spec!r}: expected NAME:key=value,...")
    return name, [s for s in sets.split(",") if s]


def trained_minutes(run: Path) -> float:
    """Training wall time so far, from the run's metrics (summed over resumed sessions)."""
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return 0.0
    lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return _session_total(lines) / 60.0


def _session_total(lines: list[dict]) -> float:
    """Each session's clock restarts at 0: sum the last time of every session."""
    total, last = 0.0, 0.0
    for rec in lines:
        t = float(rec.get("time", 0.0))
        if t < last:
            total += last
        last = t
    return total + last


def launch(args: argparse.Namespace, name: str, sets: list[str], minutes: float) -> subprocess.Popen:
    run = Path(args.out) / name
    cmd = [sys.executable, "-m", "gantlitz", "train", "--data", args.data, "--preset", args.preset,
           "--out", str(run), "--steps", "1000000", "--minutes", f"{minutes:.3f}", "--threads", "1",
           "--set", f"train.checkpoint_every={args.checkpoint_every}", "--set", "train.keep_checkpoints=100000",
           "--set", "train.preview_every=0", "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    if (run / "checkpoints").exists():
        cmd.append("--resume")
    log = open(Path(args.out) / f"{name}.log", "a")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def checkpoint_times(run: Path) -> dict[int, float]:
    """step → training minutes at that step (cumulative over sessions)."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    out, total, last = {}, 0.0, 0.0
    for rec in lines:
        t = float(rec.get("time", 0.0))
        if t < last:
            total += last
        last = t
        out[int(rec["step"])] = (total + t) / 60.0
    return out


def tensorboard_scalars(out: Path, rows: list[dict]) -> None:
    """The measured curves as TensorBoard scalars, one run per variant under OUT/tensorboard (x: step)."""
    from torch.utils.tensorboard import SummaryWriter

    for name in sorted({r["variant"] for r in rows}):
        writer = SummaryWriter(str(out / "tensorboard" / name))
        for r in sorted((r for r in rows if r["variant"] == name), key=lambda r: r["step"]):
            for m, v in r["layout"].items():
                writer.add_scalar(f"layout/{m}", v["ratio"], r["step"])
                writer.add_scalar(f"spread/{m}", v["std_ratio"], r["step"])
            writer.add_scalar("kid/patch", r["kid_patch"], r["step"])
            writer.add_scalar("kid/whole", r["kid_whole"], r["step"])
            writer.add_scalar("minutes", r["minutes"], r["step"])
        writer.close()


def measure_checkpoints(args: argparse.Namespace, name: str, real: dict, mask: np.ndarray, canvas: tuple[int, int],
                        done: set[tuple[str, int]], sink: Path) -> None:
    run = Path(args.out) / name
    times = checkpoint_times(run)
    batch = json.loads((run / "config.json").read_text())["preset"]["train"]["batch"]
    for ckpt in sorted((run / "checkpoints").glob("step-*.safetensors")):
        step = int(ckpt.stem.split("-")[1])
        if (name, step) in done:
            continue
        fake = generated_maps(ckpt, args.seeds)
        row = {"variant": name, "step": step, "kimg": step * batch / 1000.0,
               "minutes": round(times.get(step, float("nan")), 2),
               **measure(real, fake, mask, args.patch, canvas, args.splits)}
        with sink.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done.add((name, step))
        lay = " ".join(f"{m[:4]} {v['ratio']:.2f}" for m, v in row["layout"].items())
        print(f"{name} step {step} ({row['minutes']:.1f} min): {lay}", flush=True)


def reached(row: dict, target: float) -> bool:
    return all(v["ratio"] >= target for v in row["layout"].values())


def summarise(rows: list[dict], variants: list[tuple[str, list[str]]], target: float) -> dict:
    out = {}
    for name, sets in variants:
        mine = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["step"])
        if not mine:
            continue
        first = next((r for r in mine if reached(r, target)), None)
        best = max(mine, key=lambda r: min(v["ratio"] for v in r["layout"].values()))
        out[name] = {
            "overrides": sets, "final": _brief(mine[-1]), "best_worst_modality": _brief(best),
            "time_to_layout": None if first is None else _brief(first),
        }
    return out


def _brief(row: dict) -> dict:
    return {
        "step": row["step"], "kimg": row["kimg"], "minutes": row["minutes"],
        "layout_ratio": {m: round(v["ratio"], 3) for m, v in row["layout"].items()},
        "sample_corr": {m: round(v["sample_corr"], 3) for m, v in row["layout"].items()},
        "std_ratio": {m: round(v["std_ratio"], 3) for m, v in row["layout"].items()},
        "kid_patch": row["kid_patch"], "kid_patch_real": row["kid_patch_real"],
        "kid_whole": row["kid_whole"], "kid_whole_real": row["kid_whole_real"],
        "peak_excess": row["peak_excess"],
    }


def markdown(summary: dict) -> str:
    """The docs table: each variant's last checkpoint (equal wall time) and its time to layout."""
    lines = ["| variant | settings | steps (kimg) | layout albedo / specular / displacement (× split-half) | "
             "per-sample | spread (std_ratio) | patch KID | whole KID | peak | time to layout |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in summary["variants"].items():
        f = v["final"]
        trio = lambda d: " / ".join(f"{d[m]:.2f}" for m in MODALITIES)  # noqa: E731
        peaks = " / ".join(f"{f['peak_excess'][m]['generated']:.2f}" for m in MODALITIES)
        ttl = v["time_to_layout"]
        reach = "not reached" if ttl is None else f"{ttl['minutes']:.1f} min, {ttl['kimg']:.1f} kimg"
        lines.append(f"| {name} | {', '.join(v['overrides']) or 'preset as is'} | {f['step']} ({f['kimg']:.1f}) | "
                     f"{trio(f['layout_ratio'])} | {trio(f['sample_corr'])} | {trio(f['std_ratio'])} | "
                     f"{f['kid_patch']:.4f} | {f['kid_whole']:.4f} | {peaks} | {reach} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], variants: list[tuple[str, list[str]]], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for name, _ in variants:
        mine = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["step"])
        if not mine:
            continue
        t = [r["minutes"] for r in mine]
        for ax, m in zip(axes, MODALITIES):
            ax.plot(t, [r["layout"][m]["ratio"] for r in mine], label=name, marker=".")
        axes[3].plot(t, [r["kid_patch"] for r in mine], label=name, marker=".")
    for ax, m in zip(axes, MODALITIES):
        ax.axhline(target, color="grey", ls="--", lw=0.8)
        ax.set(title=f"{m} layout / split-half", xlabel="training minutes", ylim=(-0.4, 1.1))
    axes[3].set(title="patch KID (lips)", xlabel="training minutes", yscale="log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--minutes", type=float, required=True, help="training wall time per variant (side by side)")
    ap.add_argument("--checkpoint-every", type=int, default=150, help="steps between measured checkpoints")
    ap.add_argument("--seeds", type=int, default=16, help="generated textures per checkpoint")
    ap.add_argument("--splits", type=int, default=100, help="KID splits")
    ap.add_argument("--target", type=float, default=0.85, help="fraction of the split-half layout to reach")
    ap.add_argument("--variant", action="append", required=True,
                    help="NAME:key=value,key=value (dotted preset fields, as --set); 'NAME:' for the preset as is")
    ap.add_argument("--measure-only", action="store_true", help="measure existing checkpoints, train nothing")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(v) for v in args.variant]
    if not args.measure_only:
        procs = {name: launch(args, name, sets, args.minutes - trained_minutes(out / name))
                 for name, sets in variants if trained_minutes(out / name) < args.minutes - 0.05}
        for name, proc in procs.items():
            if proc.wait():
                print(f"{name}: training exited with {proc.returncode} (see {out / name}.log)", flush=True)
    store = PatchStore(args.data)
    args.patch = json.loads((out / variants[0][0] / "config.json").read_text())["preset"]["model"]["patch_size"]
    real, mask = real_maps(store), np.asarray(store.mask) > 0
    sink = out / "measures.jsonl"
    rows = [json.loads(line) for line in sink.read_text().splitlines()] if sink.exists() else []
    done = {(r["variant"], r["step"]) for r in rows}
    for name, _ in variants:
        measure_checkpoints(args, name, real, mask, tuple(store.canvas), done, sink)
    rows = [json.loads(line) for line in sink.read_text().splitlines()]
    command = " ".join(["python benchmarks/time_to_layout.py", *sys.argv[1:]])
    summary = {"machine": describe("cpu"), "command": command, "minutes": args.minutes, "target": args.target,
               "variants": summarise(rows, variants, args.target)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "table.md").write_text(markdown(summary))
    plot(rows, variants, args.target, out / "curves.png")
    tensorboard_scalars(out, rows)
    print(json.dumps(summary["variants"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
