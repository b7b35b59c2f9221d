"""Data-glitch injection with ground truth (KDD'25 "Data glitches discovery using influence", §3, §5).

Every injector takes a clean :class:`Dataset` and returns ``(glitched_dataset, GlitchTruth)``.
Only the *training* rows are touched; the test split stays clean (the signals pipeline carves
its clean validation set from it). Every random choice takes ``seed``.

Kinds (``GLITCH_KINDS``):

- ``uniform``: ``ratio`` of all training rows relabelled to a uniformly random *other* class.
- ``class_dependent``: every class ``i`` sends ``ratio`` of its rows to one fixed other class
  ``T(i)`` (a seeded random derangement of the classes: asymmetric noise).
- ``singular_class``: ``ratio`` of *one* class (``source_class``, or one drawn with the seed)
  relabelled, each to a random other class; the mislabeled rows are ≈ ratio / n_classes of the set.
- ``far_clustered``: far clustered anomalies (Far-CA) *appended* to the training set, all with one
  random label, so that they make up ``ratio`` of the result: for MNIST-like images, images of
  one Fashion-MNIST class (MNIST images when the set itself is Fashion-MNIST), resized to the
  set's image size; for tabular / 2D data a tight Gaussian cluster placed far outside the data.
- ``brightness`` / ``stripe``: ``ratio`` of the training images corrupted as in MNIST-C
  (brightness: +0.3 on every pixel in [0, 1], clipped; stripe: the outer quarter of columns on
  each side inverted, 1 − x); labels untouched. Images only.
- ``mixture``: ``ratio`` mislabeled (uniform) *and* ``ratio`` far clustered anomalies (the paper's
  10 % + 10 %).

Ground truth: ``Dataset.y_train_clean`` / ``Dataset.flipped`` describe the label glitches as
everywhere else in the project; :class:`GlitchTruth` adds the anomaly mask and the type per row.
Appended anomalies get ids ``"<source>:<row>"`` (the original rows keep theirs, as strings).
"""

from __future__ import annotations

import os

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from influence_core.data import noise as noise_lib
from influence_core.data.base import Dataset
from influence_core.errors import InputError

GLITCH_KINDS: dict[str, str] = {
    "singular_class": "singular mislabeled class (a share of one class relabelled)",
    "uniform": "uniform class noise (any class → random other class)",
    "class_dependent": "class-dependent noise (class i → one fixed other class)",
    "far_clustered": "far clustered anomalies (Fashion-MNIST into MNIST, far cluster for tabular)",
    "brightness": "brightness corruption (MNIST-C)",
    "stripe": "stripe corruption (MNIST-C)",
    "mixture": "mixture: mislabeled + far clustered anomalies (the ratio each)",
    "none": "none: the data as it is (your own data: no ground truth to score against)",
}
"""Every glitch kind :func:`inject_glitches` accepts → a one-line description for the UI."""
GLITCH_SHORT_NAMES: dict[str, str] = {  # what a select box shows (about 20 characters fit)
    "singular_class": "singular class",
    "uniform": "uniform noise",
    "class_dependent": "class-dependent",
    "far_clustered": "far clustered",
    "brightness": "brightness",
    "stripe": "stripe",
    "mixture": "mixture",
    "none": "none",
}

MISLABEL_KINDS = ("singular_class", "uniform", "class_dependent")
ANOMALY_KINDS = ("far_clustered", "brightness", "stripe")

