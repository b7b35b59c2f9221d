"""The paper's analyses: set sizes, a noise sweep, two groups compared, and what explains a biased group's flips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from influence_core.config import RunConfig
from influence_core.data.base import Dataset
from influence_core.flipset.data import add_label_noise, inject_group_bias
from influence_core.flipset.pipeline import FlipSetResult, compute_flip_sets
from influence_core.progress import ProgressFn, scaled, silent

# ------------------------------------------------------------------------------ analyses


def k_summary(result: FlipSetResult, mode: str = "relabel", test_indices: Optional[np.ndarray] = None) -> dict[str, float]:
    """Share of test points with a flip set, and mean / median k over those found."""
    s = result.search(mode)
    idx = np.arange(len(s.k)) if test_indices is None else np.asarray(test_indices)
    ks = s.k[idx][s.found[idx]]
    return {
        "n_test": int(len(idx)),
        "found_share": float(s.found[idx].mean()) if len(idx) else float("nan"),
        "mean_k": float(ks.mean()) if len(ks) else float("nan"),
        "median_k": float(np.median(ks)) if len(ks) else float("nan"),
        "n_train": int(len(result.dataset.y_train)),
    }


@dataclass
class NoiseSweep:
    fractions: list[float]
    accuracy: list[float]
    found_share: list[float]
    mean_k: list[float]  # over the test points found at every noise level
    mean_k_all: list[float]  # over all found at that level
    k: list[np.ndarray]  # k per test point (0 = not found) at each level
    common: np.ndarray  # test points with a flip set at every level


def noise_sweep(
    config: RunConfig,
    dataset: Dataset,
    fractions: Sequence[float] = (0.0, 0.1, 0.2, 0.3),
    progress: ProgressFn = silent,
    use_cache: bool = True,
) -> NoiseSweep:
    """Mean k under increasing uniform label noise (paper §5.1): k should fall as noise rises."""
    results = []
    for j, frac in enumerate(fractions):
        noisy = add_label_noise(dataset, frac, config.seed)
        results.append(
            compute_flip_sets(config, noisy, progress=scaled(progress, j / len(fractions), (j + 1) / len(fractions)), use_cache=use_cache)
        )
    common = np.flatnonzero(np.all([r.relabel.found for r in results], axis=0))
    return NoiseSweep(
        fractions=list(fractions),
        accuracy=[r.metrics["test"]["accuracy"] for r in results],
        found_share=[float(r.relabel.found.mean()) for r in results],
        mean_k=[float(r.relabel.k[common].mean()) if len(common) else float("nan") for r in results],
        mean_k_all=[k_summary(r)["mean_k"] for r in results],
        k=[r.relabel.k.copy() for r in results],
        common=common,
    )


def two_group_comparison(
    config: RunConfig, dataset: Dataset, noise_fraction: float = 0.1, progress: ProgressFn = silent, use_cache: bool = True
) -> dict[str, np.ndarray]:
    """Paper §5.1: split the training set into groups 1 and 2, make group 3 = group 2 with 10% flips.

    Returns k per test point (0 = not found) for a model trained on each group alone.
    """
    rng = np.random.default_rng(config.seed)
    perm = rng.permutation(len(dataset.y_train))
    half = len(perm) // 2
    g1, g2 = dataset.subset_train(np.sort(perm[:half])), dataset.subset_train(np.sort(perm[half:]))
    g3 = add_label_noise(g2, noise_fraction, config.seed)
    out = {}
    for j, (name, ds) in enumerate(
        [("group 1 (clean)", g1), ("group 2 (clean)", g2), (f"group 3 (group 2, {noise_fraction:.0%} flipped)", g3)]
    ):
        r = compute_flip_sets(config, ds, progress=scaled(progress, j / 3, (j + 1) / 3), use_cache=use_cache)
        out[name] = r.relabel.k.copy()
    return out


@dataclass
class BiasExplanation:
    """Per group: misclassified qualified test points and the share of their flip sets drawn from 𝒩."""

    groups: list[int]
    n_misclassified: list[int]
    n_with_set: list[int]
    mean_share_biased: list[float]
    shares: list[np.ndarray]
    test_accuracy: float


def bias_explanation(
    config: RunConfig,
    dataset: Dataset,
    minority_share: float = 0.4,
    relabel_share: float = 0.9,
    positive_class: int = 1,
    progress: ProgressFn = silent,
    use_cache: bool = True,
) -> BiasExplanation:
    """Paper §5.2: inject a labeling bias against group 1, then measure how much of each flip set of a
    misclassified qualified (true positive-class) test point comes from the biased subset 𝒩, per group."""
    data = inject_group_bias(dataset, minority_share, relabel_share, positive_class, config.seed)
    ds = data.dataset
    r = compute_flip_sets(config, ds, progress=progress, use_cache=use_cache)
    wrong = (ds.y_test == positive_class) & (r.predicted != positive_class)
    out = BiasExplanation([0, 1], [], [], [], [], r.metrics["test"]["accuracy"])
    for g in (0, 1):
        rows = np.flatnonzero(wrong & (ds.groups_test == g))
        shares = np.array([data.biased[r.flip_set(int(t))].mean() for t in rows if r.relabel.found[t]])
        out.n_misclassified.append(int(len(rows)))
        out.n_with_set.append(int(len(shares)))
        out.mean_share_biased.append(float(shares.mean()) if len(shares) else float("nan"))
        out.shares.append(shares)
    return out
