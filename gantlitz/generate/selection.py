"""What a generation call asks for: seed lists (`parse_seeds`) and map names (`modality_list`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..config import MODALITY_CHANNELS, SEEDS_MAX, check_seed
from ..errors import UsageError
from ..outputs.mapfiles import OUTPUT_MAPS

MAP_CHANNELS: dict[str, int] = {**MODALITY_CHANNELS, "normal": 3}


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """`"0-7"`, `"1,5,9"`, `"0-3,8"` (or ints) → a list of distinct non-negative seeds, in order."""
    if isinstance(text, int):
        items: list[int] = [text]
    elif isinstance(text, str):
        items = []
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise UsageError(f"invalid seed list {text!r}: use e.g. 0-7, 1,5,9 or 0-3,8")
        for part in parts:
            match = re.fullmatch(r"(\d+)\s*-\s*(\d+)|(\d+)", part)
            if not match:
                raise UsageError(f"invalid seed {part!r} in {text!r}: seeds are non-negative integers or ranges a-b")
            if match.group(3) is not None:
                items.append(int(match.group(3)))
            else:
                a, b = int(match.group(1)), int(match.group(2))
                if b < a:
                    raise UsageError(f"invalid seed range {part!r}: the end is below the start")
                check_seed(a)
                check_seed(b)
                if len(items) + b - a >= SEEDS_MAX:
                    raise UsageError(f"seed list {text!r} holds more than {SEEDS_MAX} seeds")
                items.extend(range(a, b + 1))
    else:
        items = [int(s) for s in text]
    seen: set[int] = set()
    out = []
    for s in items:
        check_seed(s)
        if len(seen) >= SEEDS_MAX:
            raise UsageError(f"more than {SEEDS_MAX} seeds given")
        if s not in seen:
            seen.add(s)
            out.append(s)
    if not out:
        raise UsageError("no seeds given")
    return out


def modality_list(modalities: str | Sequence[str]) -> list[str]:
    if isinstance(modalities, str):
        modalities = [modalities]
    out = []
    for m in modalities:
        if m not in MAP_CHANNELS:
            raise UsageError(f"unknown modality {m!r}; choose from {', '.join(OUTPUT_MAPS)}")
        if m not in out:
            out.append(m)
    if not out:
        raise UsageError("no modality requested")
    return out
