"""Parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import Any

import click


class Finite(click.FloatRange):
    """A float option that must be a finite number (click's FloatRange lets NaN through every bound)."""

    name = "finite float"

    def _describe_range(self) -> str:
        """`--help` says "finite" for an unbounded option, not click's "x<=None"."""
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Seed(click.ParamType):
    """A seed option: an integer in 0 .. 2^32-1 (`gantlitz.config.check_seed`), said as a usage error."""

    name = "seed"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..config import check_seed
        from ..errors import UsageError

        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer seed", param, ctx)
        try:
            return check_seed(number)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)
