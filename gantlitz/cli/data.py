"""CLI commands: data (`gantlitz synth`, `gantlitz prepare`)."""

from __future__ import annotations

from pathlib import Path

import click

from .params import Finite, Seed


def _size(value: str) -> tuple[int, int]:
    """'WxH' → (height, width)."""
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WxH, e.g. 512x512, got {value!r}") from None
    if w <= 0 or h <= 0 or w % 64 or h % 64:
        raise click.BadParameter(f"{w}x{h}: width and height must be positive multiples of 64")
    return h, w


def _crop(value: str | None) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    try:
        x, y, w, h = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected X,Y,W,H in pixels, got {value!r}") from None
    return x, y, w, h


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--subjects", default=8, show_default=True, type=click.IntRange(min=1), help="Number of identities.")
@click.option("--size", "size", default="512x512", show_default=True,
              help="Canvas WxH, multiples of 64 (the head layout is square).")
@click.option("--seed", default=0, show_default=True, type=Seed(), help="Same seed, same files.")
@click.option("--head-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Folder of the Lee Perry-Smith maps (default: the copy shipped in the package).")
@click.option("--overwrite", is_flag=True,
              help="Replace the files an earlier `synth` recorded in OUT (others are kept and listed); a non-empty "
                   "folder without its record is refused.")
def synth_cmd(out: Path, subjects: int, size: str, seed: int, head_dir: Path | None, overwrite: bool) -> None:
    """Write a procedural dataset of aligned face textures (albedo, specular, normal, mask) to OUT.

    The UV layout and feature placement come from the Lee Perry-Smith head scan (CC BY 3.0).
    """
    from ..data.synth import synthesize_dataset

    hw = _size(size)
    out = synthesize_dataset(out, subjects, hw, seed, overwrite=overwrite, head_dir=head_dir)
    click.echo(f"wrote {subjects} subjects ({hw[1]}x{hw[0]}) to {out}")


@click.command("prepare")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--crop", default=None, help="Crop box X,Y,W,H in pixels of the input maps (W, H multiples of 64).")
@click.option("--mask", "mask", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Mask image (first channel > 0.5 = visible). Default: SRC/mask.*, else derived from the maps.")
@click.option("--no-flip", is_flag=True, help="The layout is not left/right symmetric: never flip.")
@click.option("--normal-convention", type=click.Choice(["opengl", "directx"]), default="opengl", show_default=True)
@click.option("--displacement-height", type=Finite(), default=1.0, show_default=True,
              help="Canvas pixels per unit of displacement files (subjects given without a normal map).")
@click.option("--overwrite", is_flag=True,
              help="Replace a dataset in OUT: only its own files (manifest, arrays); other files are kept. Refused "
                   "for a folder that is not a dataset or that holds SRC. Also starts an interrupted prepare of "
                   "OUT again.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted prepare of OUT (kept in the hidden folder .OUT.partial beside it) from "
                   "its last finished subject; the inputs and options must be unchanged.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Subjects prepared in parallel processes; memory grows with it (about 2.2 GB each for 8K scans).")
def prepare_cmd(src: Path, out: Path, crop: str | None, mask: Path | None, no_flip: bool, normal_convention: str,
                displacement_height: float, overwrite: bool, resume: bool, workers: int) -> None:
    """Validate the scans in SRC (one folder per subject) and write the patch store OUT.

    Memory does not grow with the number of subjects, progress is journaled after every subject, and a
    prepare that was stopped (Ctrl-C, a kill, a crash) continues with the same command and --resume.
    """
    from ..data.prepare import prepare
    from ..data.store import PatchStore

    prepare(src, out, crop=_crop(crop), mask=mask, flip=not no_flip, normal_convention=normal_convention,
            displacement_height=displacement_height, overwrite=overwrite, resume=resume, workers=workers)

    store = PatchStore(out)
    h, w = store.canvas
    click.echo(f"prepared {len(store.subjects)} subjects at {w}x{h} in {out} "
               f"(displacement scale {store.displacement_scale:.4g} px)")


def register(group: click.Group) -> None:
    """Add this area's commands to the top-level group."""
    group.add_command(synth_cmd)
    group.add_command(prepare_cmd)
