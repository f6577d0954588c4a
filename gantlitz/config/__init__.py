"""Typed configuration: what a run depends on, how it is overridden, and the one gate that checks it.

- `channels`  the modality channel layout (MODALITIES, channel_slices, split_channels, keep_channels)
- `fields`    ModelConfig / AugmentConfig / TrainConfig / Preset and their JSON round trip
- `overrides` `--set KEY=VALUE`: parsing, canonical keys, coercion to the field types
- `rules`     `validate(preset)`: types, ranges and the rules between fields; seed and truncation limits

Import from `gantlitz.config`; the submodules are its layout, not separate APIs.
"""

from .channels import (CHANNEL_MODALITY, CHANNEL_SLICES, DATA_CHANNELS, MODALITIES, MODALITY_CHANNELS, channel_slices,
                       keep_channels, split_channels)
from .fields import (AugmentConfig, DiscPos, DiscPosInject, ModelConfig, Preset, TrainConfig, preset_from_dict,
                     to_dict)
from .overrides import apply_overrides, canonical_key, override_fields, parse_overrides
from .rules import (CANVAS_MAX, CHANNELS_MAX, SEED_MAX, SEEDS_MAX, TRUNCATION_MAX, FloatRanges, IntRanges, check_seed,
                    check_truncation, field_problems, validate, validate_augment, validate_model, validate_preset,
                    validate_train)

__all__ = [
    "CHANNEL_MODALITY", "CHANNEL_SLICES", "DATA_CHANNELS", "MODALITIES", "MODALITY_CHANNELS", "channel_slices",
    "keep_channels", "split_channels",
    "AugmentConfig", "DiscPos", "DiscPosInject", "ModelConfig", "Preset", "TrainConfig", "preset_from_dict", "to_dict",
    "apply_overrides", "canonical_key", "override_fields", "parse_overrides",
    "CANVAS_MAX", "CHANNELS_MAX", "SEED_MAX", "SEEDS_MAX", "TRUNCATION_MAX", "FloatRanges", "IntRanges", "check_seed",
    "check_truncation", "field_problems",
    "validate", "validate_augment", "validate_model", "validate_preset", "validate_train",
]
