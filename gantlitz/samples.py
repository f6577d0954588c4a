"""Sample folders: what `generate`, `interpolate` and `vary-noise` write (maps, contact sheets, GIF/MP4, JSON).

Each writer checks every file it will write before synthesising anything (nothing is replaced without
`overwrite`), then streams one texture at a time through a `TextureModel` and reports progress through
an optional `echo` callback, so the CLI only parses arguments.
"""

from __future__ import annotations

import errno
import importlib.util
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .config import SEEDS_MAX, check_seed, check_truncation
from .generate import TextureModel
from .outputs import GIF_FPS, atomic_path, refuse_existing, run_info, save_image, write_gif, write_json, writing
from .outputs.mapfiles import FORMATS, OUTPUT_MAPS, output_paths, write_map
from .sheets import frames_sheet, seeds_sheet, shrink, stretch_range, to_rgb8, vary_noise_sheet

__all__ = ["write_samples", "write_interpolation", "write_noise_variations", "write_mp4", "has_mp4"]

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default `echo`: say nothing."""


def _record(model: TextureModel, **fields: Any) -> dict[str, Any]:
    return run_info({"checkpoint": model.path, "preset": model.name, **fields})


def write_samples(
    model: TextureModel, seeds: Sequence[int], out: str | os.PathLike, fmt: str = "exr", *,
    truncation: float = 1.0, noise_seed: int | None = None, extrapolate: bool = False, overwrite: bool = False,
    progress: bool = False, title: str = "", echo: Echo = _quiet,
) -> dict[str, Any]:
    """`out/seedNNNN/{maps}, contact.png` per seed, `out/contact.png` (all seeds) and `out/generate.json`."""
    with writing("generate"):
        return _write_samples(model, seeds, Path(out), fmt, truncation=truncation, noise_seed=noise_seed,
                              extrapolate=extrapolate, overwrite=overwrite, progress=progress, title=title, echo=echo)


def _write_samples(model: TextureModel, seeds: Sequence[int], out: Path, fmt: str, *, truncation: float,
                   noise_seed: int | None, extrapolate: bool, overwrite: bool, progress: bool, title: str,
                   echo: Echo) -> dict[str, Any]:
    check_truncation(truncation)
    targets = [p for s in seeds for p in output_paths(out, s, fmt).values()]
    refuse_existing([*targets, out / "contact.png", out / "generate.json"], overwrite, inputs=model.inputs)
    rows, records = [], []
    t0 = time.perf_counter()
    for s in seeds:
        res = model.write(s, out, fmt, truncation=truncation, noise_seed=noise_seed, extrapolate=extrapolate,
                          overwrite=overwrite, progress=progress)
        tm = res["timings"]
        echo(f"seed {s}: synthesis {tm['synthesis_s']:.2f}s" + (f" (GPU {tm['gpu_s']:.3f}s)" if "gpu_s" in tm else "")
             + f", files {tm['write_s']:.2f}s, total {tm['total_s']:.2f}s")
        rows.append((f"seed {s}", res["thumbnails"]))
        records.append({"seed": s, "files": res["paths"], "timings": tm})
    save_image(seeds_sheet(rows, title=title), out / "contact.png", overwrite)
    record = _record(
        model, step=model.meta.get("step"), seeds=list(seeds), truncation=truncation, noise_seed=noise_seed,
        format=fmt, extrapolate=extrapolate, device=str(model.device), precision=model.precision,
        patches_per_pass=model.patches_per_pass, canvas=list(model.canvas),
        displacement_scale=model.displacement_scale, normal_convention=model.normal_convention,
        samples=records, total_s=time.perf_counter() - t0,
    )
    write_json(out / "generate.json", record, overwrite)
    return record


def preview_frame(arr: np.ndarray, size: int, stretch: tuple[float, float] | None = None) -> np.ndarray:
    """A map shrunk so its long side is at most about `size`, as uint8 RGB (displacement: `stretch` range)."""
    return to_rgb8(shrink(arr, max(1, math.ceil(max(arr.shape[:2]) / size))), stretch)


def has_mp4() -> bool:
    """Whether imageio-ffmpeg (the optional MP4 writer) is installed."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def write_mp4(frames: list[Any], path: str | os.PathLike, fps: float, overwrite: bool = False) -> Path:
    """Ping-pong MP4 (H.264) of PIL frames through imageio-ffmpeg, written atomically."""
    import imageio_ffmpeg  # type: ignore[import-not-found]

    seq = frames + frames[-2:0:-1]
    w, h = seq[0].size
    w2, h2 = w + (w % 2), h + (h % 2)  # yuv420p needs even sizes
    with atomic_path(path, overwrite=overwrite, verify=_nonempty) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w2, h2), fps=fps, macro_block_size=1)
        writer.send(None)
        try:
            for frame in seq:
                arr = np.zeros((h2, w2, 3), np.uint8)
                arr[:h, :w] = np.asarray(frame.convert("RGB"))
                writer.send(np.ascontiguousarray(arr))
        finally:
            writer.close()
    return Path(path)