BRIGHTNESS_SHIFT = 0.3  # MNIST-C brightness (largest severity), on pixels in [0, 1]
FASHION_ROOT = os.environ.get("INFLUENCE_LAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist


@dataclass
class GlitchTruth:
    """Ground truth of an injection, one entry per training row of the glitched dataset."""

    kind: str
    ratio: float
    mislabeled: np.ndarray  # bool: label differs from the true class
    anomalous: np.ndarray  # bool: far clustered anomaly or corrupted image
    details: dict

    @property
    def glitched(self) -> np.ndarray:
        return self.mislabeled | self.anomalous

    @property
    def types(self) -> np.ndarray:
        """Per row: "clean", "mislabeled" or "anomaly"."""
        out = np.full(len(self.mislabeled), "clean", dtype=object)
        out[self.mislabeled] = "mislabeled"
        out[self.anomalous] = "anomaly"
        return out


def _check(ds: Dataset, ratio: float) -> None:
    if not 0.0 < ratio <= 0.5:
        raise InputError(f"glitch ratio must be in (0, 0.5], got {ratio}")
    if ds.n_classes < 2:
        raise InputError("glitch injection needs at least two classes")
    if np.any(ds.flipped):
        raise InputError("the dataset already has injected label noise: load it with noise 'none' and let the glitch settings corrupt it")


def _string_ids(ids: np.ndarray) -> np.ndarray:
    return np.asarray([str(i) for i in ids], dtype=object)


def _mislabel(ds: Dataset, kind: str, ratio: float, seed: int, source_class: Optional[int]) -> tuple[Dataset, dict]:
    y, k = ds.y_train, ds.n_classes
    details: dict = {}
    if kind == "uniform":
        noisy, _ = noise_lib.uniform_noise(y, ratio, k, seed)
    elif kind == "singular_class":
        rng = np.random.default_rng(seed)
        present = np.unique(y)
        source = int(rng.choice(present)) if source_class is None else int(source_class)
        if source not in present:
            raise InputError(f"source class {source} has no training rows; choose one of {present.tolist()}")
        noisy, _ = noise_lib.singular_class(y, source, ratio, k, seed)
        details["source_class"] = source
    elif kind == "class_dependent":
        rng = np.random.default_rng(seed)
        while True:  # a derangement: every class goes to a different one
            target = rng.permutation(k)
            if np.all(target != np.arange(k)):
                break
        noisy = y.copy()
        for c in np.unique(y):
            flipped, _ = noise_lib.flip_class(y, int(c), int(target[c]), ratio, seed + 1 + int(c))
            changed = flipped != y
            noisy[changed] = flipped[changed]
        details["targets"] = {int(c): int(target[c]) for c in range(k)}
    else:
        raise InputError(f"{kind!r} is not a label glitch")
    return ds.with_train_labels(noisy, noisy != ds.y_train_clean), details


def _fashion_or_mnist_images(ds: Dataset, n: int, rng: np.random.Generator, root: str) -> tuple[np.ndarray, np.ndarray, str, int]:
    """n images of one random class of Fashion-MNIST (MNIST if ``ds`` is Fashion-MNIST), shaped like ds."""
    from influence_core.data import mnist

    if ds.name == "fashion_mnist":
        x_all, y_all, _, _, _ = mnist.mnist_arrays()
        source = "mnist"
    else:
        x_all, y_all, _, _ = mnist.fashion_mnist_arrays(root)
        source = "fashion_mnist"
    source_class = int(rng.integers(0, 10))
    rows = np.flatnonzero(y_all == source_class)
    if n > len(rows):
        raise InputError(f"asked for {n} anomalies but {source} class {source_class} has only {len(rows)} images; lower the ratio")
    rows = np.sort(rng.choice(rows, size=n, replace=False))
    images = x_all[rows].astype(np.float32)[:, None] / 255.0
    c, h, w = ds.input_shape
    if (h, w) != images.shape[-2:]:
        from influence_core.data.image_folder import resize_images

        if h != w:
            raise InputError(f"far clustered image anomalies need square images; this set has {h}×{w}")
        images = resize_images(images, h)
    if c != 1:
        images = np.repeat(images, c, axis=1)
    # match the set's pixel range (e.g. a loader that standardised its images)
    lo, hi = float(ds.x_train.min()), float(ds.x_train.max())
    images = lo + (hi - lo) * images
    return images.astype(np.float32), rows, source, source_class


def _far_gaussian_cluster(ds: Dataset, n: int, rng: np.random.Generator) -> np.ndarray:
    """A tight Gaussian cluster far outside tabular data: centre = mean + 6·(per-feature std)·u, ‖u‖ = 1."""
    x = ds.x_train.reshape(len(ds.x_train), -1)
    mean, std = x.mean(0), x.std(0) + 1e-6
    direction = rng.normal(size=x.shape[1])
    direction /= np.linalg.norm(direction)
    radius = 6.0 * np.sqrt(x.shape[1])  # far beyond the data in every dimension's units
    centre = mean + radius * std * direction
    cluster = centre + 0.25 * std * rng.normal(size=(n, x.shape[1]))
    return cluster.reshape((n,) + ds.input_shape).astype(np.float32)


def append_far_clustered(ds: Dataset, ratio: float, seed: int, fashion_root: str = FASHION_ROOT) -> tuple[Dataset, np.ndarray, dict]:
    """Append far clustered anomalies (share ``ratio`` of the result), one random label for all.

    Returns ``(dataset, anomaly_mask, details)``; the appended rows come last.
    """
    rng = np.random.default_rng(seed + 7919)
    n_old = len(ds.y_train)
    n_new = max(1, int(round(ratio / (1.0 - ratio) * n_old)))
    label = int(rng.integers(0, ds.n_classes))
    details: dict = {"anomaly_label": label, "n_anomalies": n_new}
    if ds.is_image:
        x_new, rows, source, source_class = _fashion_or_mnist_images(ds, n_new, rng, fashion_root)
        ids_new = np.asarray([f"{source}:{r}" for r in rows], dtype=object)
        details.update(anomaly_source=source, anomaly_source_class=source_class)
    else:
        x_new = _far_gaussian_cluster(ds, n_new, rng)
        ids_new = np.asarray([f"far_cluster:{i}" for i in range(n_new)], dtype=object)
        details.update(anomaly_source="far Gaussian cluster")
    y_new = np.full(n_new, label, dtype=np.int64)
    glitched = replace(
        ds,
        x_train=np.concatenate([ds.x_train, x_new]),
        y_train=np.concatenate([ds.y_train, y_new]),
        y_train_clean=np.concatenate([ds.y_train_clean, y_new]),  # no true class: the assigned one
        flipped=np.concatenate([ds.flipped, np.zeros(n_new, bool)]),
        ids_train=np.concatenate([_string_ids(ds.ids_train), ids_new]),
        groups_train=None if ds.groups_train is None else np.concatenate([ds.groups_train, np.full(n_new, -1)]),
    )
    anomalous = np.zeros(n_old + n_new, dtype=bool)
    anomalous[n_old:] = True
    return glitched, anomalous, details


def corrupt_images(ds: Dataset, kind: str, ratio: float, seed: int) -> tuple[Dataset, np.ndarray]:
    """Corrupt ``ratio`` of the training images in place of the originals (MNIST-C brightness / stripe)."""
    if not ds.is_image:
        raise InputError(f"the {kind} corruption needs image data; this dataset is tabular (pick far_clustered or a label glitch)")
    rng = np.random.default_rng(seed + 104729)
    n = len(ds.y_train)
    rows = np.sort(rng.choice(n, size=max(1, int(round(ratio * n))), replace=False))
    x = ds.x_train.copy()
    lo, hi = float(ds.x_train.min()), float(ds.x_train.max())
    unit = (x[rows] - lo) / max(hi - lo, 1e-12)  # work in [0, 1] as MNIST-C does
    if kind == "brightness":
        unit = np.clip(unit + BRIGHTNESS_SHIFT, 0.0, 1.0)
    elif kind == "stripe":
        width = x.shape[-1]
        band = max(1, int(round(width / 4)))  # MNIST-C: columns [:7] and [21:] of 28
        unit[..., :band] = 1.0 - unit[..., :band]
        unit[..., width - band :] = 1.0 - unit[..., width - band :]
    else:
        raise InputError(f"unknown corruption {kind!r}; choose brightness or stripe")
    x[rows] = lo + (hi - lo) * unit
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return replace(ds, x_train=x), mask


def inject_glitches(
    ds: Dataset,
    kind: str,
    ratio: float,
    seed: int,
    source_class: Optional[int] = None,
    fashion_root: str = FASHION_ROOT,
) -> tuple[Dataset, GlitchTruth]:
    """Corrupt the training rows of ``ds`` with glitch ``kind`` at ``ratio``; return it and the ground truth."""
    if kind not in GLITCH_KINDS:
        raise InputError(f"glitch kind must be one of {', '.join(GLITCH_KINDS)}; got {kind!r}")
    if kind == "none":
        nothing = np.zeros(len(ds.y_train), dtype=bool)
        return ds, GlitchTruth(kind=kind, ratio=0.0, mislabeled=nothing, anomalous=nothing.copy(), details={})
    _check(ds, ratio)
    details: dict = {}
    anomalous = np.zeros(len(ds.y_train), dtype=bool)
    if kind in MISLABEL_KINDS:
        ds, details = _mislabel(ds, kind, ratio, seed, source_class)
    elif kind == "far_clustered":
        ds, anomalous, details = append_far_clustered(ds, ratio, seed, fashion_root)
    elif kind in ("brightness", "stripe"):
        ds, anomalous = corrupt_images(ds, kind, ratio, seed)
    elif kind == "mixture":
        ds, details = _mislabel(ds, "uniform", ratio, seed, None)
        ds, anomalous, more = append_far_clustered(ds, ratio, seed, fashion_root)
        details.update(more)
    truth = GlitchTruth(kind=kind, ratio=float(ratio), mislabeled=ds.flipped.copy(), anomalous=anomalous, details=details)
    return ds, truth
