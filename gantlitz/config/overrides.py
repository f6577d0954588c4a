"""Overrides: `--set KEY=VALUE` (and the training flags) parsed, keys made canonical, values coerced to
the field types. The result still goes through the one gate, `gantlitz.config.validate`."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

from ..errors import ConfigError
from .fields import AugmentConfig, ModelConfig, Preset, TrainConfig

T = TypeVar("T")

_SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig, "train.augment": AugmentConfig}
_PRESET_FIELDS = {"global_res", "description"}


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """["train.lr=0.002", "global_res=64"] → {"train.lr": "0.002", "global_res": "64"}."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set model.channel_max=32")
        out[key] = value.strip()
    return out


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def canonical_key(key: str) -> str:
    """'batch' → 'train.batch', 'midband_p' → 'train.augment.midband_p'; full paths are checked."""
    key = key.strip()
    if key.startswith("preset."):
        key = key[len("preset."):]
    if key.startswith("augment."):  # the augmentation settings' own section name, as `info` prints it
        key = f"train.{key}"
    if key in _PRESET_FIELDS:
        return key
    section, _, name = key.rpartition(".")
    if section:
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigError(f"unknown setting {key!r}: sections are model., train., train.augment.")
        if name not in _field_names(cls) or name == "augment":
            raise ConfigError(
                f"unknown setting {key!r}; {section} has: {', '.join(n for n in _field_names(cls) if n != 'augment')}"
            )
        return key
    hits = [f"{sec}.{key}" for sec, cls in _SECTIONS.items() if key in _field_names(cls) and key != "augment"]
    if len(hits) == 1:
        return hits[0]
    if key in ("name", "model", "train", "augment"):
        raise ConfigError(f"{key!r} can not be set; set its fields (e.g. train.batch=4) or choose --preset")
    raise ConfigError(
        f"unknown setting {key!r}; use model.FIELD, train.FIELD, train.augment.FIELD or global_res "
        f"(see `gantlitz info --preset NAME` for the fields)"
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a CLI string (or a Python value) to the dataclass field type `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
            return None
        problems = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                problems.append(str(exc))
        raise ConfigError("; ".join(problems) or f"{key}: invalid value {value!r}")
    if origin is Literal:
        for option in args:
            if value == option or (isinstance(value, str) and str(option) == value.strip()):
                return option
        raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            items: list[Any] = [v.strip() for v in text.split(",") if v.strip()] if text else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(f"{key}: expected a comma-separated list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in items)
        if len(items) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} comma-separated values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(items, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        return str(value)
    raise ConfigError(f"{key}: fields of type {tp} can not be set from the command line")


def apply_overrides(preset: Preset, overrides: Mapping[str, Any] | Sequence[str] | None) -> Preset:
    """The preset with dotted-key overrides applied (values coerced to the field types)."""
    if not overrides:
        return preset
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    by_section: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for raw_key, value in overrides.items():
        key = canonical_key(raw_key)
        if key in _PRESET_FIELDS:
            hints = typing.get_type_hints(Preset)
            top[key] = _coerce(value, hints[key], key)
            continue
        section, _, name = key.rpartition(".")
        hints = typing.get_type_hints(_SECTIONS[section])
        by_section.setdefault(section, {})[name] = _coerce(value, hints[name], key)
    try:
        aug = dataclasses.replace(preset.train.augment, **by_section.get("train.augment", {}))
        train_cfg = dataclasses.replace(preset.train, augment=aug, **by_section.get("train", {}))
        model = dataclasses.replace(preset.model, **by_section.get("model", {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid override: {exc}") from None
    return dataclasses.replace(preset, model=model, train=train_cfg, **top)


def override_fields(obj: T, overrides: Mapping[str, Any] | Sequence[str] | None, section: str) -> T:
    """A flat settings dataclass (the inversion's, say) with `--set` overrides applied, by the same rules
    as a preset's: keys are its field names, optionally prefixed `section.`; values are coerced to the field
    types; an unknown key is a `ConfigError` listing the fields. The dataclass checks the result."""
    if not overrides:
        return obj
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    hints, names = typing.get_type_hints(type(obj)), _field_names(type(obj))
    changes: dict[str, Any] = {}
    for raw_key, value in overrides.items():
        key = raw_key.strip().removeprefix(f"{section}.")
        if key not in names:
            raise ConfigError(f"unknown setting {raw_key!r}; {section} has: {', '.join(names)}")
        changes[key] = _coerce(value, hints[key], f"{section}.{key}")
    return dataclasses.replace(obj, **changes)