def _nonempty(tmp: Path) -> None:
    """ffmpeg reports no size: at least its container header must be there."""
    if tmp.stat().st_size < 64:
        raise OSError(errno.EIO, "the encoder left an incomplete file", str(tmp))


def write_interpolation(
    model: TextureModel, pair: Sequence[int], steps: int, out: str | os.PathLike, *, method: str = "slerp",
    modality: str = "albedo", truncation: float = 1.0, noise_seed: int | None = None, size: int = 512,
    fps: float = 8.0, save_frames: bool = False, overwrite: bool = False, progress: bool = False,
    echo: Echo = _quiet,
) -> dict[str, Any]:
    """Frames from seed A to seed B: `out/contact.png`, `interpolate.gif` (+ `.mp4`), `interpolate.json`."""
    with writing("interpolate"):
        return _write_interpolation(model, pair, steps, Path(out), method=method, modality=modality,
                                    truncation=truncation, noise_seed=noise_seed, size=size, fps=fps,
                                    save_frames=save_frames, overwrite=overwrite, progress=progress, echo=echo)


def _write_interpolation(
    model: TextureModel, pair: Sequence[int], steps: int, out: Path, *, method: str, modality: str, truncation: float,
    noise_seed: int | None, size: int, fps: float, save_frames: bool, overwrite: bool, progress: bool, echo: Echo,
) -> dict[str, Any]:
    from PIL import Image

    if len(pair) != 2:
        raise UsageError("give exactly two distinct seeds, e.g. 3,17")
    if not GIF_FPS[0] <= fps <= GIF_FPS[1]:
        raise UsageError(f"--fps {fps:g}: a GIF holds {GIF_FPS[0]:g} .. {GIF_FPS[1]:g} frames per second")
    check_truncation(truncation)
    mp4 = has_mp4()
    frame_paths = [out / "frames" / f"frame{i:04d}.png" for i in range(steps)] if save_frames else []
    targets = [out / "contact.png", out / "interpolate.gif", out / "interpolate.json", *frame_paths]
    refuse_existing(targets + ([out / "interpolate.mp4"] if mp4 else []), overwrite, inputs=model.inputs)
    t0 = time.perf_counter()
    cells, frames, stretch = [], [], None
    for i, (t, maps) in enumerate(model.interpolate(pair[0], pair[1], steps, method=method, truncation=truncation,
                                                     modalities=(modality,), noise_seed=noise_seed,
                                                     progress=progress)):
        arr = maps[modality]
        if modality == "displacement":  # one range for every frame, from the first
            stretch = stretch or stretch_range(shrink(arr, max(1, math.ceil(max(arr.shape[:2]) / size))))
        img = preview_frame(arr, size, stretch)
        cells.append((img, f"t={t:.2f}"))
        frames.append(Image.fromarray(img))
        if save_frames:
            save_image(frames[-1], frame_paths[i], overwrite)
        echo(f"frame {i + 1}/{steps} (t={t:.2f})")
    title = f"{model.name}  {modality}: seed {pair[0]} -> {pair[1]}  ({method} in W, psi={truncation:g})"
    save_image(frames_sheet(cells, title=title), out / "contact.png", overwrite)
    write_gif(frames, out / "interpolate.gif", fps, overwrite)
    if mp4:
        write_mp4(frames, out / "interpolate.mp4", fps, overwrite)
    record = _record(model, seeds=list(pair), steps=steps, method=method, modality=modality, truncation=truncation,
                     noise_seed=pair[0] if noise_seed is None else noise_seed,
                     video="interpolate.mp4" if mp4 else None, total_s=time.perf_counter() - t0)
    write_json(out / "interpolate.json", record, overwrite)
    return record


