"""Named presets and their resolution against a dataset: the paper's GANtlitz-L / -S, the seven ablations of §5.6, the global baseline, and tiny.

Every ablation differs from GANtlitz-S in exactly one aspect, as in the paper.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

from .config import (AugmentConfig, ModelConfig, Preset, TrainConfig, apply_overrides, validate,
                     validate_preset)
from .errors import ConfigError

_L_MODEL = ModelConfig()
_S_MODEL = dataclasses.replace(_L_MODEL, g_halve_last=(1, 1))  # paper §4.3.1: D keeps L's widths
_S_TRAIN = TrainConfig(
    batch=3, group_size=3, augment=AugmentConfig(modality_dropout=True)
)


def _ablation(name: str, description: str, model: ModelConfig = _S_MODEL, **augment: object) -> Preset:
    train = dataclasses.replace(_S_TRAIN, augment=dataclasses.replace(_S_TRAIN.augment, **augment))
    return Preset(name=name, model=model, train=train, description=description)


_TINY_MODEL = ModelConfig(
    canvas_height=256, canvas_width=256, patch_size=64, z_dim=64, w_dim=64, embed_dim=64,
    pe_channels=64, channel_base=1024, channel_max=64, d_channel_base=1024, d_channel_max=64,
    # measured at the demo's budget (docs/training.md, "Learning the layout"): location by projection in
    # D, a learned input map in G and D's location head give the first layout and the best KID
    disc_pos_inject="project", pe_learned=True, disc_locate=True,
)
_TINY_TRAIN = TrainConfig(
    batch=4, group_size=2, warmup_steps=100, r1_interval=4, ema_rampup=0.05, steps=2000, checkpoint_every=200,
    preview_every=200, log_every=10, precision="fp32", workers=0,
    # measured at equal wall time (docs/training.md, "Time to layout"): a whole-canvas view at level 1
    # (32x32) with moment matching there places the face; the patch objective alone does not
    whole_level=1, whole_moment_weight=100.0,
    augment=AugmentConfig(ada_kimg=5.0),
)

_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("gantlitz-l", _L_MODEL, TrainConfig(batch=4, group_size=2),
               description="GANtlitz-L: full capacity, all three modalities per sample"),
        Preset("gantlitz-s", _S_MODEL, _S_TRAIN,
               description="GANtlitz-S: last two G levels halved (D as in L), modality dropout"),
        _ablation("no-aug", "GANtlitz-S without any augmentation", enabled=False),
        _ablation("adaptive-freq", "GANtlitz-S with the mid-band filter at the adaptive p", adaptive_freq=True),
        _ablation(
            "small-no-drop",
            "GANtlitz-S without modality dropout; last G level halved once more, first two D layers halved",
            model=dataclasses.replace(_S_MODEL, g_halve_last=(1, 2), d_halve_first=(1, 1)),
            modality_dropout=False,
        ),
        _ablation("no-pos-disc", "GANtlitz-S without positional channels in D",
                  model=dataclasses.replace(_S_MODEL, disc_pos="none")),
        _ablation("uv-disc", "GANtlitz-S with 2 raw UV channels in D instead of 20 sinusoids",
                  model=dataclasses.replace(_S_MODEL, disc_pos="uv")),
        _ablation("no-dual", "GANtlitz-S with one 5-channel pass instead of dual-style blocks",
                  model=dataclasses.replace(_S_MODEL, dual_style=False)),
        _ablation("no-bias", "GANtlitz-S without the per-modality bias offset",
                  model=dataclasses.replace(_S_MODEL, modality_bias=False)),
        Preset(
            "mmstylegan2-ada",
            ModelConfig(canvas_height=1024, canvas_width=1024, patch_size=1024, channel_base=32768,
                        d_channel_base=32768, dual_style=False, disc_pos="none"),
            TrainConfig(batch=4, group_size=1, augment=AugmentConfig(midband_p=0.0)),
            global_res=1024,
            description="Global baseline: whole textures resized to 1024x1024, 5 output channels, mask, ADA",
        ),
        Preset("tiny", _TINY_MODEL, _TINY_TRAIN,
               description="CPU-sized model for tests and the demo: 64-pixel patches, few channels"),
    )
}


def names() -> list[str]:
    """All preset names, in the order of the paper."""
    return list(_PRESETS)


def get(name: str) -> Preset:
    """Look a preset up by name; unknown names list the valid ones."""
    try:
        return _PRESETS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(_PRESETS)}") from None


def resolve(
    preset: str | Preset, overrides: Mapping[str, Any] | Sequence[str] | None = None, *,
    canvas: tuple[int, int] | None = None, data_path: str | os.PathLike | None = None,
) -> Preset:
    """Preset (by name) + overrides, on the dataset's canvas; clear errors for impossible combinations.

    The global baseline (`global_res` set) trains an R×R whole-image model: canvas = patch = R."""
    base = get(preset) if isinstance(preset, str) else preset
    resolved = validate(apply_overrides(base, overrides))
    where = f" ({data_path})" if data_path is not None else ""
    if resolved.global_res is not None:
        r = int(resolved.global_res)
        if r < 8 or r & (r - 1):
            raise ConfigError(f"global_res must be a power of two >= 8, got {r}")
        try:
            model = dataclasses.replace(resolved.model, canvas_height=r, canvas_width=r, patch_size=r)
        except ValueError as exc:
            raise ConfigError(f"global_res={r}: {exc}") from None
        return dataclasses.replace(resolved, model=model)
    if canvas is not None:
        h, w = canvas
        p = resolved.model.patch_size
        if h % p or w % p:
            raise ConfigError(
                f"the dataset canvas {w}x{h}{where} is not divisible by the patch size {p} of preset "
                f"{resolved.name!r}; choose another preset or --set model.patch_size=N (a power of two dividing both)"
            )
        try:
            resolved = resolved.with_canvas(h, w)
        except ValueError as exc:
            raise ConfigError(f"preset {resolved.name!r} on canvas {w}x{h}{where}: {exc}") from None
        validate_preset(resolved)  # the location grid and the whole-canvas level depend on the canvas
    return resolved
