"""The one configuration gate: every field's type, finiteness and range, the rules between fields and
against the patch geometry, and the user-facing limits on seeds and truncation.

`validate(preset)` runs before any folder is created or network built, wherever the preset came from
(a name, `--set`, a config file, a checkpoint); networks and the trainer only assert.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from ..errors import ConfigError, UsageError
from ..geometry import level0_unit, level_canvas
from .fields import AugmentConfig, ModelConfig, Preset, TrainConfig

IntRanges = dict[str, tuple[int, int | None]]
"""Closed ranges of integer fields by name (None: no upper bound)."""
FloatRanges = dict[str, tuple[float, float, bool]]
"""(low, high, low excluded) of float fields by name; every float must also be finite."""

SEED_MAX = 2**32 - 1
"""Seeds are 32-bit: a larger one would repeat a smaller one (the generators hash 32 bits)."""
SEEDS_MAX = 100_000
"""Most seeds (textures) one command takes over all its ranges."""
CHANNELS_MAX = 4096
"""No network of this project has wider layers; a typo (or a tampered file) asking for more is refused
before anything is allocated."""
CANVAS_MAX = 65536
"""Canvas sides beyond this are refused (a 64K x 64K canvas is already 20 GB per modality at uint16)."""

_INT_RANGES: dict[str, IntRanges] = {
    "model": {"z_dim": (1, CHANNELS_MAX), "w_dim": (1, CHANNELS_MAX), "mapping_layers": (1, 32),
              "embed_dim": (1, CHANNELS_MAX), "pe_channels": (1, CHANNELS_MAX), "channel_base": (1, 2**20),
              "channel_max": (1, CHANNELS_MAX), "d_channel_base": (1, 2**20), "d_channel_max": (1, CHANNELS_MAX),
              "disc_pos_periods": (1, 32), "canvas_height": (8, CANVAS_MAX), "canvas_width": (8, CANVAS_MAX),
              "patch_size": (8, 4096)},
    "train": {"batch": (1, 4096), "group_size": (1, 4096), "warmup_steps": (0, None), "r1_interval": (1, None),
              "steps": (0, None), "checkpoint_every": (1, None), "preview_every": (0, None), "log_every": (1, None),
              "seed": (0, SEED_MAX), "workers": (0, 256), "keep_checkpoints": (1, None), "g_chunks": (1, 4096)},
    "train.augment": {"ada_interval": (1, None)},
}
"""Closed ranges of the integer fields (None: no upper bound)."""

_FLOAT_RANGES: dict[str, FloatRanges] = {
    "model": {"pe_min_period": (2.0, math.inf, False), "disc_pos_scale": (0.0, math.inf, False),
              "conv_clamp": (0.0, math.inf, True)},
    "train": {"lr": (0.0, math.inf, True), "r1_gamma": (0.0, math.inf, False), "locate_weight": (0.0, math.inf, False),
              "ema_decay": (0.0, 1.0, False), "ema_rampup": (0.0, math.inf, True), "style_mixing": (0.0, 1.0, False)},
    "train.augment": {"ada_target": (0.0, 1.0, False), "p_init": (0.0, 1.0, False), "midband_p": (0.0, 1.0, False),
                      "cutout_size": (0.0, 1.0, False), "noise_std": (0.0, math.inf, False),
                      "rotate_max": (0.0, 1.0, False), "scale_std": (0.0, math.inf, False),
                      "translate_max": (0.0, 1.0, False), "ada_kimg": (0.0, math.inf, True),
                      "sigma_min": (0.0, math.inf, True), "sigma_max": (0.0, math.inf, True),
                      "ratio_min": (1.0, math.inf, True), "ratio_max": (1.0, math.inf, True)},
}
"""(low, high, low excluded) of the float fields; every float must also be finite. ema_decay < 1 is
checked on its own (an open upper end)."""


def check_seed(seed: Any, name: str = "seed") -> int:
    """`seed` as an int if it is one in 0 .. 2^32-1, else a `UsageError` saying the range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise UsageError(f"{name} {seed!r} out of range (0 .. 2^32-1 = {SEED_MAX}: larger seeds would repeat "
                          "smaller ones)")
    return seed


TRUNCATION_MAX = 2.0
"""|psi| beyond this moves w so far past the average that every map saturates (1e6 clips every pixel)."""


