"""GAN objectives and schedules (paper §4.4.5; docs/training.md).

- Non-saturating logistic loss (StyleGAN2): G minimises softplus(−D(G(z))); D minimises
  softplus(D(G(z))) + softplus(−D(x)).
- R1 (γ = 2), lazily: every `interval` discriminator steps a separate step adds
  (γ/2)·‖∇_x D(x)‖² · interval, where x is the discriminator's actual input (the *augmented* real
  patch, detached from the augmentation), so no double backward through the augmentation is needed.
  Adam's learning rate and betas of D are corrected for the extra steps (StyleGAN2's lazy
  regularisation: mb_ratio = interval / (interval + 1)).
- Learning rate ramped linearly from 0 to the target over the first `warmup` steps.
- EMA of the generator weights (decay 0.999), buffers copied.

All losses are computed in float32 whatever the autocast precision of the forward passes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "g_nonsaturating",
    "d_logistic",
    "r1_penalty",
    "r1_loss",
    "lazy_ratio",
    "lazy_adam_hparams",
    "warmup_lr",
    "ema_beta",
    "ema_update",
    "check_finite",
]


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss: mean softplus(−D(G(z)))."""
    return F.softplus(-fake_logits.float()).mean()


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: mean softplus(D(G(z))) + mean softplus(−D(x))."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """Per-sample ‖∇_x D(x)‖² (B,), differentiable w.r.t. D's parameters (create_graph).

    `real_inputs` must be the tensor D was called on, with requires_grad set."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_inputs, create_graph=True)
    return grad.float().square().sum(dim=tuple(range(1, grad.ndim)))


def r1_loss(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float, interval: int = 1) -> torch.Tensor:
    """Lazy R1 term: mean over samples of (γ/2)·‖∇_x D(x)‖², times the regularisation interval."""
    return r1_penalty(real_logits, real_inputs).mean() * (gamma / 2.0) * max(int(interval), 1)


def lazy_ratio(interval: int | None) -> float:
    """StyleGAN2's mb_ratio = interval / (interval + 1) (1 without lazy regularisation)."""
    if not interval or interval < 1:
        return 1.0
    return interval / (interval + 1.0)


def lazy_adam_hparams(lr: float, betas: tuple[float, float], interval: int | None) -> tuple[float, tuple[float, float]]:
    """(lr · r, (β1^r, β2^r)) with r = lazy_ratio(interval): the optimiser then behaves per `interval`
    main steps as it would without the extra regularisation steps."""
    r = lazy_ratio(interval)
    return lr * r, (betas[0] ** r, betas[1] ** r)


def warmup_lr(step: int, lr: float, warmup_steps: int) -> float:
    """Linear ramp from 0: step k (0-based) uses lr · min(1, (k + 1) / warmup_steps)."""
    if warmup_steps <= 0:
        return lr
    return lr * min(1.0, (step + 1) / warmup_steps)


def ema_beta(step: int, decay: float, rampup: float | None = None) -> float:
    """EMA decay at `step`. With `rampup` r the averaging horizon 1/(1−decay) (in steps) is capped at
    r·step, as StyleGAN2-ADA's ema_rampup, so early weights are forgotten quickly in short runs."""
    if not rampup:
        return decay
    horizon = 1.0 / max(1.0 - decay, 1e-12)
    horizon = min(horizon, max(step * rampup, 1.0))
    return 1.0 - 1.0 / horizon


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema ← model + beta·(ema − model) for parameters; buffers (w_avg, mask, ...) are copied."""
    ema_params = list(ema.parameters())
    params = list(model.parameters())
    if len(ema_params) != len(params):
        raise ValueError("EMA and model have different parameter lists")
    if beta == 0.0:
        for e, p in zip(ema_params, params):
            e.copy_(p)
    else:
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - beta)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def check_finite(values: dict[str, float]) -> str | None:
    """The first non-finite entry as 'name=value', or None."""
    for name, value in values.items():
        if not math.isfinite(value):
            return f"{name}={value}"
    return None


def location_loss(predicted: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, patch: int,
                  canvas: tuple[int, int]) -> torch.Tensor:
    """Mean squared error between predicted patch centres (B, 2) and the true ones, in [-1, 1] canvas
    units (row, column): the location-consistency loss of a D with a location head."""
    rows = (tops.float() + patch / 2) / canvas[0] * 2 - 1
    cols = (lefts.float() + patch / 2) / canvas[1] * 2 - 1
    return (predicted.float() - torch.stack([rows, cols], dim=1)).square().sum(1).mean()
