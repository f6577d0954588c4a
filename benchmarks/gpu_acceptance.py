"""GPU acceptance: the whole GPU check of issue 12 as one command, one markdown + JSON report.

    python benchmarks/gpu_acceptance.py --out acceptance            # one H100/H200: ≤ 8 minutes
    python benchmarks/gpu_acceptance.py --quick --device cpu        # CPU smoke run (the test suite runs it)

Sections, each timed and recorded as ok / failed (with the error) / skipped, so one failure never loses
the others:

1. `pytest -m gpu` (the CUDA tests: sync-free steps, CUDA vs CPU, CUDA training);
2. training steps (`bench_train.bench`, the real `Trainer.step` on random batches): `gantlitz-l` at batch 4
   in tf32 (also with the G step in two chunks, `train.g_chunks=2`), bf16 and bf16 + `torch.compile`,
   `gantlitz-s` at batch 3 in tf32 and bf16 — ms/step, modality-patches/s, peak GB; targets: L ≥ 26
   modality-patches/s and ≤ 16 GB;
3. generator forward patch-evals/s (`bench_networks.measure`), `gantlitz-l` at batch 8;
4. one full 6144×4096 three-modality texture (`bench_generate`, synthesis only): seconds (target ≤ 0.5),
   peak GB;
5. learning check: synthetic data (24 subjects, 256²) → `tiny` trained for `--learn-minutes` → patch KID
   (local features, albedo patches at training locations) and the layout measure
   (`gantlitz.metrics.layout`), each against the untrained model (same seed, step 0).

`--quick` shrinks every section to seconds (tiny presets, a few steps, no compile) so that the script is
exercised on every CI run. The report also lists which heavy optional modules (OpenImageIO, moderngl,
trimesh) were imported: none of them should be needed here.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import describe, short_name

HEAVY_MODULES = ("OpenImageIO", "moderngl", "trimesh")
TARGETS = {"l_modality_patches_per_s": 26.0, "l_peak_gb": 16.0, "texture_s": 0.5}
ROOT = Path(__file__).resolve().parent.parent


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _run_section(report: dict[str, Any], name: str, fn: Callable[[], Any], device: torch.device) -> None:
    """Run one section, recording its result or its error; never raises."""
    t0 = time.perf_counter()
    try:
        result = fn()
        entry = {"status": "ok", "result": result}
    except Exception as exc:  # noqa: BLE001 - a report must survive any one section's failure
        entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                 "traceback": traceback.format_exc(limit=8)}
    entry["seconds"] = round(time.perf_counter() - t0, 2)
    report["sections"][name] = entry
    print(f"[{name}] {entry['status']} in {entry['seconds']} s", flush=True)
    _free(device)


# --------------------------------------------------------------------------------------------- sections


def gpu_tests(timeout: float) -> dict[str, Any]:
    """`pytest -m gpu` in a subprocess over the test files that hold GPU tests (collecting the others would
    import what rendering and export need): the counts and the tail of its output."""
    files = sorted(str(f.relative_to(ROOT)) for f in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in f.read_text())
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    if proc.returncode not in (0, 5):  # 5: nothing collected (no GPU tests selected)
        raise RuntimeError(f"pytest -m gpu exited with {proc.returncode}: " + " | ".join(tail[-5:]))
    return {"returncode": proc.returncode, "summary": tail[-1] if tail else "", "tail": tail}


def training_rows(device: torch.device, quick: bool, compile_: bool) -> list[dict[str, Any]]:
    from bench_train import bench

    if quick:  # tiny stands in for L and S; S's modality dropout is exercised through an override
        plan = [("tiny", 4, "fp32", False, []), ("tiny", 4, "bf16", False, []),
                ("tiny", 4, "fp32", False, ["train.augment.modality_dropout=true"])]
        steps, warmup = 4, 1
    else:
        plan = [("gantlitz-l", 4, "tf32", False, []), ("gantlitz-l", 4, "tf32", False, ["train.g_chunks=2"]),
                ("gantlitz-l", 4, "bf16", False, [])]
        if compile_:
            plan.append(("gantlitz-l", 4, "bf16", True, []))
        plan += [("gantlitz-s", 3, "tf32", False, []), ("gantlitz-s", 3, "bf16", False, [])]
        steps, warmup = 16, 3
    rows = []
    for preset, batch, precision, comp, sets in plan:
        row = {"preset": preset, "batch": batch, "precision": precision, "compile": comp, "sets": sets}
        try:
            row.update(bench(preset, batch, precision, device, steps, warmup, comp, sets))
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory in one configuration
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        print(f"  train {preset} b{batch} {precision}{' compile' if comp else ''}: "
              f"{row.get('modality_patches_per_s', float('nan')):.2f} modality-patches/s, "
              f"{row.get('peak_gb', float('nan')):.2f} GB {row.get('error', '')}", flush=True)
        _free(device)
    failed = [r for r in rows if "error" in r]
    if failed:
        raise RuntimeError(f"{len(failed)} training configuration(s) failed: {failed[0]['error']}")
    return rows


def generator_forward(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    from bench_networks import measure

    preset, batch, iters = ("tiny", 8, 2) if quick else ("gantlitz-l", 8, 10)
    precisions = ["fp32"] if device.type == "cpu" else ["tf32", "bf16"]
    return [{"preset": preset, **measure(preset, batch, str(device), p, iters, 1)} for p in precisions]


def full_texture(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    from bench_generate import make_model, time_synthesis

    preset = "tiny" if quick else "gantlitz-l"
    precisions = ["fp32"] if device.type == "cpu" else ["tf32", "bf16"]
    rows = []
    for precision in precisions:
        model = make_model(preset, device, precision, None, False)
        h, w = model.canvas
        rows.append({"preset": preset, "precision": model.precision, "canvas": [h, w],
                     **time_synthesis(model, (0, 0, h, w), 1 if quick else 3)})
        del model
        _free(device)
    return rows


def _generator(preset, tensors: dict[str, torch.Tensor] | None, mask: torch.Tensor, device: torch.device):
    from gantlitz import checkpoint, networks

    G, _ = networks.build(preset, seed=preset.train.seed, mask=mask)  # the Trainer's step-0 weights
    if tensors is not None:
        G.load_state_dict(checkpoint.subset(tensors, "G_ema"))
    return G.to(device).eval().requires_grad_(False)


def _textures(G, count: int, device: torch.device) -> np.ndarray:
    """(count, H, W, 5) in [0, 1]: whole generated canvases, seeds 0..count-1, no truncation."""
    from gantlitz.config import MODALITIES
    from gantlitz.generate import synthesize_texture

    out = []
    with torch.no_grad():
        for seed in range(count):
            z = torch.randn(1, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
            ws = G.mapping(z)
            maps = [synthesize_texture(G, ws, m, seed) for m in MODALITIES]
            out.append(((torch.cat(maps, 1)[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0).float().cpu().numpy())
    return np.stack(out)


def _by_modality(stack: np.ndarray) -> dict[str, np.ndarray]:
    return {"albedo": stack[..., 0:3], "specular": stack[..., 3:4], "displacement": stack[..., 4:5]}


def _patches(stack: np.ndarray, locations: list[tuple[int, int]], size: int) -> np.ndarray:
    """Albedo patches (N·L, size, size, 3) at every location of every texture."""
    return np.stack([t[y : y + size, x : x + size, 0:3] for t in stack for y, x in locations])


def learning_check(device: torch.device, quick: bool, minutes: float, work: Path) -> dict[str, Any]:
    from gantlitz import checkpoint
    from gantlitz.data.prepare import prepare
    from gantlitz.data.sampling import training_locations
    from gantlitz.data.store import PatchStore
    from gantlitz.data.synth import synthesize_dataset
    from gantlitz.metrics.features import build_extractor, extract_features
    from gantlitz.metrics.kid import kid_splits, summarize
    from gantlitz.metrics.layout import layout_scores
    from gantlitz.presets import resolve as resolve_preset
    from gantlitz.train.loop import train

    subjects, size, fakes = (4, 128, 4) if quick else (24, 256, 24)
    raw = synthesize_dataset(work / "raw", subjects, (size, size), seed=0, progress=False)
    ds = prepare(raw, work / "ds", progress=False)
    store = PatchStore(ds)
    t0 = time.perf_counter()
    result = train(ds, work / "run", "tiny", steps=4 if quick else 1_000_000, max_minutes=None if quick else minutes,
                   device=str(device), progress=False, tensorboard=False, previews=False, handle_signals=False)
    train_s = time.perf_counter() - t0
    preset = resolve_preset("tiny", canvas=store.canvas)
    mask_np = np.asarray(store.mask, dtype=bool)
    mask = torch.from_numpy(mask_np.astype(np.uint8))
    tensors, _ = checkpoint.load(result.model)
    p = preset.model.patch_size
    locs = training_locations(store.mask, p)
    picks = [locs[i] for i in np.random.default_rng(0).choice(len(locs), size=min(8, len(locs)), replace=False)]
    real = np.stack([(store.read_patch(i, 0, 0, size).transpose(1, 2, 0) + 1) / 2 for i in range(len(store.subjects))])
    extractor = build_extractor("local", device=device)
    feats_real = extract_features(extractor, _patches(real, picks, p), device=device)
    splits = 50 if quick else 500
    out: dict[str, Any] = {"steps": result.step, "train_s": round(train_s, 1), "minutes": None if quick else minutes,
                           "subjects": subjects, "canvas": size,
                           "patch_kid_real_vs_real": summarize(kid_splits(feats_real, None, splits))}
    for label, weights in (("untrained", None), ("trained", tensors)):
        stack = _textures(_generator(preset, weights, mask, device), fakes, device)
        feats = extract_features(extractor, _patches(stack, picks, p), device=device)
        out[f"patch_kid_{label}"] = summarize(kid_splits(feats_real, feats, splits))
        out[f"layout_{label}"] = layout_scores(_by_modality(real), _by_modality(stack), mask_np)
    return out


# --------------------------------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: tables per section, targets marked pass/FAIL (full runs on CUDA only)."""
    sec = report["sections"]
    judged = report["device"].startswith("cuda") and not report["quick"]
    lines = [f"# GPU acceptance report — {report['date']}", "", f"- machine: {report['machine']}",
             f"- command: `{report['command']}`", f"- total: {report['seconds']} s",
             f"- heavy optional modules imported: {', '.join(report['heavy_modules_imported']) or 'none'}", ""]
    for name, entry in sec.items():
        lines.append(f"## {name} — {entry['status']} ({entry['seconds']} s)")
        if entry["status"] != "ok":
            lines += ["", "```", entry.get("error", ""), "```", ""]
            continue
        res = entry["result"]
        if name == "gpu tests":
            lines += ["", f"`{res['summary']}`", ""]
        elif name == "training":
            lines += ["", "| preset | batch | precision | compile | ms/step | modality-patches/s | samples/s | peak GB |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in res:
                label = r["preset"] + "".join(f" `{s}`" for s in r["sets"])
                lines.append(f"| {label} | {r['batch']} | {r['precision']} | {'yes' if r['compile'] else 'no'} | "
                             f"{_fmt(r.get('ms_per_step'), 0)} | {_fmt(r.get('modality_patches_per_s'))} | "
                             f"{_fmt(r.get('samples_per_s'))} | {_fmt(r.get('peak_gb'))} |")
            if judged:
                for r in (r for r in res if r["preset"] == "gantlitz-l"):
                    ok = (r["modality_patches_per_s"] >= TARGETS["l_modality_patches_per_s"]
                          and r["peak_gb"] <= TARGETS["l_peak_gb"])
                    lines.append(f"\nL {r['precision']}{' + compile' if r['compile'] else ''}{''.join(' ' + x for x in r['sets'])}: "
                                 f"≥ 26 modality-patches/s and ≤ 16 GB: {_verdict(ok)}")
            lines.append("")
        elif name == "generator forward":
            lines += ["", "| preset | precision | batch | ms/forward | patch-evals/s | peak GB |", "|---|---|---|---|---|---|"]
            lines += [f"| {r['preset']} | {r['precision']} | {r['batch']} | {_fmt(r['ms_per_forward'], 1)} | "
                      f"{_fmt(r['patch_evals_per_s'], 1)} | {_fmt(r['peak_mem_gb'])} |" for r in res]
            lines.append("")
        elif name == "full texture":
            lines += ["", "| preset | precision | canvas | patch evals | synthesis s | patch-evals/s | peak GB |",
                      "|---|---|---|---|---|---|---|"]
            for r in res:
                lines.append(f"| {r['preset']} | {r['precision']} | {r['canvas'][1]}×{r['canvas'][0]} | {r['evals']} | "
                             f"{_fmt(r['seconds'], 3)} | {_fmt(r['evals_per_s'], 1)} | {_fmt(r['peak_gb'])} |")
                if judged:
                    lines.append(f"\n{r['precision']}: ≤ 0.5 s per texture: {_verdict(r['seconds'] <= TARGETS['texture_s'])}")
            lines.append("")
        elif name == "learning check":
            lines += ["", (f"{res['steps']} steps of `tiny` in {res['train_s']} s on {res['subjects']} synthetic "
                           f"subjects at {res['canvas']}². Patch KID (albedo, local features), mean ± std over splits:"), "",
                      "| set | patch KID | " + " | ".join(f"layout {m} (mean_corr / real split-half)" for m in
                                                         ("albedo", "specular", "displacement")) + " |",
                      "|---|---|---|---|---|"]
            rr = res["patch_kid_real_vs_real"]
            lines.append(f"| real vs real | {_fmt(rr['mean'], 4)} ± {_fmt(rr['std'], 4)} | | | |")
            for label in ("untrained", "trained"):
                k, lay = res[f"patch_kid_{label}"], res[f"layout_{label}"]
                cells = " | ".join(f"{_fmt(lay[m]['mean_corr'], 3)} / {_fmt(lay[m]['real_split_half'], 3)}"
                                   if m in lay else "–" for m in ("albedo", "specular", "displacement"))
                lines.append(f"| {label} | {_fmt(k['mean'], 4)} ± {_fmt(k['std'], 4)} | {cells} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="acceptance", help="Folder for report.md and report.json.")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu.")
    ap.add_argument("--quick", action="store_true", help="Seconds-long smoke run of every section.")
    ap.add_argument("--learn-minutes", type=float, default=3.0,
                    help="Training time of the learning check (shortened to end within --budget-minutes).")
    ap.add_argument("--budget-minutes", type=float, default=8.0,
                    help="Whole-run budget: the learning check trains at most until 1 minute before it ends.")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["gpu-tests", "training", "compile", "forward", "texture", "learning"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "device": str(device),
        "machine": describe(device), "machine_short": short_name(device), "quick": args.quick,
        "command": shlex.join(["python", "benchmarks/gpu_acceptance.py", *(argv if argv is not None else sys.argv[1:])]),
        "targets": TARGETS, "sections": {},
    }
    plan: list[tuple[str, str, Callable[[], Any]]] = [
        ("gpu-tests", "gpu tests", lambda: gpu_tests(timeout=300)),
        ("training", "training", lambda: training_rows(device, args.quick, not args.quick and "compile" not in args.skip)),
        ("forward", "generator forward", lambda: generator_forward(device, args.quick)),
        ("texture", "full texture", lambda: full_texture(device, args.quick)),
    ]
    with tempfile.TemporaryDirectory(prefix="gantlitz-acceptance-") as tmp:
        def learn() -> dict[str, Any]:  # whatever the earlier sections took, stay within the budget
            left = args.budget_minutes - (time.perf_counter() - t0) / 60 - 1.0
            return learning_check(device, args.quick, max(0.5, min(args.learn_minutes, left)), Path(tmp))

        plan.append(("learning", "learning check", learn))
        for key, name, fn in plan:
            if key in args.skip:
                report["sections"][name] = {"status": "skipped", "seconds": 0.0, "error": "--skip"}
                continue
            _run_section(report, name, fn, device)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["heavy_modules_imported"] = sorted(m for m in HEAVY_MODULES if m in sys.modules)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(f"report: {out / 'report.md'} ({report['seconds']} s)")
    return report


if __name__ == "__main__":
    sections = main()["sections"].values()
    sys.exit(0 if all(entry["status"] != "failed" for entry in sections) else 1)
