"""The What-if view's data: bundled and your own binary sets, label noise, a biased group, 2D projections."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from influence_core.config import DataConfig, RunConfig
from influence_core.data.base import Dataset, split_indices
from influence_core.errors import InputError
from influence_core.flipset.search import check_binary

# ------------------------------------------------------------------------------ datasets


def breast_cancer_dataset(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled breast-cancer task (569 rows, 30 features), standardised on the train split.

    Labels: 0 = malignant, 1 = benign (sklearn's coding). ids are sklearn row numbers.
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    tr, te = split_indices(len(y), test_fraction, seed, stratify=y)
    mean, std = x[tr].mean(0), x[tr].std(0)
    std[std == 0] = 1.0
    x = (x - mean) / std
    return Dataset(
        name="breast_cancer",
        x_train=x[tr],
        y_train=y[tr],
        x_test=x[te],
        y_test=y[te],
        class_names=[str(c) for c in bunch.target_names],
        ids_train=tr,
        ids_test=te,
        feature_names=[str(f) for f in bunch.feature_names],
    )


def add_label_noise(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """A copy with ``fraction`` of the training labels flipped uniformly at random (mask kept)."""
    from influence_core.data.noise import uniform_noise, with_noise

    if fraction <= 0:
        return dataset
    return with_noise(dataset, uniform_noise(dataset.y_train, fraction, dataset.n_classes, seed))


def flatten_features(dataset: Dataset) -> Dataset:
    """Images (n, C, H, W) → tabular rows (n, C·H·W); tabular data is returned as is."""
    if dataset.x_train.ndim == 2:
        return dataset
    return replace(
        dataset, x_train=dataset.x_train.reshape(len(dataset.x_train), -1), x_test=dataset.x_test.reshape(len(dataset.x_test), -1)
    )


@dataclass
class BiasedData:
    dataset: Dataset  # with the attribute appended as the last feature and groups_* set
    biased: np.ndarray  # (n_train,) bool: the relabelled subset 𝒩


def inject_group_bias(
    dataset: Dataset,
    minority_share: float = 0.4,
    relabel_share: float = 0.9,
    positive_class: int = 1,
    seed: int = 0,
) -> BiasedData:
    """Add a synthetic binary sensitive attribute and a labeling bias against group 1.

    Group 1 ("minority", ``minority_share`` of rows, independent of features and label) gets
    ``relabel_share`` of its *training* positives relabelled negative: that subset is 𝒩. The
    attribute is appended as a 0/1 feature (so the model can learn the bias) and stored in
    ``groups_train`` / ``groups_test``. Test labels stay clean. The input is not modified.
    """
    check_binary(dataset)
    if not 0 < minority_share < 1 or not 0 <= relabel_share <= 1:
        raise InputError("the minority share must be in (0, 1) and the relabel share in [0, 1]")
    ds = flatten_features(dataset)
    rng = np.random.default_rng(seed)
    g_tr = (rng.uniform(size=len(ds.y_train)) < minority_share).astype(np.int64)
    g_te = (rng.uniform(size=len(ds.y_test)) < minority_share).astype(np.int64)
    candidates = np.flatnonzero((g_tr == 1) & (ds.y_train == positive_class))
    chosen = rng.choice(candidates, size=int(round(relabel_share * len(candidates))), replace=False)
    y_new = ds.y_train.copy()
    y_new[chosen] = 1 - positive_class
    biased = np.zeros(len(y_new), dtype=bool)
    biased[chosen] = True
    out = replace(
        ds,
        x_train=np.c_[ds.x_train, g_tr].astype(np.float32),
        x_test=np.c_[ds.x_test, g_te].astype(np.float32),
        groups_train=g_tr,
        groups_test=g_te,
        feature_names=list(ds.feature_names or [f"x{i}" for i in range(ds.x_train.shape[1])]) + ["group"],
    ).with_train_labels(y_new, ds.flipped | biased)
    return BiasedData(out, biased)


def project_2d(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, tuple[str, str]]:
    """2D coordinates of (train, test) for plotting and the two axis titles: the features themselves when
    2D (by name), else a PCA fitted on train (with the share of variance each component keeps)."""
    from sklearn.decomposition import PCA

    ds = flatten_features(dataset)
    if ds.x_train.shape[1] == 2:
        names = list(ds.feature_names or ["x1", "x2"])
        return ds.x_train, ds.x_test, (str(names[0]), str(names[1]))
    pca = PCA(n_components=2, random_state=0).fit(ds.x_train)
    kept = pca.explained_variance_ratio_
    return pca.transform(ds.x_train), pca.transform(ds.x_test), (f"PC 1 ({kept[0]:.0%} of the variance)", f"PC 2 ({kept[1]:.0%})")


WHAT_IF_DATASETS = {
    "blobs": "2D blobs, 150 train / 100 test, 10 flipped labels",
    "moons": "2D half moons, 200 train / 100 test, 20 flipped labels",
    "breast_cancer": "Breast cancer (scikit-learn, 30 features)",
    "digits": "Digits, two classes (scikit-learn 8×8)",
    "mnist": "MNIST, two classes (2,000 train / 500 test)",
    "csv": "Your CSV (numeric features, a binary label column)",
}


def what_if_dataset(
    name: str,
    classes: tuple[int, int] = (3, 8),
    extra_noise: float = 0.0,
    seed: int = 0,
    csv_path: Optional[str] = None,
    label_column: Optional[str] = None,
    id_column: Optional[str] = None,
) -> Dataset:
    """The datasets the What-if page offers, with optional extra uniform label noise (seeded)."""
    from influence_core.data.registry import load_dataset
    from influence_core.hessian_free import synthetic_flip_dataset

    if name in ("blobs", "moons"):
        ds = synthetic_flip_dataset(name, seed)
    elif name == "breast_cancer":
        ds = breast_cancer_dataset(seed=seed)
    elif name in ("digits", "mnist"):
        if len(set(classes)) != 2:
            raise InputError("pick two different classes")
        ds = flatten_features(load_dataset(DataConfig(name=name, classes=tuple(classes), n_train=2000, n_test=500), seed))
    elif name == "csv":
        if not csv_path or not label_column:
            raise InputError("a CSV dataset needs a file path and the name of its label column")
        ds = load_dataset(DataConfig(name="csv", path=csv_path, label_column=label_column, id_column=id_column), seed)
        if ds.n_classes != 2:  # no class picker for a CSV: say what to do with the file
            names = ", ".join(str(c) for c in ds.class_names)
            raise InputError(
                f"flip sets need two classes; column {label_column!r} of {Path(csv_path).name} has {ds.n_classes} ({names}): "
                "save a copy with the rows of two of them and load that"
            )
    else:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(WHAT_IF_DATASETS)}")
    check_binary(ds)
    return add_label_noise(ds, extra_noise, seed + 7) if extra_noise > 0 else ds


def what_if_data(
    name: str,
    classes: tuple[int, int] = (3, 8),
    extra_noise: float = 0.0,
    csv_path: Optional[str] = None,
    label_column: Optional[str] = None,
    id_column: Optional[str] = None,
) -> DataConfig:
    """The dataset :func:`what_if_dataset` builds from these settings, as a run config names it: with it in
    :func:`what_if_config`, the config's hash (and its content key, for a CSV) covers the data too."""

    return DataConfig(
        name=name,
        path=csv_path if name == "csv" else None,
        label_column=label_column if name == "csv" else None,
        id_column=id_column if name == "csv" else None,
        classes=tuple(int(c) for c in classes) if name in ("digits", "mnist") else None,
        noise="uniform" if extra_noise > 0 else "none",
        noise_fraction=float(extra_noise),
    )


