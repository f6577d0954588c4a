"""What an inversion optimises and produces: its configuration, the resumable optimisation state, the
result (latents + noise maps), latent files, and the full-canvas maps of a result."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..config import MODALITIES, SEED_MAX, FloatRanges, IntRanges, field_problems
from ..generate import TextureModel, stream_maps
from ..nn.generator import Generator
from ..noise import ExplicitNoise
from .targets import InversionError

log = logging.getLogger(__name__)

STATE_KIND = "gantlitz-inversion-state"
LATENT_KIND = "gantlitz-inversion"
LOSS_COLUMNS = ("stage", "total", "pixel", "noise_reg")


_INT_RANGES: IntRanges = {"latent_steps": (0, None), "noise_steps": (0, None), "region_patches": (1, None),
                          "seed": (0, SEED_MAX), "loss_scales": (1, 16), "whole_noise_samples": (0, None),
                          "save_every": (1, None)}
_FLOAT_RANGES: FloatRanges = {
    "lr_latent": (0.0, math.inf, True), "lr_noise": (0.0, math.inf, True), "lr_rampup": (0.0, 1.0, False),
    "lr_rampdown": (0.0, 1.0, False), "w_noise_factor": (0.0, math.inf, False), "w_noise_ramp": (0.0, 1.0, True),
    "l1_weight": (0.0, math.inf, False), "l2_weight": (0.0, math.inf, False),
    "noise_corr_weight": (0.0, math.inf, False), "noise_stats_weight": (0.0, math.inf, False),
    "superres_noise_boost": (0.0, math.inf, False)}
"""The ranges of the inversion settings (checked by the configuration gate's field rules)."""


@dataclass(frozen=True)
class InversionConfig:
    """Everything that determines an inversion's result (saved with its state and its latent file)."""

    latent_steps: int = 400
    """Stage 1: W+ latents, noise re-sampled every step."""
    noise_steps: int = 400
    """Stage 2: noise maps, latents fixed."""
    region_patches: int | None = 2
    """Each step synthesises k×k patches (clipped to the canvas); None = the whole canvas every step."""
    seed: int = 0
    """Seeds every random choice (regions, per-step noise seeds, latent jitter) and the initial noise maps."""
    lr_latent: float = 0.1
    """Stage-1 learning rate of the W+ latents (before the ramps)."""
    lr_noise: float = 0.1
    """Stage-2 learning rate of the noise maps (before the ramps)."""
    lr_rampup: float = 0.05
    """Fraction of a stage over which the learning rate ramps up (StyleGAN2 projector)."""
    lr_rampdown: float = 0.25
    """Fraction of a stage at its end over which the learning rate decays to 0 (cosine)."""
    w_noise_factor: float = 0.05
    """Stage-1 latent jitter, times the spread of w, decaying quadratically to 0 ..."""
    w_noise_ramp: float = 0.75
    """... over this fraction of stage 1."""
    l1_weight: float = 1.0
    """Weight of the masked multi-scale L1 loss (summed over the pyramid levels)."""
    l2_weight: float = 1.0
    """Weight of the masked L2 loss at the finest scale."""
    loss_scales: int = 4
    """Pyramid levels of the multi-scale loss (area down-sampling by 2 per level)."""
    noise_corr_weight: float = 1e2
    """Multi-scale pixel-correlation penalty per noise layer (StyleGAN2 projector's regulariser)."""
    noise_stats_weight: float = 1.0
    """mean² + (std − 1)² penalty per noise layer."""
    superres_noise_boost: float = 10.0
    """Super-resolution: multiplier of both noise penalties for layers finer than the target resolution."""
    whole_noise_samples: int = 1 << 18
    """Noise layers with at most this many samples are optimised and regularised as a whole every stage-2
    step (the penalty on a small random window would chase that window's chance correlations); larger
    layers only on the crop the step's region reads, which bounds memory."""
    save_every: int = 50
    """Write the resumable state every N steps (and at every stage end) when a state path is given."""

    def __post_init__(self) -> None:
        bad = field_problems(self, "invert", _INT_RANGES, _FLOAT_RANGES)
        if not bad and self.latent_steps + self.noise_steps == 0:
            bad.append("nothing to do: latent_steps and noise_steps are both 0")
        if bad:
            raise InversionError("invalid inversion settings: " + "; ".join(bad))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "InversionConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class InversionResult:
    """Latents + noise maps of an inversion, with its loss history and reconstruction quality."""

    ws: torch.Tensor
    """(1, num_ws, w_dim) W+ latents (CPU)."""
    noise: ExplicitNoise
    """Optimised full-canvas noise maps (CPU)."""
    losses: np.ndarray
    """(steps, 4): stage, total loss, pixel loss, noise regularisation per step."""
    modality: str
    mode: str
    factor: int
    """Canvas / target resolution (1 for completion)."""
    config: InversionConfig
    psnr: float | None = None
    """PSNR (dB) of the reconstruction against the target at the target's resolution, within the mask."""
    reconstruction: np.ndarray | None = None
    """The inverted modality at full canvas resolution, [0, 1] H×W×C."""
    extra: dict[str, Any] = field(default_factory=dict)



def generator_of(model: Any) -> Generator:
    G = getattr(model, "G", model)
    if not isinstance(G, Generator):
        raise InversionError(f"expected a Generator or a loaded model with a .G generator, got {type(model).__name__}")
    return G



# ------------------------------------------------------------------------------------------ state
@dataclass
class InversionState:
    """Where an inversion stands: stage (1 latents, 2 noise maps, 3 done), step, the optimised values with
    their Adam moments, and the loss history. Saved every `save_every` steps; `load` resumes it."""

    stage: int
    step: int
    w_opt: torch.Tensor
    w_m: torch.Tensor
    w_v: torch.Tensor
    losses: list[tuple[float, float, float, float]] = field(default_factory=list)
    noise: ExplicitNoise | None = None
    noise_m: list[torch.Tensor] = field(default_factory=list)
    noise_v: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def fresh(cls, w_start: torch.Tensor, num_ws: int, device: torch.device) -> "InversionState":
        w_opt = w_start[None, None].repeat(1, num_ws, 1).to(device)
        return cls(1, 0, w_opt, torch.zeros_like(w_opt), torch.zeros_like(w_opt))

    def start_noise(self, layouts: Any, seed: int, device: torch.device) -> ExplicitNoise:
        """The explicit noise maps of stage 2 (the hashed noise of `seed`), created once."""
        if self.noise is None:
            self.noise = ExplicitNoise(layouts, init_seed=seed).to(device).requires_grad_(False)
            self.noise_m = [torch.zeros_like(p) for p in self.noise.maps]
            self.noise_v = [torch.zeros_like(p) for p in self.noise.maps]
        return self.noise

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        tensors: dict[str, torch.Tensor] = {
            "w_opt": self.w_opt, "w_m": self.w_m, "w_v": self.w_v,
            "losses": torch.tensor(self.losses, dtype=torch.float64).reshape(-1, len(LOSS_COLUMNS)),
        }
        if self.noise is not None:
            for i, p in enumerate(self.noise.maps):
                tensors[f"noise.{i}"] = p.detach()
                tensors[f"noise_m.{i}"] = self.noise_m[i]
                tensors[f"noise_v.{i}"] = self.noise_v[i]
        ckpt.save(path, tensors, {"kind": STATE_KIND, "stage": self.stage, "step": self.step, **meta})

    @classmethod
    def load(cls, path: Path | None, expected: Mapping[str, Any], layouts: Any, device: torch.device
             ) -> "InversionState":
        """The saved state at `path`; refused unless its configuration, modality, mode and target are
        `expected`'s."""
        if path is None or not path.exists():
            raise InversionError(f"cannot resume: no saved state at {path}")
        try:
            tensors, meta = ckpt.load(path, device="cpu")
        except ckpt.CheckpointError as exc:
            raise InversionError(f"cannot resume: {exc}") from None
        if meta.get("kind") != STATE_KIND:
            raise InversionError(f"{path}: not an inversion state file")
        mismatches = [name for name, key in (("configuration", "config"), ("modality", "modality"), ("mode", "mode"),
                                             ("target", "target_sha1")) if expected[key] != meta.get(key)]
        if mismatches:
            raise InversionError(f"{path}: the saved inversion differs in {', '.join(mismatches)}; resume with the "
                                 "same target and options, or start over (--overwrite)")
        w_opt, w_m, w_v = (tensors[k].to(device) for k in ("w_opt", "w_m", "w_v"))
        state = cls(int(meta["stage"]), int(meta["step"]), w_opt, w_m, w_v,
                    [tuple(r) for r in tensors["losses"].tolist()])
        if "noise.0" in tensors:
            state.noise = ExplicitNoise(layouts, init_seed=None)
            with torch.no_grad():
                for i, p in enumerate(state.noise.maps):
                    p.copy_(tensors[f"noise.{i}"])
            state.noise = state.noise.to(device).requires_grad_(False)
            state.noise_m = [tensors[f"noise_m.{i}"].to(device) for i in range(len(layouts))]
            state.noise_v = [tensors[f"noise_v.{i}"].to(device) for i in range(len(layouts))]
        log.info("resuming inversion at stage %d, step %d", state.stage, state.step)
        return state


# ------------------------------------------------------------------------------------------ generation
def synthesize_maps(
    model: Any, ws: torch.Tensor, noise: ExplicitNoise | None, *, modalities: Sequence[str] = MODALITIES,
    patches_per_pass: int | None = None, device: str | torch.device | None = None, noise_seed: int = 0,
) -> dict[str, np.ndarray]:
    """Full-canvas maps ([0, 1] H×W×C, 0.5 outside the mask) for latents `ws` and explicit noise maps.

    Synthesised tile by tile by `gantlitz.generate.stream_maps` (the path `TextureModel.sample_ws` takes;
    identical to one pass: the generator is seamless), so memory is bounded. noise=None uses the hashed
    noise of `noise_seed`.
    """
    G = generator_of(model)
    dev = torch.device(device) if device is not None else G.mask.device
    G = G.to(dev)
    if noise is not None:
        noise = noise.to(dev)
    arrays, _ = stream_maps(G, ws.to(dev), list(modalities), noise_seed=noise_seed, noise=noise,
                            patches_per_pass=patches_per_pass)
    return {name: np.clip(arr, 0.0, 1.0, out=arr) for name, arr in arrays.items()}


def complete(
    result: InversionResult, model: Any, *, device: str | torch.device | None = None, normals: bool = True,
) -> dict[str, np.ndarray]:
    """Modality completion: every modality of an inversion at full canvas ([0, 1] H×W×C).

    With a loaded model (`gantlitz.generate.load`) the maps come from its `sample_ws` and include
    "normal" (tangent normals of the displacement, encoded n·0.5+0.5, with the dataset's displacement
    scale and normal convention); with a bare `Generator`, albedo/specular/displacement only.
    """
    noise = result.noise
    if isinstance(model, TextureModel):
        mods = (*MODALITIES, "normal") if normals else MODALITIES
        return model.sample_ws(result.ws, mods, noise=noise.to(device if device is not None else model.device))
    return synthesize_maps(model, result.ws, noise, device=device)


# ------------------------------------------------------------------------------------------ latent files
def save_latent(path: str | Path, result: InversionResult, meta: Mapping[str, Any] | None = None) -> Path:
    """Write latents + noise maps + JSON facts (config, losses, PSNR, `meta`) to one safetensors file."""
    tensors = {"ws": result.ws, "losses": torch.from_numpy(result.losses)}
    for i, p in enumerate(result.noise.maps):
        tensors[f"noise.{i}"] = p.detach()
    info = {
        "kind": LATENT_KIND, "modality": result.modality, "mode": result.mode, "factor": result.factor,
        "config": result.config.to_dict(), "psnr": result.psnr, "loss_columns": list(LOSS_COLUMNS),
        "final_loss": None if not len(result.losses) else float(result.losses[-1, 1]),
        **{k: v for k, v in {**result.extra, **(meta or {})}.items() if k != "kind"},
    }
    return ckpt.save(path, tensors, json.loads(json.dumps(info, default=str)))


def load_latent(path: str | Path, model: Any) -> InversionResult:
    """Read a latent file written by `save_latent` back into an `InversionResult` for `model`."""
    G = generator_of(model)
    try:
        tensors, meta = ckpt.load(path, device="cpu")
    except ckpt.CheckpointError as exc:
        raise InversionError(str(exc)) from None
    if meta.get("kind") != LATENT_KIND:
        raise InversionError(f"{path}: not an inversion latent file (kind {meta.get('kind')!r})")
    layouts = G.noise_layouts()
    ws = tensors["ws"]
    if tuple(ws.shape) != (1, G.num_ws, G.cfg.w_dim):
        raise InversionError(
            f"{path}: latents of shape {tuple(ws.shape)} do not fit this model (needs (1, {G.num_ws}, {G.cfg.w_dim}))"
        )
    noise = ExplicitNoise(layouts, init_seed=None)
    with torch.no_grad():
        for i, p in enumerate(noise.maps):
            stored = tensors.get(f"noise.{i}")
            if stored is None or stored.shape != p.shape:
                raise InversionError(f"{path}: noise map {i} is missing or does not fit this model's canvas")
            p.copy_(stored)
    noise.requires_grad_(False)
    extra = {k: v for k, v in meta.items()
             if k not in ("kind", "modality", "mode", "factor", "config", "psnr", "format", "version")}
    return InversionResult(
        ws=ws, noise=noise, losses=tensors["losses"].numpy(), modality=meta["modality"], mode=meta["mode"],
        factor=int(meta["factor"]), config=InversionConfig.from_dict(meta["config"]), psnr=meta.get("psnr"),
        extra=extra,
    )


def model_identity(model: Any) -> dict[str, Any]:
    """What a latent file records of the model it was made with: its file, preset, step and weights' digest."""
    return {"path": getattr(model, "path", None), "preset": getattr(model, "name", None),
            "step": getattr(model, "meta", {}).get("step"), "digest": ckpt.digest(generator_of(model).state_dict())}


def check_latent_model(latent: str | Path, recorded: Any, model: Any) -> None:
    """Refuse to regenerate with weights other than the latent file's (the same latents give other maps)."""
    if not isinstance(recorded, dict) or "digest" not in recorded:
        log.warning("%s records no model (an older latent file): it can not be checked against %s", latent,
                    getattr(model, "path", "the model"))
        return
    if recorded["digest"] != ckpt.digest(generator_of(model).state_dict()):
        raise InversionError(f"{latent}: made with another model ({recorded.get('path')}, preset "
                             f"{recorded.get('preset')}, step {recorded.get('step')}) than {getattr(model, 'path', '?')}; "
                             "regenerate with that model (the latents mean something else in another one)")
