"""KID maths, feature extractors, spectra and figures (gantlitz.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from gantlitz.metrics import features as feat
from gantlitz.metrics.kid import kid, kid_splits, mmd2_unbiased, polynomial_kernel, split_indices, summarize
from gantlitz.metrics.plots import kid_boxplot, spectra_plot
from gantlitz.metrics.spectra import radial_power_spectrum
from helpers import assert_roundoff_equal


class _NotWeights:
    """A pickled custom object: torch.load(weights_only=True) must refuse it."""


def _gauss(n: int, d: int = 32, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, d))


# -------------------------------------------------------------------------------------------- KID


def test_mmd_matches_naive_formula():
    x, y = _gauss(7, 5, seed=1), _gauss(9, 5, 0.3, seed=2)

    def k(a, b):
        return (a @ b / 5 + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(9)) / (7 * 9)
    assert kid(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_self_zero_and_shift_larger():
    a = _gauss(200)
    shifted = _gauss(200, shift=0.5, seed=3)
    same = _gauss(200, seed=4)
    d_shift = kid(a, shifted)
    assert d_shift > 0.1
    # Tolerance: same-distribution estimates (independent samples) stay below 2 % of the shifted one.
    assert abs(kid(a, same)) < 0.02 * d_shift
    # The very same samples on both sides are not independent: the cross term then includes k(x, x),
    # so KID(a, a) = -2 (mean diag - mean off-diag) / m exactly, O(1/m) (here < 10 % of the shift).
    gram = polynomial_kernel(a, a)
    off = (gram.sum() - np.trace(gram)) / (200 * 199)
    assert kid(a, a) == pytest.approx(-2 * (np.diag(gram).mean() - off) / 200, rel=1e-9)
    assert abs(kid(a, a)) < 0.1 * d_shift
    ref = kid_splits(a, None, n_splits=300, seed=0)
    gen_same = kid_splits(a, same, n_splits=300, seed=0)
    gen_shift = kid_splits(a, shifted, n_splits=300, seed=0)
    assert abs(ref.mean()) < 0.02 * d_shift and abs(gen_same.mean()) < 0.02 * d_shift
    assert gen_shift.mean() > 10 * max(ref.std(), gen_same.std())
    assert np.all(gen_shift > np.percentile(ref, 99))


def test_split_counts_sizes_and_disjoint_halves():
    rng = np.random.default_rng(0)
    idx = split_indices(21, 10, 37, rng, parts=2)
    assert idx.shape == (37, 2, 10)
    for split in idx:
        assert len(set(split.ravel().tolist())) == 20  # two disjoint halves, no repeats
        assert split.min() >= 0 and split.max() < 21
    with pytest.raises(ValueError, match="disjoint"):
        split_indices(21, 11, 5, rng, parts=2)
    a, b = _gauss(21), _gauss(15, seed=1)
    assert kid_splits(a, None, n_splits=37).shape == (37,)
    assert kid_splits(a, b, n_splits=5, subset_size=15).shape == (5,)
    with pytest.raises(ValueError):
        kid_splits(a, b, n_splits=5, subset_size=16)


def test_kid_splits_match_subset_mmd():
    """Every split value is the MMD² of the subsets the seeded generator draws."""
    a, b = _gauss(30, 8), _gauss(25, 8, 0.2, seed=5)
    values = kid_splits(a, b, n_splits=4, subset_size=12, seed=7)
    rng = np.random.default_rng(7)
    ia = split_indices(30, 12, 4, rng)[:, 0]
    ib = split_indices(25, 12, 4, rng)[:, 0]
    for s in range(4):
        x, y = a[ia[s]], b[ib[s]]
        expect = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
        assert values[s] == pytest.approx(expect, rel=1e-10, abs=1e-12)


def test_kid_splits_deterministic():
    a, b = _gauss(40), _gauss(40, shift=0.2, seed=1)
    np.testing.assert_array_equal(kid_splits(a, b, 100, seed=3), kid_splits(a, b, 100, seed=3))
    np.testing.assert_array_equal(kid_splits(a, None, 100, seed=3), kid_splits(a, None, 100, seed=3))
    assert not np.array_equal(kid_splits(a, b, 100, seed=3), kid_splits(a, b, 100, seed=4))
    s = summarize(kid_splits(a, b, 100, seed=3))
    assert set(s) == {"mean", "std", "median", "q1", "q3"} and s["q1"] <= s["median"] <= s["q3"]


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_against_torchmetrics():
    """Same feature module, same estimator: per-subset values equal, split means agree statistically."""
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    x, y = _gauss(12, 16, seed=8), _gauss(12, 16, 0.4, seed=9)
    ours = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
    theirs = tm_kid.poly_mmd(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert ours == pytest.approx(theirs, rel=1e-10)

    extractor = feat.LocalFeatures(resolution=32, widths=(8, 16))
    rng = np.random.default_rng(0)
    real = gaussian_filter(rng.random((60, 32, 32, 3)), (0, 2, 2, 0)).astype(np.float32)
    fake = np.clip(real[::-1] * 0.8 + 0.15, 0, 1).astype(np.float32)
    metric = tm_kid.KernelInceptionDistance(feature=extractor, subsets=2000, subset_size=20)
    metric.update(torch.from_numpy(real).permute(0, 3, 1, 2), real=True)
    metric.update(torch.from_numpy(fake).permute(0, 3, 1, 2), real=False)
    torch.manual_seed(0)
    tm_mean, tm_std = (v.item() for v in metric.compute())
    fr = feat.extract_features(extractor, real)
    ff = feat.extract_features(extractor, fake)
    values = kid_splits(fr, ff, n_splits=2000, subset_size=20, seed=0)
    assert tm_mean > 0 and values.std() == pytest.approx(tm_std, rel=0.15)
    stderr = values.std() / np.sqrt(2000) * np.sqrt(2)
    assert abs(values.mean() - tm_mean) < 5 * stderr + 1e-6 * abs(tm_mean)


# -------------------------------------------------------------------------------------- features


def test_local_features_deterministic_and_shaped():
    x = torch.rand(3, 3, 40, 56)
    f1 = feat.LocalFeatures(resolution=32, widths=(8, 16), seed=1)
    f2 = feat.LocalFeatures(resolution=32, widths=(8, 16), seed=1)
    f3 = feat.LocalFeatures(resolution=32, widths=(8, 16), seed=2)
    assert f1.dim == 2 * (3 + 8 + 16)
    out = f1(x)
    assert out.shape == (3, f1.dim) and torch.isfinite(out).all()
    torch.testing.assert_close(out, f2(x), rtol=0, atol=0)
    assert not torch.allclose(out, f3(x))
    assert isinstance(f1, feat.FeatureExtractor)
    assert feat.LocalFeatures().dim == 966


def test_extract_features_batches_and_uint8():
    extractor = feat.LocalFeatures(resolution=16, widths=(4,))
    imgs = np.random.default_rng(0).random((5, 16, 16, 3)).astype(np.float32)
    a = feat.extract_features(extractor, imgs, batch_size=2)
    b = feat.extract_features(extractor, imgs, batch_size=5)
    assert a.shape == (5, extractor.dim) and a.dtype == np.float64
    # computed in float32 (returned as float64): the batch size changes only the round-off
    assert_roundoff_equal(a.astype(np.float32), b.astype(np.float32), what="features, batches of 2 vs 5")
    c = feat.extract_features(extractor, (imgs * 255).round().astype(np.uint8))
    np.testing.assert_allclose(a, c, atol=0.05)  # the 8-bit quantisation of the input, not round-off
    with pytest.raises(ValueError):
        feat.extract_features(extractor, imgs[..., :2])


def test_inception_architecture_and_weight_files(tmp_path):
    net = feat.InceptionV3FID()
    state = net.state_dict()
    # Names and shapes of pytorch-fid's pt_inception-2015-12-05-6726825d.pth (torchvision Inception3 names).
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Conv2d_4a_3x3.bn.running_var"].shape == (192,)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7a.branch7x7x3_4.conv.weight"].shape == (192, 192, 3, 3)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["fc.weight"].shape == (1008, 2048)
    assert sum(p.numel() for p in net.parameters()) == 23_850_960

    # A state dict of the right names/shapes (random values, BN statistics sane) round-trips via files.
    gen = torch.Generator().manual_seed(0)
    fake = {k: v.clone() for k, v in state.items()}
    for k, v in fake.items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 1.5, generator=gen)
        elif k.endswith("running_mean") or k.endswith("bn.bias"):
            v.normal_(0.0, 0.05, generator=gen)
    pth = tmp_path / "pt_inception-2015-12-05-00000000.pth"
    # The published file dates from 2019: the legacy (non-zip) serialisation must load too.
    torch.save(fake, pth, _use_new_zipfile_serialization=False)
    loaded = feat.load_inception(pth)
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, fake[k], rtol=0, atol=0)
    x = torch.rand(2, 3, 64, 80)
    out = loaded(x)
    assert out.shape == (2, 2048) and torch.isfinite(out).all() and (out >= 0).all()

    from safetensors.torch import save_file

    st = tmp_path / "inception.safetensors"
    save_file({k: v for k, v in fake.items() if not k.endswith("num_batches_tracked") and not k.startswith("fc.")},
              str(st))
    for k, v in feat.load_inception(st).state_dict().items():
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):
            torch.testing.assert_close(v, fake[k], rtol=0, atol=0)

    # Wrong names / shapes / content: clear errors naming the file.
    bad_path = tmp_path / "bad.pth"
    torch.save({"Mixed_5b.branch1x1.conv.weight": torch.zeros(1, 1, 1, 1), "extra.weight": torch.zeros(1)}, bad_path)
    with pytest.raises(ValueError, match=r"bad\.pth.*missing keys: Conv2d_1a.*unexpected keys: extra\.weight"
                                         r".*wrong shapes: Mixed_5b"):
        feat.load_inception(bad_path)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        feat.load_inception(tmp_path / "nothere.pth")

    evil = tmp_path / "evil.pth"
    torch.save({"x": _NotWeights()}, evil)
    with pytest.raises(ValueError, match="weights_only"):
        feat.load_inception(evil)
    with pytest.raises(ValueError, match="--weights"):
        feat.build_extractor("inception", None)
    with pytest.raises(ValueError, match="unknown feature extractor"):
        feat.build_extractor("vgg")


# --------------------------------------------------------------------------------------- spectra


def test_spectrum_white_noise_flat_and_blur_falls_off():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 2.0, (6, 96, 128, 2))
    freqs, power = radial_power_spectrum(noise)
    assert power.shape == (2, freqs.size) and freqs.size == 48
    assert 0 < freqs[0] and freqs[-1] < 0.5
    p = power[:, 2:]  # the lowest bins see the window's leakage of the removed mean
    assert np.all(np.abs(p / 4.0 - 1.0) < 0.35)  # flat at the variance σ² = 4
    assert abs(p.mean() / 4.0 - 1.0) < 0.05

    blurred = gaussian_filter(noise, (0, 2, 2, 0))
    f2, p2 = radial_power_spectrum(blurred)
    lo, hi = np.searchsorted(f2, 0.05), np.searchsorted(f2, 0.4)
    assert np.all(np.diff(p2[0, 3:40]) < 0)  # monotone fall-off
    assert p2[0, hi] < 1e-3 * p2[0, lo]
    # A single H×W image works too.
    f3, p3 = radial_power_spectrum(noise[0, :, :, 0])
    assert p3.shape == (1, f3.size)


# ----------------------------------------------------------------------------------------- plots


def _image_stats(path) -> tuple[int, float]:
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    return path.stat().st_size, float(img.std())


def test_figures_exist_and_are_non_trivial(tmp_path):
    a = _gauss(40)
    values = {"real splits": kid_splits(a, None, 200), "model": kid_splits(a, _gauss(40, shift=0.3, seed=1), 200)}
    box = kid_boxplot(values, tmp_path / "box.png", title="t", inset=np.random.default_rng(0).random((20, 30, 3)))
    size, std = _image_stats(box)
    assert size > 10_000 and std > 10
    freqs = np.linspace(0.01, 0.5, 30)
    spectra = {m: {"real": (freqs, np.exp(-10 * freqs)), "model": (freqs, np.exp(-5 * freqs)[None])}
               for m in ("albedo", "specular", "displacement")}
    sp = spectra_plot(spectra, tmp_path / "sub" / "spectra.png")
    size, std = _image_stats(sp)
    assert size > 10_000 and std > 10


def test_peak_excess_detects_a_lattice_not_texture_without_a_period():
    from gantlitz.metrics.spectra import peak_excess, power_spectrum_2d

    rng = np.random.default_rng(0)
    noise = rng.normal(size=(4, 64, 64, 1))
    yy, xx = np.mgrid[:64, :64]
    plaid = noise * 0.2 + (np.sin(2 * np.pi * yy / 16) * np.sin(2 * np.pi * xx / 8) + np.sin(2 * np.pi * xx / 16))[
        None, :, :, None]
    flat = peak_excess(power_spectrum_2d(noise))
    lattice = peak_excess(power_spectrum_2d(plaid))
    assert flat < 1.0
    assert lattice > flat + 1.5
    assert power_spectrum_2d(noise).shape == (64, 64)
