"""Build the generator / discriminator pair from a preset, a preset name or a ModelConfig."""

from __future__ import annotations

import torch

from . import presets
from .config import ModelConfig, Preset
from .nn.discriminator import Discriminator
from .nn.generator import Generator


def resolve_model_config(preset_or_config: str | Preset | ModelConfig) -> ModelConfig:
    """Accept a preset name, a Preset or a ModelConfig."""
    if isinstance(preset_or_config, str):
        return presets.get(preset_or_config).model
    if isinstance(preset_or_config, Preset):
        return preset_or_config.model
    return preset_or_config


def build(
    preset_or_config: str | Preset | ModelConfig, seed: int = 0, mask: torch.Tensor | None = None
) -> tuple[Generator, Discriminator]:
    """(G, D) initialised deterministically from `seed`, without touching the global RNG state."""
    cfg = resolve_model_config(preset_or_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = Generator(cfg, mask)
        discriminator = Discriminator(cfg)
    return generator, discriminator


def count_parameters(module: torch.nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
