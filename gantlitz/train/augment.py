"""Discriminator augmentation (paper §4.2; docs/training.md): ADA subset, mid-band filter, modality dropout, adaptive p.

Applied identically to real and fake batches of (B, 5, P, P) patches in network space [-1, 1] (albedo
RGB 0:3, specular 3:4, displacement 4:5), after masking and before the discriminator. D concatenates its
positional channels itself, after augmentation, so no transform here ever moves location information.
Every transform is drawn independently per sample and is differentiable w.r.t. the input images.

Pipeline (order follows ADA: geometry → filter → corruption), per sample:

1. **Geometry** (adaptive p, each of rotation / scale / translation an independent Bernoulli(p)):
   rotation by an angle ~ U(-π·rotate_max, π·rotate_max), isotropic scale 2^N(0, scale_std) (log-normal),
   translation ~ U(-translate_max, translate_max) of the patch per axis. The three are composed into ONE
   affine matrix and applied with a single bilinear `F.grid_sample` with reflection padding, always in
   float32 (a bf16 grid would misplace bf16 fakes against fp32 reals); samples where no geometric
   transform fired are passed through bit-exactly.
   kornia's `RandomAffine` is not used: it draws one Bernoulli for the whole warp, whereas ADA draws one
   per component.
2. **Mid-band filter** (constant probability `midband_p` = 0.85; the adaptive p with `adaptive_freq`):
   convolution with a difference of Gaussians, DoG = G(σ1) − G(σ2), σ1 < σ2. Per sample a width ratio
   r = σ2/σ1 ~ logU(ratio_min, ratio_max) and σ1 ~ logU(sigma_min, sigma_max / r) are drawn, so both
   widths lie log-uniformly within [sigma_min, sigma_max] (defaults 0.5 px … P/8): the passbands range
   from near-Nyquist detail (pores, stubble) down to a few cycles per patch. The filter is a pure
   band-pass: DC is removed exactly and high frequencies decay as exp(−2π²σ1²f²). Its scale is fixed by a
   data-independent gain that makes the *peak* of its frequency response 1, so content inside the band
   passes at its original amplitude (a "mid-band view" of the patch) and real/fake energy differences in
   that band remain visible to D (a per-image energy normalisation would hide them). The convolution is
   done in the Fourier domain on a reflection-padded patch (pad P/2 per side; sigma_max = P/8 keeps the
   3σ support inside the padding), with the exact Gaussian transfer function, which costs O(P² log P)
   whatever the widths.
3. **Additive Gaussian noise** (adaptive p): x + σ·N(0, 1), σ = |N(0, noise_std)| per sample.
4. **Cutout** ("partial spatial masking", adaptive p): a rectangle of cutout_size × cutout_size of the
   patch, centred uniformly in the patch (so it may be clipped by the border), is zeroed.

No colour transforms (paper §4.2: they leak). `enabled=False` (NO-AUG) makes `Augment` the identity.
Every strength above is a field of `AugmentConfig` (`--set train.augment.noise_std=0.05`).

**No host synchronisation.** Every transform is computed for the whole batch and selected per sample
with `torch.where`; p may be a 0-d device tensor (`AdaptiveP.p_tensor`). `Augment.apply` is pure tensor
code (`torch.compile(..., fullgraph=True)` traces it); only `Augment.draw` touches the generator.

**Modality dropout** (GANtlitz-S) is not part of `Augment.forward`, because on fakes it happens inside
the generator: `keep = sample_modality_keep(B, gen)` gives (B, 3) bool with exactly two True per row
for `G(..., keep=keep)`, and `drop_modalities(reals, sample_modality_keep(B, gen))` zeroes one modality
per real sample. Both happen before masking/augmentation, as in the paper.

**R1 (design decision).** The training loop computes R1 w.r.t. the *augmented* real images, i.e. the
discriminator's actual input (detach the augmented reals, `requires_grad_()`, then D). No double
backward through `grid_sample` is needed (CUDA's `grid_sample` has none in torch 2.11); this module only
needs to be differentiable once, for the generator loss through the fake augmentation.

**Determinism.** All randomness comes from the `torch.Generator` passed to `forward` (the trainer's
random streams, `train.state.step_generator`; the module holds no random state of its own).
Parameters and the noise field are drawn on the generator's device (the trainer passes one on the
images' device) and moved to the images' device. A call consumes the same amount of the generator
whatever p is, so a resumed run (same generator state, same p) reproduces the same augmentations.

**Adaptive p.** `AdaptiveP` accumulates sign(D(real)) and every `ada_interval` steps sets
r_t = E[sign(D(real))] and p ← clamp(p + sign(r_t − target) · N / (ada_kimg · 1000), 0, 1), with N the
number of real images seen in the interval across all processes (= global batch · interval). Under
DistributedDataParallel pass `reduce=` a function that sums a tensor across ranks in place (e.g.
`lambda t: torch.distributed.all_reduce(t)`), so every rank gets the same p. Statistics and p stay on
the device; reading `AdaptiveP.p` as a float (logs, checkpoints) is the only synchronisation.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gantlitz.config import MODALITIES, AugmentConfig, keep_channels

__all__ = [
    "Augment",
    "AugmentDraw",
    "AdaptiveP",
    "sample_modality_keep",
    "drop_modalities",
    "midband_filter",
    "affine_warp",
    "affine_matrices",
    "cutout_masks",
]


# ----------------------------------------------------------------------------------------------------
# Functional building blocks (deterministic given their parameters)


def affine_matrices(
    angle: torch.Tensor, log2_scale: torch.Tensor, translate: torch.Tensor
) -> torch.Tensor:
    """Per-sample output→input sampling matrices (B, 2, 3) in normalised [-1, 1] coordinates.

    The content is scaled by 2**log2_scale, rotated by `angle` (radians) about the patch centre, then
    translated by `translate` (B, 2) = (dx, dy) in fractions of the patch (+x right, +y down). The
    returned matrix is the inverse of that forward transform, as `F.affine_grid` expects.
    """
    inv_s = torch.exp2(-log2_scale)
    c, s = torch.cos(angle), torch.sin(angle)
    t = translate * 2.0  # fraction of the patch → normalised units (the patch spans 2)
    # inverse: S^-1 R(-a) (x - t)
    a11, a12 = c * inv_s, s * inv_s
    a21, a22 = -s * inv_s, c * inv_s
    b1 = -(a11 * t[:, 0] + a12 * t[:, 1])
    b2 = -(a21 * t[:, 0] + a22 * t[:, 1])
    row1 = torch.stack([a11, a12, b1], dim=-1)
    row2 = torch.stack([a21, a22, b2], dim=-1)
    return torch.stack([row1, row2], dim=1)


def affine_warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """One bilinear resampling of `images` (B, C, H, W) with output→input matrices `theta` (B, 2, 3),
    reflection padding, align_corners=False; computed in float32 (or float64) whatever the images' dtype
    or autocast, returned in the images' dtype."""
    dt = _compute_dtype(images)
    with torch.autocast(images.device.type, enabled=False):
        x = images.to(dt)
        grid = F.affine_grid(theta.to(dt), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.to(images.dtype)


def _compute_dtype(images: torch.Tensor) -> torch.dtype:
    """float64 for float64 input (gradient checks), else float32: a bf16 sampling grid misplaces samples by
    up to 1.4 px on a 512 patch, which would let D tell bf16 fakes from fp32 reals."""
    return torch.float64 if images.dtype == torch.float64 else torch.float32


def _dog_response(sigma1: torch.Tensor, sigma2: torch.Tensor, h: int, w: int, device, dtype) -> torch.Tensor:
    """DoG transfer function on the rfft2 grid of an (h, w) image, normalised to unit peak → (B, 1, h, w//2+1)."""
    fy = torch.fft.fftfreq(h, device=device, dtype=dtype)
    fx = torch.fft.rfftfreq(w, device=device, dtype=dtype)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2  # cycles/pixel, squared
    k = -2.0 * math.pi**2
    s1 = sigma1.to(device=device, dtype=dtype)[:, None, None] ** 2
    s2 = sigma2.to(device=device, dtype=dtype)[:, None, None] ** 2
    resp = torch.exp(k * s1 * f2) - torch.exp(k * s2 * f2)
    peak = resp.flatten(1).amax(dim=1).clamp_min(1e-12)
    return (resp / peak[:, None, None])[:, None]


def midband_filter(images: torch.Tensor, sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """Band-pass `images` (B, C, H, W) with G(sigma1) − G(sigma2) (per-sample widths in pixels, (B,)),
    scaled to unit peak frequency response. Computed by FFT on a reflection-padded copy (pad H/2, W/2)."""
    orig_dtype = images.dtype
    x = images if orig_dtype in (torch.float32, torch.float64) else images.float()
    b, c, h, w = x.shape
    ph, pw = h // 2, w // 2
    xp = F.pad(x, (pw, pw, ph, ph), mode="reflect") if ph and pw else x
    hh, ww = xp.shape[-2:]
    resp = _dog_response(sigma1, sigma2, hh, ww, x.device, x.dtype)
    spec = torch.fft.rfft2(xp) * resp
    out = torch.fft.irfft2(spec, s=(hh, ww))[..., ph : ph + h, pw : pw + w]
    return out.to(orig_dtype)


def cutout_masks(centre: torch.Tensor, size: float, h: int, w: int, device, dtype) -> torch.Tensor:
    """(B, 1, h, w) masks, 0 inside a size × size (fraction of the patch) rectangle centred at `centre`
    (B, 2) = (cx, cy) in [0, 1], 1 elsewhere."""
    centre = centre.to(device=device, dtype=dtype)
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    inside_x = (xs[None, :] - centre[:, 0:1]).abs() < size / 2  # (B, w)
    inside_y = (ys[None, :] - centre[:, 1:2]).abs() < size / 2  # (B, h)
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return (~inside).to(dtype)[:, None]


# ----------------------------------------------------------------------------------------------------
# Modality dropout (GANtlitz-S)


def sample_modality_keep(
    batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """(B, 3) bool: per sample, exactly one modality (uniformly chosen) is False, the other two True.

    Use as `G(..., keep=keep)` for fakes and `drop_modalities(reals, keep)` for reals (draw separately)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    drop = torch.randint(len(MODALITIES), (batch,), generator=generator, device=gen_device)
    keep = torch.ones(batch, len(MODALITIES), dtype=torch.bool, device=gen_device)
    keep[torch.arange(batch, device=gen_device), drop] = False
    return keep if device is None else keep.to(device)


def drop_modalities(images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Zero the channels of the modalities with keep == False: images (B, 5, H, W), keep (B, 3) bool."""
    chan = keep_channels(keep)
    if chan.shape[1] != images.shape[1]:
        raise ValueError(f"expected {chan.shape[1]} channels, got {tuple(images.shape)}")
    return images * chan.to(device=images.device, dtype=images.dtype)[:, :, None, None]


# ----------------------------------------------------------------------------------------------------
# The augmentation module


class AugmentDraw(NamedTuple):
    """One call's random numbers: a (B, 13) uniform, a (B, 2) normal and the noise field (or None).

    Drawn by `Augment.draw` (the only part that touches a `torch.Generator`, which `torch.compile` can
    not trace) and consumed by `Augment.apply` (pure tensor code, compilable with fullgraph=True)."""

    uniform: torch.Tensor
    normal: torch.Tensor
    noise: torch.Tensor | None

    def rows(self, index: slice) -> "AugmentDraw":
        """The random numbers of some samples (a chunk of the batch gets what the whole batch would)."""
        return AugmentDraw(self.uniform[index], self.normal[index], None if self.noise is None else self.noise[index])


class Augment(nn.Module):
    """Discriminator augmentation of (B, 5, P, P) network-space patches; see the module docstring.

    `forward(images, p, generator=None)` = `apply(images, draw(images, generator), p)`: `p` (a float or
    a 0-d tensor on the images' device, so the adaptive p never has to visit the host) is the adaptive
    probability (ADA transforms, and the mid-band filter with `adaptive_freq`); the mid-band filter
    otherwise fires with `cfg.midband_p`. Strengths and mid-band widths come from the `AugmentConfig`.
    """

    def __init__(self, cfg: AugmentConfig | None = None, patch_size: int = 512) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else AugmentConfig()
        self.patch_size = int(patch_size)
        self.sigma_min = float(cfg.sigma_min)
        self.sigma_max = float(cfg.sigma_max if cfg.sigma_max is not None else self.patch_size / 8)
        self.ratio_min = float(cfg.ratio_min)
        # the widest ratio must still leave room for sigma1 >= sigma_min
        self.ratio_max = float(min(cfg.ratio_max, self.sigma_max / self.sigma_min)) if self.sigma_min > 0 else 0.0
        if not (0 < self.sigma_min and 1 < self.ratio_min <= self.ratio_max):
            raise ValueError(
                f"mid-band widths need 0 < sigma_min and 1 < ratio_min <= min(ratio_max, sigma_max/sigma_min); "
                f"got sigma_min={cfg.sigma_min}, sigma_max={self.sigma_max}, ratio=[{cfg.ratio_min}, {cfg.ratio_max}]"
            )

    def extra_repr(self) -> str:
        return f"enabled={self.cfg.enabled}, patch_size={self.patch_size}, midband_p={self.cfg.midband_p}, " \
               f"adaptive_freq={self.cfg.adaptive_freq}"

    # -- forward -------------------------------------------------------------------------------------

    def draw(self, images: torch.Tensor, generator: torch.Generator) -> AugmentDraw:
        """The random numbers of one call, drawn on the generator's device and moved to the images'.

        The consumption of the generator depends only on the batch shape and the configuration, never on
        p, so a resumed run (same generator state, same p) reproduces the same augmentations. A generator
        on the images' device avoids any host involvement."""
        gen = generator
        b = images.shape[0]
        dev, dt = images.device, _compute_dtype(images)
        uniform = torch.rand(b, 13, generator=gen, device=gen.device, dtype=torch.float64)
        normal = torch.randn(b, 2, generator=gen, device=gen.device, dtype=torch.float64)
        noise = None
        if self.cfg.noise:
            noise = torch.randn(images.shape, generator=gen, device=gen.device, dtype=dt).to(dev)
        return AugmentDraw(uniform.to(device=dev, dtype=dt), normal.to(device=dev, dtype=dt), noise)

    def apply(self, images: torch.Tensor, draw: AugmentDraw, p: float | torch.Tensor) -> torch.Tensor:
        """The augmentation given its random numbers: every transform is computed for the whole batch and
        selected per sample with `torch.where` (no data-dependent shapes or branches, hence no host
        synchronisation). Computed in float32 (float64 for float64 input) whatever the images' dtype and
        any autocast, so bf16 fakes and fp32 reals of equal content get identical warps."""
        cfg = self.cfg
        b, _, h, w = images.shape
        u, n = draw.uniform, draw.normal
        p = p.clamp(0.0, 1.0) if isinstance(p, torch.Tensor) else min(max(float(p), 0.0), 1.0)
        p_mid = p if cfg.adaptive_freq else min(max(float(cfg.midband_p), 0.0), 1.0)
        never = torch.zeros(b, dtype=torch.bool, device=images.device)

        def fires(col: int, prob: float | torch.Tensor, flag: bool = True) -> torch.Tensor:
            return u[:, col] < prob if flag else never

        def select(mask: torch.Tensor, changed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return torch.where(mask[:, None, None, None], changed, x)

        with torch.autocast(images.device.type, enabled=False):
            x = images.to(_compute_dtype(images))
            # 1. geometry, composed into one resampling
            if cfg.rotate or cfg.scale or cfg.translate:
                do_rot, do_scale, do_xlate = fires(0, p, cfg.rotate), fires(1, p, cfg.scale), fires(2, p, cfg.translate)
                angle = (u[:, 3] * 2 - 1) * (math.pi * cfg.rotate_max) * do_rot
                log2_scale = n[:, 0] * cfg.scale_std * do_scale
                translate = (u[:, 4:6] * 2 - 1) * cfg.translate_max * do_xlate[:, None]
                theta = affine_matrices(angle, log2_scale, translate)
                x = select(do_rot | do_scale | do_xlate, affine_warp(x, theta), x)
            # 2. mid-band filter (difference of Gaussians); both widths log-uniform in [sigma_min, sigma_max]
            if cfg.midband_p > 0 or cfg.adaptive_freq:
                log_rmin, log_smin = math.log(self.ratio_min), math.log(self.sigma_min)
                ratio = torch.exp(log_rmin + u[:, 7] * (math.log(self.ratio_max) - log_rmin))
                sigma1 = torch.exp(log_smin + u[:, 8] * (torch.log(self.sigma_max / ratio) - log_smin))
                x = select(fires(6, p_mid), midband_filter(x, sigma1, sigma1 * ratio), x)
            # 3. additive Gaussian noise
            if draw.noise is not None:
                std = n[:, 1].abs() * cfg.noise_std
                x = select(fires(9, p), x + draw.noise * std[:, None, None, None], x)
            # 4. cutout
            if cfg.cutout:
                keep = cutout_masks(u[:, 11:13], cfg.cutout_size, h, w, x.device, x.dtype)
                x = select(fires(10, p), x * keep, x)
        return x.to(images.dtype)

    def forward(self, images: torch.Tensor, p: float | torch.Tensor, generator: torch.Generator | None = None,
                draw: AugmentDraw | None = None) -> torch.Tensor:
        """`draw` (e.g. rows of a whole batch's draw) replaces drawing from `generator`; one of them is needed
        unless augmentation is off."""
        if not self.cfg.enabled:
            return images
        if images.ndim != 4:
            raise ValueError(f"expected (B, C, H, W), got {tuple(images.shape)}")
        if generator is None and draw is None:
            raise ValueError("Augment needs a torch.Generator (or a draw): it holds no random state of its own")
        return self.apply(images, self.draw(images, generator) if draw is None else draw, p)


# ----------------------------------------------------------------------------------------------------
# Adaptive probability controller


class AdaptiveP:
    """ADA's overfitting heuristic r_t = E[sign(D(real))] driving the augmentation probability p.

    Call `update(d_real_logits)` once per discriminator step with that step's real logits. Every
    `interval` calls, the accumulated sums are reduced (`reduce`, in-place sum across processes; default
    none), r_t is computed and p moves by sign(r_t − target) · N / (kimg · 1000), N = real images in the
    interval (all processes), then is clamped to [0, 1]. Accumulation and adjustment are tensor operations
    on `device` (float64): the training step never waits for the host. `p_tensor` feeds `Augment`; the
    float properties `p` and `r_t` read the device (for logs and checkpoints only). With `frozen=True`
    (NO-AUG) p never moves.
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 100.0,
        p: float = 0.0,
        reduce: Callable[[torch.Tensor], object] | None = None,
        frozen: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if interval < 1 or kimg <= 0:
            raise ValueError(f"interval must be >= 1 and kimg > 0, got {interval}, {kimg}")
        self.target = float(target)
        self.interval = int(interval)
        self.kimg = float(kimg)
        self.reduce = reduce
        self.frozen = bool(frozen)
        self.steps = 0  # calls since the last adjustment
        self.adjustments = 0
        self.device = torch.device(device)
        self.p_tensor = torch.tensor(min(max(float(p), 0.0), 1.0), dtype=torch.float64, device=self.device)
        self.r_t_tensor = torch.zeros((), dtype=torch.float64, device=self.device)
        self._acc = torch.zeros(2, dtype=torch.float64, device=self.device)  # [sum of signs, count]

    @classmethod
    def from_config(
        cls, cfg: AugmentConfig, reduce: Callable[[torch.Tensor], object] | None = None,
        device: torch.device | str = "cpu",
    ) -> "AdaptiveP":
        return cls(cfg.ada_target, cfg.ada_interval, cfg.ada_kimg, cfg.p_init if cfg.enabled else 0.0,
                   reduce=reduce, frozen=not cfg.enabled, device=device)

    @property
    def p(self) -> float:
        return float(self.p_tensor)

    @property
    def r_t(self) -> float:
        return float(self.r_t_tensor)

    def update(self, d_real_logits: torch.Tensor) -> bool:
        """Accumulate one step's real logits; returns True when p was adjusted on this call."""
        logits = d_real_logits.detach().flatten().to(device=self.device, dtype=torch.float64)
        self._acc[0] += torch.sign(logits).sum()
        self._acc[1] += logits.numel()
        self.steps += 1
        if self.steps < self.interval:
            return False
        acc = self._acc.clone()
        if self.reduce is not None:
            self.reduce(acc)
        total, count = acc[0], acc[1]
        self.r_t_tensor.copy_(total / count)
        if not self.frozen:  # in place: holders of p_tensor see the new p
            step = torch.sign(self.r_t_tensor - self.target) * count / (self.kimg * 1000.0)
            self.p_tensor.copy_((self.p_tensor + step).clamp(0.0, 1.0))
        self._acc.zero_()
        self.steps = 0
        self.adjustments += 1
        return True

    def state_dict(self) -> dict[str, float]:
        """Plain floats (JSON-safe). Includes the partial accumulation of the current interval (local)."""
        acc_sum, acc_count = (float(v) for v in self._acc.tolist())
        return {"p": self.p, "r_t": self.r_t, "steps": float(self.steps), "adjustments": float(self.adjustments),
                "acc_sum": acc_sum, "acc_count": acc_count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p_tensor.fill_(min(max(float(state["p"]), 0.0), 1.0))
        self.r_t_tensor.fill_(float(state.get("r_t", 0.0)))
        self.steps = int(state.get("steps", 0))
        self.adjustments = int(state.get("adjustments", 0))
        self._acc = torch.tensor([float(state.get("acc_sum", 0.0)), float(state.get("acc_count", 0.0))],
                                 dtype=torch.float64, device=self.device)
