"""The detectors influence is compared with: cleanlab on out-of-fold probabilities of the same model, and
scikit-learn's IsolationForest. One home for them, so every view measures against the same baseline."""

from __future__ import annotations

import warnings

import numpy as np

from influence_core.config import RunConfig
from influence_core.data.base import Dataset
from influence_core.errors import InputError
from influence_core.progress import ProgressFn, silent


def out_of_fold_probabilities(
    config: RunConfig, dataset: Dataset, n_folds: int = 5, progress: ProgressFn = silent, use_cache: bool = True
) -> np.ndarray:
    """Class probabilities of every training row from the same model and training without it: K folds (seeded,
    stratified; plain K-fold when a class has fewer rows than folds), trained on the Dask workers when a cluster is
    configured (:mod:`influence_core.distributed`), else here one after another (never a forked pool)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    from influence_core import distributed

    if n_folds < 2:
        raise InputError(f"out-of-fold probabilities need at least 2 folds, got {n_folds}")
    n = len(dataset.y_train)
    try:
        splits = list(StratifiedKFold(n_folds, shuffle=True, random_state=config.seed).split(np.zeros(n), dataset.y_train))
    except ValueError:  # a class with fewer rows than folds
        splits = list(KFold(n_folds, shuffle=True, random_state=config.seed).split(np.zeros(n)))
    probs = np.zeros((n, dataset.n_classes), dtype=np.float64)
    folds = distributed.map_items(
        _fold_probabilities,
        splits,
        shared={"config": config, "dataset": dataset, "use_cache": use_cache},
        progress=progress,
        message="out-of-fold training",
    )
    for (_, held_rows), fold_probs in zip(splits, folds):
        probs[held_rows] = fold_probs
    return probs


def _fold_probabilities(split, config: RunConfig, dataset: Dataset, use_cache: bool) -> np.ndarray:
    """One fold: train without its held rows, predict them."""
    from influence_core.experiments import predict_proba, train

    fit_rows, held_rows = split
    trained = train(config, silent, use_cache, dataset.subset_train(fit_rows))
    return predict_proba(trained.model, dataset.x_train[held_rows])


def cleanlab_flags(labels: np.ndarray, pred_probs: np.ndarray) -> dict[str, np.ndarray]:
    """cleanlab on (labels, out-of-sample probabilities): ``issues`` (its fixed set), ``score`` (1 − label quality:
    higher = worse) and ``suggested`` (the likeliest class)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    pred_probs = np.clip(pred_probs, 1e-12, None)
    pred_probs = pred_probs / pred_probs.sum(1, keepdims=True)
    with warnings.catch_warnings():  # cleanlab warns about small classes; the page says what it found instead
        warnings.simplefilter("ignore")
        # n_jobs=1: by default cleanlab forks a process pool (one per physical core) from whatever process calls it;
        # forked from the app's server, which already runs torch's threads, a child could sleep forever on a lock
        # it inherited held, and the page with it (issue 34). One core sorts these few thousand rows in milliseconds.
        issues = find_label_issues(labels, pred_probs, n_jobs=1)
        quality = get_label_quality_scores(labels, pred_probs)
    return {"issues": np.asarray(issues, bool), "score": 1.0 - quality, "suggested": pred_probs.argmax(1)}


def isolation_forest_scores(x: np.ndarray, seed: int) -> np.ndarray:
    """scikit-learn IsolationForest (default settings) on flattened inputs; higher = more anomalous."""
    from sklearn.ensemble import IsolationForest

    flat = x.reshape(len(x), -1)
    return -IsolationForest(random_state=seed).fit(flat).score_samples(flat)
