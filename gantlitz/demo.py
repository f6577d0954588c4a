"""`gantlitz demo`: the whole pipeline on a fresh machine in under ten minutes of CPU.

1. synth    — procedural multi-modal face textures on the packaged head layout (`gantlitz.data.synth`);
2. prepare  — the memory-mapped patch store (`gantlitz.data.prepare`);
3. train    — the `tiny` preset for a few minutes (`gantlitz.train.train`), TensorBoard logs and previews;
4. generate — full-canvas albedo / specular / displacement / normal maps for a few seeds (`gantlitz.samples`);
5. measure  — `gantlitz.evaluate` against the data: where the model puts things (layout), KID, spectra;
6. summary  — OUT/SUMMARY.md listing what to look at and the measured numbers.

Needs only the installed package (the head maps ship inside it). Run again into the same folder, every
stage whose result exists is reused: the data, the prepared store, the trained model (a run stopped
before its model was written is resumed), the samples and the measures. `overwrite=True` replaces them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from .errors import GantlitzError, UsageError
from .outputs import make_dirs, refuse_existing, write_text, writing

__all__ = ["DemoError", "run_demo", "LAYOUT_TARGET"]

SUMMARY_NAME = "SUMMARY.md"
LAYOUT_TARGET = 0.85
"""The demo's bar: every modality's layout correlation at least this fraction of the data's split-half value."""


class DemoError(GantlitzError, RuntimeError):
    """A demo stage failed; the message names the stage."""


def _say(message: str) -> None:
    print(message, flush=True)


