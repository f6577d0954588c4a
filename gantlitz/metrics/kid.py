"""Kernel Inception Distance: unbiased polynomial-kernel MMD² and its distribution over random splits.

KID (Bińkowski et al. 2018, "Demystifying MMD GANs") is the unbiased estimate of the squared maximum
mean discrepancy between two feature sets under the cubic polynomial kernel

    k(x, y) = (x·y / d + 1)^3,        d = feature dimension.

With m samples X and n samples Y the estimator is

    MMD² = Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (n(n-1)) - 2 Σ_{i,j} k(x_i, y_j) / (mn),

which is what the reference TensorFlow code, torch-fidelity and torchmetrics compute per subset.  It
has expectation 0 when X and Y come from the same distribution, so single values can be negative.

The paper (§5.5) reports the *distribution* of KID over 1000 random splits because with < 100 subjects
one subset estimate has a large variance.  `kid_splits` computes the three Gram matrices once (float64)
and evaluates every split by indexing into them, so 1000 splits cost milliseconds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["polynomial_kernel", "mmd2_unbiased", "kid", "kid_splits", "split_indices", "summarize"]

_CHUNK_ELEMENTS = 1 << 22
"""Upper bound on splits x subset² gathered at once (bounds the memory of the vectorised sums)."""


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be an (N, D) feature array with N >= 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values")
    return x


def polynomial_kernel(a: np.ndarray, b: np.ndarray, degree: int = 3, coef: float = 1.0) -> np.ndarray:
    """Gram matrix k(a_i, b_j) = (a_i·b_j / d + coef)^degree, in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return (a @ b.T / a.shape[1] + coef) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD² from the three Gram matrices (X: m, Y: n samples, m, n >= 2)."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float(sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * k_xy.sum() / (m * n))


def kid(feats_a: np.ndarray, feats_b: np.ndarray, degree: int = 3, coef: float = 1.0) -> float:
    """KID of two whole feature sets (sizes may differ), no splitting."""
    a = _as_features(feats_a, "feats_a")
    b = _as_features(feats_b, "feats_b")
    k_aa = polynomial_kernel(a, a, degree, coef)
    k_bb = polynomial_kernel(b, b, degree, coef)
    return mmd2_unbiased(k_aa, k_bb, polynomial_kernel(a, b, degree, coef))


def split_indices(
    n: int, subset_size: int, n_splits: int, rng: np.random.Generator, *, parts: int = 1
) -> np.ndarray:
    """(n_splits, parts, subset_size) indices into range(n); within one split all are distinct."""
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    if parts * subset_size > n:
        raise ValueError(
            f"cannot draw {parts} disjoint subset(s) of {subset_size} from {n} samples "
            f"(need {parts * subset_size}); lower subset_size or add samples"
        )
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    # A random permutation per split (argsort of uniforms), truncated: sampling without replacement.
    perms = np.argsort(rng.random((n_splits, n)), axis=1)[:, : parts * subset_size]
    return perms.reshape(n_splits, parts, subset_size)


def _block_sums(gram: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Σ_{i,j} gram[rows[s, i], cols[s, j]] for every split s, chunked over splits."""
    n_splits, size = rows.shape
    chunk = max(1, _CHUNK_ELEMENTS // (size * cols.shape[1]))
    out = np.empty(n_splits, dtype=np.float64)
    for start in range(0, n_splits, chunk):
        r = rows[start : start + chunk]
        c = cols[start : start + chunk]
        out[start : start + chunk] = gram[r[:, :, None], c[:, None, :]].sum(axis=(1, 2))
    return out


def _offdiag_sums(gram: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return _block_sums(gram, idx, idx) - np.diagonal(gram)[idx].sum(axis=1)


def kid_splits(
    feats_a: np.ndarray,
    feats_b: np.ndarray | None = None,
    n_splits: int = 1000,
    subset_size: int | None = None,
    seed: int = 0,
    *,
    degree: int = 3,
    coef: float = 1.0,
) -> np.ndarray:
    """KID of `n_splits` random subset pairs, float64 array of shape (n_splits,).

    - `feats_b is None` (reference distribution, "real vs real"): every split permutes `feats_a` and
      compares two *disjoint* subsets of `subset_size` (default N // 2).
    - otherwise every split draws `subset_size` of `feats_a` and `subset_size` of `feats_b` (each without
      replacement; default: min(N_a // 2, N_b), the size of the reference halves).

    The `feats_a` subsets are drawn first from `numpy.random.default_rng(seed)`, so with one seed every
    compared set meets the same real subsets (common random numbers: differences between checkpoints
    are not blurred by different real draws).  Same inputs + seed give bit-identical output.
    """
    a = _as_features(feats_a, "feats_a")
    rng = np.random.default_rng(seed)
    gaa = polynomial_kernel(a, a, degree, coef)
    if feats_b is None:
        size = a.shape[0] // 2 if subset_size is None else int(subset_size)
        idx = split_indices(a.shape[0], size, n_splits, rng, parts=2)
        x, y = idx[:, 0], idx[:, 1]
        sxx, syy, sxy = _offdiag_sums(gaa, x), _offdiag_sums(gaa, y), _block_sums(gaa, x, y)
    else:
        b = _as_features(feats_b, "feats_b")
        if b.shape[1] != a.shape[1]:
            raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
        size = min(a.shape[0] // 2, b.shape[0]) if subset_size is None else int(subset_size)
        x = split_indices(a.shape[0], size, n_splits, rng)[:, 0]
        y = split_indices(b.shape[0], size, n_splits, rng)[:, 0]
        gbb = polynomial_kernel(b, b, degree, coef)
        gab = polynomial_kernel(a, b, degree, coef)
        sxx, syy, sxy = _offdiag_sums(gaa, x), _offdiag_sums(gbb, y), _block_sums(gab, x, y)
    m = float(size)
    return (sxx + syy) / (m * (m - 1)) - 2.0 * sxy / (m * m)


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean, std (population, as torchmetrics), median and quartiles of per-split values."""
    v = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"mean": float(v.mean()), "std": float(v.std()), "median": float(med), "q1": float(q1), "q3": float(q3)}