def check_truncation(psi: float) -> float:
    """The truncation psi if it is finite and |psi| <= TRUNCATION_MAX, else a `UsageError`."""
    if not (math.isfinite(psi) and abs(psi) <= TRUNCATION_MAX):
        raise UsageError(f"--truncation {psi}: must be a finite number in [-{TRUNCATION_MAX:g}, {TRUNCATION_MAX:g}] "
                         "(1 = none, 0 = the average face)")
    return float(psi)


def _type_problem(value: Any, tp: Any) -> bool:
    """Whether `value` is not of the field type `tp` (ints are floats too; bools are no numbers)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return all(_type_problem(value, a) for a in args)
    if origin is Literal:
        return value not in args
    if origin is tuple:
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return (not isinstance(value, tuple) or len(value) != len(items)
                or any(_type_problem(v, a) for v, a in zip(value, items)))
    if tp is type(None):
        return value is not None
    if tp is float:
        return isinstance(value, bool) or not isinstance(value, (int, float))
    if tp is int:
        return isinstance(value, bool) or not isinstance(value, int)
    return not isinstance(value, tp)


def _type_name(tp: Any) -> str:
    """'float', 'int | None', "Literal['fp32', 'bf16']": a field type as a user reads it."""
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def field_problems(obj: Any, section: str, ints: IntRanges | None = None, floats: FloatRanges | None = None
                   ) -> list[str]:
    """Every field of one settings dataclass: its type, finiteness and range (closed integer ranges, None
    meaning unbounded; float ranges as (low, high, low excluded)). The preset's sections use the ranges
    below; other settings (the inversion's) pass their own."""
    hints, bad = typing.get_type_hints(type(obj)), []
    ints = _INT_RANGES.get(section, {}) if ints is None else ints
    floats = _FLOAT_RANGES.get(section, {}) if floats is None else floats
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{section}.{f.name}"
        if dataclasses.is_dataclass(value):
            continue
        if _type_problem(value, hints[f.name]):
            bad.append(f"{key}={value!r} is not of type {_type_name(hints[f.name])}")
        elif isinstance(value, float) and not math.isfinite(value):
            bad.append(f"{key}={value} is not finite")
        elif f.name in ints and value is not None:
            lo, hi = ints[f.name]
            if value < lo or (hi is not None and value > hi):
                bad.append(f"{key}={value} must lie in [{lo}, {hi if hi is not None else 'inf'}]")
        elif f.name in floats and value is not None:
            lo, hi, open_low = floats[f.name]
            if (value <= lo if open_low else value < lo) or value > hi:
                bad.append(f"{key}={value} must be {'>' if open_low else '>='} {lo:g}" + (f" and <= {hi:g}" if
                                                                                           math.isfinite(hi) else ""))
    return bad


def _model_rules(cfg: ModelConfig) -> list[str]:
    """The rules between model fields (levels, halvings)."""
    bad, levels = [], cfg.num_levels
    for name in ("g_halve_last", "d_halve_first"):
        halvings = getattr(cfg, name)
        if len(halvings) > levels or any(h < 0 or h > 12 for h in halvings):
            bad.append(f"model.{name}={halvings}: at most {levels} halvings of 0 .. 12 each")
    return bad


def _train_rules(cfg: TrainConfig) -> list[str]:
    """The rules between training fields (groups, chunks, betas, the ADA and mid-band ranges)."""
    bad = []
    if cfg.batch % cfg.group_size:
        bad.append(f"train.batch {cfg.batch} must be a multiple of group_size {cfg.group_size} (batches are "
                   "groups of samples from one patch location)")
    elif (cfg.batch // cfg.group_size) % cfg.g_chunks:
        bad.append(f"train.g_chunks={cfg.g_chunks} must divide the batch's {cfg.batch // cfg.group_size} location groups")
    if not all(0 <= b < 1 for b in cfg.betas):
        bad.append(f"train.betas={cfg.betas}: Adam's betas must lie in [0, 1)")
    if not cfg.ema_decay < 1:
        bad.append(f"train.ema_decay={cfg.ema_decay} must be < 1")
    aug = cfg.augment
    if aug.sigma_max is not None and aug.sigma_max < aug.sigma_min:
        bad.append(f"train.augment: need sigma_min <= sigma_max, got {aug.sigma_min}, {aug.sigma_max}")
    if aug.ratio_min > aug.ratio_max:
        bad.append(f"train.augment: need 1 < ratio_min <= ratio_max, got {aug.ratio_min}, {aug.ratio_max}")
    return bad


def _raise(bad: list[str]) -> None:
    if bad:
        raise ConfigError("invalid settings: " + "; ".join(bad))


def validate_model(cfg: ModelConfig) -> None:
    """Refuse a model no network can have (before anything is built): types, ranges, the levels' rules."""
    _raise(field_problems(cfg, "model") or _model_rules(cfg))


def validate_augment(cfg: AugmentConfig) -> None:
    """Refuse augmentation settings outside their ranges (probabilities in [0, 1], widths positive)."""
    _raise(field_problems(cfg, "train.augment"))


def validate_train(cfg: TrainConfig) -> None:
    """Refuse training settings no run can use (checked when a preset is resolved)."""
    _raise(field_problems(cfg, "train") + field_problems(cfg.augment, "train.augment") or _train_rules(cfg))


def validate(preset: Preset) -> Preset:
    """The one gate for a preset (from the CLI, `--set`, a config file or a checkpoint), run before any
    folder is created or network built: every field's type, finiteness and range and the rules between
    them. Returns the preset; raises `ConfigError` listing every problem found."""
    if preset.global_res is not None and (_type_problem(preset.global_res, int) or preset.global_res < 8
                                          or preset.global_res > 4096 or preset.global_res & (preset.global_res - 1)):
        raise ConfigError(f"global_res must be a power of two in 8 .. 4096, got {preset.global_res!r}")
    validate_model(preset.model)
    validate_train(preset.train)
    validate_preset(preset)
    return preset


def validate_preset(preset: Preset) -> None:
    """Refuse training settings the preset's model can not run (the location grid, the moment cells and
    the whole-canvas level depend on the patch geometry)."""
    cfg, model = preset.train, preset.model
    if not (math.isfinite(cfg.moment_weight) and cfg.moment_weight >= 0):
        raise ConfigError(f"train.moment_weight must be a finite number >= 0, got {cfg.moment_weight}")
    cells = cfg.moment_cells
    if cells < 1 or cells & (cells - 1) or model.patch_size % cells:
        raise ConfigError(f"train.moment_cells={cells} must be a power of two dividing the patch size "
                          f"{model.patch_size}")
    for name in ("whole_weight", "whole_moment_weight"):
        if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0):
            raise ConfigError(f"train.{name} must be a finite number >= 0, got {getattr(cfg, name)}")
    if cfg.whole_every < 1:
        raise ConfigError(f"train.whole_every must be >= 1, got {cfg.whole_every}")
    if cfg.whole_moments not in (1, 2):
        raise ConfigError(f"train.whole_moments must be 1 (means) or 2 (means and squares), got {cfg.whole_moments}")
    stride, unit = cfg.location_stride, level0_unit(model.patch_size)
    if stride is not None and not (0 < stride <= model.patch_size and stride % unit == 0
                                   and (model.canvas_height - model.patch_size) % stride == 0
                                   and (model.canvas_width - model.patch_size) % stride == 0):
        raise ConfigError(f"train.location_stride={stride} must be a multiple of the level-0 unit {unit}, at most "
                          f"the patch size {model.patch_size}, and tile the canvas "
                          f"{model.canvas_width}x{model.canvas_height}")
    if cfg.whole_level is None:
        return
    if preset.global_res is not None:
        raise ConfigError("train.whole_level: the global baseline already sees whole textures")
    levels = model.num_levels
    if not 0 <= cfg.whole_level < levels:
        raise ConfigError(f"train.whole_level={cfg.whole_level} must be a synthesis level 0..{levels - 1}")
    h, w = level_canvas(model.canvas_height, model.canvas_width, model.patch_size, cfg.whole_level)
    short = min(h, w)
    if short < 8 or short & (short - 1) or h % (short // 4) or w % (short // 4):
        raise ConfigError(
            f"train.whole_level={cfg.whole_level}: the canvas at that level is {w}x{h}; the whole-canvas "
            "discriminator needs a power-of-two short side >= 8 that, divided by 4, divides both sides")
