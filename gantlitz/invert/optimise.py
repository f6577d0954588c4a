"""The optimisation: the projector's schedule and Adam on tensor views, the masked multi-scale pixel loss,
the noise regularisers, the candidate regions, and the two stages (`invert`)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..geometry import level0_unit, level_step, level_window, windows
from ..nn.generator import Generator
from ..resample import block_mean, unit_to_network
from .state import InversionConfig, InversionResult, InversionState, generator_of, synthesize_maps
from .targets import Mode, TargetError, check_target, reconstruction_psnr

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


def _layer_slices(
    G: Generator, top: int, left: int, height: int, width: int, whole: int
) -> list[tuple[slice, slice]]:
    """Per noise layer, the map slices that a stage-2 step optimises and regularises.

    Large layers: the crop (margins included) that synthesising the region reads — memory stays bounded.
    Small (coarse) layers (at most `whole` samples): the whole map, so that the pixel-correlation penalty
    sees the whole map rather than a small window whose chance correlations differ every step.
    """
    out = []
    for lay in G.noise_layouts():
        full_h, full_w = lay.height + 2 * lay.margin, lay.width + 2 * lay.margin
        if full_h * full_w <= whole:
            out.append((slice(0, full_h), slice(0, full_w)))
            continue
        (y, h), (x, w) = (level_window(top, height, G.patch_size, lay.level, lay.margin),
                          level_window(left, width, G.patch_size, lay.level, lay.margin))
        out.append((slice(y + lay.margin, y + lay.margin + h), slice(x + lay.margin, x + lay.margin + w)))
    return out


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
    cands = [(top, left) for top, left in windows(ch, cw, rh, rw, stride)
             if coverage[top // factor : (top + rh) // factor, left // factor : (left + rw) // factor].sum() > 0]
    if not cands:
        raise TargetError("the model's mask is empty: nothing to invert")
    return _Regions(rh, rw, cands)


def _pick(regions: _Regions, rng: np.random.Generator) -> tuple[int, int]:
    return regions.candidates[int(rng.integers(len(regions.candidates)))]


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
        weights = [cfg.superres_noise_boost if (factor > 1 and level_step(G.patch_size, lay.level) < factor) else 1.0
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
        src = noise.crops(slices)
        crops = src.maps
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
    G = generator_of(model)
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
