"""What a training run shows while it runs: TensorBoard scalars and images, a JSON-lines metrics file,
preview PNGs and a progress bar with ETA (rank 0 only; other ranks get a silent monitor).

Files under RUN/:
  logs/            TensorBoard event files (`tensorboard --logdir RUN/logs`)
  metrics.jsonl    one JSON object per logged step (the same scalars; easy to plot or diff)
  previews/        step-000001000-patches.png, step-000001000-texture.png
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..config import DATA_CHANNELS, split_channels
from ..data.sampling import training_locations
from ..geometry import tiles
from ..resample import block_mean, network_to_unit, to_uint8
from .state import Purpose, step_generator

log = logging.getLogger(__name__)

__all__ = ["Monitor", "Previewer", "to_display", "patch_grid_image", "texture_preview", "memory_gb"]


def memory_gb(device: torch.device) -> float:
    """Peak memory so far: CUDA max allocated, or the process's peak resident set on CPU (GiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    except (ImportError, OSError):
        return float("nan")


def to_display(images: torch.Tensor) -> list[torch.Tensor]:
    """(B, 5, h, w) network space → one (B, 3, h, w) tensor in [0, 1] per modality (1-channel maps grey)."""
    out = []
    for part in split_channels(images, 1).values():
        part = part.float()
        if part.shape[1] == 1:
            part = part.expand(-1, 3, -1, -1)
        out.append(network_to_unit(part).clamp(0.0, 1.0))
    return out


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → H×W×3 uint8."""
    return to_uint8(img.permute(1, 2, 0).cpu().numpy())


def patch_grid_image(rows: list[torch.Tensor], pad: int = 2) -> np.ndarray:
    """Rows of (5, P, P) patches → one image: per row, each sample's albedo | specular | displacement."""
    tiles = []
    for row in rows:  # row: (N, 5, P, P)
        mods = to_display(row)  # 3 × (N, 3, P, P)
        cells = [m[i] for i in range(row.shape[0]) for m in mods]
        tiles.append(cells)
    p = rows[0].shape[-1]
    ncols = max(len(r) for r in tiles)
    canvas = torch.ones(3, len(tiles) * (p + pad) + pad, ncols * (p + pad) + pad)
    for i, cells in enumerate(tiles):
        for j, cell in enumerate(cells):
            y, x = pad + i * (p + pad), pad + j * (p + pad)
            canvas[:, y : y + p, x : x + p] = cell.cpu()
    return _to_uint8(canvas)


