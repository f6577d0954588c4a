"""`gantlitz info`: the geometry, channels and parameter counts of a preset (Table 1 and §4)."""

from __future__ import annotations

import json

import click

from .. import presets
from ..networks import preset_summary


def format_summary(s: dict) -> str:
    """Human-readable table of `preset_summary`."""
    lines = [
        f"{s['preset']}: {s['description']}",
        f"canvas {s['canvas'][1]}x{s['canvas'][0]}, patch {s['patch_size']}, "
        f"{s['training_locations']} training locations (50% overlap), {s['inference_patches']} inference patches, "
        f"positional-encoding map {s['pe_map'][1]}x{s['pe_map'][0]}, {s['num_ws']} style inputs",
        f"{'level':>5} {'canvas':>11} {'core':>5} {'stride':>6} {'rec.field':>9} {'forward':>7} {'G ch':>5} {'D ch':>5}",
    ]
    for lv in s["levels"]:
        lines.append(
            f"{lv['level']:>5} {lv['canvas'][1]:>5}x{lv['canvas'][0]:<5} {lv['core']:>5} {lv['train_stride']:>6} "
            f"{lv['receptive_field']:>9} {lv['forward_size']:>7} {lv['g_channels']:>5} {lv['d_channels']:>5}"
        )
    lines.append(f"G parameters: {s['g_parameters']:,}   D parameters: {s['d_parameters']:,}")
    return "\n".join(lines)


def register(group: click.Group) -> None:
    """Add `info` to the top-level group."""

    @group.command("info")
    @click.option("--preset", "preset_names", multiple=True, metavar="NAME",
                  help="Preset to describe (repeatable; default: gantlitz-l and gantlitz-s).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.option("--list", "list_presets", is_flag=True, help="List the preset names and exit.")
    def info(preset_names: tuple[str, ...], as_json: bool, list_presets: bool) -> None:
        """Geometry (Table 1), channels per level and parameter counts of presets."""
        if list_presets:
            for name in presets.names():
                click.echo(f"{name:16s} {presets.get(name).description}")
            return
        try:
            summaries = [preset_summary(n) for n in (preset_names or ("gantlitz-l", "gantlitz-s"))]
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--preset") from None
        if as_json:
            click.echo(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2))
        else:
            click.echo("\n\n".join(format_summary(s) for s in summaries))