def run_demo(
    out: str | Path = "gantlitz-demo",
    *,
    minutes: float = 8.0,
    subjects: int = 24,
    size: int = 256,
    steps: int | None = None,
    seeds: int = 8,
    quick: bool = False,
    device: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo into `out`; returns {"raw", "data", "run", "samples", "eval", "model", "steps",
    "layout", "timings"}.

    `quick`: 6 subjects at 128×128, at most 6 training steps, 4 seeds (a smoke test, well under a minute).
    `threads`: torch CPU threads (default: torch's, one per core: 2.4 steps/s on two quiet cores; on a busy
    machine one thread is faster, see docs/benchmarks.md).
    """
    import torch

    if not quick and (minutes <= 0 or seeds < 8):
        raise UsageError(f"the demo needs minutes > 0 and at least 8 seeds (its measures), got {minutes}, {seeds}")
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_demo(Path(out), minutes=minutes, subjects=subjects, size=size, steps=steps, seeds=seeds,
                         quick=quick, device=device, overwrite=overwrite, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)


def _stage(label: str, done: bool, what: str, work: Callable[[], Any]) -> Any:
    """Reuse a stage's result when it exists, else run it; a failure names the stage."""
    if done:
        _say(f"{label}: reusing {what}")
        return None
    try:
        return work()
    except GantlitzError as exc:
        raise DemoError(f"{label.split()[-1]} failed: {exc}") from exc


def _run_demo(out: Path, *, minutes: float, subjects: int, size: int, steps: int | None, seeds: int, quick: bool,
              device: str | None, overwrite: bool, progress: bool) -> dict[str, Any]:
    from .data.prepare import prepare
    from .data.synth import synthesize_dataset
    from .evaluate import evaluate
    from .generate import load
    from .samples import write_samples
    from .train.loop import train

    if quick:
        subjects, size, seeds = min(subjects, 6), 128, min(seeds, 4)
        steps = min(steps or 6, 6)
    if size % 64 or size < 128:
        raise UsageError(f"size must be a multiple of 64 and >= 128, got {size}")
    with writing("demo"):  # SUMMARY.md is replaced at the end only if an earlier demo wrote it
        refuse_existing([out / SUMMARY_NAME], True)
    make_dirs(out)
    raw, data, run, samples, ev = out / "raw", out / "data", out / "run", out / "samples", out / "eval"
    timings: dict[str, float] = {}

    def timed(key: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def wrapped() -> Any:
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                timings[key] = time.perf_counter() - t0
        return wrapped

    _say(f"[1/5] synth: {subjects} synthetic subjects at {size}x{size} -> {raw}")
    _stage("[1/5] synth", (raw / "README.txt").exists() and not overwrite, str(raw), timed("synth_s", lambda: (
        synthesize_dataset(raw, subjects, (size, size), seed=0, overwrite=overwrite, progress=progress))))
    _say(f"[2/5] prepare: {raw} -> {data}")
    _stage("[2/5] prepare", (data / "manifest.json").exists() and not overwrite, str(data), timed("prepare_s", lambda: (
        prepare(raw, data, overwrite=overwrite, resume=not overwrite, progress=progress))))  # a stopped one continues

    model_file = run / "model.safetensors"
    retrain = overwrite or not model_file.exists()
    limit = f"{steps} steps" if quick else f"{minutes:g} min" + (f" or {steps} steps" if steps else "")
    _say(f"[3/5] train: preset tiny for {limit} -> {run}   (watch: tensorboard --logdir {run / 'logs'})")
    overrides: dict[str, Any] = {}
    if quick:
        overrides = {"train.checkpoint_every": steps, "train.preview_every": steps, "train.log_every": 1}
    result = _stage("[3/5] train", not retrain, f"{model_file} (--overwrite trains again)", timed("train_s", lambda: (
        train(data, run, "tiny", overrides=overrides, steps=steps, resume=run.exists() and not overwrite,
              overwrite=overwrite, device=device, max_minutes=None if quick else minutes, progress=progress,
              command=["gantlitz", "demo", "--out", str(out)]))))
    if result is not None and result.model is None:
        raise DemoError("training ended without a model file")
    model = load(model_file, device=device or "auto")
    step = int(model.meta.get("step", 0))

    _say(f"[4/5] generate: {seeds} textures -> {samples}")
    _stage("[4/5] generate", not retrain and (samples / "generate.json").exists(), str(samples),
           timed("generate_s", lambda: write_samples(model, range(seeds), samples, "png16", overwrite=True,
                                                     title=f"gantlitz demo: tiny, {step} steps", echo=_say)))
    _say(f"[5/5] measure: layout, KID and spectra against the data -> {ev}")
    _stage("[5/5] measure", not retrain and (ev / "summary.json").exists(), str(ev), timed("measure_s", lambda: (
        evaluate([model_file], data, ev, n_splits=100 if quick else 500, device=device or "cpu",
                 overwrite=True, progress=progress))))
    summary = json.loads((ev / "summary.json").read_text())
    layout = summary["layout"][next(iter(summary["layout"]))]
    lines = _summary_lines(out, raw, data, run, samples, ev, subjects, size, step, layout, summary, timings)
    with writing("demo"):
        write_text(out / SUMMARY_NAME, "\n".join(lines) + "\n", overwrite=True)
    _say("")
    _say("\n".join(lines[2:]))
    return {"raw": raw, "data": data, "run": run, "samples": samples, "eval": ev, "model": model_file,
            "steps": step, "layout": layout, "timings": timings}


def _summary_lines(out: Path, raw: Path, data: Path, run: Path, samples: Path, ev: Path, subjects: int, size: int,
                   step: int, layout: dict[str, dict[str, float]], summary: dict[str, Any],
                   timings: dict[str, float]) -> list[str]:
    """SUMMARY.md: where everything is and what was measured, with the demo's layout bar."""
    rows = [f"| {m} | {s['mean_corr']:.2f} | {s['real_split_half']:.2f} | {s['ratio']:.2f} | "
            f"{'yes' if s['ratio'] >= LAYOUT_TARGET else 'no'} |" for m, s in layout.items()]
    kid = {k: v["mean"] for k, v in summary["whole"].items()}
    lines = [
        "# gantlitz demo",
        "",
        f"- synthetic scans: `{raw}` ({subjects} subjects, {size}x{size})",
        f"- prepared dataset: `{data}`",
        f"- training run: `{run}` (preset tiny, {step} steps)",
        f"- generated maps: `{samples}/seedNNNN/{{albedo,specular,displacement,normal}}.png` (16-bit)",
        f"- measures: `{ev}` (layout.png, kid_whole.png, kid_patch.png, spectra.png)",
        "",
        f"Layout (correlation of the generated mean maps with the data's, per {layout['albedo']['cell_pixels']}-pixel "
        f"cell inside the mask; reference: two halves of the data; bar: {LAYOUT_TARGET:g} x reference):",
        "",
        "| modality | generated | data halves | ratio | meets the bar |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Whole-albedo KID (mean over splits): " + ", ".join(f"{k} {v:.4f}" for k, v in kid.items()),
        "",
        "Look at:",
        f"- `{samples / 'contact.png'}`: all generated seeds, every map",
        f"- `{ev / 'layout.png'}`: the data's mean maps, the generated mean maps, their difference",
        f"- `tensorboard --logdir {run / 'logs'}`: losses, augmentation p, r_t, speed, previews",
        "",
        "Next:",
        f"- `gantlitz generate {run} --seeds 0-15 --out {out / 'more'}`",
        f"- `gantlitz train --data {data} --out {run} --resume --steps {step + 2000}`",
        f"- `gantlitz render {samples / 'seed0000'} --out {out / 'render.png'}` (needs EGL)",
        "",
        "Timings (s): " + (", ".join(f"{k[:-2]} {v:.0f}" for k, v in timings.items()) or "all stages reused"),
    ]
    return lines
