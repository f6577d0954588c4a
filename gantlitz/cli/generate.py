"""CLI commands: `generate` (full-canvas maps per seed), `interpolate` and `vary-noise` (paper §5.1)."""

from __future__ import annotations

from pathlib import Path

import click

from .params import Finite, Seed

MAP_FORMATS = ["exr", "png16", "tiff"]


def _model_options(func):
    """Options shared by the three commands (device, precision, tiling)."""
    func = click.option("--compile", "compile_", is_flag=True, help="torch.compile the generator.")(func)
    func = click.option("--patches-per-pass", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Patches per forward pass (default: one row of patches).")(func)
    func = click.option("--precision", type=click.Choice(["auto", "fp32", "tf32", "bf16"]), default="auto",
                        show_default=True,
                        help="auto = tf32 on CUDA, fp32 on CPU; fp32 forces full float32.")(func)
    func = click.option("--device", default="auto", show_default=True,
                        help="cpu, cuda, cuda:1, ... (auto: CUDA when available).")(func)
    func = click.option("--truncation", "-t", type=Finite(), default=1.0, show_default=True,
                        help="Truncation psi (1 = none).")(func)
    func = click.option("--overwrite", is_flag=True,
                        help="Replace the files this command writes (other files in the folder are kept).")(func)
    return func


def _load(checkpoint: Path, device: str, precision: str, compile_: bool, patches_per_pass: int | None):
    from ..generate import load

    return load(checkpoint, device=device, precision=precision, compile=compile_, patches_per_pass=patches_per_pass)


def _seeds(text: str, param: str) -> list[int]:
    from ..generate import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


@click.command("generate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--seeds", "-s", default="0", show_default=True, help="Seeds: 0-7, 1,5,9 or mixed (0-3,8).")
@click.option("--out", "-o", "out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--format", "fmt", type=click.Choice(MAP_FORMATS), default="exr", show_default=True,
              help="exr: half float (displacement float32); png16: 16-bit PNG; tiff: 16-bit "
                   "(displacement float32).")
@click.option("--noise-seed", type=Seed(), default=None,
              help="Noise seed for every sample (default: the seed).")
@click.option("--extrapolate", is_flag=True,
              help="Fill the untrained region outside the mask (paper §5.4: low frequencies blurred).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@_model_options
def generate_cmd(checkpoint: Path, seeds: str, out: Path, fmt: str, noise_seed: int | None, extrapolate: bool,
                 no_progress: bool, overwrite: bool, truncation: float, device: str, precision: str,
                 patches_per_pass: int | None, compile_: bool) -> None:
    """Full-canvas albedo, specular, displacement and normal maps for each seed of CHECKPOINT.

    CHECKPOINT is a .safetensors checkpoint/model file or a run directory (latest checkpoint).
    Writes OUT/seedNNNN/{albedo,specular,displacement,normal}.<ext>, OUT/seedNNNN/contact.png,
    OUT/contact.png (all seeds) and OUT/generate.json.
    """
    from ..outputs import refuse_existing, writing
    from ..outputs.mapfiles import output_paths
    from ..samples import write_samples

    seed_list = _seeds(seeds, "--seeds")
    with writing("generate"):  # before the model loads: the same pre-flight write_samples repeats
        refuse_existing([*(p for s in seed_list for p in output_paths(out, s, fmt).values()),
                         out / "contact.png", out / "generate.json"], overwrite, inputs=[checkpoint])
    model = _load(checkpoint, device, precision, compile_, patches_per_pass)
    click.echo(f"{model.name}: canvas {model.canvas[1]}x{model.canvas[0]}, patch {model.patch_size}, "
               f"device {model.device}, precision {model.precision}; {len(seed_list)} seed(s) -> {out}")
    write_samples(model, seed_list, out, fmt, truncation=truncation, noise_seed=noise_seed, extrapolate=extrapolate,
                  overwrite=overwrite, progress=not no_progress,
                  title=f"{model.name}  psi={truncation:g}  {checkpoint}",
                  echo=click.echo)
    click.echo(f"wrote {len(seed_list)} sample(s) to {out} (contact sheet: {out / 'contact.png'})")


@click.command("interpolate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--seeds", "-s", required=True, help="Two seeds A,B.")
@click.option("--steps", "-n", type=click.IntRange(min=2), default=8, show_default=True, help="Frames.")
@click.option("--out", "-o", "out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--method", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True,
              help="Interpolation in W.")
@click.option("--modality", type=click.Choice(["albedo", "specular", "displacement", "normal"]),
              default="albedo", show_default=True, help="Map shown in the frames.")
@click.option("--noise-seed", type=Seed(), default=None, help="Fixed noise seed (default: seed A).")
@click.option("--size", type=click.IntRange(min=16), default=512, show_default=True,
              help="Long side of the preview frames (pixels).")
@click.option("--fps", type=Finite(min=0, min_open=True), default=8.0, show_default=True)
@click.option("--save-frames", is_flag=True, help="Also write each frame as OUT/frames/frameNNNN.png.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@_model_options
def interpolate_cmd(checkpoint: Path, seeds: str, steps: int, out: Path, method: str, modality: str,
                    noise_seed: int | None, size: int, fps: float, save_frames: bool, no_progress: bool,
                    overwrite: bool, truncation: float, device: str, precision: str, patches_per_pass: int | None,
                    compile_: bool) -> None:
    """Latent interpolation between two seeds: contact sheet, GIF (and MP4 with imageio-ffmpeg)."""
    from ..samples import has_mp4, write_interpolation

    pair = _seeds(seeds, "--seeds")
    if len(pair) != 2:
        raise click.BadParameter("give exactly two distinct seeds, e.g. 3,17", param_hint="--seeds")
    model = _load(checkpoint, device, precision, compile_, patches_per_pass)
    write_interpolation(model, pair, steps, out, method=method, modality=modality, truncation=truncation,
                        noise_seed=noise_seed, size=size, fps=fps, save_frames=save_frames, overwrite=overwrite,
                        progress=not no_progress, echo=click.echo)
    click.echo(f"wrote {out / 'contact.png'}, {out / 'interpolate.gif'}"
               + (", interpolate.mp4" if has_mp4() else " (install imageio-ffmpeg for an MP4)"))


@click.command("vary-noise")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--seed", "-s", type=Seed(), default=0, show_default=True, help="Latent seed.")
@click.option("--count", "-n", type=click.IntRange(min=1), default=4, show_default=True,
              help="Noise seeds 0..N-1 (plus --first-noise-seed).")
@click.option("--first-noise-seed", type=Seed(), default=0, show_default=True)
@click.option("--out", "-o", "out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--crop", type=click.IntRange(min=16), default=None,
              help="Side of the 1:1 crops in pixels, at most the canvas [default: 256, less on small canvases].")
@click.option("--save-maps", "fmt", type=click.Choice(MAP_FORMATS), default=None,
              help="Also write every variation's full maps (OUT/noiseNNNN/) in this format.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@_model_options
def vary_noise_cmd(checkpoint: Path, seed: int, count: int, first_noise_seed: int, out: Path, crop: int | None,
                   fmt: str | None, no_progress: bool, overwrite: bool, truncation: float, device: str,
                   precision: str, patches_per_pass: int | None, compile_: bool) -> None:
    """Fixed latent, new noise seeds (paper §5.1, Fig. 10): fine detail changes, the face stays."""
    from ..config import check_seed
    from ..samples import write_noise_variations

    check_seed(first_noise_seed + count - 1, "last noise seed")
    model = _load(checkpoint, device, precision, compile_, patches_per_pass)
    write_noise_variations(model, seed, count, out, first_noise_seed=first_noise_seed, crop=crop, fmt=fmt,
                           truncation=truncation, overwrite=overwrite, progress=not no_progress, echo=click.echo)
    click.echo(f"wrote {out / 'contact.png'}")


def register(group: click.Group) -> None:
    """Add `generate`, `interpolate` and `vary-noise` to the top-level group."""
    for command in (generate_cmd, interpolate_cmd, vary_noise_cmd):
        group.add_command(command)
