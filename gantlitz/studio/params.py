"""Request parameters of the studio: parsed and range-checked before any work is queued.

Every user mistake becomes a `ParamError` that names the parameter, so the HTTP layer can answer 400 with
a JSON body instead of a 500. Query values arrive as strings, JSON values as numbers; both are accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import SEED_MAX
from ..errors import UsageError
from ..outputs.mapfiles import OUTPUT_MAPS

__all__ = ["ParamError", "Identity", "TRUNCATION_RANGE", "DOWNLOAD_FORMATS", "parse_identity", "parse_modality",
           "parse_int", "parse_float", "parse_format", "check_known", "IDENTITY_KEYS"]

TRUNCATION_RANGE = (-1.0, 2.0)
"""Accepted truncation psi: 1 is none, 0 the average identity; beyond this range faces fall apart."""

DOWNLOAD_FORMATS: dict[str, str] = {"exr": ".zip", "png16": ".zip", "tiff": ".zip", "glb": ".glb"}
"""Download formats → file suffix: the three map formats of `gantlitz generate` (zipped), or a glTF binary."""

IDENTITY_KEYS = ("seed", "truncation", "noise", "seed_b", "t")
_INT = re.compile(r"[+-]?\d{1,20}")


class ParamError(UsageError):
    """A request parameter that is missing, malformed or out of range; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(f"{param}: {message}")


@dataclass(frozen=True)
class Identity:
    """What fixes a texture: latent seed, truncation, noise seed, and an optional mix towards `seed_b`.

    Hashable, so it is part of every cache key; `t` (0 = `seed`, 1 = `seed_b`) is the slerp weight in W.
    """

    seed: int
    truncation: float = 1.0
    noise: int | None = None
    seed_b: int | None = None
    t: float = 0.0

    @property
    def noise_seed(self) -> int:
        """The noise seed used: `noise`, else the seed (as `gantlitz generate` does)."""
        return self.seed if self.noise is None else self.noise

    def label(self) -> str:
        """A short file-name-safe description, e.g. `seed0003-psi0.7` or `seed0003-seed0009-t0.25-noise5`."""
        text = f"seed{self.seed:04d}"
        if self.seed_b is not None:
            text += f"-seed{self.seed_b:04d}-t{self.t:g}"
        text += f"-psi{self.truncation:g}"
        if self.noise is not None:
            text += f"-noise{self.noise}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "truncation": self.truncation, "noise": self.noise_seed, "seed_b": self.seed_b,
                "t": self.t if self.seed_b is not None else None}


def check_known(params: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse parameters the endpoint does not know (a typo would otherwise be silently ignored)."""
    for key in params:
        if key not in allowed:
            raise ParamError(str(key)[:40], f"unknown parameter; this endpoint takes {', '.join(allowed)}")


def parse_int(params: Mapping[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    """An integer in low .. high; missing is an error unless a default is given."""
    value = params.get(name)
    if value is None:
        if default is None:
            raise ParamError(name, "missing")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ParamError(name, f"must be an integer, got {type(value).__name__}")
    if isinstance(value, str):
        if not _INT.fullmatch(value.strip()):
            raise ParamError(name, f"must be an integer, got {value[:40]!r}")
        value = int(value)
    if not low <= value <= high:
        raise ParamError(name, f"{value} is out of range {low} .. {high}")
    return value


def parse_float(params: Mapping[str, Any], name: str, low: float, high: float, default: float | None = None) -> float:
    """A finite number in [low, high]."""
    value = params.get(name)
    if value is None:
        if default is None:
            raise ParamError(name, "missing")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParamError(name, f"must be a number, got {type(value).__name__}")
    try:
        number = float(value[:40] if isinstance(value, str) else value)
    except ValueError:
        raise ParamError(name, f"must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise ParamError(name, f"must be a finite number, got {number}")
    if not low <= number <= high:
        raise ParamError(name, f"{number:g} is out of range {low:g} .. {high:g}")
    return number


def parse_identity(params: Mapping[str, Any]) -> Identity:
    """seed (0 .. 2^32-1), truncation (default 1), noise (default: the seed), seed_b and t (together)."""
    seed = parse_int(params, "seed", 0, SEED_MAX)
    truncation = parse_float(params, "truncation", *TRUNCATION_RANGE, default=1.0)
    noise = None if params.get("noise") is None else parse_int(params, "noise", 0, SEED_MAX)
    has_b, has_t = params.get("seed_b") is not None, params.get("t") is not None
    if has_b != has_t:
        raise ParamError("t" if has_b else "seed_b", "seed_b and t go together (t = 0 is seed, 1 is seed_b)")
    if not has_b:
        return Identity(seed, truncation, noise)
    return Identity(seed, truncation, noise, parse_int(params, "seed_b", 0, SEED_MAX),
                    parse_float(params, "t", 0.0, 1.0))


def parse_modality(params: Mapping[str, Any], default: str | None = None) -> str:
    """One of albedo, specular, displacement, normal."""
    value = params.get("modality", default)
    if value not in OUTPUT_MAPS:
        raise ParamError("modality", f"{str(value)[:40]!r} is not one of {', '.join(OUTPUT_MAPS)}")
    return str(value)


def parse_format(params: Mapping[str, Any]) -> str:
    """One of the download formats (exr, png16, tiff, glb)."""
    value = params.get("format")
    if value not in DOWNLOAD_FORMATS:
        raise ParamError("format", f"{str(value)[:40]!r} is not one of {', '.join(DOWNLOAD_FORMATS)}")
    return str(value)
