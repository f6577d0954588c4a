"""Seamless patch generator: positional-encoding input, padding-free dual-style synthesis, output masking.

One forward pass synthesises any pixel-aligned canvas region (one patch, or k×k patches at once); because
every layer is padding-free and every sample (features, noise, mask) is tied to its global canvas position,
stitched patches equal a single pass over the whole region (paper §4.4, Table 1; `gantlitz.geometry`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import CHANNEL_SLICES, MODALITIES, MODALITY_CHANNELS, ModelConfig, keep_channels
from ..encodings import generator_input, generator_periods
from ..geometry import CONV_MARGINS, OUT_MARGIN, PE_MARGIN, canvas_level0, check_regions, level_window
from ..noise import HashNoise, NoiseLayout, NoiseSource
from .layers import StyleLayer, ToRGB, upsample2
from .mapping import MappingNetwork

def modality_index(modality: str | int) -> int:
    """Index of a modality given by name or index."""
    if isinstance(modality, str):
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
        return MODALITIES.index(modality)
    if not 0 <= int(modality) < len(MODALITIES):
        raise ValueError(f"modality index {modality} out of range")
    return int(modality)


def _selection(
    keep: torch.Tensor | None, batch: int, kept: int | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sample, modality) index pairs of the kept modalities, sample-major and in modality order per sample
    (the order `keep.nonzero()` gives), with a batch size known on the host: B·kept."""
    count = len(MODALITIES)
    if keep is None:
        keep, kept = torch.ones(batch, count, dtype=torch.bool, device=device), count
    elif kept is None:  # convenience for callers off the hot path: count on the host
        per_row = keep.sum(dim=1)
        kept = int(per_row[0]) if batch else 0
        if not bool((per_row == kept).all()):
            raise ValueError(f"every sample must keep the same number of modalities, got {per_row.tolist()}")
    keep = keep.to(device)
    # kept modalities first, each group in modality order; take the first `kept` per row
    order = torch.argsort(torch.where(keep, 0, count) + torch.arange(count, device=device), dim=1)[:, :kept]
    sample = torch.arange(batch, device=device)[:, None].expand(batch, kept).reshape(-1)
    return sample, order.reshape(-1)


