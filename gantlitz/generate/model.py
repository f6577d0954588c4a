"""The loaded model: `load(checkpoint)` → `TextureModel` (seeds → maps, files, §5.1 interpolation and noise
variation), the checkpoint's dataset facts (displacement scale, normal convention) and `interpolate_ws`."""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .. import maps as maps_mod
from ..checkpoint import CheckpointError, load_generator
from ..config import MODALITIES, check_seed, check_truncation
from ..device import resolve_device, resolve_precision
from ..errors import UsageError
from ..geometry import check_region, level0_unit
from ..nn.generator import Generator
from ..outputs import refuse_existing, save_image
from ..outputs.mapfiles import OUTPUT_MAPS, output_paths, write_map
from ..sheets import contact_sheet, thumbnails
from .postprocess import DEFAULT_NORMAL_CONVENTION, extrapolate_fill, normals_from_displacement
from .selection import modality_list
from .streaming import stream_maps

log = logging.getLogger(__name__)

DEFAULT_SCALE_PER_PIXEL = 1.0 / 256.0
"""Displacement scale used when a checkpoint does not record its dataset's: canvas width / 256 pixels."""


def _dataset_facts(meta: dict[str, Any], canvas: tuple[int, int], path: Any) -> tuple[float, str]:
    """(displacement scale, normal convention) from a checkpoint's dataset facts, with defaults said in
    warnings; malformed facts are a `CheckpointError`."""
    where = path or "checkpoint"
    dataset = meta.get("dataset") or {}
    if not isinstance(dataset, dict):
        raise CheckpointError(f"{where}: metadata 'dataset' must be a mapping, got {type(dataset).__name__}")
    scale = dataset.get("displacement_scale")
    if scale is None:
        scale = canvas[1] * DEFAULT_SCALE_PER_PIXEL
        warnings.warn(f"{where}: no dataset displacement_scale recorded; normals use {scale:g} pixels per "
                      "displacement unit (canvas width / 256)", stacklevel=3)
    conv = dataset.get("normal_convention")
    if conv is None:
        conv = DEFAULT_NORMAL_CONVENTION
        if dataset:
            warnings.warn(f"{where}: no normal_convention recorded; using {conv}", stacklevel=3)
    data_canvas = dataset.get("canvas")
    if isinstance(data_canvas, dict):
        data_canvas = [data_canvas.get("height"), data_canvas.get("width")]
    try:
        scale = float(scale)
        data_canvas = None if data_canvas is None else tuple(int(v) for v in data_canvas)
    except (TypeError, ValueError):
        raise CheckpointError(f"{where}: malformed dataset facts (displacement_scale {scale!r}, canvas "
                              f"{data_canvas!r})") from None
    if not (math.isfinite(scale) and scale > 0):
        raise CheckpointError(f"{where}: displacement_scale must be a positive number, got {scale}")
    if conv not in maps_mod.CONVENTIONS:
        raise CheckpointError(f"{where}: unknown normal convention {conv!r}")
    if data_canvas is not None and data_canvas != canvas:
        log.warning("dataset canvas %s differs from the generator's %s; using the generator's", data_canvas, canvas)
    return scale, str(conv)


