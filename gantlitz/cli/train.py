"""CLI commands: `gantlitz train` (also under torchrun) and `gantlitz demo`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import presets
from .params import Finite, Seed


def _overrides(**flags: object) -> dict[str, object]:
    """The training flags that were given → dotted overrides; each flag is named after its field
    (`--r1-gamma` → `train.r1_gamma`), so the key comes from the configuration classes."""
    from ..config import canonical_key

    return {canonical_key(name): value for name, value in flags.items() if value is not None}


@click.command("train")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Prepared dataset (output of `gantlitz prepare`).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory: config.json, checkpoints/, logs/, previews/, model.safetensors.")
@click.option("--preset", type=click.Choice(presets.names(), case_sensitive=False), default=None,
              help="Model + schedule (required unless --resume).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Samples per step per process.")
@click.option("--group-size", type=click.IntRange(min=1), default=None,
              help="Consecutive samples from one patch location (D's minibatch-stddev group).")
@click.option("--lr", type=Finite(), default=None, help="Adam learning rate (after the linear warm-up).")
@click.option("--r1-gamma", type=Finite(), default=None, help="R1 weight γ.")
@click.option("--kimg", type=Finite(), default=None, help="Train for this many thousand real samples (all processes).")
@click.option("--steps", type=click.IntRange(min=0), default=None, help="Train for this many steps in total.")
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default=None,
              help="fp32 (strict), tf32 (CUDA default) or bf16 autocast of the G and D passes (losses fp32).")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the G and D passes.")
@click.option("--seed", type=Seed(), default=None, help="Seed of the weights and of every random draw.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="DataLoader worker processes.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: the local GPU if any, else CPU).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, help="Steps between checkpoints.")
@click.option("--preview-every", type=click.IntRange(min=0), default=None, help="Steps between previews (0: none).")
@click.option("--log-every", type=click.IntRange(min=1), default=None, help="Steps between logged scalars.")
@click.option("--keep-checkpoints", type=click.IntRange(min=1), default=None, help="Checkpoints kept (default 3).")
@click.option("--minutes", type=Finite(), default=None, help="Stop (checkpoint + model) after this much wall time.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any preset field: model.channel_max=32, train.augment.midband_p=0.5, global_res=64 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out.")
@click.option("--allow-data-change", is_flag=True,
              help="With --resume: continue on a dataset whose subjects or canvas differ from the run's record.")
@click.option("--overwrite", is_flag=True, help="Start over in --out: deletes only the run's own files (checkpoints, model, logs, previews, "
                   "metrics, config); other files are kept. Refused for a folder that holds the dataset.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads of torch (1 is fastest for small models on a busy CPU).")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs and TensorBoard still written).")
def train_cmd(data: Path, out: Path, preset: str | None, batch, group_size, lr, r1_gamma, kimg, steps, precision,
              compile_, seed, workers, device, checkpoint_every, preview_every, log_every, keep_checkpoints,
              minutes, sets, resume, allow_data_change, overwrite, threads, no_progress) -> None:
    """Train GANtlitz on a prepared dataset.

    \b
    Examples:
      gantlitz train --data DS --preset gantlitz-s --out runs/s
      gantlitz train --data DS --out runs/s --resume
      gantlitz train --data DS --preset tiny --out runs/t --steps 500 --set train.augment.midband_p=0.5
      torchrun --nproc_per_node=4 -m gantlitz train --data DS --preset gantlitz-l --out runs/l
    Monitor with: tensorboard --logdir RUN/logs
    """
    from ..config import parse_overrides
    from ..errors import ConfigError
    from ..train.loop import train

    if steps is not None and kimg is not None:
        raise click.UsageError("give --steps or --kimg, not both")
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        overrides = parse_overrides(list(sets))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    overrides.update(_overrides(batch=batch, group_size=group_size, lr=lr, r1_gamma=r1_gamma, precision=precision,
                                compile=compile_, seed=seed, workers=workers, checkpoint_every=checkpoint_every,
                                preview_every=preview_every, log_every=log_every, keep_checkpoints=keep_checkpoints))
    result = train(data, out, preset, overrides=overrides, steps=steps, kimg=kimg, resume=resume,
                   overwrite=overwrite, device=device, max_minutes=minutes, progress=not no_progress,
                   command=["gantlitz", *sys.argv[1:]], allow_data_change=allow_data_change)
    if result.model is not None:
        click.echo(f"trained {result.step} steps; model: {result.model}")
        click.echo(f"sample it with: gantlitz generate {out} --seeds 0-3 --out {out / 'samples'}")


@click.command("demo")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("gantlitz-demo"),
              show_default=True, help="Folder for everything the demo makes.")
@click.option("--minutes", type=Finite(), default=8.0, show_default=True, help="Training wall time.")
@click.option("--subjects", type=click.IntRange(min=4), default=24, show_default=True,
              help="Synthetic identities to train on.")
@click.option("--size", type=click.Choice(["128", "256", "512"]), default="256", show_default=True,
              help="Synthetic canvas side (pixels).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Stop training after this many steps.")
@click.option("--seeds", type=click.IntRange(min=8), default=8, show_default=True,
              help="Textures to generate (at least 8: the layout measure averages them).")
@click.option("--quick", is_flag=True, help="A one-minute smoke run: 6 subjects at 128x128, a few steps, 4 seeds.")
@click.option("--device", default=None, help="cpu or cuda (default: the GPU if any).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads of torch (default: one per core).")
@click.option("--overwrite", is_flag=True,
              help="Make every stage again (data, store, model, samples, measures) instead of reusing it.")
def demo_cmd(out: Path, minutes: float, subjects: int, size: str, steps: int | None, seeds: int, quick: bool,
             device: str | None, threads: int | None, overwrite: bool) -> None:
    """Synthesise a dataset, prepare it, train `tiny` for a few minutes, generate textures, measure them.

    Needs nothing but the installed package; every stage shows its progress. Run again into the same
    --out, it reuses what exists: OUT/raw (synthetic scans), OUT/data (prepared store), OUT/run (the
    trained model; a run stopped before its model was written is resumed), OUT/samples and OUT/eval.
    Nothing is deleted or retrained without --overwrite. OUT/SUMMARY.md lists the results.
    """
    from ..demo import DemoError, run_demo

    try:
        run_demo(out, minutes=minutes, subjects=subjects, size=int(size), steps=steps, seeds=seeds, quick=quick,
                 device=device, threads=threads, overwrite=overwrite)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None


def register(group: click.Group) -> None:
    """Add this area's commands to the top-level group."""
    group.add_command(train_cmd)
    group.add_command(demo_cmd)