@torch.no_grad()
def texture_preview(G, ws: torch.Tensor, noise_seed: int, long_side: int = 512, tile: int | None = None) -> torch.Tensor:
    """The whole canvas of every modality for one latent, down-sampled on the fly tile by tile (so
    memory stays at one tile whatever the canvas) → (5, h, w) network space, long side <= long_side."""
    h, w = G.canvas
    if tile is None:  # the largest multiple of the patch (<= 1024 px) that tiles the canvas: few passes
        p = G.patch_size
        k = max(1, 1024 // p)
        while k > 1 and ((h // p) % k or (w // p) % k):
            k -= 1
        tile = p * k
    factor = 1
    while max(h, w) // factor > long_side and (tile % (factor * 2) == 0):
        factor *= 2
    out = torch.zeros(DATA_CHANNELS, h // factor, w // factor)
    seeds = torch.tensor([noise_seed], device=ws.device)
    for top, left, th, tw in tiles((0, 0, h, w), tile, tile):
        t = torch.tensor([top], device=ws.device)
        l_ = torch.tensor([left], device=ws.device)
        region = G(ws[:1], t, l_, seeds, height=th, width=tw)[0].float()
        if factor > 1:
            region = block_mean(region[None], factor)[0]
        out[:, top // factor : (top + th) // factor, left // factor : (left + tw) // factor] = region.cpu()
    return out


def texture_image(texture: torch.Tensor, pad: int = 4) -> np.ndarray:
    """(5, h, w) → albedo | specular | displacement side by side (H×W×3 uint8)."""
    mods = to_display(texture[None])
    _, h, w = texture.shape
    canvas = torch.ones(3, h, len(mods) * (w + pad) - pad)
    for j, m in enumerate(mods):
        canvas[:, :, j * (w + pad) : j * (w + pad) + w] = m[0]
    return _to_uint8(canvas)


class Monitor:
    """TensorBoard + metrics.jsonl + previews + tqdm progress bar (enabled on rank 0)."""

    def __init__(self, run_dir: str | os.PathLike, *, enabled: bool = True, total_steps: int = 0,
                 start_step: int = 0, progress: bool = True, tensorboard: bool = True, desc: str = "train") -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        self.bar = None
        self._metrics = None
        if not enabled:
            return
        (self.run_dir / "previews").mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.run_dir / "logs"))
            except ImportError as exc:  # tensorboard is a dependency, but keep training without it
                log.warning("TensorBoard logging disabled (%s)", exc)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", desc=desc, dynamic_ncols=True,
                            smoothing=0.1)
        self._t0 = time.time()

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def scalars(self, step: int, values: Mapping[str, float], postfix: Mapping[str, str] | None = None) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for name, value in values.items():
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    self.writer.add_scalar(name, value, step)
        if self._metrics is not None:
            record = {"step": step, "time": round(time.time() - self._t0, 3)}
            record.update({k: (None if v is None or not math.isfinite(v) else v) for k, v in values.items()})
            self._metrics.write(json.dumps(record) + "\n")
        if self.bar is not None and postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def image(self, step: int, tag: str, image: np.ndarray) -> Path | None:
        """Write an H×W×3 uint8 image to TensorBoard and to RUN/previews/step-NNNNNNNNN-<tag>.png."""
        if not self.enabled:
            return None
        from PIL import Image

        path = self.run_dir / "previews" / f"step-{step:09d}-{tag}.png"
        Image.fromarray(image).save(path)
        if self.writer is not None:
            self.writer.add_image(f"preview/{tag}", image, step, dataformats="HWC")
        return path

    def write(self, message: str) -> None:
        """Print a line without breaking the progress bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            log.info("%s", message)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Previewer:
    """Preview images of G_ema during training: fixed latents and locations, so previews of successive
    steps are comparable. `G_ema` and `device` are read from `trainer` at every render."""

    def __init__(self, trainer: Any, store: Any, preset: Any, samples: int = 4) -> None:
        self.trainer, self.store, self.preset = trainer, store, preset
        p = preset.model.patch_size
        n = min(samples, len(store.subjects))
        self.samples = max(n, 1)
        g = step_generator(preset.train.seed, 0, 0, Purpose.PREVIEW)
        self.z = torch.randn(self.samples, preset.model.z_dim, generator=g)
        self.noise_seeds = torch.arange(self.samples)
        if preset.global_res is None:
            locs = training_locations(store.mask, p)
            picks = sorted({locs[len(locs) // 2], locs[len(locs) // 3]})
            self.locations = picks
            self.reals = [
                torch.stack([torch.from_numpy(store.read_patch(i, t, l, p)) for i in range(self.samples)])
                for t, l in picks
            ]
        else:
            r = preset.global_res
            self.locations = [(0, 0)]
            self.reals = [torch.stack([torch.from_numpy(store.read_whole(i, r, r)) for i in range(self.samples)])]
        self.display = min(p, 128)

    def _shrink(self, x: torch.Tensor) -> torch.Tensor:
        f = x.shape[-1] // self.display
        return block_mean(x, f) if f > 1 else x

    @torch.no_grad()
    def render(self, monitor: Monitor, step: int) -> None:
        G = self.trainer.G_ema
        dev = self.trainer.device
        ws = G.mapping(self.z.to(dev))
        rows = []
        for (top, left), real in zip(self.locations, self.reals):
            t = torch.full((self.samples,), top, device=dev)
            l_ = torch.full((self.samples,), left, device=dev)
            fake = G(ws, t, l_, self.noise_seeds.to(dev)).float().cpu()
            rows += [self._shrink(real), self._shrink(fake)]
        monitor.image(step, "patches", patch_grid_image(rows))
        tex = texture_preview(G, ws[:1], 0, long_side=512)
        monitor.image(step, "texture", texture_image(tex))