class TextureModel:
    """A loaded generator with everything needed to turn seeds into texture maps."""

    def __init__(
        self, G: Generator, meta: dict[str, Any] | None = None, *, device: str | torch.device = "cpu",
        precision: str = "auto", compile: bool = False, patches_per_pass: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.meta = dict(meta or {})
        self.path = self.meta.get("path")
        self.canvas: tuple[int, int] = tuple(int(v) for v in G.canvas)  # type: ignore[assignment]
        self.patch_size = int(G.patch_size)
        self.unit = level0_unit(self.patch_size)
        self.patches_per_pass = patches_per_pass
        self.mask = G.mask.detach().cpu().numpy().astype(np.uint8)
        self.displacement_scale, self.normal_convention = _dataset_facts(self.meta, self.canvas, self.path)
        self._call: Any = G
        if compile:
            self._call = torch.compile(self.G)
        self.last_stats: dict[str, float] = {}

    # --------------------------------------------------------------------------------------- latents
    @property
    def inputs(self) -> list[str]:
        """The files this model was read from (never an output of the commands that use it)."""
        return [self.path] if self.path else []

    @property
    def name(self) -> str:
        preset = self.meta.get("preset") or {}
        return str(preset.get("name", "generator"))

    def ws_for_seed(self, seed: int, truncation: float = 1.0) -> torch.Tensor:
        """Latents ws (1, num_ws, w_dim) of a seed: z ~ N(0, I) from a CPU generator (device-independent)."""
        check_truncation(truncation)
        z = torch.randn(1, self.G.cfg.z_dim, generator=torch.Generator().manual_seed(check_seed(seed)))
        with torch.no_grad():
            return self.G.mapping(z.to(self.device), truncation_psi=float(truncation))

    # ------------------------------------------------------------------------------------- synthesis
    def sample(
        self, seed: int, modalities: Sequence[str] = MODALITIES, truncation: float = 1.0,
        region: Sequence[int] | None = None, noise_seed: int | None = None, extrapolate: bool = False,
        *, progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """Maps of one seed: {modality: H x W x C float32 in [0, 1]} over the canvas or an aligned region.

        modalities: any of albedo, specular, displacement, normal (normal is derived from displacement:
        tangent space, encoded n * 0.5 + 0.5, finite differences inside the region). noise_seed defaults
        to the seed. extrapolate fills the region outside the mask (paper §5.4; full canvas only).
        """
        ws = self.ws_for_seed(seed, truncation)
        return self.sample_ws(ws, modalities, noise_seed=seed if noise_seed is None else noise_seed,
                              region=region, extrapolate=extrapolate, progress=progress)

    def sample_ws(
        self, ws: torch.Tensor, modalities: Sequence[str] = MODALITIES, *, noise_seed: int = 0,
        region: Sequence[int] | None = None, extrapolate: bool = False, noise: Any = None,
        progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """`sample` for given latents ws (1, num_ws, w_dim) (interpolation, inversion results).

        `noise` (an `ExplicitNoise`) replaces the hashed noise of `noise_seed`: the public synthesis entry
        point of inversion.
        """
        mods = modality_list(modalities)
        region_t = check_region(region, self.canvas, self.patch_size)
        if extrapolate and (region_t.height, region_t.width) != self.canvas:
            raise UsageError("extrapolate needs the full canvas (its low-frequency blur spans the whole map)")
        if ws.ndim != 3 or ws.shape[0] != 1:
            raise UsageError(f"ws must be (1, num_ws, w_dim), got {tuple(ws.shape)}")
        net = [m for m in MODALITIES if m in mods or (m == "displacement" and "normal" in mods)]
        arrays, stats = stream_maps(self.G, ws.to(self.device), net, region_t, noise_seed=noise_seed, noise=noise,
                                    apply_mask=not extrapolate, patches_per_pass=self.patches_per_pass,
                                    precision=self.precision, call=self._call, progress=progress)
        t1 = time.perf_counter()
        if extrapolate:
            for m in net:
                arrays[m] = extrapolate_fill(arrays[m], self.mask)
        for arr in arrays.values():
            np.clip(arr, 0.0, 1.0, out=arr)
        result = {m: arrays[m] for m in MODALITIES if m in mods}
        if "normal" in mods:
            result["normal"] = normals_from_displacement(
                arrays["displacement"], self.displacement_scale, self.normal_convention
            )
        stats["postprocess_s"] = time.perf_counter() - t1
        self.last_stats = stats
        return {m: result[m] for m in mods}

    # ----------------------------------------------------------------------------------------- files
    def write(
        self, seed: int, out_dir: str | os.PathLike, format: str = "exr", *, truncation: float = 1.0,
        noise_seed: int | None = None, extrapolate: bool = False, overwrite: bool = False,
        contact: bool = True, progress: bool = False, label: str | None = None,
    ) -> dict[str, Any]:
        """Write `out_dir/seedNNNN/{albedo,specular,displacement,normal}.<ext>` (+ contact.png).

        Refuses (before synthesising anything) when one of the files exists, unless overwrite. Returns
        {"paths": {...}, "timings": {...}, "thumbnails": {...}} (thumbnails feed the run's contact sheet).
        """
        paths = output_paths(out_dir, seed, format)
        if not contact:
            paths.pop("contact")
        refuse_existing(paths.values(), overwrite, inputs=self.inputs)
        t0 = time.perf_counter()
        result = self.sample(seed, OUTPUT_MAPS, truncation, noise_seed=noise_seed, extrapolate=extrapolate,
                             progress=progress)
        timings = {**self.last_stats, "sample_s": time.perf_counter() - t0}
        t1 = time.perf_counter()
        for name in OUTPUT_MAPS:
            write_map(paths[name], result[name], name, overwrite=overwrite)
        timings["write_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        thumbs = thumbnails(result, mask=self.mask)
        if contact:
            text = label or f"seed {seed}  {self.name}  psi={truncation:g}" + ("  extrapolated" if extrapolate else "")
            save_image(contact_sheet(result, self.mask, title=text, thumbs=thumbs), paths["contact"], overwrite)
        timings["contact_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        return {"paths": {k: str(v) for k, v in paths.items()}, "timings": timings, "thumbnails": thumbs}

    # -------------------------------------------------------------------------------- §5.1 variations
    def interpolate(
        self, seed_a: int, seed_b: int, steps: int, *, method: str = "slerp", truncation: float = 1.0,
        modalities: Sequence[str] = ("albedo",), noise_seed: int | None = None, progress: bool = False,
    ) -> Iterator[tuple[float, dict[str, np.ndarray]]]:
        """Yields (t, maps) for `steps` frames from seed_a (t=0) to seed_b (t=1), interpolating in W.

        The noise seed is fixed (default: seed_a) so only the latent changes.
        """
        if steps < 2:
            raise UsageError("interpolation needs at least 2 steps")
        wa, wb = self.ws_for_seed(seed_a, truncation), self.ws_for_seed(seed_b, truncation)
        ns = seed_a if noise_seed is None else noise_seed
        for i in range(steps):
            t = i / (steps - 1)
            yield t, self.sample_ws(interpolate_ws(wa, wb, t, method), modalities, noise_seed=ns, progress=progress)

    def vary_noise(
        self, seed: int, count: int, *, truncation: float = 1.0, modalities: Sequence[str] = ("albedo", "displacement"),
        first_noise_seed: int = 0, progress: bool = False,
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yields (noise_seed, maps) for noise seeds first..first+count-1 with the latent of `seed` fixed."""
        if count < 1:
            raise UsageError("count must be >= 1")
        ws = self.ws_for_seed(seed, truncation)
        for k in range(first_noise_seed, first_noise_seed + count):
            yield k, self.sample_ws(ws, modalities, noise_seed=k, progress=progress)


def interpolate_ws(wa: torch.Tensor, wb: torch.Tensor, t: float, method: str = "slerp") -> torch.Tensor:
    """Lerp, or slerp (angle of the W vectors, norm interpolated linearly), between two latents."""
    if method == "lerp":
        return torch.lerp(wa, wb, float(t))
    if method != "slerp":
        raise UsageError(f"unknown interpolation {method!r}; choose lerp or slerp")
    na, nb = wa.norm(dim=-1, keepdim=True), wb.norm(dim=-1, keepdim=True)
    ua, ub = wa / na.clamp_min(1e-12), wb / nb.clamp_min(1e-12)
    dot = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    small = so.abs() < 1e-6
    ca = torch.where(small, 1.0 - t, torch.sin((1.0 - t) * omega) / so.where(~small, torch.ones_like(so)))
    cb = torch.where(small, torch.full_like(so, t), torch.sin(t * omega) / so.where(~small, torch.ones_like(so)))
    direction = ca * ua + cb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return direction * torch.lerp(na, nb, float(t))


def load(
    path_or_run_dir: str | os.PathLike, device: str | torch.device = "cpu", precision: str = "auto",
    compile: bool = False, *, patches_per_pass: int | None = None,
) -> TextureModel:
    """Load a checkpoint / model file / run directory (latest checkpoint) as a `TextureModel` (EMA weights).

    Raises `CheckpointError` (a ValueError) with a clear message for missing or corrupt files.
    """
    dev = resolve_device(device)
    try:
        G, meta = load_generator(path_or_run_dir, device="cpu")
    except CheckpointError as exc:
        raise CheckpointError(f"cannot load the checkpoint: {exc}") from None
    return TextureModel(G, meta, device=dev, precision=precision, compile=compile, patches_per_pass=patches_per_pass)


