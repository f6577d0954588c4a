"""CLI commands: `generate` (full-canvas maps per seed), `interpolate` and `vary-noise` (paper §5.1)."""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)


def _model_options(func):
    """Options shared by the three commands (device, precision, tiling)."""
    func = click.option("--compile", "compile_", is_flag=True, help="torch.compile the generator.")(func)
    func = click.option("--patches-per-pass", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Patches per forward pass (default: one row of patches).")(func)
    func = click.option("--precision", type=click.Choice(["auto", "fp32", "tf32", "bf16"]), default="auto",
                        show_default=True,
                        help="auto = tf32 on CUDA, fp32 on CPU; fp32 forces full float32.")(func)
    func = click.option("--device", default="auto", show_default=True,
                        help="cpu, cuda, cuda:1, ... (auto: CUDA when available).")(func)
    func = click.option("--truncation", "-t", type=float, default=1.0, show_default=True,
                        help="Truncation psi (1 = none).")(func)
    func = click.option("--overwrite", is_flag=True, help="Replace existing output files.")(func)
    return func


def _load(checkpoint: str, device: str, precision: str, compile_: bool, patches_per_pass: int | None):
    from ..checkpoint import CheckpointError
    from ..generate import load

    try:
        return load(checkpoint, device=device, precision=precision, compile=compile_,
                    patches_per_pass=patches_per_pass)
    except CheckpointError as exc:
        raise click.ClickException(f"cannot load the checkpoint: {exc}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _seeds(text: str, param: str) -> list[int]:
    from ..generate import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    from ..generate import existing

    if overwrite:
        return
    found = existing(paths)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise click.ClickException(f"{found[0]} exists{more}; nothing was written (pass --overwrite to replace)")


def _save_image(image: Any, path: Path, overwrite: bool) -> None:
    from ..generate import _save_png

    _save_png(image, path, overwrite)


def _write_gif(frames: list[Any], path: Path, fps: float, overwrite: bool) -> None:
    """Ping-pong GIF of PIL frames (Pillow), written atomically."""
    import os
    import tempfile

    if path.exists() and not overwrite:
        raise click.ClickException(f"{path} exists (pass --overwrite to replace it)")
    seq = frames + frames[-2:0:-1]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        seq[0].save(tmp, format="GIF", save_all=True, append_images=seq[1:], duration=int(1000 / fps), loop=0)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_mp4(frames: list[Any], path: Path, fps: float) -> bool:
    """MP4 (H.264) through imageio-ffmpeg when it is installed; returns whether a file was written."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return False
    import numpy as np
    import imageio_ffmpeg  # type: ignore[import-not-found]

    seq = frames + frames[-2:0:-1]
    w, h = seq[0].size
    w2, h2 = w + (w % 2), h + (h % 2)  # yuv420p needs even sizes
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = imageio_ffmpeg.write_frames(str(tmp), (w2, h2), fps=fps, macro_block_size=1)
    writer.send(None)
    try:
        for frame in seq:
            arr = np.zeros((h2, w2, 3), np.uint8)
            arr[:h, :w] = np.asarray(frame.convert("RGB"))
            writer.send(np.ascontiguousarray(arr))
    finally:
        writer.close()
    tmp.replace(path)
    return True


def register(group: click.Group) -> None:
    """Add `generate`, `interpolate` and `vary-noise` to the top-level group."""

    @group.command("generate")
    @click.argument("checkpoint", type=click.Path(path_type=Path))
    @click.option("--seeds", "-s", default="0", show_default=True, help="Seeds: 0-7, 1,5,9 or mixed (0-3,8).")
    @click.option("--out", "-o", "out", type=click.Path(path_type=Path), required=True, help="Output directory.")
    @click.option("--format", "fmt", type=click.Choice(["exr", "png16", "tiff"]), default="exr", show_default=True,
                  help="exr: half float (displacement float32); png16: 16-bit PNG; tiff: 16-bit "
                       "(displacement float32).")
    @click.option("--noise-seed", type=int, default=None, help="Noise seed for every sample (default: the seed).")
    @click.option("--extrapolate", is_flag=True,
                  help="Fill the untrained region outside the mask (paper §5.4: low frequencies blurred).")
    @click.option("--no-progress", is_flag=True, help="No progress bars.")
    @_model_options
    def generate(checkpoint: Path, seeds: str, out: Path, fmt: str, noise_seed: int | None, extrapolate: bool,
                 no_progress: bool, overwrite: bool, truncation: float, device: str, precision: str,
                 patches_per_pass: int | None, compile_: bool) -> None:
        """Full-canvas albedo, specular, displacement and normal maps for each seed of CHECKPOINT.

        CHECKPOINT is a .safetensors checkpoint/model file or a run directory (latest checkpoint).
        Writes OUT/seedNNNN/{albedo,specular,displacement,normal}.<ext>, OUT/seedNNNN/contact.png,
        OUT/contact.png (all seeds) and OUT/generate.json.
        """
        from ..generate import output_paths, run_info, seeds_sheet, write_json

        seed_list = _seeds(seeds, "--seeds")
        targets: list[Path] = []
        for s in seed_list:
            targets.extend(output_paths(out, s, fmt).values())
        targets += [out / "contact.png", out / "generate.json"]
        _refuse_existing(targets, overwrite)
        model = _load(str(checkpoint), device, precision, compile_, patches_per_pass)
        click.echo(
            f"{model.name}: canvas {model.canvas[1]}x{model.canvas[0]}, patch {model.patch_size}, "
            f"device {model.device}, precision {model.precision}; {len(seed_list)} seed(s) -> {out}"
        )
        rows, records = [], []
        t0 = time.perf_counter()
        for s in seed_list:
            try:
                res = model.write(s, out, fmt, truncation=truncation, noise_seed=noise_seed, extrapolate=extrapolate,
                                  overwrite=overwrite, progress=not no_progress)
            except (FileExistsError, ValueError) as exc:
                raise click.ClickException(str(exc)) from None
            tm = res["timings"]
            click.echo(f"seed {s}: synthesis {tm['synthesis_s']:.2f}s"
                       + (f" (GPU {tm['gpu_s']:.3f}s)" if "gpu_s" in tm else "")
                       + f", files {tm['write_s']:.2f}s, total {tm['total_s']:.2f}s")
            rows.append((f"seed {s}", res["thumbnails"]))
            records.append({"seed": s, "files": res["paths"], "timings": tm})
        title = f"{model.name}  psi={truncation:g}  {checkpoint}"
        _save_image(seeds_sheet(rows, title=title), out / "contact.png", overwrite)
        write_json(out / "generate.json", run_info({
            "checkpoint": model.path, "preset": model.name, "step": model.meta.get("step"),
            "seeds": seed_list, "truncation": truncation, "noise_seed": noise_seed, "format": fmt,
            "extrapolate": extrapolate, "device": str(model.device), "precision": model.precision,
            "patches_per_pass": patches_per_pass, "canvas": list(model.canvas),
            "displacement_scale": model.displacement_scale, "normal_convention": model.normal_convention,
            "samples": records, "total_s": time.perf_counter() - t0,
        }), overwrite)
        click.echo(f"wrote {len(seed_list)} sample(s) to {out} (contact sheet: {out / 'contact.png'})")

    @group.command("interpolate")
    @click.argument("checkpoint", type=click.Path(path_type=Path))
    @click.option("--seeds", "-s", required=True, help="Two seeds A,B.")
    @click.option("--steps", "-n", type=click.IntRange(min=2), default=8, show_default=True, help="Frames.")
    @click.option("--out", "-o", "out", type=click.Path(path_type=Path), required=True, help="Output directory.")
    @click.option("--method", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True,
                  help="Interpolation in W.")
    @click.option("--modality", type=click.Choice(["albedo", "specular", "displacement", "normal"]),
                  default="albedo", show_default=True, help="Map shown in the frames.")
    @click.option("--noise-seed", type=int, default=None, help="Fixed noise seed (default: seed A).")
    @click.option("--size", type=click.IntRange(min=16), default=512, show_default=True,
                  help="Long side of the preview frames (pixels).")
    @click.option("--fps", type=float, default=8.0, show_default=True)
    @click.option("--save-frames", is_flag=True, help="Also write each frame as OUT/frames/frameNNNN.png.")
    @click.option("--no-progress", is_flag=True, help="No progress bars.")
    @_model_options
    def interpolate(checkpoint: Path, seeds: str, steps: int, out: Path, method: str, modality: str,
                    noise_seed: int | None, size: int, fps: float, save_frames: bool, no_progress: bool,
                    overwrite: bool, truncation: float, device: str, precision: str, patches_per_pass: int | None,
                    compile_: bool) -> None:
        """Latent interpolation between two seeds: contact sheet, GIF (and MP4 with imageio-ffmpeg)."""
        from PIL import Image

        from ..generate import _area_down, _to_rgb8, frames_sheet, run_info, write_json

        pair = _seeds(seeds, "--seeds")
        if len(pair) != 2:
            raise click.BadParameter("give exactly two distinct seeds, e.g. 3,17", param_hint="--seeds")
        has_mp4 = importlib.util.find_spec("imageio_ffmpeg") is not None
        targets = [out / "contact.png", out / "interpolate.gif", out / "interpolate.json"]
        if has_mp4:
            targets.append(out / "interpolate.mp4")
        if save_frames:
            targets += [out / "frames" / f"frame{i:04d}.png" for i in range(steps)]
        _refuse_existing(targets, overwrite)
        model = _load(str(checkpoint), device, precision, compile_, patches_per_pass)
        out.mkdir(parents=True, exist_ok=True)
        if save_frames:
            (out / "frames").mkdir(exist_ok=True)
        t0 = time.perf_counter()
        cells, pil_frames, stretch = [], [], None
        for i, (t, maps) in enumerate(model.interpolate(pair[0], pair[1], steps, method=method, truncation=truncation,
                                                         modalities=(modality,), noise_seed=noise_seed,
                                                         progress=not no_progress)):
            arr = maps[modality]
            small = _area_down(arr, max(1, math.ceil(max(arr.shape[:2]) / size)))
            if modality == "displacement":
                from ..generate import _stretch_range

                stretch = stretch or _stretch_range(small)
            img = _to_rgb8(small, stretch if modality == "displacement" else None)
            cells.append((img, f"t={t:.2f}"))
            pil_frames.append(Image.fromarray(img))
            if save_frames:
                _save_image(pil_frames[-1], out / "frames" / f"frame{i:04d}.png", overwrite)
            click.echo(f"frame {i + 1}/{steps} (t={t:.2f})")
        title = f"{model.name}  {modality}: seed {pair[0]} -> {pair[1]}  ({method} in W, psi={truncation:g})"
        _save_image(frames_sheet(cells, title=title), out / "contact.png", overwrite)
        _write_gif(pil_frames, out / "interpolate.gif", fps, overwrite)
        mp4 = _write_mp4(pil_frames, out / "interpolate.mp4", fps) if has_mp4 else False
        write_json(out / "interpolate.json", run_info({
            "checkpoint": model.path, "preset": model.name, "seeds": pair, "steps": steps, "method": method,
            "modality": modality, "truncation": truncation, "noise_seed": pair[0] if noise_seed is None else noise_seed,
            "video": "interpolate.mp4" if mp4 else None, "total_s": time.perf_counter() - t0,
        }), overwrite)
        click.echo(f"wrote {out / 'contact.png'}, {out / 'interpolate.gif'}" + (", interpolate.mp4" if mp4 else
                   " (install imageio-ffmpeg for an MP4)"))

    @group.command("vary-noise")
    @click.argument("checkpoint", type=click.Path(path_type=Path))
    @click.option("--seed", "-s", type=click.IntRange(min=0), default=0, show_default=True, help="Latent seed.")
    @click.option("--count", "-n", type=click.IntRange(min=1), default=4, show_default=True,
                  help="Noise seeds 0..N-1 (plus --first-noise-seed).")
    @click.option("--first-noise-seed", type=click.IntRange(min=0), default=0, show_default=True)
    @click.option("--out", "-o", "out", type=click.Path(path_type=Path), required=True, help="Output directory.")
    @click.option("--crop", type=click.IntRange(min=16), default=256, show_default=True,
                  help="Side of the 1:1 crops (pixels).")
    @click.option("--save-maps", "fmt", type=click.Choice(["exr", "png16", "tiff"]), default=None,
                  help="Also write every variation's full maps (OUT/noiseNNNN/) in this format.")
    @click.option("--no-progress", is_flag=True, help="No progress bars.")
    @_model_options
    def vary_noise(checkpoint: Path, seed: int, count: int, first_noise_seed: int, out: Path, crop: int,
                   fmt: str | None, no_progress: bool, overwrite: bool, truncation: float, device: str,
                   precision: str, patches_per_pass: int | None, compile_: bool) -> None:
        """Fixed latent, new noise seeds (paper §5.1, Fig. 10): fine detail changes, the face stays."""
        from ..generate import FORMATS, OUTPUT_MAPS, run_info, vary_noise_sheet, write_json, write_map

        noise_seeds = list(range(first_noise_seed, first_noise_seed + count))
        targets = [out / "contact.png", out / "vary-noise.json"]
        per_noise: dict[int, dict[str, Path]] = {}
        if fmt:
            for k in noise_seeds:
                per_noise[k] = {n: out / f"noise{k:04d}" / f"{n}{FORMATS[fmt]}" for n in OUTPUT_MAPS}
            targets += [p for d in per_noise.values() for p in d.values()]
        _refuse_existing(targets, overwrite)
        model = _load(str(checkpoint), device, precision, compile_, patches_per_pass)
        t0 = time.perf_counter()
        mods = OUTPUT_MAPS if fmt else ("albedo", "displacement")
        results = []
        for k, maps in model.vary_noise(seed, count, truncation=truncation, modalities=mods,
                                        first_noise_seed=first_noise_seed, progress=not no_progress):
            if fmt:
                per_noise[k]["albedo"].parent.mkdir(parents=True, exist_ok=True)
                for n in OUTPUT_MAPS:
                    write_map(per_noise[k][n], maps[n], n, overwrite=overwrite)
            results.append((k, {"albedo": maps["albedo"], "displacement": maps["displacement"]}))
            click.echo(f"noise seed {k} done")
        title = f"{model.name}  seed {seed}, noise seeds {noise_seeds[0]}..{noise_seeds[-1]}  psi={truncation:g}"
        _save_image(vary_noise_sheet(results, model.mask, title=title, crop=crop), out / "contact.png", overwrite)
        write_json(out / "vary-noise.json", run_info({
            "checkpoint": model.path, "preset": model.name, "seed": seed, "noise_seeds": noise_seeds,
            "truncation": truncation, "format": fmt, "total_s": time.perf_counter() - t0,
        }), overwrite)
        click.echo(f"wrote {out / 'contact.png'}")
