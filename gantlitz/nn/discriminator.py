"""Location-aware residual discriminator (§4.3): StyleGAN2's ResNet D fed 5 data + positional channels,
with minibatch standard deviation computed within groups of samples from the same patch location."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import DATA_CHANNELS, ModelConfig
from ..encodings import disc_centre, disc_channels, disc_input
from .layers import EqualConv2d, EqualLinear


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convs (the second down-sampling) with a 1x1 down-sampled residual path."""

    def __init__(self, in_channels: int, out_channels: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, down=True, conv_clamp=conv_clamp)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activate=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


def minibatch_stddev(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append the mean std over groups of `group_size` *consecutive* samples (one location per group)."""
    n, c, h, w = x.shape
    g = max(1, min(group_size, n))
    if n % g:
        raise ValueError(f"batch of {n} is not a whole number of location groups of {g}")
    y = x.float().reshape(n // g, g, c, h, w)
    y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n/g,)
    y = y.repeat_interleave(g)[:, None, None, None].expand(n, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Scores (B, 5, P, P) patches at global locations (tops, lefts) → logits (B,).

    `size` (H, W) makes it judge H×W images instead (the whole-canvas view; P = cfg.patch_size is the
    short side): the layers are P's, which reduce by P/4, so the last feature map is (4H/P)×(4W/P)."""

    def __init__(self, cfg: ModelConfig, size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.canvas = (cfg.canvas_height, cfg.canvas_width)
        p = cfg.patch_size
        self.size = (p, p) if size is None else (int(size[0]), int(size[1]))
        factor = max(p // 4, 1)
        if self.size[0] % factor or self.size[1] % factor or min(self.size) != p:
            raise ValueError(f"discriminator input {self.size}: the short side must be {p} and both sides "
                             f"multiples of {factor}")
        final = (self.size[0] // factor) * (self.size[1] // factor)
        chans = cfg.d_channels()
        pos_ch = disc_channels(cfg.disc_pos, cfg.disc_pos_periods)
        self.pos_input = pos_ch > 0 and cfg.disc_pos_inject in ("input", "both")
        in_ch = DATA_CHANNELS + (pos_ch if self.pos_input else 0)
        self.from_rgb = EqualConv2d(in_ch, chans[0], 1, conv_clamp=cfg.conv_clamp)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(a, b, cfg.conv_clamp) for a, b in zip(chans[:-1], chans[1:])
        )
        last = chans[-1]
        self.epilogue_conv = EqualConv2d(last + 1, last, 3, conv_clamp=cfg.conv_clamp)
        self.fc = EqualLinear(last * final, last, activate=True)
        self.out = EqualLinear(last, 1)
        # Location head (model.disc_locate): regresses the patch centre from the last features.
        self.locate = EqualLinear(last, 2) if cfg.disc_locate else None
        # Projection conditioning: logit += <features, embed(location)> / sqrt(C). D must then explain a
        # patch *given* where it is, which input channels at a small amplitude do not force.
        self.pos_embed = None
        if pos_ch > 0 and cfg.disc_pos_inject in ("project", "both"):
            self.pos_embed = nn.Sequential(EqualLinear(pos_ch, last, activate=True), EqualLinear(last, last))

    def forward(
        self, images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, group_size: int = 1,
        *, locate: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B,); with `locate` also the predicted patch centres (B, 2) = (row, column) in [-1, 1]
        canvas units (needs `cfg.disc_locate`)."""
        size = images.shape[-1]
        if images.shape[1] != DATA_CHANNELS or tuple(images.shape[-2:]) != self.size:
            raise ValueError(
                f"discriminator expects (B, {DATA_CHANNELS}, {self.size[0]}, {self.size[1]}), got {tuple(images.shape)}"
            )
        cfg = self.cfg
        tops, lefts = tops.to(images.device), lefts.to(images.device)
        x = images
        if self.pos_input:
            pos = disc_input(cfg.disc_pos, tops, lefts, size, self.canvas, cfg.disc_pos_periods)
            x = torch.cat([images, (pos * cfg.disc_pos_scale).to(images.dtype)], dim=1)
        x = self.from_rgb(x)
        for block in self.blocks:
            x = block(x)
        x = self.epilogue_conv(minibatch_stddev(x, group_size))
        x = self.fc(x.flatten(1).float())
        logits = self.out(x).squeeze(1)
        if self.pos_embed is not None:
            centre = disc_centre(cfg.disc_pos, tops, lefts, size, self.canvas, cfg.disc_pos_periods)
            logits = logits + (x * self.pos_embed(centre)).sum(1) / math.sqrt(x.shape[1])
        if locate:
            if self.locate is None:
                raise ValueError("this discriminator has no location head (ModelConfig.disc_locate)")
            return logits, self.locate(x)
        return logits
