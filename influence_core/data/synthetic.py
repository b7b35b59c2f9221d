"""Synthetic 2D datasets from the papers (dataset exploration, Hessian-free IF).

Each generator returns ``(x, y)`` with x of shape (n, 2) float32 and y int64, from a seed.
``single_flip`` additionally flips exactly one label (recorded in the Dataset's mask).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.datasets import make_blobs, make_moons

from influence_core.data.base import Dataset
from influence_core.errors import InputError


def blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs, linearly separable up to a little overlap."""
    x, y = make_blobs(n_samples=n, centers=[(-1.5, -1.0), (1.5, 1.0)], cluster_std=1.0, random_state=int(rng.integers(2**31)))
    return x, y


def moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half moons."""
    x, y = make_moons(n_samples=n, noise=0.15, random_state=int(rng.integers(2**31)))
    return (x - np.array([0.5, 0.25])) * 1.5, y


def circle(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points in [-2, 2]²; class 1 inside the unit circle."""
    x = rng.uniform(-2.0, 2.0, size=(n, 2))
    return x, (np.linalg.norm(x, axis=1) < 1.0).astype(int)


def circle_downsampled(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The unit circle with the first quadrant sampled at a tenth of the density elsewhere."""
    x = rng.uniform(-2.0, 2.0, size=(4 * n, 2))
    sparse = (x[:, 0] > 0) & (x[:, 1] > 0)
    keep = ~sparse | (rng.uniform(size=len(x)) < 0.1)
    x = x[keep][:n]
    return x, (np.linalg.norm(x, axis=1) < 1.0).astype(int)


def circle_noisy_band(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The unit circle whose labels are random within a band of ±0.15 around the boundary."""
    x, y = circle(n, rng)
    band = np.abs(np.linalg.norm(x, axis=1) - 1.0) < 0.15
    y = y.copy()
    y[band] = rng.integers(0, 2, size=int(band.sum()))
    return x, y


def line_to_sine(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A boundary that is a straight line for x < 0 and turns into a sine wave for x ≥ 0."""
    x = rng.uniform(-3.0, 3.0, size=(n, 2))
    boundary = np.where(x[:, 0] < 0, 0.0, np.sin(2.0 * x[:, 0]))
    return x, (x[:, 1] > boundary).astype(int)


def split_at_zero(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points in [-1, 1]², class 1 where x > 0 (the base of ``single_flip``)."""
    x = rng.uniform(-1.0, 1.0, size=(n, 2))
    return x, (x[:, 0] > 0).astype(int)


GENERATORS: dict[str, Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "blobs": blobs,
    "moons": moons,
    "circle": circle,
    "circle_downsampled": circle_downsampled,
    "circle_noisy_band": circle_noisy_band,
    "line_to_sine": line_to_sine,
    "single_flip": split_at_zero,
}

DESCRIPTIONS: dict[str, str] = {
    "blobs": "Two Gaussian blobs (linear boundary)",
    "moons": "Two half moons",
    "circle": "Unit circle",
    "circle_downsampled": "Unit circle, first quadrant under-sampled",
    "circle_noisy_band": "Unit circle, noisy labels near the boundary",
    "line_to_sine": "Line boundary turning into a sine",
    "single_flip": "Split at x = 0 with exactly one flipped label",
}
SHORT_NAMES: dict[str, str] = {  # what a select box shows (the descriptions do not fit one)
    "blobs": "two blobs",
    "moons": "two moons",
    "circle": "circle",
    "circle_downsampled": "circle, under-sampled",
    "circle_noisy_band": "circle, noisy band",
    "line_to_sine": "line to sine",
    "single_flip": "one flipped label",
}


def make_synthetic(name: str, n_train: int = 300, n_test: int = 200, seed: int = 0) -> Dataset:
    """Build a named toy dataset (train and test drawn independently from the same process)."""
    if name not in GENERATORS:
        raise InputError(f"unknown synthetic dataset {name!r}; choose one of {', '.join(GENERATORS)}")
    if n_train < 4 or n_test < 1:
        raise InputError("a synthetic dataset needs at least 4 training and 1 test point")
    rng = np.random.default_rng(seed)
    x_tr, y_tr = GENERATORS[name](n_train, rng)
    x_te, y_te = GENERATORS[name](n_test, rng)
    y_clean = np.asarray(y_tr, dtype=np.int64)
    y_used = y_clean.copy()
    if name == "single_flip":
        # flip the label of the training point deepest inside class 1, so it is clearly wrong
        flip = int(np.argmax(x_tr[:, 0]))
        y_used[flip] = 1 - y_used[flip]
    return Dataset(
        name=name,
        x_train=x_tr,
        y_train=y_used,
        x_test=x_te,
        y_test=y_te,
        class_names=["0", "1"],
        ids_train=np.arange(len(y_used)),
        ids_test=np.arange(len(y_te)),
        y_train_clean=y_clean,
        feature_names=["x1", "x2"],
    )
