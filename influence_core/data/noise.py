"""Label-noise injection with the ground-truth mask of corrupted rows. Seeded."""

from __future__ import annotations

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
    noisy = y.copy()
    offsets = rng.integers(1, n_classes, size=len(chosen))
    noisy[chosen] = (y[chosen] + offsets) % n_classes
    mask = np.zeros(len(y), dtype=bool)
    mask[chosen] = True
    return noisy, mask


def uniform_noise(y: np.ndarray, fraction: float, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mislabel ``fraction`` of all samples, each to a uniformly random *other* class."""
    _check_fraction(fraction)
    if n_classes < 2:
        raise InputError("label noise needs at least two classes")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(y), size=int(round(fraction * len(y))), replace=False)
    noisy = y.copy()
    noisy[chosen] = (y[chosen] + rng.integers(1, n_classes, size=len(chosen))) % n_classes
    mask = np.zeros(len(y), dtype=bool)
    mask[chosen] = True
    return noisy, mask
