"""What an inversion writes: the completed maps, the contact sheet, the loss curve, the target and
result.json; the `gantlitz invert` command (`run`) and `regenerate` from a latent file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..config import MODALITIES
from ..device import resolve_device
from ..generate import load
from ..outputs import make_dirs, refuse_existing, save_figure, save_image, write_json, writing
from ..outputs.mapfiles import FORMATS, write_map
from ..resample import area_downsample
from ..sheets import grid, thumbnails
from .optimise import invert
from .state import (InversionConfig, InversionResult, check_latent_model, complete, generator_of, load_latent,
                    model_identity, save_latent)
from .targets import InversionError, Mode, TargetError, load_target

log = logging.getLogger(__name__)

STATE_NAME = "state.safetensors"
LATENT_NAME = "latent.safetensors"
LOSS_PLOT_NAME = "loss.png"
CONTACT_NAME = "contact.png"
TARGET_NAME = "target.png"
RESULT_NAME = "result.json"


def plot_losses(losses: np.ndarray, path: str | Path, title: str = "inversion") -> Path:
    """Loss curve PNG: total and pixel loss per step (log scale), the stage boundary marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(1, len(losses) + 1)
    if len(losses):
        ax.plot(x, losses[:, 1], label="total", lw=1)
        ax.plot(x, losses[:, 2], label="pixel", lw=1)
        if np.any(losses[:, 3] > 0):
            ax.plot(x, losses[:, 3], label="noise reg.", lw=1)
        boundary = np.nonzero(losses[:, 0] == 2)[0]
        if len(boundary) and boundary[0] > 0:
            ax.axvline(boundary[0] + 0.5, color="grey", ls="--", lw=0.8)
            ax.text(boundary[0] + 1, ax.get_ylim()[1], " noise maps", va="top", fontsize=8, color="grey")
        if np.all(losses[:, 1:3] > 0):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _suffix(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InversionError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def _output_names(fmt: str) -> list[str]:
    suffix = _suffix(fmt)
    return [f"{name}{suffix}" for name in (*MODALITIES, "normal")] + [
        LATENT_NAME, LOSS_PLOT_NAME, CONTACT_NAME, TARGET_NAME, RESULT_NAME,
    ]


def _check_out_dir(out: Path, fmt: str, *, overwrite: bool, resume: bool, inputs: Sequence[str | Path]) -> None:
    """The outputs' pre-flight (nothing touched): no input among them, none replaced that is not this
    command's own (by the folder's record), the interrupted state kept unless asked."""
    refuse_existing([out / n for n in _output_names(fmt)], overwrite or resume, inputs=inputs)
    state = out / STATE_NAME
    if overwrite:  # an interrupted state --overwrite discards must be this command's own
        refuse_existing([state], True)
    if state.exists() and not resume and not overwrite:
        raise InversionError(
            f"{out} holds an interrupted inversion ({STATE_NAME}); pass --resume to continue it or --overwrite to "
            "start over"
        )
    if resume and not state.exists():
        raise InversionError(f"cannot resume: {state} does not exist (nothing was interrupted in {out})")


def contact_image(
    maps: Mapping[str, np.ndarray], modality: str, target: np.ndarray | None, factor: int,
    mask: np.ndarray | None = None, title: str | None = None, long_side: int = 384,
):
    """Contact sheet (PIL image): target | reconstruction | |error|×4 above the completed modalities."""
    names = [n for n in (*MODALITIES, "normal") if n in maps]
    thumbs = thumbnails({n: maps[n] for n in names}, long_side=long_side, mask=mask)
    row1 = []
    if target is not None:
        big = _upsample_nearest(target, factor)
        t_thumb = thumbnails({modality: big}, long_side=long_side, mask=mask)[modality]
        label = f"target {target.shape[1]}x{target.shape[0]}" + (f" (1/{factor})" if factor > 1 else "")
        row1.append((t_thumb, label))
    row1.append((thumbs[modality], f"inverted {modality} {maps[modality].shape[1]}x{maps[modality].shape[0]}"))
    if target is not None:
        rec = area_downsample(maps[modality], factor)
        err = np.clip(np.abs(rec - target) * 4.0, 0.0, 1.0)
        err_big = _upsample_nearest(err, factor)
        row1.append((thumbnails({"error": err_big}, long_side=long_side)["error"], "|error| x4"))
    row2 = [(thumbs[n], n + (" (completed)" if n != modality else "")) for n in names if n != modality]
    return grid([row1, row2], title=title)


def write_outputs(
    out: Path, result: InversionResult, model: Any, *, target: np.ndarray | None, fmt: str = "exr",
    overwrite: bool = False, device: str | torch.device | None = None,
) -> dict[str, Path]:
    """Write the completed maps (+ normals), the contact sheet, the loss curve and result.json to `out`
    (with `gantlitz.generate`'s map writer and contact-sheet layout)."""
    suffix = _suffix(fmt)
    maps = complete(result, model, device=device)
    make_dirs(out)
    written: dict[str, Path] = {}
    for name, arr in maps.items():
        written[name] = write_map(out / f"{name}{suffix}", arr, name, overwrite=overwrite)
    mask = generator_of(model).mask.detach().cpu().numpy()
    title = f"inversion ({result.mode}, {result.modality})" + (
        f"  PSNR {result.psnr:.2f} dB" if result.psnr is not None else "")
    sheet = contact_image(maps, result.modality, target, result.factor, mask=mask, title=title)
    written["contact"] = save_image(sheet, out / CONTACT_NAME, overwrite=True)
    if target is not None:
        from ..imageio import write_image

        written["target"] = write_image(out / TARGET_NAME, target, bits=16, overwrite=True)
    written["loss"] = plot_losses(result.losses, out / LOSS_PLOT_NAME, title=title)
    summary = {
        "modality": result.modality, "mode": result.mode, "factor": result.factor, "psnr_db": result.psnr,
        "steps": [result.config.latent_steps, result.config.noise_steps], "config": result.config.to_dict(),
        "final_pixel_loss": None if not len(result.losses) else float(result.losses[-1, 2]),
        "checkpoint": result.extra.get("checkpoint"), "target": result.extra.get("target"),
        "files": sorted(p.name for p in written.values()),
    }
    written["result"] = write_json(out / RESULT_NAME, summary, overwrite=True)
    return written


def _upsample_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    return image if factor == 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def run(
    checkpoint: str | Path, target_path: str | Path, out: str | Path, *, modality: str = "albedo",
    mode: Mode = "completion", config: InversionConfig | None = None, resume: bool = False,
    overwrite: bool = False, fmt: str = "exr", device: str | torch.device | None = None, progress: bool = True,
) -> InversionResult:
    """The `gantlitz invert` command: load, validate, invert (resumable), write every output to `out`."""
    with writing("invert"):
        return _run(checkpoint, target_path, Path(out), modality=modality, mode=mode, config=config or InversionConfig(),
                    resume=resume, overwrite=overwrite, fmt=fmt, device=device, progress=progress)


def _run(checkpoint: str | Path, target_path: str | Path, out: Path, *, modality: str, mode: Mode,
         config: InversionConfig, resume: bool, overwrite: bool, fmt: str, device: str | torch.device | None,
         progress: bool) -> InversionResult:
    cfg = config
    dev = resolve_device(device)
    _check_out_dir(out, fmt, overwrite=overwrite, resume=resume, inputs=[checkpoint, target_path])
    model = load(checkpoint, device=dev)
    G = generator_of(model)
    target, _ = load_target(target_path, modality, G.canvas, mode)
    make_dirs(out)
    state = out / STATE_NAME
    if overwrite and not resume and state.exists():
        state.unlink()
    meta = {"checkpoint": str(Path(checkpoint).resolve()), "target": str(Path(target_path).resolve()),
            "model": model_identity(model)}
    result = invert(model, target, modality, mode, cfg, device=dev, state_path=state, resume=resume,
                    progress=progress, meta=meta)
    assert result is not None
    save_latent(out / LATENT_NAME, result)
    write_outputs(out, result, model, target=target, fmt=fmt, overwrite=overwrite or resume, device=dev)
    state.unlink(missing_ok=True)
    return result


def regenerate(
    checkpoint: str | Path, latent: str | Path, out: str | Path, *, fmt: str = "exr", overwrite: bool = False,
    device: str | torch.device | None = None,
) -> InversionResult:
    """Turn a saved latent file back into the full set of maps (+ contact sheet and loss curve) in `out`,
    with the model the latent file records (another one is refused: its latents mean something else)."""
    out = Path(out)
    with writing("invert"):
        refuse_existing([out / n for n in _output_names(fmt) if n != LATENT_NAME], overwrite,
                        inputs=[checkpoint, latent])
        dev = resolve_device(device)
        model = load(checkpoint, device=dev)
        result = load_latent(latent, model)
        check_latent_model(latent, result.extra.get("model"), model)
        target = None
        tpath = result.extra.get("target")
        if tpath and Path(tpath).is_file():
            try:
                target, _ = load_target(tpath, result.modality, generator_of(model).canvas, result.mode)
            except TargetError as exc:
                log.warning("not showing the original target: %s", exc)
        write_outputs(out, result, model, target=target, fmt=fmt, overwrite=overwrite, device=dev)
    return result
