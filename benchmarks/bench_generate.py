"""Full-canvas generation speed per precision: GPU time per texture, patch evaluations/s, end to end with files.

    python benchmarks/bench_generate.py --preset gantlitz-l --device cuda            # the issue's target
    python benchmarks/bench_generate.py --preset tiny --device cpu
    python benchmarks/bench_generate.py --preset gantlitz-l --device cpu --rows 1 --no-write   # one patch row

A "patch evaluation" is one modality of one patch (a full 6144x4096 GANtlitz-L texture with albedo,
specular and displacement is 96 x 3 = 288). Random weights (speed does not depend on training).

- synthesis: the tiled forward passes only (outputs stay on the device, one tile alive at a time), timed
  with CUDA events on a GPU (wall clock on a CPU): "GPU s/texture" and patch-evals/s.
- sample: `TextureModel.sample` with all maps (synthesis + copies to the host + normals).
- end to end: `TextureModel.write` (sample + EXR files + contact sheet), wall clock.
Prints the machine, one markdown row per precision and the command, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from machine import describe, short_name

from gantlitz import presets
from gantlitz.config import to_dict
from gantlitz.device import precision_context
from gantlitz.generate import TextureModel, iter_tiles, tile_layout
from gantlitz.networks import build
from gantlitz.outputs.mapfiles import OUTPUT_MAPS


def make_model(preset_name: str, device: torch.device, precision: str, ppp: int | None, compile_: bool) -> TextureModel:
    preset = presets.get(preset_name)
    cfg = preset.model
    h, w = cfg.canvas_height, cfg.canvas_width
    yy, xx = np.mgrid[:h, :w]
    mask = torch.from_numpy((((yy - h / 2) / (0.45 * h)) ** 2 + ((xx - w / 2) / (0.45 * w)) ** 2 < 1).astype(np.uint8))
    G, _ = build(preset, seed=0, mask=mask)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the zero-initialised parameters get values too, as a trained model has
        for p in G.parameters():
            if not p.abs().max() > 0:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    meta = {"preset": to_dict(preset),
            "dataset": {"canvas": [h, w], "displacement_scale": w / 256, "normal_convention": "opengl"}}
    return TextureModel(G, meta, device=device, precision=precision, compile=compile_, patches_per_pass=ppp)


def time_synthesis(model: TextureModel, region: tuple[int, int, int, int], repeats: int) -> dict[str, float]:
    """Tiled synthesis of all three modalities, outputs left on the device."""
    dev = model.device
    cuda = dev.type == "cuda"
    ws = model.ws_for_seed(0)
    mods = ("albedo", "specular", "displacement")

    def once() -> None:
        with torch.inference_mode(), precision_context(dev, model.precision):
            for _tile, out in iter_tiles(model.G, ws, mods, 0, region=region,
                                         patches_per_pass=model.patches_per_pass, call=model._call):
                del out

    if cuda or model._call is not model.G:
        once()  # warm-up (cuDNN algorithm choice, compilation); a CPU needs none
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            once()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
    tiles = tile_layout(region, model.patch_size, model.patches_per_pass)
    evals = sum(t.patches for t in tiles) * len(mods)
    sec = statistics.median(times)
    return {
        "seconds": sec,
        "evals": evals,
        "evals_per_s": evals / sec,
        "passes": len(tiles),
        "peak_gb": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="default: gantlitz-l on CUDA, tiny on CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default=None, help="default: fp32,tf32,bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--patches-per-pass", type=int, default=None, help="default: one row of patches")
    parser.add_argument("--rows", type=int, default=None, help="synthesise only the first N patch rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="skip the end-to-end (files) measurement")
    parser.add_argument("--format", default="exr", choices=["exr", "png16", "tiff"])
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    preset = args.preset or ("gantlitz-l" if cuda else "tiny")
    precisions = (args.precisions or ("fp32,tf32,bf16" if cuda else "fp32")).split(",")
    command = shlex.join(["python", *sys.argv])
    print(f"machine: {describe(device)}")
    rows = []
    for precision in precisions:
        model = make_model(preset, device, precision, args.patches_per_pass, args.compile)
        h, w = model.canvas
        region = (0, 0, h if args.rows is None else min(h, args.rows * model.patch_size), w)
        syn = time_synthesis(model, region, args.repeats)
        full = region[2] == h
        sample_s = e2e_s = float("nan")
        if full and not args.no_write:
            t0 = time.perf_counter()
            model.sample(0, OUTPUT_MAPS)
            sample_s = time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = model.write(0, tmp, args.format)
                e2e_s = time.perf_counter() - t0
            tm = res["timings"]
            print(f"{precision}: write breakdown: synthesis+copies {tm['synthesis_s']:.2f}s, "
                  f"normals/clip {tm['postprocess_s']:.2f}s, files {tm['write_s']:.2f}s, "
                  f"contact {tm['contact_s']:.2f}s")
        rows.append((precision, region, syn, sample_s, e2e_s, model.precision))
        print(f"{precision}: {syn['evals']} patch evaluations in {syn['passes']} passes: {syn['seconds']:.3f} s "
              f"({syn['evals_per_s']:.1f} evals/s), peak {syn['peak_gb']:.2f} GiB", flush=True)
        del model
        if cuda:
            torch.cuda.empty_cache()
    today = datetime.date.today().isoformat()
    print()
    print("| date | machine | preset | region | precision | patch evals | synthesis s (GPU) | patch-evals/s "
          "| peak GiB | sample s | end-to-end s (+" + args.format.upper() + ") | command |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for precision, region, syn, sample_s, e2e_s, used in rows:
        label = f"{region[3]}x{region[2]}"
        print(f"| {today} | {short_name(device)} | {preset} | {label} | {used} | {syn['evals']} | "
              f"{syn['seconds']:.3f} | {syn['evals_per_s']:.1f} | {syn['peak_gb']:.2f} | {sample_s:.2f} | {e2e_s:.2f} "
              f"| `{command}` |")


if __name__ == "__main__":
    main()
