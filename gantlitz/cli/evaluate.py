"""CLI: `gantlitz evaluate CKPT... --data DS --out DIR` (KID distributions, box plots, spectra)."""

from __future__ import annotations

from pathlib import Path

import click

from .params import Finite, Seed


def _location(value: str) -> str | tuple[int, int]:
    if "," in value:
        try:
            top, left = (int(v) for v in value.split(","))
        except ValueError as exc:
            raise click.BadParameter(f"{value!r}: expected a name or TOP,LEFT integers") from exc
        return top, left
    return value


@click.command("evaluate")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Prepared dataset folder (output of `gantlitz prepare`): the real distribution.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for kid_*.json/csv/png, spectra.{json,png}, summary.json.")
@click.option("--features", type=click.Choice(["local", "inception"]), default="local", show_default=True,
              help="Feature extractor: 'local' needs no download (numbers comparable only with itself); "
                   "'inception' is the FID/KID standard and needs --weights.")
@click.option("--weights", type=click.Path(path_type=Path),
              help="pt_inception-2015-12-05-6726825d.pth (or a .safetensors with the same names).")
@click.option("--splits", "n_splits", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Random splits per set.")
@click.option("--subset-size", type=click.IntRange(min=2), default=None,
              help="Images per split and side [default: half the real subjects].")
@click.option("--location", default="lips", show_default=True,
              help="Patch location: a name (lips, or one from the manifest's 'locations') or TOP,LEFT pixels.")
@click.option("--patch-size", "patch", type=click.IntRange(min=8), default=None,
              help="Patch side in pixels [default: the checkpoint's patch size].")
@click.option("--whole-size", type=click.IntRange(min=16), default=768, show_default=True,
              help="Long side bound of the down-sampled whole albedo maps (exact integer factor).")
@click.option("--count", type=click.IntRange(min=2), default=None,
              help="Generated samples per checkpoint [default: as many as real subjects].")
@click.option("--label", "labels", multiple=True,
              help="Name of each checkpoint in tables and figures, once per checkpoint in order "
                   "[default: file names].")
@click.option("--seed", type=Seed(), default=0, show_default=True, help="Seed of the splits; samples use seeds SEED...")
@click.option("--truncation", type=Finite(), default=1.0, show_default=True,
              help="Truncation psi (1 = none).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per feature-extractor batch.")
@click.option("--overwrite", is_flag=True, help="Replace the result files already in --out (other files are kept).")
def evaluate_cmd(checkpoints, data, out, features, weights, n_splits, subset_size, location, patch, whole_size,
                 count, labels, seed, truncation, device, batch_size, overwrite) -> None:
    """KID of checkpoints against the training data over random splits (paper §5.5, Fig. 17).

    Writes per-split KID values, their mean and std per checkpoint, box plots for whole albedo maps and
    for one albedo patch (default: the lips), and power spectra of real vs generated patches.
    """
    from ..evaluate import evaluate

    for ckpt in checkpoints:
        if not ckpt.exists():
            raise click.ClickException(f"checkpoint not found: {ckpt}")
    if not (data / "manifest.json").is_file():
        raise click.ClickException(f"{data}: not a prepared dataset (no manifest.json); run `gantlitz prepare`")
    if features == "inception" and weights is None:
        raise click.ClickException(
            "--features inception needs --weights PATH to pt_inception-2015-12-05-6726825d.pth "
            "(see docs/evaluation.md for where to get it)"
        )
    if weights is not None and not weights.is_file():
        raise click.ClickException(f"weight file not found: {weights}")
    if features == "local" and weights is not None:
        raise click.ClickException("--weights is only used with --features inception")
    if labels and len(labels) != len(checkpoints):
        raise click.ClickException(f"{len(labels)} --label for {len(checkpoints)} checkpoints")
    summary = evaluate(
        list(checkpoints), data, out, features=features, weights=weights, n_splits=n_splits,
        subset_size=subset_size, location=_location(location), patch=patch, whole_size=whole_size,
        count=count, seed=seed, truncation=truncation, labels=list(labels) or None, device=device,
        batch_size=batch_size, overwrite=overwrite,
    )
    def cell(entry) -> str:
        return f"{entry['mean']:.4g} ({entry['std']:.2g})" if entry else "-"

    width = max(len(k) for k in summary["whole"]) + 2
    click.echo(f"{'set':<{width}}{'whole KID mean (std)':<26}patch KID mean (std)")
    for name, entry in summary["whole"].items():
        click.echo(f"{name:<{width}}{cell(entry):<26}{cell(summary['patch_kid'].get(name))}")
    click.echo(f"results in {out}")


def register(group: click.Group) -> None:
    """Add this area's commands to the top-level group."""
    group.add_command(evaluate_cmd)
