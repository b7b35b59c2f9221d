"""The one in-memory dataset shape every loader returns and every pipeline consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from influence_core.errors import InputError


@dataclass
class Dataset:
    """A train/test split of features and integer labels.

    ``x_*`` are float32 arrays: (n, d) for tabular data, (n, C, H, W) for images.
    ``y_train`` holds the labels used for training (possibly corrupted); ``y_train_clean`` the
    labels before corruption and ``flipped`` the ground-truth mask of corrupted rows (all False
    when nothing was injected). ``ids_train`` / ``ids_test`` trace every row back to the original
    source (CSV row id or file path), so a flagged sample can be exported.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    ids_train: np.ndarray
    ids_test: np.ndarray
    y_train_clean: Optional[np.ndarray] = None
    flipped: Optional[np.ndarray] = None
    feature_names: list[str] = field(default_factory=list)
    groups_train: Optional[np.ndarray] = None  # optional sensitive attribute / subgroup per row
    groups_test: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.x_train = np.ascontiguousarray(self.x_train, dtype=np.float32)
        self.x_test = np.ascontiguousarray(self.x_test, dtype=np.float32)
        self.y_train = np.asarray(self.y_train, dtype=np.int64)
        self.y_test = np.asarray(self.y_test, dtype=np.int64)
        if self.y_train_clean is None:
            self.y_train_clean = self.y_train.copy()
        if self.flipped is None:
            self.flipped = self.y_train != self.y_train_clean
        self.flipped = np.asarray(self.flipped, dtype=bool)
        self.ids_train = np.asarray(self.ids_train)
        self.ids_test = np.asarray(self.ids_test)
        if len(self.x_train) != len(self.y_train) or len(self.ids_train) != len(self.y_train):
            raise InputError(f"{self.name}: train features, labels and ids differ in length")
        if len(self.x_test) != len(self.y_test) or len(self.ids_test) != len(self.y_test):
            raise InputError(f"{self.name}: test features, labels and ids differ in length")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return self.x_train.ndim == 4

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def with_train_labels(self, y_train: np.ndarray, flipped: np.ndarray) -> "Dataset":
        """A copy with new training labels and ground-truth mask (the clean labels are kept)."""
        return replace(self, y_train=np.asarray(y_train, dtype=np.int64).copy(), flipped=np.asarray(flipped, bool).copy())

    def edited(self, rows: np.ndarray, action: str, train_probs: np.ndarray) -> "Dataset":
        """A copy with the training ``rows`` (a boolean mask or indices) relabelled to the likeliest other class
        under ``train_probs`` (``relabel``; binary: the other class) or dropped (``remove``). The ground truth follows
        the edit: a relabelled row is flipped iff its new label differs from the clean one."""
        rows = np.asarray(rows)
        mask = rows.astype(bool) if rows.dtype == bool else np.isin(np.arange(len(self.y_train)), rows.astype(int))
        if action == "relabel":
            y = self.y_train.copy()
            y[mask] = likeliest_other_labels(train_probs, self.y_train)[mask]
            return self.with_train_labels(y, y != self.y_train_clean)
        if action == "remove":
            if mask.all():
                raise InputError("every training sample is flagged: raise the threshold before removing them")
            return self.subset_train(~mask)
        raise InputError(f"action must be 'relabel' or 'remove', got {action!r}")

    def subset_test(self, keep: np.ndarray) -> "Dataset":
        """A copy keeping only the test rows selected by a boolean mask or index array."""
        keep = np.asarray(keep)
        groups = None if self.groups_test is None else self.groups_test[keep]
        return replace(self, x_test=self.x_test[keep], y_test=self.y_test[keep], ids_test=self.ids_test[keep], groups_test=groups)

    def subset_train(self, keep: np.ndarray) -> "Dataset":
        """A copy keeping only the training rows selected by a boolean mask or index array."""
        keep = np.asarray(keep)
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return replace(
            self,
            x_train=self.x_train[keep],
            y_train=self.y_train[keep],
            ids_train=self.ids_train[keep],
            y_train_clean=pick(self.y_train_clean),
            flipped=pick(self.flipped),
            groups_train=pick(self.groups_train),
        )


def split_indices(n: int, test_fraction: float, seed: int, stratify: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test index split (stratified by label when given and possible)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"test fraction must be in [0, 1), got {test_fraction}")
    idx = np.arange(n)
    if test_fraction == 0.0:  # score every row: no held-out split
        return idx, idx[:0]
    try:
        tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    except ValueError:  # a class too small to stratify: fall back to a plain shuffle split
        tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed)
    return np.sort(tr), np.sort(te)


def likeliest_other_labels(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row, the most probable class other than its label (with two classes: the other one)."""
    others = np.array(probs, dtype=np.float64, copy=True)
    others[np.arange(len(labels)), labels] = -np.inf
    return others.argmax(1)


# ---------------------------------------------------------------- helpers shared by the loaders


def select_classes(y: np.ndarray, classes: Optional[Sequence[int]], all_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Keep the rows whose label is in ``classes`` (original label values) and map them to 0..K-1.

    The order of ``classes`` gives the new label order: ``classes=(4, 9)`` maps 4 → 0, 9 → 1.
    Returns ``(row_mask, mapped_labels_of_kept_rows, class_names)``; ``None`` keeps everything.
    """
    y = np.asarray(y, dtype=np.int64)
    if classes is None or len(classes) == 0:
        return np.ones(len(y), dtype=bool), y.copy(), list(all_names)
    wanted = [int(c) for c in classes]
    available = list(range(len(all_names)))
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise InputError(f"classes {unknown} do not occur in this dataset; choose from {available[0]}..{available[-1]}")
    if len(set(wanted)) != len(wanted):
        raise InputError(f"classes {wanted} list a class twice; list each class once")
    if len(wanted) < 2:
        raise InputError(f"keep at least two classes to train a classifier (got {wanted})")
    lookup = np.full(max(available) + 1, -1, dtype=np.int64)
    lookup[wanted] = np.arange(len(wanted))
    mask = lookup[y] >= 0
    return mask, lookup[y[mask]], [str(all_names[c]) for c in wanted]


def stratified_subset(y: np.ndarray, n: Optional[int], seed: int) -> np.ndarray:
    """Sorted indices of a seeded subsample of ``n`` rows, stratified by label (0 / None / n ≥ len = all)."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    if n is None or n <= 0 or n >= len(y):
        return np.arange(len(y))
    idx = np.arange(len(y))
    try:
        keep, _ = train_test_split(idx, train_size=int(n), random_state=seed, stratify=y)
    except ValueError:  # too few rows of some class to stratify
        keep, _ = train_test_split(idx, train_size=int(n), random_state=seed)
    return np.sort(keep)
