"""Configuration (`gantlitz.config`): `--set` overrides typed and checked, the same machinery for other
settings dataclasses, and the gate's field rules."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gantlitz.config import apply_overrides, field_problems, override_fields, parse_overrides
from gantlitz.errors import ConfigError


def test_overrides_are_typed_and_checked():
    from gantlitz import presets

    base = presets.get("tiny")
    p = apply_overrides(base, parse_overrides([
        "model.channel_max=32", "train.augment.midband_p=0.5", "global_res=64", "ema_rampup=none",
        "betas=0,0.9", "precision=bf16", "compile=true", "batch=8", "model.g_halve_last=1,1",
    ]))
    assert p.model.channel_max == 32 and p.train.augment.midband_p == 0.5 and p.global_res == 64
    assert p.train.ema_rampup is None and p.train.betas == (0.0, 0.9) and p.train.precision == "bf16"
    assert p.train.compile is True and p.train.batch == 8 and p.model.g_halve_last == (1, 1)
    for bad, message in [("train.nope=1", "unknown setting"), ("model.channel_max=abc", "integer"),
                         ("precision=fp8", "one of"), ("compile=maybe", "true/false"), ("name=x", "can not be set")]:
        with pytest.raises(ConfigError, match=message):
            apply_overrides(base, parse_overrides([bad]))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["batch"])


@dataclasses.dataclass(frozen=True)
class _Settings:
    steps: int = 10
    rate: float = 0.5
    region: int | None = 2
    mode: bool = False


def test_override_fields_coerces_like_a_preset():
    got = override_fields(_Settings(), ["steps=1e3", "demo.rate=0.25", "region=none", "mode=yes"], "demo")
    assert got == _Settings(steps=1000, rate=0.25, region=None, mode=True)
    assert override_fields(_Settings(), None, "demo") == _Settings()
    for bad, message in [("nope=1", "demo has: steps, rate, region, mode"), ("steps=1.5", "demo.steps: expected an "
                         "integer"), ("rate=inf", "finite"), ("mode=maybe", "true/false")]:
        with pytest.raises(ConfigError, match=message):
            override_fields(_Settings(), [bad], "demo")


def test_field_problems_reports_every_field_out_of_range():
    bad = _Settings(steps=-1, rate=math.nan, region=0, mode=False)
    problems = field_problems(bad, "demo", {"steps": (0, None), "region": (1, 8)}, {"rate": (0.0, 1.0, True)})
    assert problems == ["demo.steps=-1 must lie in [0, inf]", "demo.rate=nan is not finite",
                        "demo.region=0 must lie in [1, 8]"]
    assert field_problems(_Settings(), "demo", {"steps": (0, None)}, {"rate": (0.0, 1.0, True)}) == []
    assert field_problems(dataclasses.replace(_Settings(), rate="x"), "demo", {}, {}) == [
        "demo.rate='x' is not of type float"]
