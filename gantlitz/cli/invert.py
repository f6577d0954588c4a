"""CLI commands: invert (`gantlitz invert`: modality completion and super-resolution by inversion, §5.2)."""

from __future__ import annotations

from pathlib import Path

import click

from .params import Finite, Seed


def _steps(value: str) -> tuple[int, int]:
    """'N' (both stages) or 'S1,S2' → (latent steps, noise steps)."""
    try:
        parts = [int(v) for v in str(value).split(",")]
    except ValueError:
        raise click.BadParameter(f"expected N or LATENT,NOISE (e.g. 400,400), got {value!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 0 or sum(parts) == 0:
        raise click.BadParameter(f"expected N or LATENT,NOISE with non-negative counts, not both 0; got {value!r}")
    return parts[0], parts[1]


def _flag_settings(steps: str | None, region_patches: int | None, seed: int | None, lr: float | None,
                   noise_lr: float | None, noise_reg: float | None, superres_boost: float | None,
                   save_every: int | None) -> dict[str, object]:
    """The shorthand flags given, as the inversion settings they stand for."""
    given = {"seed": seed, "lr_latent": lr, "lr_noise": noise_lr, "noise_corr_weight": noise_reg,
             "superres_noise_boost": superres_boost, "save_every": save_every}
    out: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    if steps is not None:
        out["latent_steps"], out["noise_steps"] = _steps(steps)
    if region_patches is not None:
        out["region_patches"] = region_patches or None  # 0 on the command line: the whole canvas
    return out


_FLAG_OF = {"latent_steps": "--steps", "noise_steps": "--steps", "region_patches": "--region-patches", "seed": "--seed",
            "lr_latent": "--lr", "lr_noise": "--noise-lr", "noise_corr_weight": "--noise-reg",
            "superres_noise_boost": "--superres-boost", "save_every": "--save-every"}


def _set_settings(settings: tuple[str, ...], flags: dict[str, object]) -> dict[str, str]:
    """`--set KEY=VALUE` items; a setting given both by its flag and by --set is refused (which one wins?)."""
    from ..config import parse_overrides

    items = {k.strip().removeprefix("invert."): v for k, v in parse_overrides(settings).items()}
    for key in items:
        if key in flags:
            raise click.UsageError(f"{key} is given twice: by {_FLAG_OF[key]} and by --set {key}=...")
    return items


@click.command("invert")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--target", "target", type=click.Path(path_type=Path), default=None,
              help="Image to invert (EXR/PNG/TIFF/JPEG): canvas size for completion, canvas/f for superres.")
@click.option("--modality", type=click.Choice(["albedo", "specular", "displacement"]), default="albedo",
              show_default=True, help="Modality of the target (inverted with this modality's embedding).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder: maps, latent.safetensors, contact.png, loss.png, result.json.")
@click.option("--mode", type=click.Choice(["completion", "superres"]), default="completion", show_default=True,
              help="completion: target at canvas size; superres: low-resolution target, loss after down-sampling.")
@click.option("--steps", default=None,
              help="Optimisation steps: N for both stages, or LATENT,NOISE (default 400,400).")
@click.option("--region-patches", type=click.IntRange(min=0), default=None,
              help="k: each step synthesises a random k x k-patch region (0 = the whole canvas every step; default 2).")
@click.option("--seed", type=Seed(), default=None,
              help="Seed of every random choice (same seed, same result; default 0).")
@click.option("--lr", "lr", type=Finite(min=0, min_open=True), default=None,
              help="Latent learning rate (default 0.1).")
@click.option("--noise-lr", type=Finite(min=0, min_open=True), default=None,
              help="Noise-map learning rate (default 0.1).")
@click.option("--noise-reg", type=Finite(min=0), default=None,
              help="Weight of the pixel-correlation noise penalty (default 100).")
@click.option("--superres-boost", type=Finite(min=0), default=None,
              help="Super-resolution: penalty multiplier for noise finer than the target (default 10).")
@click.option("--save-every", type=click.IntRange(min=1), default=None,
              help="Write the resumable state (OUT/state.safetensors) every N steps (default 50).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any inversion setting (docs/inversion.md lists them), e.g. --set l1_weight=2; repeatable. "
                   "The flags above are shorthands for some of them.")
@click.option("--format", "fmt", type=click.Choice(["exr", "png16", "tiff"]), default="exr", show_default=True,
              help="Map file format.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
@click.option("--resume", is_flag=True, help="Continue the interrupted inversion in OUT (same target and options).")
@click.option("--overwrite", is_flag=True, help="Replace this command's outputs in OUT (other files are kept).")
@click.option("--regenerate", "latent", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Instead of inverting: turn a saved latent.safetensors back into the maps in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def invert_cmd(
    checkpoint: Path, target: Path | None, modality: str, out: Path, mode: str, steps: str | None,
    region_patches: int | None, seed: int | None, lr: float | None, noise_lr: float | None, noise_reg: float | None,
    superres_boost: float | None, save_every: int | None, settings: tuple[str, ...], fmt: str, device: str | None,
    resume: bool, overwrite: bool, latent: Path | None, quiet: bool,
) -> None:
    """Project a texture map into the model (W+ latents, then noise maps) and write every modality.

    \b
    Completion:        gantlitz invert RUN --target albedo.exr --out inv/
    Super-resolution:  gantlitz invert RUN --target albedo_768x512.png --mode superres --out inv/
    Re-generate maps:  gantlitz invert RUN --regenerate inv/latent.safetensors --out inv2/

    An interrupted run continues with --resume (state saved every --save-every steps).
    """
    from ..config import override_fields
    from ..invert import InversionConfig, regenerate, run

    try:
        if latent is not None:
            if target is not None or settings:
                raise click.UsageError("--regenerate takes no --target or --set (the latent file records them)")
            result = regenerate(checkpoint, latent, out, fmt=fmt, overwrite=overwrite, device=device)
            click.echo(f"re-generated {result.mode} inversion ({result.modality}) into {out}")
            return
        if target is None:
            raise click.UsageError("--target FILE is required (or --regenerate LATENT)")
        flags = _flag_settings(steps, region_patches, seed, lr, noise_lr, noise_reg, superres_boost, save_every)
        cfg = override_fields(InversionConfig(), {**flags, **_set_settings(settings, flags)}, "invert")
        save_every = cfg.save_every
        result = run(checkpoint, target, out, modality=modality, mode=mode, config=cfg, resume=resume,
                     overwrite=overwrite, fmt=fmt, device=device, progress=not quiet)
    except KeyboardInterrupt:
        every = save_every or InversionConfig.save_every
        raise click.ClickException(
            f"interrupted; the state saved every {every} steps is in {out / 'state.safetensors'}: "
            "run the same command with --resume to continue"
        ) from None
    where = f"at 1/{result.factor} resolution" if result.factor > 1 else "at full resolution"
    click.echo(f"{result.modality} reconstruction PSNR {result.psnr:.2f} dB ({where}); outputs in {out}")


def register(group: click.Group) -> None:
    """Add this area's commands to the top-level group."""
    group.add_command(invert_cmd)
