"""Networks: seamlessness by construction, Table 1 geometry, channel/parameter counts, conditioning, masking."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from gantlitz import geometry, presets
from gantlitz.cli import main
from gantlitz.networks import preset_summary
from gantlitz.config import ModelConfig
from gantlitz.device import precision_context
from gantlitz.networks import build, count_parameters
from gantlitz.noise import ExplicitNoise
from helpers import assert_roundoff_equal, randomise, roundoff

# The paper's 512-pixel, 6144x4096 geometry with few channels, so a 2x2 block runs in seconds on a CPU.
PAPER_GEOMETRY_SMALL = dataclasses.replace(
    presets.get("gantlitz-l").model, z_dim=16, w_dim=16, embed_dim=8, pe_channels=16, channel_base=2048,
    channel_max=8, d_channel_base=2048, d_channel_max=8,
)


# Every location option at once: learned input map, D's location by input and by projection.
TINY_LEARNED_LAYOUT = dataclasses.replace(presets.get("tiny").model, pe_learned=True, disc_pos_inject="both")


def _stitched(G, ws, modality, top, left, k, noise_seed=0, noise=None):
    p = G.patch_size
    rows = []
    for i in range(k):
        row = [G.synthesize(ws, modality, top + i * p, left + j * p, p, p, noise_seed, noise) for j in range(k)]
        rows.append(torch.cat(row, dim=3))
    return torch.cat(rows, dim=2)


@pytest.mark.parametrize("config", [presets.get("tiny").model, PAPER_GEOMETRY_SMALL, TINY_LEARNED_LAYOUT],
                         ids=["tiny", "paper-512", "tiny-learned-layout"])
@pytest.mark.parametrize("modality", ["albedo", "displacement"])
def test_region_equals_stitched_patches(config: ModelConfig, modality: str) -> None:
    G, _ = build(config, seed=3)
    randomise(G)
    G.eval()
    p = config.patch_size
    ws = G.mapping(torch.randn(2, config.z_dim, generator=torch.Generator().manual_seed(0)))
    top, left = p, 2 * p  # an interior block, not at the canvas origin
    with torch.no_grad():
        block = G.synthesize(ws, modality, top, left, 2 * p, 2 * p, noise_seed=11)
        stitched = _stitched(G, ws, modality, top, left, 2, noise_seed=11)
    assert block.shape == (2, 3 if modality == "albedo" else 1, 2 * p, 2 * p)
    assert block.abs().max() > 0.1  # a real signal, not zeros
    assert_roundoff_equal(block, stitched, what="one pass vs stitched patches")


def test_learned_maps_are_seamless_at_the_canvas_corner_and_used() -> None:
    """The learned input map is cropped by global position, also where a block starts at the canvas
    origin (its crops reach outside the map there), and it changes the output."""
    G, _ = build(TINY_LEARNED_LAYOUT, seed=3)
    randomise(G)
    G.eval()
    p = TINY_LEARNED_LAYOUT.patch_size
    ws = G.mapping(torch.randn(1, TINY_LEARNED_LAYOUT.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        block = G.synthesize(ws, "albedo", 0, 0, 2 * p, 2 * p, noise_seed=5)
        assert_roundoff_equal(block, _stitched(G, ws, "albedo", 0, 0, 2, noise_seed=5),
                              what="one pass vs stitched patches at the canvas corner")
        G.pe_map.zero_()
        assert (block - G.synthesize(ws, "albedo", 0, 0, 2 * p, 2 * p, noise_seed=5)).abs().max() > 1e-2


def test_region_equals_stitched_patches_with_explicit_noise() -> None:
    cfg = presets.get("tiny").model
    G, _ = build(cfg, seed=5)
    randomise(G, seed=2)
    p = cfg.patch_size
    noise = ExplicitNoise(G.noise_layouts(), init_seed=None)
    with torch.no_grad():
        for i, m in enumerate(noise.maps):
            m.copy_(torch.randn(m.shape, generator=torch.Generator().manual_seed(100 + i)))
    ws = G.mapping(torch.randn(1, cfg.z_dim, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        block = G.synthesize(ws, "specular", 0, 0, 2 * p, 2 * p, noise=noise)
        stitched = _stitched(G, ws, "specular", 0, 0, 2, noise=noise)
        hashed = G.synthesize(ws, "specular", 0, 0, 2 * p, 2 * p, noise_seed=0)
    assert_roundoff_equal(block, stitched, what="one pass vs stitched patches, explicit noise")
    assert (block - hashed).abs().max().item() > 1e-2  # the explicit maps are really used


class _ShiftedNoise:
    """`noise` with one layer's crop read one pixel to the right: a misaligned noise sample."""

    def __init__(self, noise: ExplicitNoise, layer: int) -> None:
        self.noise, self.layer = noise, layer

    def sample(self, layer: int, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.noise.sample(layer, tops, lefts + int(layer == self.layer), height, width)


def test_a_one_pixel_misalignment_fails_the_roundoff_bound_by_orders_of_magnitude() -> None:
    """The seam tests' bound passes round-off only: a stitched block whose last patch is read one level-0
    unit off, or reads its finest noise layer one pixel off, misses the one-pass block by >= 100x the bound."""
    cfg = presets.get("tiny").model
    G, _ = build(cfg, seed=5)
    randomise(G, seed=2)
    p, unit = cfg.patch_size, geometry.level0_unit(cfg.patch_size)
    noise = ExplicitNoise(G.noise_layouts(), init_seed=3)
    finest = len(G.noise_layouts()) - 1
    ws = G.mapping(torch.randn(1, cfg.z_dim, generator=torch.Generator().manual_seed(1)))
    top, left = p, p
    with torch.no_grad():
        block = G.synthesize(ws, "albedo", top, left, 2 * p, 2 * p, noise=noise)
        stitched = _stitched(G, ws, "albedo", top, left, 2, noise=noise)
        shifted_crop, shifted_noise = stitched.clone(), stitched.clone()
        shifted_crop[:, :, p:, p:] = G.synthesize(ws, "albedo", top + p, left + p + unit, p, p, noise=noise)
        shifted_noise[:, :, p:, p:] = G.synthesize(ws, "albedo", top + p, left + p, p, p,
                                                   noise=_ShiftedNoise(noise, finest))
    assert_roundoff_equal(block, stitched, what="one pass vs stitched patches")
    for name, wrong in (("patch one level-0 unit off", shifted_crop), ("noise one pixel off", shifted_noise)):
        r = roundoff(block, wrong)
        assert r.diff >= 100 * r.bound, (name, r)


def test_explicit_noise_initialised_from_seed_matches_hashed_noise() -> None:
    cfg = presets.get("tiny").model
    G, _ = build(cfg, seed=5)
    randomise(G, seed=4)
    ws = G.mapping(torch.randn(1, cfg.z_dim, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        explicit = G.synthesize(ws, "albedo", 0, 64, 128, 128, noise=ExplicitNoise(G.noise_layouts(), init_seed=7))
        hashed = G.synthesize(ws, "albedo", 0, 64, 128, 128, noise_seed=7)
    assert_roundoff_equal(explicit, hashed, what="explicit noise maps vs the hashed noise they hold")


def test_noise_is_a_function_of_seed_and_position() -> None:
    cfg = presets.get("tiny").model
    G, _ = build(cfg, seed=0)
    randomise(G, seed=3)
    ws = G.mapping(torch.randn(1, cfg.z_dim, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        a = G.synthesize(ws, "albedo", 0, 0, 64, 64, noise_seed=1)
        b = G.synthesize(ws, "albedo", 0, 0, 64, 64, noise_seed=1)
        c = G.synthesize(ws, "albedo", 0, 0, 64, 64, noise_seed=2)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_table1_geometry_for_512_patches() -> None:
    assert geometry.core_sizes(512) == [4, 8, 16, 32, 64, 128, 256, 512]
    assert geometry.receptive_fields(512) == [14, 14, 22, 38, 70, 133, 259, 512]
    assert geometry.forward_sizes(512) == [14, 14, 22, 38, 70, 134, 262, 518]
    assert geometry.pe_map_size(4096, 6144, 512) == (42, 58)
    assert geometry.canvas_level0(4096, 6144, 512) == (32, 48)
    assert len(geometry.patch_grid(4096, 6144, 512)) == 23 * 15 == 345
    assert len(geometry.patch_grid(4096, 6144, 512, stride=512)) == 12 * 8
    # Patch (i, j) of the training grid reads the 14x14 crop starting at (2i, 2j) of the padded map.
    crop = geometry.Region(256 * 3, 256 * 5, 512, 512).level0(512)
    assert (crop.top + geometry.PE_MARGIN, crop.left + geometry.PE_MARGIN) == (6, 10)
    assert (crop.height, crop.width) == (14, 14)


def test_feature_maps_have_table1_sizes() -> None:
    """The real forward pass produces the padded sizes of Table 1 at every level."""
    G, _ = build(PAPER_GEOMETRY_SMALL, seed=0)
    sizes = []
    hooks = [lvl.conv1.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for lvl in G.levels]
    with torch.no_grad():
        out = G.synthesize(G.mapping(torch.randn(1, 16)), "albedo", 0, 0, 512, 512)
    for h in hooks:
        h.remove()
    assert out.shape[-1] == 512
    # Level 0 reports its positional-encoding input (14); its conv output is core + 6 = 10.
    assert [geometry.forward_sizes(512)[0]] + sizes[1:] == geometry.forward_sizes(512)
    assert sizes[0] == 4 + 2 * geometry.OUT_MARGIN


def test_receptive_field_of_one_output_pixel_is_local() -> None:
    """A pixel's value depends only on positional encodings within the Table 1 receptive field."""
    cfg = presets.get("tiny").model
    G, _ = build(cfg, seed=0)
    randomise(G, seed=9)
    ws = G.mapping(torch.randn(1, cfg.z_dim))
    p = cfg.patch_size
    with torch.no_grad():
        base = G.synthesize(ws, "albedo", 2 * p, 2 * p, p, p)
        # Moving the region far away changes the output (the encoding is positional)...
        moved = G.synthesize(ws, "albedo", 0, 0, p, p)
        # ...but a larger region containing the same patch reproduces it exactly.
        larger = G.synthesize(ws, "albedo", p, p, 3 * p, 3 * p)[:, :, p : 2 * p, p : 2 * p]
    assert (base - moved).abs().max() > 1e-3
    # Equal up to float32 round-off of the differently sized convolutions.
    assert_roundoff_equal(base, larger, what="a patch vs the same patch inside a larger region")


def test_preset_channels_and_parameter_counts_printed_by_info() -> None:
    large, small = preset_summary("gantlitz-l"), preset_summary("gantlitz-s")
    assert [lv["g_channels"] for lv in large["levels"]] == [512, 512, 512, 512, 256, 128, 64, 32]
    assert [lv["g_channels"] for lv in small["levels"]] == [512, 512, 512, 512, 256, 128, 32, 16]
    # the paper halves only G's last two levels; S's discriminator is L's
    assert presets.get("gantlitz-s").model.d_channels() == presets.get("gantlitz-l").model.d_channels()
    g, d = build("gantlitz-l")
    assert large["g_parameters"] == count_parameters(g) and large["d_parameters"] == count_parameters(d)
    assert small["g_parameters"] < large["g_parameters"] and small["d_parameters"] == large["d_parameters"]
    result = CliRunner().invoke(main, ["info", "--preset", "gantlitz-l", "--preset", "gantlitz-s"])
    assert result.exit_code == 0, result.output
    assert f"G parameters: {large['g_parameters']:,}" in result.output
    assert f"G parameters: {small['g_parameters']:,}" in result.output
    assert "345 training locations" in result.output


def test_modality_conditioning_changes_output_and_masking_zeroes_invisible() -> None:
    cfg = presets.get("tiny").model
    h, w = cfg.canvas_height, cfg.canvas_width
    mask = torch.zeros(h, w, dtype=torch.uint8)
    mask[: h // 2, : w // 2 + 10] = 1
    G, _ = build(cfg, seed=0, mask=mask)
    randomise(G, seed=6)
    ws = G.mapping(torch.randn(1, cfg.z_dim))
    with torch.no_grad():
        spec = G.synthesize(ws, "specular", 0, 0, h, w, noise_seed=1)
        disp = G.synthesize(ws, "displacement", 0, 0, h, w, noise_seed=1)
        unmasked = G.synthesize(ws, "specular", 0, 0, h, w, noise_seed=1, apply_mask=False)
    assert (spec - disp).abs().max() > 1e-2
    invisible = mask == 0
    assert spec[0, 0][invisible].abs().max() == 0
    assert unmasked[0, 0][invisible].abs().max() > 0
    assert torch.equal(spec[0, 0][~invisible], unmasked[0, 0][~invisible])


def test_multimodal_forward_and_modality_dropout() -> None:
    cfg = presets.get("tiny").model
    G, D = build(cfg, seed=0)
    randomise(G, seed=8)
    ws = G.mapping(torch.randn(2, cfg.z_dim))
    tops, lefts = torch.tensor([0, 64]), torch.tensor([32, 96])
    keep = torch.tensor([[True, False, True], [True, True, False]])
    out = G(ws, tops, lefts, torch.tensor([1, 2]), keep=keep)
    assert out.shape == (2, 5, 64, 64)
    assert out[0, 3].abs().max() == 0 and out[1, 4].abs().max() == 0
    assert out[0, 4].abs().max() > 0 and out[1, 3].abs().max() > 0
    full = G(ws, tops, lefts, torch.tensor([1, 2]))
    assert_roundoff_equal(full[0, :3], out[0, :3], what="albedo with and without the other modalities")
    logits = D(full, tops, lefts, group_size=1)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert G.levels[0].conv0.conv.weight.grad is not None


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_builds_and_runs_a_tiny_region(name: str) -> None:
    preset = presets.get(name)
    cfg = dataclasses.replace(
        preset.model, z_dim=8, w_dim=8, embed_dim=8, pe_channels=8, channel_base=4096, channel_max=4,
        d_channel_base=4096, d_channel_max=4,
    )
    G, D = build(cfg)
    ws = G.mapping(torch.randn(2, 8))
    p = cfg.patch_size
    with torch.no_grad():
        x = G(ws, torch.zeros(2), torch.zeros(2), torch.zeros(2))
        logits = D(x, torch.zeros(2), torch.zeros(2), group_size=2)
    assert x.shape == (2, 5, p, p) and logits.shape == (2,)


def test_unaligned_region_is_rejected() -> None:
    G, _ = build("tiny")
    with pytest.raises(ValueError, match="aligned"):
        G.synthesize(G.mapping(torch.randn(1, 64)), "albedo", 3, 0, 64, 64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    cfg = presets.get("tiny").model
    G, _ = build(cfg, seed=1)
    randomise(G)
    ws = G.mapping(torch.randn(1, cfg.z_dim))
    with torch.no_grad():
        cpu = G.synthesize(ws, "albedo", 0, 0, 128, 128, noise_seed=4)
        with precision_context(torch.device("cuda"), "fp32", autocast=False):  # no TF32 (cuDNN's default)
            gpu = G.cuda().synthesize(ws.cuda(), "albedo", 0, 0, 128, 128, noise_seed=4).cpu()
    assert (cpu - gpu).abs().max() < 1e-3


@pytest.mark.parametrize("inject", ["input", "project", "both"])
def test_discriminator_location_signal_reaches_the_logit(inject: str) -> None:
    """The same patch shown at two locations scores differently, whichever way D receives the location;
    with projection only, D's input layer sees the 5 data channels alone."""
    cfg = dataclasses.replace(presets.get("tiny").model, disc_pos_inject=inject)
    _, D = build(cfg, seed=0)
    with torch.no_grad():
        for p in D.pos_embed.parameters() if D.pos_embed is not None else ():
            p.normal_()
    x = torch.randn(2, 5, cfg.patch_size, cfg.patch_size, generator=torch.Generator().manual_seed(1))
    x = torch.cat([x[:1], x[:1]])
    logits = D(x, torch.tensor([0, 128]), torch.tensor([0, 192]))
    assert (logits[0] - logits[1]).abs() > 1e-4
    assert D.from_rgb.weight.shape[1] == (5 if inject == "project" else 25)
