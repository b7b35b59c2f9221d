"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, no download needed)."""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

from influence_core.data.base import Dataset, select_classes, split_indices


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # pixel values 0..16 → [0, 1]
    x.setflags(write=False)
    return x, bunch.target.astype(np.int64)


def load_digits(
    classes: Optional[Sequence[int]] = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    image_size: Optional[int] = None,
) -> Dataset:
    """The sklearn digits as images (n, 1, 8, 8) in [0, 1], split stratified with ``seed``.

    ``classes=(4, 9)`` keeps those digits and relabels them 0..K-1 in the given order
    (class_names ["4", "9"]). ids are the row index in sklearn's array. ``image_size`` resizes.
    """
    x, y = _digits_arrays()
    mask, y_kept, names = select_classes(y, classes, [str(d) for d in range(10)])
    rows = np.flatnonzero(mask)
    tr, te = split_indices(len(rows), test_fraction, seed, stratify=y_kept)
    x_kept = x[rows]
    if image_size and image_size != 8:
        from influence_core.data.image_folder import resize_images

        x_kept = resize_images(x_kept, image_size)
    return Dataset(
        name="digits",
        x_train=x_kept[tr],
        y_train=y_kept[tr],
        x_test=x_kept[te],
        y_test=y_kept[te],
        class_names=names,
        ids_train=rows[tr],
        ids_test=rows[te],
    )
