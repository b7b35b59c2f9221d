"""Label-noise injection with the ground-truth mask of corrupted rows. Seeded."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from influence_core.errors import InputError


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"noise fraction must be in [0, 1], got {fraction}")


def flip_class(y: np.ndarray, source: int, target: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``fraction`` of the samples of class ``source`` to ``target`` (class-dependent noise).

    Returns ``(noisy_labels, flipped_mask)``; the input is never modified.
    """
    _check_fraction(fraction)
    y = np.asarray(y)
    if source == target:
        raise InputError("source and target class of a label flip must differ")
    if source not in set(y.tolist()):
        raise InputError(f"class {source} does not occur in the labels (found {sorted(set(y.tolist()))})")
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(y == source)
    n_flip = int(round(fraction * len(candidates)))
    chosen = rng.choice(candidates, size=n_flip, replace=False)
    noisy = y.copy()
    noisy[chosen] = target
    mask = np.zeros(len(y), dtype=bool)
    mask[chosen] = True
    return noisy, mask


def singular_class(y: np.ndarray, source: int, fraction: float, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mislabel ``fraction`` of one class, each to a random *other* class (the KDD'25 'singular' glitch)."""
    _check_fraction(fraction)
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(y == source)
    chosen = rng.choice(candidates, size=int(round(fraction * len(candidates))), replace=False)
    return _to_other_classes(y, chosen, n_classes, rng)


def _to_other_classes(y: np.ndarray, chosen: np.ndarray, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each chosen row to a uniformly random *other* class; (noisy labels, mask of the chosen rows)."""
    if n_classes < 2:
        raise InputError("label noise needs at least two classes")
    noisy = y.copy()
    noisy[chosen] = (y[chosen] + rng.integers(1, n_classes, size=len(chosen))) % n_classes
    mask = np.zeros(len(y), dtype=bool)
    mask[chosen] = True
    return noisy, mask


def flip_count(y: np.ndarray, n_flipped: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mislabel exactly ``n_flipped`` samples drawn uniformly, each to a uniformly random other class."""
    y = np.asarray(y)
    if not 0 <= n_flipped <= len(y):
        raise InputError(f"cannot flip {n_flipped} of {len(y)} labels")
    rng = np.random.default_rng(seed)
    return _to_other_classes(y, rng.choice(len(y), size=n_flipped, replace=False), n_classes, rng)


def uniform_noise(y: np.ndarray, fraction: float, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mislabel ``fraction`` of all samples, each to a uniformly random *other* class."""
    _check_fraction(fraction)
    return flip_count(y, int(round(fraction * len(y))), n_classes, seed)


def flip_per_class(y: np.ndarray, n_per_class: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mislabel ``n_per_class`` samples of every class, each to a uniformly random other class."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.choice(np.flatnonzero(y == c), n_per_class, replace=False) for c in range(n_classes)])
    return _to_other_classes(y, chosen, n_classes, rng)


def pair_flip(y: np.ndarray, pairs: Sequence[tuple[int, int]], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Look-alike noise: ``fraction`` of the rows of every class named in ``pairs`` (e.g. ``[(4, 9), (3, 8)]``) moved to
    its partner, both ways; classes in no pair keep their labels. Per class exactly ``round(fraction × its rows)``.

    Returns ``(noisy_labels, flipped_mask)``; the input is never modified.
    """
    _check_fraction(fraction)
    y = np.asarray(y)
    partner: dict[int, int] = {}
    for a, b in pairs:
        a, b = int(a), int(b)
        if a == b:
            raise InputError(f"a look-alike pair needs two different classes, got ({a}, {b})")
        for c, other in ((a, b), (b, a)):
            if c in partner:
                raise InputError(f"class {c} is in more than one look-alike pair")
            partner[c] = other
    present = set(y.tolist())
    missing = sorted(c for c in partner if c not in present)
    if missing:
        raise InputError(f"class(es) {missing} of the look-alike pairs do not occur in the labels (found {sorted(present)})")
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    mask = np.zeros(len(y), dtype=bool)
    for c in sorted(partner):  # a fixed order: the same seed draws the same rows
        candidates = np.flatnonzero(y == c)
        chosen = rng.choice(candidates, size=int(round(fraction * len(candidates))), replace=False)
        noisy[chosen] = partner[c]
        mask[chosen] = True
    return noisy, mask


def with_noise(dataset, noisy_and_mask: tuple[np.ndarray, np.ndarray]):
    """The dataset with the noisy training labels; the ground truth marks every label that differs from the clean one."""
    noisy, _ = noisy_and_mask
    return dataset.with_train_labels(noisy, noisy != dataset.y_train_clean)
