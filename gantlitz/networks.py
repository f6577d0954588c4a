"""Build the generator / discriminator pair from a preset, a preset name or a ModelConfig."""

from __future__ import annotations

import torch

from . import geometry, presets
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


def preset_summary(name: str) -> dict:
    """Per-level geometry and channel counts plus total parameters of a preset's G and D."""
    preset = presets.get(name)
    cfg = preset.model
    p = cfg.patch_size
    h0, w0 = geometry.canvas_level0(cfg.canvas_height, cfg.canvas_width, p)
    g, d = build(cfg)
    levels = [
        {
            "level": lvl,
            "canvas": [h0 << lvl, w0 << lvl],
            "core": core,
            "train_stride": core // 2,
            "receptive_field": rf,
            "forward_size": fwd,
            "g_channels": gch,
            "d_channels": dch,
        }
        for lvl, (core, rf, fwd, gch, dch) in enumerate(
            zip(
                geometry.core_sizes(p), geometry.receptive_fields(p), geometry.forward_sizes(p),
                cfg.g_channels(), list(reversed(cfg.d_channels())),
            )
        )
    ]
    return {
        "preset": preset.name,
        "description": preset.description,
        "canvas": [cfg.canvas_height, cfg.canvas_width],
        "patch_size": p,
        "training_locations": len(geometry.patch_grid(cfg.canvas_height, cfg.canvas_width, p)),
        "inference_patches": len(geometry.patch_grid(cfg.canvas_height, cfg.canvas_width, p, p)),
        "pe_map": list(geometry.pe_map_size(cfg.canvas_height, cfg.canvas_width, p)),
        "num_ws": g.num_ws,
        "levels": levels,
        "g_parameters": count_parameters(g),
        "d_parameters": count_parameters(d),
    }
