"""Inversion (paper §5.2): project a texture into W+ and the noise maps; modality completion, super-resolution.

Two stages, as in the paper (§5.2; docs/inversion.md):

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

from .files import contact_image, plot_losses, regenerate, run, write_outputs
from .optimise import invert
from .state import InversionConfig, InversionResult, InversionState, complete, load_latent, save_latent, synthesize_maps
from .targets import InversionError, TargetError, check_target, load_target, psnr, reconstruction_psnr, superres_factor

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
    "InversionState",
]

