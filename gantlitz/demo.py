"""`gantlitz demo`: the whole pipeline on a fresh machine in a few minutes of CPU.

1. synth    — procedural multi-modal face textures on the packaged head layout (`gantlitz.data.synth`);
2. prepare  — the memory-mapped patch store (`gantlitz.data.prepare`);
3. train    — the `tiny` preset for a few minutes (`gantlitz.train.train`), TensorBoard logs and previews;
4. generate — full-canvas albedo / specular / displacement / normal maps for a few seeds (`gantlitz.generate`);
5. summary  — OUT/SUMMARY.md listing what to look at.

Needs only the installed package (the head maps ship inside it). Stages whose output exists are reused
when the demo is run again (so a second run only trains and generates again), unless --overwrite.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["DemoError", "run_demo"]


class DemoError(RuntimeError):
    """A demo stage failed; the message names the stage."""


def _say(message: str) -> None:
    print(message, flush=True)


def run_demo(
    out: str | Path = "gantlitz-demo",
    *,
    minutes: float = 5.0,
    subjects: int = 24,
    size: int = 256,
    steps: int | None = None,
    seeds: int = 4,
    quick: bool = False,
    device: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo into `out`; returns {"raw", "data", "run", "samples", "model", "steps", "timings"}.

    `quick`: 6 subjects at 128×128, at most 6 training steps, 2 seeds (a smoke test, well under a minute).
    `threads`: torch CPU threads (default on CPU: 1 — the tiny model gains little from more, and on a
    busy or small machine OpenMP oversubscription made 2 threads 30x slower than 1 in our measurements).
    """
    import torch

    on_cpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu")
    if threads is None and on_cpu:
        threads = 1
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_demo(out, minutes=minutes, subjects=subjects, size=size, steps=steps, seeds=seeds, quick=quick,
                         device=device, overwrite=overwrite, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run_demo(out: str | Path, *, minutes: float, subjects: int, size: int, steps: int | None, seeds: int,
              quick: bool, device: str | None, overwrite: bool, progress: bool) -> dict[str, Any]:
    from .data.prepare import prepare
    from .data.synth import synthesize_dataset
    from .train.loop import TrainError, train

    out = Path(out)
    if quick:
        subjects, size, seeds = min(subjects, 6), 128, min(seeds, 2)
        steps = min(steps or 6, 6)
    if size % 64 or size < 128:
        raise DemoError(f"size must be a multiple of 64 and >= 128, got {size}")
    if overwrite and out.exists():
        for name in ("raw", "data", "run", "samples", "SUMMARY.md"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    raw, data, run, samples = out / "raw", out / "data", out / "run", out / "samples"
    timings: dict[str, float] = {}

    # 1. synthetic scans
    t0 = time.perf_counter()
    if (raw / "README.txt").exists():
        _say(f"[1/4] synth: reusing {raw}")
    else:
        _say(f"[1/4] synth: {subjects} synthetic subjects at {size}x{size} -> {raw}")
        try:
            synthesize_dataset(raw, subjects, (size, size), seed=0, overwrite=True, progress=progress)
        except (OSError, ValueError) as exc:
            raise DemoError(f"synth failed: {exc}") from exc
    timings["synth_s"] = time.perf_counter() - t0

    # 2. prepared store
    t0 = time.perf_counter()
    if (data / "manifest.json").exists():
        _say(f"[2/4] prepare: reusing {data}")
    else:
        _say(f"[2/4] prepare: {raw} -> {data}")
        try:
            prepare(raw, data, overwrite=True, progress=progress)
        except (OSError, ValueError) as exc:
            raise DemoError(f"prepare failed: {exc}") from exc
    timings["prepare_s"] = time.perf_counter() - t0

    # 3. training
    t0 = time.perf_counter()
    limit = f"{steps} steps" if steps is not None and quick else f"{minutes:g} min" + (
        f" or {steps} steps" if steps is not None else "")
    _say(f"[3/4] train: preset tiny for {limit} -> {run}   (watch: tensorboard --logdir {run / 'logs'})")
    overrides: dict[str, Any] = {}
    if quick:
        overrides = {"train.checkpoint_every": max(steps or 1, 1), "train.preview_every": max(steps or 1, 1),
                     "train.log_every": 1}
    try:
        result = train(data, run, "tiny", overrides=overrides, steps=steps, resume=False, overwrite=True,
                       device=device, max_minutes=None if quick else minutes, progress=progress,
                       command=["gantlitz", "demo", "--out", str(out)])
    except TrainError as exc:
        raise DemoError(f"training failed: {exc}") from exc
    timings["train_s"] = time.perf_counter() - t0
    if result.model is None:
        raise DemoError("training ended without a model file")

    # 4. generation
    t0 = time.perf_counter()
    from . import generate

    _say(f"[4/4] generate: {seeds} textures -> {samples}")
    if samples.exists():
        shutil.rmtree(samples)
    model = generate.load(result.model, device=device or "auto")
    rows = []
    for s in range(seeds):
        res = model.write(s, samples, "png16", overwrite=True, progress=False)
        rows.append((f"seed {s}", res["thumbnails"]))
        _say(f"      seed {s}: {res['paths']['contact']}")
    sheet = generate.seeds_sheet(rows, title=f"gantlitz demo: tiny, {result.step} steps")
    from PIL import Image

    (sheet if isinstance(sheet, Image.Image) else Image.fromarray(sheet)).save(samples / "contact.png")
    timings["generate_s"] = time.perf_counter() - t0

    previews = sorted((run / "previews").glob("*-texture.png"))
    lines = [
        "# gantlitz demo",
        "",
        f"- synthetic scans: `{raw}` ({subjects} subjects, {size}x{size})",
        f"- prepared dataset: `{data}`",
        f"- training run: `{run}` (preset tiny, {result.step} steps, {timings['train_s'] / 60:.1f} min)",
        f"- model: `{result.model}`",
        f"- generated maps: `{samples}/seedNNNN/{{albedo,specular,displacement,normal}}.png` (16-bit)",
        "",
        "Look at:",
        f"- `{samples / 'contact.png'}`: all generated seeds, every map",
        f"- `{run / 'previews'}`: training previews (patches: real/fake rows per location; texture: the whole canvas)"
        + (f", latest `{previews[-1].name}`" if previews else ""),
        f"- `tensorboard --logdir {run / 'logs'}`: losses, augmentation p, r_t, speed, previews",
        "",
        "Next:",
        f"- `gantlitz generate {run} --seeds 0-7 --out {out / 'more'}`",
        f"- `gantlitz train --data {data} --out {run} --resume --steps {result.step + 1000}`",
        "",
        "Timings (s): " + ", ".join(f"{k[:-2]} {v:.0f}" for k, v in timings.items()),
    ]
    (out / "SUMMARY.md").write_text("\n".join(lines) + "\n")
    _say("")
    _say("\n".join(lines[2:]))
    return {"raw": raw, "data": data, "run": run, "samples": samples, "model": result.model, "steps": result.step,
            "timings": timings}
