"""The layout measure: real data scores its split-half value, location-blind or shifted maps score low."""

from __future__ import annotations

import numpy as np
import pytest

from gantlitz.data.synth import load_head, synthesize_subject
from gantlitz.metrics.layout import cell_means, correlation, layout_grid, layout_plot, layout_scores

SIZE = 128


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, np.ndarray], np.ndarray]:
    head = load_head(SIZE, SIZE)
    subjects = [synthesize_subject(head, 0, i) for i in range(24)]
    maps = {
        "albedo": np.stack([s["albedo"] for s in subjects]),
        "specular": np.stack([s["specular"] for s in subjects]),
        "displacement": np.stack([s["displacement"] for s in subjects])[..., None],
    }
    return maps, head.mask > 0


def _half(maps: dict[str, np.ndarray], which: slice) -> dict[str, np.ndarray]:
    return {k: v[which] for k, v in maps.items()}


def test_real_halves_score_their_split_half_value(data):
    maps, mask = data
    """8 unseen subjects against 16: as good as one half of the 16 against the other half."""
    scores = layout_scores(_half(maps, slice(0, 16)), _half(maps, slice(16, 24)), mask)
    for name, s in scores.items():
        assert s["real_split_half"] > 0.6, name
        assert s["real_split_half"] - 0.1 < s["mean_corr"] < s["real_split_half"] + 0.15, (name, s)
        assert s["fake_count"] == 8 and s["cells"] > 100


def test_location_blind_maps_score_near_zero(data):
    """Real content at random places (cells shuffled per sample): every patch is real, the layout is not."""
    maps, mask = data
    grid = layout_grid(mask)
    k = grid.cell
    rng = np.random.default_rng(0)
    blind = {}
    for name, stack in maps.items():
        n, h, w, c = stack.shape
        cells = stack.reshape(n, h // k, k, w // k, k, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, k, k, c)
        shuffled = np.stack([x[rng.permutation(x.shape[0])] for x in cells])
        blind[name] = shuffled.reshape(n, h // k, w // k, k, k, c).transpose(0, 1, 3, 2, 4, 5).reshape(stack.shape)
    for name, s in layout_scores(maps, blind, mask).items():
        assert abs(s["mean_corr"]) < 0.3, (name, s)
        assert s["ratio"] < 0.35, (name, s)


def test_shifted_layout_scores_low(data):
    maps, mask = data
    shifted = {k: np.roll(v, SIZE // 8, axis=2) for k, v in maps.items()}
    for name, s in layout_scores(maps, shifted, mask).items():
        assert s["mean_corr"] < 0.6 * s["real_split_half"], (name, s)


def test_colour_offset_and_contrast_do_not_change_the_score(data):
    maps, mask = data
    base = layout_scores(maps, maps, mask)["albedo"]["mean_corr"]
    tinted = layout_scores(maps, {"albedo": maps["albedo"] * 0.5 + np.array([0.3, 0.1, 0.0])}, mask)
    assert base == pytest.approx(1.0)
    assert tinted["albedo"]["mean_corr"] == pytest.approx(1.0, abs=1e-9)


def test_grid_keeps_only_cells_inside_and_rejects_bad_sizes():
    mask = np.zeros((64, 128), bool)
    mask[8:56, 17:112] = True
    grid = layout_grid(mask, cells=32)  # 4-pixel cells; the column of cells cut by x=17 is outside
    assert grid.cell == 4 and grid.inside.shape == (16, 32)
    assert grid.inside.sum() == 12 * 23 == cell_means(np.ones((1, 64, 128, 1)), grid).shape[1]
    assert layout_grid(np.ones((4096, 6144), bool)).cell == 128  # 48 x 32 cells
    with pytest.raises(ValueError, match="can not be divided"):
        layout_grid(np.ones((64, 96), bool), cells=200)
    with pytest.raises(ValueError, match="inside the mask"):
        layout_grid(np.zeros((64, 64), bool), cells=32)
    assert correlation(np.ones((5, 1)), np.arange(5.0)[:, None]) == 0.0


def test_plot_writes_a_figure(data, tmp_path):
    maps, mask = data
    fake = _half(maps, slice(8, 16))
    path = layout_plot(_half(maps, slice(0, 8)), {"gen": fake}, mask, tmp_path / "layout.png",
                       {"gen": layout_scores(maps, fake, mask)})
    from PIL import Image

    image = np.asarray(Image.open(path).convert("L"), np.float64)
    assert image.shape[0] > 300 and image.std() > 10
