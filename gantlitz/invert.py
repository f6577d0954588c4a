"""Inversion (paper §5.2): project a texture into W+ and the noise maps; modality completion, super-resolution.

Two stages, as in the paper and SPEC §8:

1. **Latents.** W+ latents (one w per style input, initialised at the average w) are optimised while the
   noise is re-sampled every step (a fresh hashed noise seed per step) and the latents are jittered with
   a decaying perturbation (StyleGAN2 projector schedule).
2. **Noise.** The latents are fixed and explicit full-canvas noise maps (`gantlitz.noise.ExplicitNoise`)
   are optimised, regularised by the multi-scale pixel-correlation penalty of the StyleGAN2 projector and
   by penalties on each map's mean (mean²) and standard deviation ((std − 1)²).

Each step synthesises only one random k×k-patch region of the canvas (aligned to the patch grid,
overlapping the face mask), so memory is bounded for a full 6144×4096 target; the noise maps are
updated lazily (Adam on the touched crop only). The loss is a masked multi-scale L1 + L2 pixel loss in
network space — no downloaded perceptual network, everything works offline.

Modes:

- ``completion``: the target is at canvas size; after inversion every modality is generated from the same
  latents and noise (modality completion).
- ``superres``: the target is smaller than the canvas by an integer factor f; the output region is
  area-down-sampled by f before the loss, noise layers finer than the target resolution are regularised
  more strongly, and the output is the full canvas with stochastic detail.

The optimisation state (latents, noise maps, Adam moments, stage, step) is written atomically every
``save_every`` steps; every random choice is a function of (seed, stage, step), so a resumed run gives the
same result as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .config import MODALITIES, MODALITY_CHANNELS
from .errors import GantlitzError
from .geometry import level0_unit
from .nn.generator import Generator
from .device import resolve_device
from .generate import TextureModel, load, synthesize_texture
from .noise import ExplicitNoise
from .outputs import (FORMATS, make_dirs, refuse_existing, save_figure, save_image, write_json, write_map,
                      writing)
from .resample import area_downsample, block_mean, network_to_unit, unit_to_network
from .sheets import grid, thumbnails

log = logging.getLogger(__name__)

Mode = Literal["completion", "superres"]
MODES: tuple[str, ...] = ("completion", "superres")
STATE_NAME = "state.safetensors"
LATENT_NAME = "latent.safetensors"
LOSS_PLOT_NAME = "loss.png"
CONTACT_NAME = "contact.png"
TARGET_NAME = "target.png"
RESULT_NAME = "result.json"
STATE_KIND = "gantlitz-inversion-state"
LATENT_KIND = "gantlitz-inversion"
LOSS_COLUMNS = ("stage", "total", "pixel", "noise_reg")

__all__ = [
    "InversionConfig",
    "InversionResult",
    "InversionError",
    "TargetError",
    "invert",
    "load_target",
    "check_target",
    "superres_factor",
    "synthesize_maps",
    "complete",
    "save_latent",
    "load_latent",
    "psnr",
    "reconstruction_psnr",
    "plot_losses",
    "contact_image",
    "write_outputs",
    "run",
    "regenerate",
]


class InversionError(GantlitzError, ValueError):
    """An inversion that can not start or continue (bad options, mismatching state, existing outputs)."""


class TargetError(InversionError):
    """A target image that can not be inverted; the message names the file (if any) and the problem."""


@dataclass(frozen=True)
class InversionConfig:
    """Everything that determines an inversion's result (saved with its state and its latent file)."""

    latent_steps: int = 400
    """Stage 1: W+ latents, noise re-sampled every step."""
    noise_steps: int = 400
    """Stage 2: noise maps, latents fixed."""
    region_patches: int | None = 2
    """Each step synthesises k×k patches (clipped to the canvas); None = the whole canvas every step."""
    seed: int = 0
    """Seeds every random choice (regions, per-step noise seeds, latent jitter) and the initial noise maps."""
    lr_latent: float = 0.1
    lr_noise: float = 0.1
    lr_rampup: float = 0.05
    """Fraction of a stage over which the learning rate ramps up (StyleGAN2 projector)."""
    lr_rampdown: float = 0.25
    """Fraction of a stage at its end over which the learning rate decays to 0 (cosine)."""
    w_noise_factor: float = 0.05
    """Stage-1 latent jitter, times the spread of w, decaying quadratically to 0 ..."""
    w_noise_ramp: float = 0.75
    """... over this fraction of stage 1."""
    l1_weight: float = 1.0
    """Weight of the masked multi-scale L1 loss (summed over the pyramid levels)."""
    l2_weight: float = 1.0
    """Weight of the masked L2 loss at the finest scale."""
    loss_scales: int = 4
    """Pyramid levels of the multi-scale loss (area down-sampling by 2 per level)."""
    noise_corr_weight: float = 1e2
    """Multi-scale pixel-correlation penalty per noise layer (StyleGAN2 projector's regulariser)."""
    noise_stats_weight: float = 1.0
    """mean² + (std − 1)² penalty per noise layer."""
    superres_noise_boost: float = 10.0
    """Super-resolution: multiplier of both noise penalties for layers finer than the target resolution."""
    whole_noise_samples: int = 1 << 18
    """Noise layers with at most this many samples are optimised and regularised as a whole every stage-2
    step (the penalty on a small random window would chase that window's chance correlations); larger
    layers only on the crop the step's region reads, which bounds memory."""
    save_every: int = 50
    """Write the resumable state every N steps (and at every stage end) when a state path is given."""

    def __post_init__(self) -> None:
        for name in ("latent_steps", "noise_steps"):
            if getattr(self, name) < 0:
                raise InversionError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.latent_steps + self.noise_steps == 0:
            raise InversionError("nothing to do: latent_steps and noise_steps are both 0")
        if self.region_patches is not None and self.region_patches < 1:
            raise InversionError(
                f"region_patches must be >= 1 (or None for the whole canvas), got {self.region_patches}"
            )
        if self.loss_scales < 1:
            raise InversionError(f"loss_scales must be >= 1, got {self.loss_scales}")
        if self.save_every < 1:
            raise InversionError(f"save_every must be >= 1, got {self.save_every}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "InversionConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class InversionResult:
    """Latents + noise maps of an inversion, with its loss history and reconstruction quality."""

    ws: torch.Tensor
    """(1, num_ws, w_dim) W+ latents (CPU)."""
    noise: ExplicitNoise
    """Optimised full-canvas noise maps (CPU)."""
    losses: np.ndarray
    """(steps, 4): stage, total loss, pixel loss, noise regularisation per step."""
    modality: str
    mode: str
    factor: int
    """Canvas / target resolution (1 for completion)."""
    config: InversionConfig
    psnr: float | None = None
    """PSNR (dB) of the reconstruction against the target at the target's resolution, within the mask."""
    reconstruction: np.ndarray | None = None
    """The inverted modality at full canvas resolution, [0, 1] H×W×C."""
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ targets
def superres_factor(canvas: tuple[int, int], shape: tuple[int, int], name: str = "target") -> int:
    """The integer factor canvas / target; clear errors for another aspect or a non-integer factor."""
    ch, cw = canvas
    th, tw = shape
    if th <= 0 or tw <= 0:
        raise TargetError(f"{name}: empty image ({tw}x{th})")
    if th * cw != tw * ch:
        raise TargetError(
            f"{name}: aspect ratio {tw}x{th} does not match the model's canvas {cw}x{ch} "
            f"(width:height must be {cw}:{ch})"
        )
    if ch % th or cw % tw:
        raise TargetError(
            f"{name}: {tw}x{th} is not the canvas {cw}x{ch} divided by an integer factor "
            f"(e.g. {cw // 4}x{ch // 4} or {cw // 8}x{ch // 8})"
        )
    if th > ch:
        raise TargetError(f"{name}: {tw}x{th} is larger than the model's canvas {cw}x{ch}")
    return ch // th


def check_target(
    image: np.ndarray, modality: str, canvas: tuple[int, int], mode: str, name: str = "target"
) -> tuple[np.ndarray, int]:
    """Validate and normalise a target array → (H×W×C float32 in [0, 1], factor).

    Albedo needs 3 channels (a 4th, alpha, channel is dropped with a warning); specular and displacement
    need 1 channel (3 or 4 channels are accepted when the colour channels are equal: they are averaged).
    Completion needs the canvas size, super-resolution the canvas divided by an integer factor >= 2.
    """
    if modality not in MODALITIES:
        raise InversionError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    if mode not in MODES:
        raise InversionError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise TargetError(f"{name}: expected an H x W x C image, got an array of shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TargetError(f"{name}: not a numeric image (dtype {arr.dtype})")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise TargetError(f"{name}: contains NaN/Inf values")
    c = arr.shape[2]
    want = MODALITY_CHANNELS[modality]
    if want == 3:
        if c == 4:
            log.warning("%s: dropping the 4th (alpha) channel of the albedo target", name)
            arr = arr[:, :, :3]
        elif c != 3:
            raise TargetError(f"{name}: an albedo target needs 3 channels (RGB), got {c}")
    else:
        if c == 4:
            log.warning("%s: dropping the 4th (alpha) channel of the %s target", name, modality)
            arr, c = arr[:, :, :3], 3
        if c == 3:
            spread = float(np.abs(arr - arr.mean(axis=2, keepdims=True)).max())
            if spread > 2.0 / 255.0:
                raise TargetError(
                    f"{name}: a {modality} target needs 1 channel; got 3 channels that differ "
                    f"(by up to {spread:.3f}) — is this a colour (albedo) image?"
                )
            arr = arr.mean(axis=2, keepdims=True)
        elif c != 1:
            raise TargetError(f"{name}: a {modality} target needs 1 channel, got {c}")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -0.01 or hi > 1.01:
        log.warning("%s: values span [%.3g, %.3g]; clipping to [0, 1]", name, lo, hi)
    arr = np.clip(arr, 0.0, 1.0)
    h, w = arr.shape[:2]
    if mode == "completion":
        if (h, w) != tuple(canvas):
            if h * canvas[1] != w * canvas[0]:
                superres_factor(canvas, (h, w), name)  # raises the aspect-ratio error
            hint = ""
            if h < canvas[0] and canvas[0] % h == 0 and canvas[1] % w == 0:
                hint = f"; it is the canvas / {canvas[0] // h}: use --mode superres"
            raise TargetError(
                f"{name}: completion needs a target at the model's canvas size {canvas[1]}x{canvas[0]}, "
                f"got {w}x{h}{hint}"
            )
        return arr, 1
    factor = superres_factor(canvas, (h, w), name)
    if factor == 1:
        raise TargetError(f"{name}: the target is already at the canvas size {w}x{h}; use --mode completion")
    return arr, factor


def load_target(path: str | Path, modality: str, canvas: tuple[int, int], mode: str) -> tuple[np.ndarray, int]:
    """Read and validate a target image file (any format `gantlitz.imageio` reads) → (array, factor)."""
    from .imageio import ImageError, read_image

    try:
        image = read_image(path)
    except ImageError as exc:
        raise TargetError(str(exc)) from None
    return check_target(image, modality, canvas, mode, name=str(path))


# ------------------------------------------------------------------------------------------ helpers
def psnr(a: np.ndarray, b: np.ndarray, weight: np.ndarray | None = None) -> float:
    """PSNR in dB of two [0, 1] images (H×W×C), optionally weighted per pixel (H×W)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    err = (a - b) ** 2
    if weight is None:
        mse = float(err.mean())
    else:
        wgt = np.asarray(weight, np.float64)[:, :, None] * np.ones((1, 1, err.shape[2]))
        total = wgt.sum()
        if total <= 0:
            raise ValueError("psnr: the weight is zero everywhere")
        mse = float((err * wgt).sum() / total)
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _ramp_lr(t: float, base: float, cfg: InversionConfig) -> float:
    """StyleGAN2 projector schedule: linear ramp-up, cosine ramp-down, over t in [0, 1)."""
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown) if cfg.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if cfg.lr_rampup > 0:
        ramp *= min(1.0, t / cfg.lr_rampup)
    return base * ramp


def _adam(p: torch.Tensor, m: torch.Tensor, v: torch.Tensor, g: torch.Tensor, t: int, lr: float) -> None:
    """One Adam step on (views of) tensors, in place; `t` is the 1-based step of the stage."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v / (1 - b2**t)).sqrt_().add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


def _step_rng(seed: int, stage: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, stage, step])


def _corr_penalty(v: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 projector's noise regulariser: squared shifted autocorrelations, down-sampled repeatedly."""
    total = v.new_zeros(())
    while True:
        if v.shape[3] > 1:
            total = total + (v * torch.roll(v, shifts=1, dims=3)).mean() ** 2
        if v.shape[2] > 1:
            total = total + (v * torch.roll(v, shifts=1, dims=2)).mean() ** 2
        if min(v.shape[2], v.shape[3]) <= 8:
            break
        v = F.avg_pool2d(v[:, :, : v.shape[2] // 2 * 2, : v.shape[3] // 2 * 2], 2)
    return total


def _stats_penalty(v: torch.Tensor) -> torch.Tensor:
    return v.mean() ** 2 + (v.std() - 1.0) ** 2


def _masked_pyramid_loss(
    out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, scales: int, l1: float, l2: float
) -> torch.Tensor:
    """Masked multi-scale L1 (+ L2 at the finest scale) between (1, C, h, w) tensors; weight (1, 1, h, w)."""
    c = out.shape[1]
    total = out.new_zeros(())
    x, y, wgt = out, target, weight
    for s in range(scales):
        if s:
            if min(x.shape[2], x.shape[3]) < 2:
                break
            x2 = x.shape[2] // 2 * 2
            w2 = x.shape[3] // 2 * 2
            pw = F.avg_pool2d(wgt[:, :, :x2, :w2], 2)
            safe = pw.clamp_min(1e-6)
            x = F.avg_pool2d((x * wgt)[:, :, :x2, :w2], 2) / safe
            y = F.avg_pool2d((y * wgt)[:, :, :x2, :w2], 2) / safe
            wgt = pw
        denom = wgt.sum() * c
        if denom <= 0:
            break
        diff = (x - y) * wgt
        if l1:
            total = total + l1 * diff.abs().sum() / denom
        if s == 0 and l2:
            total = total + l2 * ((x - y).square() * wgt).sum() / denom
    return total


class _CropNoise:
    """A noise source reading per-layer crops (autograd leaves) of explicit maps at known offsets."""

    def __init__(self, crops: list[torch.Tensor], offsets: list[tuple[int, int]], layouts) -> None:
        self.crops, self.offsets, self.layouts = crops, offsets, layouts

    def sample(self, layer: int, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
        crop, (oy, ox), lay = self.crops[layer], self.offsets[layer], self.layouts[layer]
        out = []
        for top, left in zip(tops.tolist(), lefts.tolist()):
            y, x = top + lay.margin - oy, left + lay.margin - ox
            if y < 0 or x < 0 or y + height > crop.shape[2] or x + width > crop.shape[3]:
                raise RuntimeError(f"noise layer {layer}: request outside the optimised crop")
            out.append(crop[:, :, y : y + height, x : x + width])
        return torch.cat(out, dim=0)


def _layer_slices(
    G: Generator, top: int, left: int, height: int, width: int, whole: int
) -> list[tuple[slice, slice]]:
    """Per noise layer, the map slices that a stage-2 step optimises and regularises.

    Large layers: the crop (margins included) that synthesising the region reads — memory stays bounded.
    Small (coarse) layers (at most `whole` samples): the whole map, so that the pixel-correlation penalty
    sees the whole map rather than a small window whose chance correlations differ every step.
    """
    out = []
    last = G.num_levels - 1
    for lay in G.noise_layouts():
        full_h, full_w = lay.height + 2 * lay.margin, lay.width + 2 * lay.margin
        if full_h * full_w <= whole:
            out.append((slice(0, full_h), slice(0, full_w)))
            continue
        step = 1 << (last - lay.level)
        y, x = top // step, left // step
        out.append((slice(y, y + height // step + 2 * lay.margin), slice(x, x + width // step + 2 * lay.margin)))
    return out


def _unwrap(model: Any) -> Generator:
    G = getattr(model, "G", model)
    if not isinstance(G, Generator):
        raise InversionError(f"expected a Generator or a loaded model with a .G generator, got {type(model).__name__}")
    return G


def _w_statistics(G: Generator, seed: int, samples: int = 2000) -> tuple[torch.Tensor, float]:
    """(initial w, scalar spread of w) from mapped random z; the initial w is G.w_avg when it is set."""
    device = G.w_avg.device
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, G.cfg.z_dim, generator=gen).to(device)
    with torch.no_grad():
        w = G.mapper(z)
    mean = w.mean(dim=0)
    start = G.w_avg.detach().clone() if bool(G.w_avg.abs().max() > 0) else mean
    spread = float(((w - mean).square().sum(dim=1).mean()).sqrt())
    return start.float(), spread


def _target_digest(target: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(target, dtype=np.float32).tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------ regions
@dataclass(frozen=True)
class _Regions:
    height: int
    width: int
    candidates: list[tuple[int, int]]


def _regions(G: Generator, cfg: InversionConfig, factor: int, coverage: np.ndarray) -> _Regions:
    """Candidate regions: k×k patches aligned to the patch grid (half-patch stride) overlapping the mask."""
    ch, cw = G.canvas
    p = G.patch_size
    if cfg.region_patches is None:
        rh, rw = ch, cw
    else:
        rh, rw = min(cfg.region_patches * p, ch), min(cfg.region_patches * p, cw)
    unit = level0_unit(p)
    stride = p // 2
    if factor > 1:
        if p % factor:
            raise TargetError(
                f"super-resolution factor {factor} must divide the patch size {p} (choose a target of the canvas "
                "divided by a power of two)"
            )
        if stride % factor or stride % unit:
            stride = p
    cands = []
    for top in range(0, ch - rh + 1, stride):
        for left in range(0, cw - rw + 1, stride):
            if coverage[top // factor : (top + rh) // factor, left // factor : (left + rw) // factor].sum() > 0:
                cands.append((top, left))
    if not cands:
        raise TargetError("the model's mask is empty: nothing to invert")
    return _Regions(rh, rw, cands)


def _pick(regions: _Regions, rng: np.random.Generator) -> tuple[int, int]:
    return regions.candidates[int(rng.integers(len(regions.candidates)))]


# ------------------------------------------------------------------------------------------ state
@dataclass
class InversionState:
    """Where an inversion stands: stage (1 latents, 2 noise maps, 3 done), step, the optimised values with
    their Adam moments, and the loss history. Saved every `save_every` steps; `load` resumes it."""

    stage: int
    step: int
    w_opt: torch.Tensor
    w_m: torch.Tensor
    w_v: torch.Tensor
    losses: list[tuple[float, float, float, float]] = field(default_factory=list)
    noise: ExplicitNoise | None = None
    noise_m: list[torch.Tensor] = field(default_factory=list)
    noise_v: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def fresh(cls, w_start: torch.Tensor, num_ws: int, device: torch.device) -> "InversionState":
        w_opt = w_start[None, None].repeat(1, num_ws, 1).to(device)
        return cls(1, 0, w_opt, torch.zeros_like(w_opt), torch.zeros_like(w_opt))

    def start_noise(self, layouts: Any, seed: int, device: torch.device) -> ExplicitNoise:
        """The explicit noise maps of stage 2 (the hashed noise of `seed`), created once."""
        if self.noise is None:
            self.noise = ExplicitNoise(layouts, init_seed=seed).to(device).requires_grad_(False)
            self.noise_m = [torch.zeros_like(p) for p in self.noise.maps]
            self.noise_v = [torch.zeros_like(p) for p in self.noise.maps]
        return self.noise

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        tensors: dict[str, torch.Tensor] = {
            "w_opt": self.w_opt, "w_m": self.w_m, "w_v": self.w_v,
            "losses": torch.tensor(self.losses, dtype=torch.float64).reshape(-1, len(LOSS_COLUMNS)),
        }
        if self.noise is not None:
            for i, p in enumerate(self.noise.maps):
                tensors[f"noise.{i}"] = p.detach()
                tensors[f"noise_m.{i}"] = self.noise_m[i]
                tensors[f"noise_v.{i}"] = self.noise_v[i]
        ckpt.save(path, tensors, {"kind": STATE_KIND, "stage": self.stage, "step": self.step, **meta})

    @classmethod
    def load(cls, path: Path | None, expected: Mapping[str, Any], layouts: Any, device: torch.device
             ) -> "InversionState":
        """The saved state at `path`; refused unless its configuration, modality, mode and target are
        `expected`'s."""
        if path is None or not path.exists():
            raise InversionError(f"cannot resume: no saved state at {path}")
        try:
            tensors, meta = ckpt.load(path, device="cpu")
        except ckpt.CheckpointError as exc:
            raise InversionError(f"cannot resume: {exc}") from None
        if meta.get("kind") != STATE_KIND:
            raise InversionError(f"{path}: not an inversion state file")
        mismatches = [name for name, key in (("configuration", "config"), ("modality", "modality"), ("mode", "mode"),
                                             ("target", "target_sha1")) if expected[key] != meta.get(key)]
        if mismatches:
            raise InversionError(f"{path}: the saved inversion differs in {', '.join(mismatches)}; resume with the "
                                 "same target and options, or start over (--overwrite)")
        w_opt, w_m, w_v = (tensors[k].to(device) for k in ("w_opt", "w_m", "w_v"))
        state = cls(int(meta["stage"]), int(meta["step"]), w_opt, w_m, w_v,
                    [tuple(r) for r in tensors["losses"].tolist()])
        if "noise.0" in tensors:
            state.noise = ExplicitNoise(layouts, init_seed=None)
            with torch.no_grad():
                for i, p in enumerate(state.noise.maps):
                    p.copy_(tensors[f"noise.{i}"])
            state.noise = state.noise.to(device).requires_grad_(False)
            state.noise_m = [tensors[f"noise_m.{i}"].to(device) for i in range(len(layouts))]
            state.noise_v = [tensors[f"noise_v.{i}"].to(device) for i in range(len(layouts))]
        log.info("resuming inversion at stage %d, step %d", state.stage, state.step)
        return state


# ------------------------------------------------------------------------------------------ the problem
@dataclass
class _Problem:
    """The fixed side of an inversion: generator, target in network space at its resolution, the mask
    coverage weighting the loss, candidate regions, per-layer noise penalty weights."""

    G: Generator
    cfg: InversionConfig
    modality: str
    factor: int
    target: torch.Tensor
    coverage: torch.Tensor
    regions: _Regions
    layer_weight: list[float]
    w_spread: float

    @classmethod
    def build(cls, G: Generator, tgt: np.ndarray, factor: int, cfg: InversionConfig, modality: str,
              w_spread: float, device: torch.device) -> "_Problem":
        coverage = block_mean(G.mask.float()[None, None].to(device), factor)
        target = unit_to_network(torch.from_numpy(tgt).permute(2, 0, 1)[None].to(device))
        regions = _regions(G, cfg, factor, coverage[0, 0].cpu().numpy())
        last = G.num_levels - 1
        weights = [cfg.superres_noise_boost if (factor > 1 and (1 << (last - lay.level)) < factor) else 1.0
                   for lay in G.noise_layouts()]
        return cls(G, cfg, modality, factor, target, coverage, regions, weights, w_spread)

    def loss(self, out: torch.Tensor, top: int, left: int) -> torch.Tensor:
        """Masked multi-scale pixel loss of a synthesised region against the target."""
        f, rh, rw = self.factor, self.regions.height, self.regions.width
        sl = (slice(None), slice(None), slice(top // f, (top + rh) // f), slice(left // f, (left + rw) // f))
        return _masked_pyramid_loss(block_mean(out, f), self.target[sl], self.coverage[sl], self.cfg.loss_scales,
                                    self.cfg.l1_weight, self.cfg.l2_weight)


class _Progress:
    """Progress bar, per-step callback, periodic state saves and the step budget (`stop_after`)."""

    def __init__(self, total: int, done: int, *, show: bool, callback: Any, stop_after: int | None,
                 save_every: int, save: Callable[[], None]) -> None:
        self.bar = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=min(done, total), desc="invert", unit="step")
        self.callback, self.stop_after, self.save_every, self.save = callback, stop_after, save_every, save
        self.done_here = 0

    def tick(self, stage: int, step: int, values: dict[str, float]) -> bool:
        """After a step: report it, save every `save_every` steps; True when this call must stop."""
        self.done_here += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(stage=stage, loss=f"{values['total']:.4f}")
        if self.callback is not None:
            self.callback(stage, step, values)
        stop = self.stop_after is not None and self.done_here >= self.stop_after
        if step % self.save_every == 0 or stop:
            self.save()
        return stop

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------ inversion
def _latent_stage(pb: _Problem, st: InversionState, progress: _Progress, device: torch.device) -> bool:
    """Stage 1: W+ latents with jittered w and re-sampled noise; True when interrupted."""
    cfg, rh, rw = pb.cfg, pb.regions.height, pb.regions.width
    while st.step < cfg.latent_steps:
        t = st.step / cfg.latent_steps
        rng = _step_rng(cfg.seed, 1, st.step)
        top, left = _pick(pb.regions, rng)
        noise_seed = int(rng.integers(0, 2**31 - 1))
        jitter_seed = int(rng.integers(0, 2**31 - 1))
        w_noise_scale = pb.w_spread * cfg.w_noise_factor * max(0.0, 1.0 - t / cfg.w_noise_ramp) ** 2
        jitter = torch.randn(st.w_opt.shape, generator=torch.Generator().manual_seed(jitter_seed)).to(device)
        w_leaf = st.w_opt.clone().requires_grad_(True)
        out = pb.G.synthesize(w_leaf + jitter * w_noise_scale, pb.modality, top, left, rh, rw, noise_seed=noise_seed)
        pix = pb.loss(out, top, left)
        pix.backward()
        with torch.no_grad():
            _adam(st.w_opt, st.w_m, st.w_v, w_leaf.grad, st.step + 1, _ramp_lr(t, cfg.lr_latent, cfg))
        st.step += 1
        pv = float(pix.detach())
        st.losses.append((1.0, pv, pv, 0.0))
        if progress.tick(1, st.step, {"total": pv, "pixel": pv, "noise_reg": 0.0}):
            return True
    st.stage, st.step = 2, 0
    progress.save()
    return False


def _noise_stage(pb: _Problem, st: InversionState, progress: _Progress, device: torch.device) -> bool:
    """Stage 2: the noise maps (crops around each region), with the pixel-correlation penalty; True when
    interrupted."""
    cfg, rh, rw = pb.cfg, pb.regions.height, pb.regions.width
    layouts = pb.G.noise_layouts()
    noise = st.start_noise(layouts, cfg.seed, device)
    while st.step < cfg.noise_steps:
        t = st.step / cfg.noise_steps
        top, left = _pick(pb.regions, _step_rng(cfg.seed, 2, st.step))
        slices = _layer_slices(pb.G, top, left, rh, rw, cfg.whole_noise_samples)
        crops = [p.detach()[:, :, ys, xs].clone().requires_grad_(True) for p, (ys, xs) in zip(noise.maps, slices)]
        src = _CropNoise(crops, [(ys.start, xs.start) for ys, xs in slices], layouts)
        out = pb.G.synthesize(st.w_opt, pb.modality, top, left, rh, rw, noise=src)
        pix = pb.loss(out, top, left)
        reg = out.new_zeros(())
        for crop, wgt in zip(crops, pb.layer_weight):
            penalty = cfg.noise_corr_weight * _corr_penalty(crop) + cfg.noise_stats_weight * _stats_penalty(crop)
            reg = reg + wgt * penalty
        total = pix + reg
        total.backward()
        lr = _ramp_lr(t, cfg.lr_noise, cfg)
        with torch.no_grad():
            for i, (crop, (ys, xs)) in enumerate(zip(crops, slices)):
                _adam(noise.maps[i][:, :, ys, xs], st.noise_m[i][:, :, ys, xs], st.noise_v[i][:, :, ys, xs],
                      crop.grad, st.step + 1, lr)
        st.step += 1
        tv, pv, rv = float(total.detach()), float(pix.detach()), float(reg.detach())
        st.losses.append((2.0, tv, pv, rv))
        if progress.tick(2, st.step, {"total": tv, "pixel": pv, "noise_reg": rv}):
            return True
    st.stage = 3
    progress.save()
    return False


def invert(
    model: Any,
    target: np.ndarray,
    modality: str = "albedo",
    mode: Mode = "completion",
    config: InversionConfig | None = None,
    *,
    device: str | torch.device | None = None,
    state_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    callback: Callable[[int, int, dict[str, float]], None] | None = None,
    meta: Mapping[str, Any] | None = None,
    stop_after: int | None = None,
) -> InversionResult | None:
    """Invert `target` (H×W×C in [0, 1], see `check_target`) into W+ latents and noise maps of `model`.

    model: a `Generator` or a loaded `TextureModel`. state_path: where the resumable state is written
    every `config.save_every` steps; resume=True continues from it (its configuration and target must
    match). callback(stage, step, losses) is called after every step. meta: extra JSON facts kept in
    the state (e.g. the checkpoint path). stop_after: a step budget for this call — stop (returning None)
    after this many steps with the state saved, to be continued with resume=True.
    """
    cfg = config or InversionConfig()
    G = _unwrap(model)
    dev = resolve_device(device)
    G = (G.to(dev) if G.mask.device != dev else G).eval().requires_grad_(False)
    tgt, factor = check_target(target, modality, G.canvas, mode)
    w_start, w_spread = _w_statistics(G, cfg.seed)
    pb = _Problem.build(G, tgt, factor, cfg, modality, w_spread, dev)
    extra = {k: v for k, v in (meta or {}).items() if k != "kind"}
    facts = {"config": cfg.to_dict(), "modality": modality, "mode": mode, "factor": factor,
             "target_sha1": _target_digest(tgt), "target_shape": list(tgt.shape), "w_spread": w_spread, **extra}
    spath = Path(state_path) if state_path is not None else None
    st = InversionState.load(spath, facts, G.noise_layouts(), dev) if resume else \
        InversionState.fresh(w_start, G.num_ws, dev)

    def save() -> None:
        if spath is not None:
            st.save(spath, facts)

    bar = _Progress(cfg.latent_steps + cfg.noise_steps, len(st.losses), show=progress, callback=callback,
                    stop_after=stop_after, save_every=cfg.save_every, save=save)
    try:
        if st.stage == 1 and _latent_stage(pb, st, bar, dev):
            return None
        if st.stage == 2 and _noise_stage(pb, st, bar, dev):
            return None
    finally:
        bar.close()
    result = InversionResult(
        ws=st.w_opt.detach().cpu().clone(), noise=st.noise.cpu(),
        losses=np.asarray(st.losses, np.float64).reshape(-1, 4), modality=modality, mode=mode, factor=factor,
        config=cfg, extra=extra,
    )
    result.reconstruction = synthesize_maps(G, result.ws, result.noise, modalities=(modality,), device=dev)[modality]
    result.psnr = reconstruction_psnr(result.reconstruction, tgt, G.mask.cpu().numpy(), factor)
    return result


def reconstruction_psnr(reconstruction: np.ndarray, target: np.ndarray, mask: np.ndarray, factor: int) -> float:
    """PSNR of a full-canvas reconstruction against a (possibly low-res) target, at the target resolution.

    Pixels are weighted by the mask coverage (area-down-sampled mask for super-resolution).
    """
    rec = area_downsample(reconstruction, factor)
    cov = area_downsample(mask.astype(np.float32), factor)
    return psnr(rec, target, cov)


# ------------------------------------------------------------------------------------------ generation
def synthesize_maps(
    model: Any, ws: torch.Tensor, noise: ExplicitNoise | None, *, modalities: Sequence[str] = MODALITIES,
    patches_per_pass: int | None = None, device: str | torch.device | None = None, noise_seed: int = 0,
) -> dict[str, np.ndarray]:
    """Full-canvas maps ([0, 1] H×W×C, 0.5 outside the mask) for latents `ws` and explicit noise maps.

    Synthesised tile by tile with `gantlitz.generate.synthesize_texture` (identical to one pass: the
    generator is seamless), so memory is bounded. noise=None uses the hashed noise of `noise_seed`.
    """
    G = _unwrap(model)
    dev = torch.device(device) if device is not None else G.mask.device
    G = G.to(dev)
    ws = ws.to(dev)
    if noise is not None:
        noise = noise.to(dev)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name in modalities:
            x = synthesize_texture(G, ws, name, noise_seed, patches_per_pass=patches_per_pass, noise=noise)
            out[name] = network_to_unit(x[0].clamp(-1, 1)).permute(1, 2, 0).cpu().numpy().astype(np.float32)
    return out


def complete(
    result: InversionResult, model: Any, *, device: str | torch.device | None = None, normals: bool = True,
) -> dict[str, np.ndarray]:
    """Modality completion: every modality of an inversion at full canvas ([0, 1] H×W×C).

    With a loaded model (`gantlitz.generate.load`) the maps come from its `sample_ws` and include
    "normal" (tangent normals of the displacement, encoded n·0.5+0.5, with the dataset's displacement
    scale and normal convention); with a bare `Generator`, albedo/specular/displacement only.
    """
    noise = result.noise
    if isinstance(model, TextureModel):
        mods = (*MODALITIES, "normal") if normals else MODALITIES
        return model.sample_ws(result.ws, mods, noise=noise.to(device if device is not None else model.device))
    return synthesize_maps(model, result.ws, noise, device=device)


# ------------------------------------------------------------------------------------------ latent files
def save_latent(path: str | Path, result: InversionResult, meta: Mapping[str, Any] | None = None) -> Path:
    """Write latents + noise maps + JSON facts (config, losses, PSNR, `meta`) to one safetensors file."""
    tensors = {"ws": result.ws, "losses": torch.from_numpy(result.losses)}
    for i, p in enumerate(result.noise.maps):
        tensors[f"noise.{i}"] = p.detach()
    info = {
        "kind": LATENT_KIND, "modality": result.modality, "mode": result.mode, "factor": result.factor,
        "config": result.config.to_dict(), "psnr": result.psnr, "loss_columns": list(LOSS_COLUMNS),
        "final_loss": None if not len(result.losses) else float(result.losses[-1, 1]),
        **{k: v for k, v in {**result.extra, **(meta or {})}.items() if k != "kind"},
    }
    return ckpt.save(path, tensors, json.loads(json.dumps(info, default=str)))


def load_latent(path: str | Path, model: Any) -> InversionResult:
    """Read a latent file written by `save_latent` back into an `InversionResult` for `model`."""
    G = _unwrap(model)
    try:
        tensors, meta = ckpt.load(path, device="cpu")
    except ckpt.CheckpointError as exc:
        raise InversionError(str(exc)) from None
    if meta.get("kind") != LATENT_KIND:
        raise InversionError(f"{path}: not an inversion latent file (kind {meta.get('kind')!r})")
    layouts = G.noise_layouts()
    ws = tensors["ws"]
    if tuple(ws.shape) != (1, G.num_ws, G.cfg.w_dim):
        raise InversionError(
            f"{path}: latents of shape {tuple(ws.shape)} do not fit this model (needs (1, {G.num_ws}, {G.cfg.w_dim}))"
        )
    noise = ExplicitNoise(layouts, init_seed=None)
    with torch.no_grad():
        for i, p in enumerate(noise.maps):
            stored = tensors.get(f"noise.{i}")
            if stored is None or stored.shape != p.shape:
                raise InversionError(f"{path}: noise map {i} is missing or does not fit this model's canvas")
            p.copy_(stored)
    noise.requires_grad_(False)
    extra = {k: v for k, v in meta.items()
             if k not in ("kind", "modality", "mode", "factor", "config", "psnr", "format", "version")}
    return InversionResult(
        ws=ws, noise=noise, losses=tensors["losses"].numpy(), modality=meta["modality"], mode=meta["mode"],
        factor=int(meta["factor"]), config=InversionConfig.from_dict(meta["config"]), psnr=meta.get("psnr"),
        extra=extra,
    )


# ------------------------------------------------------------------------------------------ files
def plot_losses(losses: np.ndarray, path: str | Path, title: str = "inversion") -> Path:
    """Loss curve PNG: total and pixel loss per step (log scale), the stage boundary marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(1, len(losses) + 1)
    if len(losses):
        ax.plot(x, losses[:, 1], label="total", lw=1)
        ax.plot(x, losses[:, 2], label="pixel", lw=1)
        if np.any(losses[:, 3] > 0):
            ax.plot(x, losses[:, 3], label="noise reg.", lw=1)
        boundary = np.nonzero(losses[:, 0] == 2)[0]
        if len(boundary) and boundary[0] > 0:
            ax.axvline(boundary[0] + 0.5, color="grey", ls="--", lw=0.8)
            ax.text(boundary[0] + 1, ax.get_ylim()[1], " noise maps", va="top", fontsize=8, color="grey")
        if np.all(losses[:, 1:3] > 0):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _suffix(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InversionError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def _output_names(fmt: str) -> list[str]:
    suffix = _suffix(fmt)
    return [f"{name}{suffix}" for name in (*MODALITIES, "normal")] + [
        LATENT_NAME, LOSS_PLOT_NAME, CONTACT_NAME, TARGET_NAME, RESULT_NAME,
    ]


def _check_out_dir(out: Path, fmt: str, *, overwrite: bool, resume: bool, inputs: Sequence[str | Path]) -> None:
    """The outputs' pre-flight (nothing touched): no input among them, none replaced that is not this
    command's own (by the folder's record), the interrupted state kept unless asked."""
    refuse_existing([out / n for n in _output_names(fmt)], overwrite or resume, inputs=inputs)
    state = out / STATE_NAME
    if overwrite:  # an interrupted state --overwrite discards must be this command's own
        refuse_existing([state], True)
    if state.exists() and not resume and not overwrite:
        raise InversionError(
            f"{out} holds an interrupted inversion ({STATE_NAME}); pass --resume to continue it or --overwrite to "
            "start over"
        )
    if resume and not state.exists():
        raise InversionError(f"cannot resume: {state} does not exist (nothing was interrupted in {out})")


def contact_image(
    maps: Mapping[str, np.ndarray], modality: str, target: np.ndarray | None, factor: int,
    mask: np.ndarray | None = None, title: str | None = None, long_side: int = 384,
):
    """Contact sheet (PIL image): target | reconstruction | |error|×4 above the completed modalities."""
    names = [n for n in (*MODALITIES, "normal") if n in maps]
    thumbs = thumbnails({n: maps[n] for n in names}, long_side=long_side, mask=mask)
    row1 = []
    if target is not None:
        big = _upsample_nearest(target, factor)
        t_thumb = thumbnails({modality: big}, long_side=long_side, mask=mask)[modality]
        label = f"target {target.shape[1]}x{target.shape[0]}" + (f" (1/{factor})" if factor > 1 else "")
        row1.append((t_thumb, label))
    row1.append((thumbs[modality], f"inverted {modality} {maps[modality].shape[1]}x{maps[modality].shape[0]}"))
    if target is not None:
        rec = area_downsample(maps[modality], factor)
        err = np.clip(np.abs(rec - target) * 4.0, 0.0, 1.0)
        err_big = _upsample_nearest(err, factor)
        row1.append((thumbnails({"error": err_big}, long_side=long_side)["error"], "|error| x4"))
    row2 = [(thumbs[n], n + (" (completed)" if n != modality else "")) for n in names if n != modality]
    return grid([row1, row2], title=title)


def write_outputs(
    out: Path, result: InversionResult, model: Any, *, target: np.ndarray | None, fmt: str = "exr",
    overwrite: bool = False, device: str | torch.device | None = None,
) -> dict[str, Path]:
    """Write the completed maps (+ normals), the contact sheet, the loss curve and result.json to `out`
    (with `gantlitz.generate`'s map writer and contact-sheet layout)."""
    suffix = _suffix(fmt)
    maps = complete(result, model, device=device)
    make_dirs(out)
    written: dict[str, Path] = {}
    for name, arr in maps.items():
        written[name] = write_map(out / f"{name}{suffix}", arr, name, overwrite=overwrite)
    mask = _unwrap(model).mask.detach().cpu().numpy()
    title = f"inversion ({result.mode}, {result.modality})" + (
        f"  PSNR {result.psnr:.2f} dB" if result.psnr is not None else "")
    sheet = contact_image(maps, result.modality, target, result.factor, mask=mask, title=title)
    written["contact"] = save_image(sheet, out / CONTACT_NAME, overwrite=True)
    if target is not None:
        from .imageio import write_image

        written["target"] = write_image(out / TARGET_NAME, target, bits=16, overwrite=True)
    written["loss"] = plot_losses(result.losses, out / LOSS_PLOT_NAME, title=title)
    summary = {
        "modality": result.modality, "mode": result.mode, "factor": result.factor, "psnr_db": result.psnr,
        "steps": [result.config.latent_steps, result.config.noise_steps],
        "final_pixel_loss": None if not len(result.losses) else float(result.losses[-1, 2]),
        "checkpoint": result.extra.get("checkpoint"), "target": result.extra.get("target"),
        "files": sorted(p.name for p in written.values()),
    }
    written["result"] = write_json(out / RESULT_NAME, summary, overwrite=True)
    return written


def _upsample_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    return image if factor == 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def run(
    checkpoint: str | Path, target_path: str | Path, out: str | Path, *, modality: str = "albedo",
    mode: Mode = "completion", config: InversionConfig | None = None, resume: bool = False,
    overwrite: bool = False, fmt: str = "exr", device: str | torch.device | None = None, progress: bool = True,
) -> InversionResult:
    """The `gantlitz invert` command: load, validate, invert (resumable), write every output to `out`."""
    with writing("invert"):
        return _run(checkpoint, target_path, Path(out), modality=modality, mode=mode, config=config or InversionConfig(),
                    resume=resume, overwrite=overwrite, fmt=fmt, device=device, progress=progress)


def _run(checkpoint: str | Path, target_path: str | Path, out: Path, *, modality: str, mode: Mode,
         config: InversionConfig, resume: bool, overwrite: bool, fmt: str, device: str | torch.device | None,
         progress: bool) -> InversionResult:
    cfg = config
    dev = resolve_device(device)
    _check_out_dir(out, fmt, overwrite=overwrite, resume=resume, inputs=[checkpoint, target_path])
    model = load(checkpoint, device=dev)
    G = _unwrap(model)
    target, _ = load_target(target_path, modality, G.canvas, mode)
    make_dirs(out)
    state = out / STATE_NAME
    if overwrite and not resume and state.exists():
        state.unlink()
    meta = {"checkpoint": str(Path(checkpoint).resolve()), "target": str(Path(target_path).resolve()),
            "model": _model_identity(model)}
    result = invert(model, target, modality, mode, cfg, device=dev, state_path=state, resume=resume,
                    progress=progress, meta=meta)
    assert result is not None
    save_latent(out / LATENT_NAME, result)
    write_outputs(out, result, model, target=target, fmt=fmt, overwrite=overwrite or resume, device=dev)
    state.unlink(missing_ok=True)
    return result


def regenerate(
    checkpoint: str | Path, latent: str | Path, out: str | Path, *, fmt: str = "exr", overwrite: bool = False,
    device: str | torch.device | None = None,
) -> InversionResult:
    """Turn a saved latent file back into the full set of maps (+ contact sheet and loss curve) in `out`,
    with the model the latent file records (another one is refused: its latents mean something else)."""
    out = Path(out)
    with writing("invert"):
        refuse_existing([out / n for n in _output_names(fmt) if n != LATENT_NAME], overwrite,
                        inputs=[checkpoint, latent])
        dev = resolve_device(device)
        model = load(checkpoint, device=dev)
        result = load_latent(latent, model)
        _check_model(latent, result.extra.get("model"), model)
        target = None
        tpath = result.extra.get("target")
        if tpath and Path(tpath).is_file():
            try:
                target, _ = load_target(tpath, result.modality, _unwrap(model).canvas, result.mode)
            except TargetError as exc:
                log.warning("not showing the original target: %s", exc)
        write_outputs(out, result, model, target=target, fmt=fmt, overwrite=overwrite, device=dev)
    return result


def _model_identity(model: Any) -> dict[str, Any]:
    """What a latent file records of the model it was made with: its file, preset, step and weights' digest."""
    return {"path": getattr(model, "path", None), "preset": getattr(model, "name", None),
            "step": getattr(model, "meta", {}).get("step"), "digest": ckpt.digest(_unwrap(model).state_dict())}


def _check_model(latent: str | Path, recorded: Any, model: Any) -> None:
    """Refuse to regenerate with weights other than the latent file's (the same latents give other maps)."""
    if not isinstance(recorded, dict) or "digest" not in recorded:
        log.warning("%s records no model (an older latent file): it can not be checked against %s", latent,
                    getattr(model, "path", "the model"))
        return
    if recorded["digest"] != ckpt.digest(_unwrap(model).state_dict()):
        raise InversionError(f"{latent}: made with another model ({recorded.get('path')}, preset "
                             f"{recorded.get('preset')}, step {recorded.get('step')}) than {getattr(model, 'path', '?')}; "
                             "regenerate with that model (the latents mean something else in another one)")