def canvas_crop(maps: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crops (B, C, height, width) of canvas-aligned maps at per-sample offsets, zero outside the maps.

    `maps` is (C, H, W), shared by the batch, or (B, C, H, W), one per sample. One gather: no host loop,
    no synchronisation, and every sample of a crop depends only on its global position (seamless)."""
    map_h, map_w = maps.shape[-2:]
    rows = tops[:, None] + torch.arange(height, device=tops.device)
    cols = lefts[:, None] + torch.arange(width, device=lefts.device)
    valid = ((rows >= 0) & (rows < map_h))[:, :, None] & ((cols >= 0) & (cols < map_w))[:, None, :]
    index = rows.clamp(0, map_h - 1)[:, :, None] * map_w + cols.clamp(0, map_w - 1)[:, None, :]
    flat = maps.flatten(-2)
    if flat.ndim == 2:
        crops = flat[:, index].permute(1, 0, 2, 3)
    else:
        b, c = flat.shape[:2]
        crops = flat.gather(2, index.reshape(b, 1, -1).expand(b, c, -1)).reshape(b, c, height, width)
    return crops * valid[:, None].to(crops.dtype)


class SynthesisLevel(nn.Module):
    """(up-sample) → two modulated 3x3 convs with noise → toRGB, all padding-free."""

    def __init__(self, in_channels: int, channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        embed = cfg.embed_dim if cfg.dual_style else None
        kw = dict(modality_bias=cfg.modality_bias, conv_clamp=cfg.conv_clamp)
        self.conv0 = StyleLayer(in_channels, channels, cfg.w_dim, embed, **kw)
        self.conv1 = StyleLayer(channels, channels, cfg.w_dim, embed, **kw)
        self.torgb = ToRGB(channels, cfg.out_channels, cfg.w_dim, embed, **kw)


class Generator(nn.Module):
    """GANtlitz generator over a canvas of `cfg.canvas_height × cfg.canvas_width` pixels."""

    def __init__(self, cfg: ModelConfig, mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        self.canvas = (cfg.canvas_height, cfg.canvas_width)
        self.num_levels = cfg.num_levels
        self.num_ws = 2 * self.num_levels + 1
        self.out_channels = cfg.out_channels
        self.mapper = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers)
        self.embeddings = nn.Parameter(torch.randn(len(MODALITIES), cfg.embed_dim)) if cfg.dual_style else None
        in_ch, levels = cfg.pe_channels, []
        for channels in cfg.g_channels():
            levels.append(SynthesisLevel(in_ch, channels, cfg))
            in_ch = channels
        self.levels = nn.ModuleList(levels)
        periods = generator_periods(cfg.pe_channels, canvas_level0(*self.canvas, self.patch_size), cfg.pe_min_period)
        self.register_buffer("pe_periods", periods, persistent=False)
        self.pe_map = None
        if cfg.pe_learned:
            h0, w0 = canvas_level0(*self.canvas, self.patch_size)
            self.pe_map = nn.Parameter(torch.zeros(cfg.pe_channels, h0 + 2 * PE_MARGIN, w0 + 2 * PE_MARGIN))
        if mask is None:
            mask = torch.ones(self.canvas, dtype=torch.uint8)
        if tuple(mask.shape) != self.canvas:
            raise ValueError(f"mask is {tuple(mask.shape)} but the canvas is {self.canvas}")
        self.register_buffer("mask", (mask > 0).to(torch.uint8))

    # ----------------------------------------------------------------------------------------- mapping
    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapper.w_avg

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0, *, update_w_avg: bool = False) -> torch.Tensor:
        """z (B, z_dim) → per-layer latents ws (B, num_ws, w_dim), optionally truncated towards w_avg."""
        w = self.mapper(z, update_w_avg=update_w_avg)
        if truncation_psi != 1.0:
            w = self.w_avg.lerp(w, truncation_psi)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def noise_layouts(self) -> list[NoiseLayout]:
        """The canvas extent of every noise layer (for explicit, optimisable noise maps)."""
        h0, w0 = canvas_level0(*self.canvas, self.patch_size)
        return [
            NoiseLayout(level, h0 << level, w0 << level, margin)
            for level in range(self.num_levels)
            for margin in CONV_MARGINS
        ]

    # --------------------------------------------------------------------------------------- synthesis
    def _run(
        self, ws: torch.Tensor, modality: torch.Tensor | None, tops: torch.Tensor, lefts: torch.Tensor,
        height: int, width: int, noise: NoiseSource, last: int | None = None,
    ) -> torch.Tensor:
        """Raw synthesis of regions (height × width at per-sample tops/lefts) → (B, out_channels, h, w).

        `last` stops after that level and returns its skip output (the summed toRGB images so far) over
        the same region at that level's resolution: the coarse map every patch computes on its way, so a
        whole-canvas view of it trains exactly the function inference uses. No checks here: this runs in the training step, where a check of tensor values would wait for the
        device. Offsets are checked once where they enter (`check_regions`)."""
        p = self.patch_size
        (pe_tops, pe_h), (pe_lefts, pe_w) = (
            level_window(tops, height, p, 0, PE_MARGIN), level_window(lefts, width, p, 0, PE_MARGIN)
        )
        x = generator_input(pe_tops, pe_lefts, pe_h, pe_w, self.pe_periods).to(ws.dtype)
        if self.pe_map is not None:  # the map starts PE_MARGIN level-0 pixels before the canvas
            x = x + canvas_crop(self.pe_map, pe_tops + PE_MARGIN, pe_lefts + PE_MARGIN, pe_h, pe_w).to(ws.dtype)
        embed = None if self.embeddings is None else self.embeddings[modality].to(ws.dtype)
        rgb = None
        for lvl, level in enumerate(self.levels[: None if last is None else last + 1]):
            if lvl:
                x = upsample2(x)
            for j, (conv, margin) in enumerate(zip((level.conv0, level.conv1), CONV_MARGINS)):
                n_tops, n_h = level_window(tops, height, p, lvl, margin)
                n_lefts, n_w = level_window(lefts, width, p, lvl, margin)
                n = noise.sample(2 * lvl + j, n_tops, n_lefts, n_h, n_w)
                x = conv(x, ws[:, 2 * lvl + j], embed, n)
            y = level.torgb(x, ws[:, 2 * lvl + 2], embed)
            rgb = y if rgb is None else upsample2(rgb)[:, :, 2:-2, 2:-2] + y
        m = OUT_MARGIN
        return rgb[:, :, m:-m, m:-m]

    def mask_crops(self, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Mask crops (B, 1, h, w) at the given locations; zero outside the canvas. One gather, no host loop."""
        device = self.mask.device
        return canvas_crop(self.mask[None].float(), tops.to(device), lefts.to(device), height, width)

    def forward(
        self, ws: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, noise_seeds: torch.Tensor | None = None,
        *, height: int | None = None, width: int | None = None, noise: NoiseSource | None = None,
        keep: torch.Tensor | None = None, kept: int | None = None, apply_mask: bool = True,
        level: int | None = None,
    ) -> torch.Tensor:
        """Multi-modal regions at per-sample locations → (B, 5, h, w) in network space.

        `level` returns that synthesis level's skip output instead (h, w divided by 2^(last − level),
        never masked: the caller masks at that resolution).

        With dual styles the generator runs once per kept modality (batched into one pass) and the
        specular/displacement outputs are averaged to one channel. `keep` (B, 3) bool drops modalities
        (modality dropout): dropped channels are zero and cost nothing. Every row of `keep` must keep the
        same number of modalities; pass that number as `kept` so the batch shape is known without reading
        `keep` on the host (a device synchronisation). Offsets must be aligned (`check_regions`).
        """
        height = self.patch_size if height is None else height
        width = height if width is None else width
        check_regions(self.patch_size, height, width)
        b = ws.shape[0]
        tops, lefts = tops.to(ws.device).long(), lefts.to(ws.device).long()
        if noise is None:
            if noise_seeds is None:
                raise ValueError("give noise_seeds or an explicit noise source")
            noise_seeds = noise_seeds.to(ws.device).long()
        if self.embeddings is None:
            src = noise if noise is not None else HashNoise(noise_seeds)
            out = self._run(ws, None, tops, lefts, height, width, src, level)
            if keep is not None:
                out = out * keep_channels(keep)[:, :, None, None].to(out.dtype)
        else:
            sample, mod = _selection(keep, b, kept, ws.device)
            src = noise if noise is not None else HashNoise(noise_seeds[sample])
            raw = self._run(ws[sample], mod, tops[sample], lefts[sample], height, width, src, level)
            full = raw.new_zeros(b, len(MODALITIES), *raw.shape[1:]).index_put((sample, mod), raw)
            out = torch.cat([full[:, i] if MODALITY_CHANNELS[name] == 3 else full[:, i].mean(dim=1, keepdim=True)
                             for i, name in enumerate(MODALITIES)], dim=1)
        if apply_mask and level is None:
            out = out * self.mask_crops(tops, lefts, height, width).to(out.dtype)
        return out

    def synthesize(
        self, ws: torch.Tensor, modality: str | int, top: int, left: int, height: int, width: int,
        noise_seed: int | torch.Tensor = 0, noise: NoiseSource | None = None, *, apply_mask: bool = True,
    ) -> torch.Tensor:
        """One modality of a canvas region (pixels, aligned to the level-0 grid) → (B, C, height, width).

        C is 3 for albedo and 1 for specular / displacement; values in network space [-1, 1], masked.
        """
        idx = modality_index(modality)
        check_regions(self.patch_size, height, width, [top], [left])
        b = ws.shape[0]
        keep = torch.zeros(b, len(MODALITIES), dtype=torch.bool, device=ws.device)
        keep[:, idx] = True
        tops = torch.full((b,), top, dtype=torch.long, device=ws.device)
        lefts = torch.full((b,), left, dtype=torch.long, device=ws.device)
        seeds = torch.as_tensor(noise_seed, dtype=torch.long, device=ws.device).expand(b)
        out = self.forward(
            ws, tops, lefts, None if noise is not None else seeds, height=height, width=width, noise=noise,
            keep=keep, kept=1, apply_mask=apply_mask,
        )
        return out[:, CHANNEL_SLICES[MODALITIES[idx]]]