def what_if_config(
    model_kind: str = "logreg",
    weight_decay: float = 1e-2,
    seed: int = 0,
    method: str = "influence",
    data: Optional[DataConfig] = None,
) -> RunConfig:
    """L2 logistic regression (L-BFGS to the optimum, exact Hessian) or a 2×32 ReLU MLP (Adam, full batch,
    last-layer GGN curvature via laplace-torch: the MLP's full Hessian is often indefinite). ``method``: any
    registered method that needs no checkpoints (flip sets are found at the trained model). ``data``: the
    dataset as :func:`what_if_data` names it (blobs, the page's first choice, when not given)."""
    from influence_core.config import CurvatureConfig, ModelConfig, TrainConfig

    data = data or what_if_data("blobs")

    if model_kind == "logreg":
        return RunConfig(
            data=data,
            model=ModelConfig(kind="logreg"),
            train=TrainConfig(optimizer="lbfgs", epochs=20, weight_decay=weight_decay, n_checkpoints=5),
            method=method,
            seed=seed,
        )
    if model_kind == "mlp":
        return RunConfig(
            data=data,
            model=ModelConfig(kind="mlp", hidden=32, depth=2),
            train=TrainConfig(optimizer="adam", lr=0.01, epochs=500, weight_decay=weight_decay, n_checkpoints=5),
            curvature=CurvatureConfig(kind="last_layer", damping=0.01),
            method=method,
            seed=seed,
        )
    raise InputError(f"model must be logreg or mlp, got {model_kind!r}")