def write_noise_variations(
    model: TextureModel, seed: int, count: int, out: str | os.PathLike, *, first_noise_seed: int = 0,
    crop: int | None = None, fmt: str | None = None, truncation: float = 1.0, overwrite: bool = False,
    progress: bool = False, echo: Echo = _quiet,
) -> dict[str, Any]:
    """Fixed latent, new noise seeds (paper §5.1, Fig. 10): `out/contact.png`, `vary-noise.json`, and with
    `fmt` every variation's maps in `out/noiseNNNN/`. `crop` (default 256, less on a small canvas) is the
    side of the 1:1 crops; a given `crop` larger than the canvas is an error."""
    with writing("vary-noise"):
        return _write_noise_variations(model, seed, count, Path(out), first_noise_seed=first_noise_seed, crop=crop,
                                       fmt=fmt, truncation=truncation, overwrite=overwrite, progress=progress,
                                       echo=echo)


def _write_noise_variations(
    model: TextureModel, seed: int, count: int, out: Path, *, first_noise_seed: int, crop: int | None,
    fmt: str | None, truncation: float, overwrite: bool, progress: bool, echo: Echo,
) -> dict[str, Any]:
    check_seed(seed)
    if not 1 <= count <= SEEDS_MAX:
        raise UsageError(f"--count {count}: between 1 and {SEEDS_MAX} noise seeds")
    check_seed(first_noise_seed + count - 1, "last noise seed")
    check_truncation(truncation)
    if crop is not None and crop > min(model.canvas):
        raise UsageError(f"--crop {crop} is larger than the canvas {model.canvas[1]}x{model.canvas[0]}; "
                         f"use at most {min(model.canvas)}")
    noise_seeds = list(range(first_noise_seed, first_noise_seed + count))
    per_noise = {k: {n: out / f"noise{k:04d}" / f"{n}{FORMATS[fmt]}" for n in OUTPUT_MAPS}
                 for k in noise_seeds} if fmt else {}
    refuse_existing([out / "contact.png", out / "vary-noise.json",
                     *(p for d in per_noise.values() for p in d.values())], overwrite, inputs=model.inputs)
    t0 = time.perf_counter()
    results = []
    for k, maps in model.vary_noise(seed, count, truncation=truncation,
                                    modalities=OUTPUT_MAPS if fmt else ("albedo", "displacement"),
                                    first_noise_seed=first_noise_seed, progress=progress):
        for n, path in per_noise.get(k, {}).items():
            write_map(path, maps[n], n, overwrite=overwrite)
        results.append((k, {"albedo": maps["albedo"], "displacement": maps["displacement"]}))
        echo(f"noise seed {k} done")
    title = f"{model.name}  seed {seed}, noise seeds {noise_seeds[0]}..{noise_seeds[-1]}  psi={truncation:g}"
    save_image(vary_noise_sheet(results, model.mask, title=title, crop=crop or 256), out / "contact.png", overwrite)
    record = _record(model, seed=seed, noise_seeds=noise_seeds, truncation=truncation, format=fmt,
                     total_s=time.perf_counter() - t0)
    write_json(out / "vary-noise.json", record, overwrite)
    return record
