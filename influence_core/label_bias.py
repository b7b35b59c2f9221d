"""Labeling bias on real images: the pipeline of "Detecting labeling bias using influence functions".

1. Train the model on clean labels and on labels with a class-dependent flip (e.g. MNIST 4/9 with
   20% of the 9s relabelled 4); report how much the flip hurts (held-out loss, accuracy).
2. Fit the curvature (laplace-torch diagonal GGN over all weights for the small CNN; full GGN of
   the last layer for ResNet18; the other backends of ``curvature.py`` on request).
3. Score every training sample with influence functions. Every score is a vector over the
   training set, positive = harmful (``influence_core.SIGN_CONVENTION``):

   ``paper``            mean influence on the misclassified held-out samples (the paper's group score)
                        = -ḡ_misᵀ H⁻¹ ∇L(z_i), ḡ_mis the mean loss gradient of the misclassified ones
   ``heldout``          influence on the mean loss of the whole held-out set
   ``affected_class``   influence on the mean held-out loss of the class with the highest held-out
                        error rate (the subgroup the bias hurts; chosen from the data, not the truth)
   ``predicted_class``  influence on the mean held-out loss of the class the model predicts for z_i
                        (a sample labelled 4 that looks like a 9 raises the loss of held-out 9s)
   ``other_classes``    influence on the mean held-out loss of the held-out samples whose label differs
                        from z_i's training label (the harm a label does outside its own class; a
                        flipped 9 labelled 4 raises the loss of the held-out 9s, a clean 4 barely does)
   ``self``             self-influence ∇L(z_i)ᵀ H⁻¹ ∇L(z_i) (≥ 0)
   ``train_loss``       the training loss of z_i (not an influence: a reference)

   The page and the benchmark lead with ``heldout`` (``DEFAULT_SCORE``): on digits it ties with
   the paper's score, on MNIST49 it ranks the flipped samples better (the model fits few held-out
   samples wrongly, so the paper's average rests on a few dozen gradients).

   Group means are linear in the test gradients, so each group score costs one query vector, and
   all scores come out of one streaming pass over the per-sample training gradients.
4. A default threshold without ground truth (``choose_threshold``: a mixture fit, never below a floor of as many
   samples as the model predicts another label for, at least ``MIN_FLAGGED_SHARE``), which says how it was chosen.
   Detection against the ground-truth flip mask: threshold sweeps, ROC/PR, AUROC, TPR at a fixed
   FPR, the top harmful/helpful training samples of any held-out point, and cleanlab's
   ``find_label_issues`` on out-of-fold probabilities as the baseline.
5. What-if: relabel or remove the flagged samples and retrain with the same seed.

The page's figures live in ``influence_core.figures.label_bias``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from influence_core import cache, detectors, experiments
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data.base import Dataset, likeliest_other_labels
from influence_core.errors import InputError
from influence_core.measurements import GroupMeanLoss, PerSampleLoss, Stacked
from influence_core.methods import Attributor
from influence_core.metrics import detection_at_threshold, detection_summary, tpr_at_fpr
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.sources import OWN_DATA, Source, own_data_training
from influence_core.text import plural
from influence_core.timing import estimate_text

# bump when the meaning of the cached label-bias scores changes
LABEL_BIAS_VERSION = "1"

SCORE_DESCRIPTIONS: dict[str, str] = {
    "paper": "mean influence on misclassified held-out samples (paper)",
    "heldout": "influence on the whole held-out loss",
    "affected_class": "influence on the held-out loss of the most-hurt class",
    "predicted_class": "influence on the held-out loss of the sample's predicted class",
    "other_classes": "influence on the held-out loss of the classes other than the sample's label",
    "self": "self-influence ∇Lᵀ H⁻¹ ∇L",
    "train_loss": "training loss (not influence; reference)",
}
# the label-noise detectors (issue 32) beside the influence scores, under their registered names; the training loss is
# here already as ``train_loss``
DETECTOR_SCORES = tuple(n for n in detectors.detector_names() if n != "loss")
SCORE_DESCRIPTIONS.update({n: detectors.get(n).label + ": " + detectors.get(n).description for n in DETECTOR_SCORES})
REFERENCE_SCORE = "paper"
DEFAULT_SCORE = "heldout"

# a full (held-out × train) matrix is kept only below this many entries; otherwise the rows of the
# misclassified held-out samples are kept and other rows are computed on demand
MAX_TEST_ROWS_ENTRIES = 5_000_000

PRESETS = ("digits", "mnist", "chexpert", "csv", "image_folder")


# ------------------------------------------------------------------------------------- configs


def default_curvature(model: str) -> str:
    """The curvature a model starts with in this view: the exact Hessian for logistic regression (small and convex),
    the last layer's full GGN for ResNet18 and a model the user brings (their all-weights diagonal is large and weak),
    the paper's diagonal for the zoo's MLP and CNN."""
    return {"logreg": "exact", "resnet18": "last_layer", "file": "last_layer"}.get(model, "diag")


def preset_config(
    dataset: str = "digits",
    noise_fraction: Optional[float] = None,
    curvature: Optional[str] = None,
    n_train: int = 0,
    n_test: int = 0,
    seed: int = 0,
    path: Optional[str] = None,
    pretrained_weights: Optional[str] = None,
    model: Optional[str] = None,
    epochs: Optional[int] = None,
    damping: float = 0.01,
    image_size: Optional[int] = None,
    label_column: Optional[str] = None,
    id_column: Optional[str] = None,
    flip: tuple[int, int] = (1, 0),
    method: str = "influence",
    own_model: Optional[ModelConfig] = None,
    inputs: Optional[dict] = None,
) -> RunConfig:
    """The paper's set-ups as configs: ``digits`` / ``mnist`` (4 vs 9, 20% of the 9s flipped to 4,
    3-conv CNN, diagonal GGN over all weights) and ``chexpert`` (Pleural Effusion, 20% of the
    positives flipped to negative, ResNet18, full last-layer GGN). 0 for n_train/n_test = all rows;
    ``image_size`` resizes (CheXpert default 64; digits 8 and MNIST 28 unless set).

    ``csv`` / ``image_folder`` run the same pipeline on the user's data at ``path``, with the CLI's
    default training (logistic regression with the exact Hessian for a CSV, the CNN with the
    diagonal GGN for images). ``flip`` = (source, target) class indices of an injected flip;
    ``noise_fraction`` defaults to 0 here (the labels as they are: no ground truth), 0.2 for the
    paper's presets.

    ``own_model`` (:func:`model_files.own_model_config`) scores a model the user trained on that data, as it is:
    nothing is trained, so no flip can be injected (a flip needs a model trained on it), and the curvature
    defaults to the last layer's, which every classifier with a linear head allows. ``inputs``
    (:func:`data.preprocessing.input_settings`) feeds it the inputs as it was trained on them.
    """
    if dataset not in PRESETS:
        raise InputError(f"label-bias preset must be one of {PRESETS}, got {dataset!r}")
    if noise_fraction is None:
        noise_fraction = 0.0 if dataset in OWN_DATA else 0.2
    source = Source(dataset, path, label_column, id_column, image_size, inputs, own_model)  # image_size None: the loader's
    source.check_model_file(
        "flipping labels to measure detection needs a model trained on the flipped labels" if noise_fraction > 0 else "",
        "set the flipped share to 0",
    )
    if source.own_data:
        noise = (
            dict(noise="flip_class", noise_fraction=noise_fraction, noise_source=int(flip[0]), noise_target=int(flip[1]))
            if noise_fraction > 0
            else {}
        )
        data = source.data(n_train=n_train, n_test=n_test, **noise)
        if own_model is not None:  # not trained here: the training config only fills the hashed config
            model_cfg, train = own_model, TrainConfig()
        else:
            model_cfg = ModelConfig(kind=model or ("logreg" if dataset == "csv" else "cnn"))
            train = own_data_training(model_cfg.kind, data)
            if epochs:
                train = replace(train, epochs=epochs)
        curv = CurvatureConfig(kind=curvature or default_curvature(model_cfg.kind), damping=damping)
        return RunConfig(data=data, model=model_cfg, train=train, curvature=curv, method=method, seed=seed)
    if dataset == "chexpert":
        data = DataConfig(
            name="chexpert",
            path=path,
            n_train=n_train,
            n_test=n_test,
            image_size=image_size or 64,
            noise="flip_class",
            noise_fraction=noise_fraction,
            noise_source=1,
            noise_target=0,
        )
        model_cfg = ModelConfig(kind=model or "resnet18", pretrained_weights=pretrained_weights)
        train = TrainConfig(epochs=epochs or 6, lr=1e-3, batch_size=64, optimizer="adam", weight_decay=1e-4, n_checkpoints=1)
        curv = CurvatureConfig(kind=curvature or default_curvature(model_cfg.kind), damping=damping)
    else:
        # classes (4, 9) map 4 → 0 and 9 → 1: noise_source=1 flips 9s, noise_target=0 makes them 4s
        data = DataConfig(
            name=dataset,
            classes=(4, 9),
            n_train=n_train,
            n_test=n_test,
            path=path,
            image_size=image_size,
            noise="flip_class",
            noise_fraction=noise_fraction,
            noise_source=1,
            noise_target=0,
        )
        model_cfg = ModelConfig(kind=model or "cnn")
        if dataset == "digits":  # 252 training images of 8×8: full-batch-ish Adam, many cheap epochs
            train = TrainConfig(epochs=epochs or 150, lr=1e-2, batch_size=64, optimizer="adam", weight_decay=1e-3, n_checkpoints=1)
        else:  # MNIST49, ~11.8k images of 28×28: a few epochs of Adam in batches of 256
            # a subset gets as many optimiser steps as the full set (8 epochs of 11,791), up to 40 epochs
            default_epochs = min(40, max(8, round(8 * 11_791 / n_train))) if n_train else 8
            train = TrainConfig(
                epochs=epochs or default_epochs, lr=3e-3, batch_size=256, optimizer="adam", weight_decay=1e-4, n_checkpoints=1
            )
        curv = CurvatureConfig(kind=curvature or default_curvature(model_cfg.kind), damping=damping)
    return RunConfig(data=data, model=model_cfg, train=train, curvature=curv, method=method, seed=seed)


def is_landing_run(config: RunConfig) -> bool:
    """Whether ``config`` is the view's landing run (the digits preset with every choice at its default, any seed):
    about 2 s of training and scoring here, so the view starts it without timing it first. Timing it (the training's
    steps, the curvature's fit and two gradient passes) cost 0.7 s of that first result, as much as the scoring."""
    return experiments.content_key(config.replace(seed=0)) == experiments.content_key(preset_config("digits"))


def clean_config(config: RunConfig) -> RunConfig:
    """The same run without the injected label noise (the baseline model of step 1)."""
    return config.replace(data__noise="none", data__noise_fraction=0.0)


# ------------------------------------------------------------------------------------- scoring


def affected_class(test_probs: np.ndarray, y_test: np.ndarray, n_classes: int) -> int:
    """The held-out class the model gets wrong most often (ties: the higher mean loss); needs no ground truth."""
    pred = test_probs.argmax(1)
    loss = -np.log(np.clip(test_probs[np.arange(len(y_test)), y_test], 1e-12, None))
    keys = []
    for c in range(n_classes):
        rows = y_test == c
        keys.append((float(np.mean(pred[rows] != c)) if rows.any() else -1.0, float(loss[rows].mean()) if rows.any() else -1.0))
    return int(max(range(n_classes), key=lambda c: keys[c]))


def other_classes_score(per_class: np.ndarray, test_counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Influence of each training sample on the mean held-out loss over the classes other than its label.

    ``per_class[c, i]`` is the influence of sample i on the mean held-out loss of class c; the mean
    over several classes is their count-weighted average (influence is linear in the query).
    """
    weights = np.broadcast_to(test_counts.astype(np.float64)[:, None], per_class.shape).copy()
    weights[labels, np.arange(per_class.shape[1])] = 0.0
    total = weights.sum(0)
    return np.where(total > 0, (weights * per_class).sum(0) / np.maximum(total, 1e-12), 0.0)


@dataclass
class LabelBiasResult:
    """Everything the page and the benchmark show for one label-bias run.

    ``scores[name]`` (n_train,): positive = harmful (``self`` and ``train_loss``: higher = more
    suspicious). ``test_rows`` maps a held-out index to its (n_train,) influence row.
    """

    config: RunConfig
    dataset: Dataset
    model: nn.Module
    scores: dict[str, np.ndarray]
    test_probs: np.ndarray
    train_probs: np.ndarray
    misclassified: np.ndarray  # held-out indices, most confidently wrong first
    test_rows: dict[int, np.ndarray]
    affected_class: int
    metrics: dict[str, Any] = field(default_factory=dict)  # noisy / clean held-out loss+accuracy, timings
    detection: Optional[detectors.Detection] = None  # the detectors side by side (their scores are in ``scores`` too)
    detection_context: Optional[detectors.DetectionContext] = field(default=None, repr=False)
    _method: Optional[Attributor] = None  # the fitted method, kept for rows asked for later
    _checkpoints: list = field(default_factory=list, repr=False)
    _thresholds: dict[str, ThresholdChoice] = field(default_factory=dict, repr=False)

    def threshold_choice(self, score: str) -> ThresholdChoice:
        """``choose_threshold`` of ``scores[score]`` with the model's own disagreement count as part of the floor,
        fitted once per result: the page asks on every rerun, for the slider, its caption and the detection table
        (a mixture fit over 12k MNIST scores takes ~0.2 s)."""
        if score not in self._thresholds:
            self._thresholds[score] = choose_threshold(_score(self, score), n_doubted=int(self.model_disagrees.sum()))
        return self._thresholds[score]

    def default_threshold(self, score: str) -> float:
        """The value of :meth:`threshold_choice`."""
        return self.threshold_choice(score).value

    @property
    def flipped(self) -> np.ndarray:
        return self.dataset.flipped

    @property
    def has_ground_truth(self) -> bool:
        """Whether labels were flipped on purpose, so that detection can be scored (the user's
        own labels taken as they are have no ground truth)."""
        return bool(self.dataset.flipped.any())

    @property
    def needs_clean_model(self) -> bool:
        """Labels were flipped and the model trained on the clean ones is not in yet (:func:`add_clean_model`)."""
        return self.has_ground_truth and "clean" not in self.metrics

    @property
    def model_disagrees(self) -> np.ndarray:
        """(n_train,) bool: the trained model predicts another class than the training label."""
        return self.train_probs.argmax(1) != self.dataset.y_train

    def test_order(self) -> np.ndarray:
        """Held-out indices for a picker: misclassified first (most confidently wrong first), then the rest."""
        rest = np.setdiff1d(np.arange(len(self.dataset.y_test)), self.misclassified)
        return np.r_[self.misclassified, rest].astype(int)

    def influence_on_test(self, test_index: int, progress: ProgressFn = silent) -> np.ndarray:
        """Influence of every training sample on held-out sample ``test_index`` (positive = harmful)."""
        if not 0 <= int(test_index) < len(self.dataset.y_test):
            raise InputError(f"held-out index {test_index} is out of range 0..{len(self.dataset.y_test) - 1}")
        test_index = int(test_index)
        if test_index not in self.test_rows:
            _, _, xt, yt = experiments.tensors(self.dataset, next(self.model.parameters()).device)
            if self._method is None:
                trained = experiments.Trained(self.config, self.dataset, self.model, self._checkpoints, {})
                self._method = experiments.fit_method(self.config, trained, scaled(progress, 0.0, 0.5))
            one = PerSampleLoss(xt[test_index : test_index + 1], yt[test_index : test_index + 1])
            self.test_rows[test_index] = self._method.scores(one, progress=scaled(progress, 0.5, 1.0))[0]
        return self.test_rows[test_index]


def _detection_metrics(scores: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, dict[str, Optional[float]]]:
    return {name: detection_summary(s, mask) for name, s in scores.items()} if mask.any() and not mask.all() else {}


def run_label_bias(
    config: RunConfig,
    progress: ProgressFn = silent,
    use_cache: bool = True,
    dataset: Optional[Dataset] = None,
    train_clean: bool = True,
    out_of_fold: bool = False,
) -> LabelBiasResult:
    """Steps 1–3 of the pipeline: train noisy (and clean) models, fit curvature, score all training samples, and run
    the label-noise detectors beside the influence scores.

    ``dataset`` replaces the config's data (an edited copy: relabelled / removed rows); its
    content keys the cache. Cached on disk by config (and dataset) hash. ``out_of_fold``: whether the detectors that
    retrain on folds run now (the default ranking needs none of them; the page offers them with their estimate).
    """
    start_all = time.perf_counter()
    trained = experiments.train(config, scaled(progress, 0.0, 0.35), use_cache, dataset)
    ds, model = trained.dataset, trained.model
    if len(ds.y_test) == 0:
        raise InputError("the label-bias pipeline needs a held-out set: set a test fraction above 0 or n_test > 0")
    metrics: dict[str, Any] = {
        "noisy": {"test": trained.metrics["test"], "train": trained.metrics["train"]},
        "train_seconds": trained.metrics["train_seconds"],
        "device": trained.metrics["device"],
        "n_params": trained.metrics["n_params"],
        "from_cache": trained.metrics["from_cache"],
        **({"own_model": trained.metrics["own_model"]} if "own_model" in trained.metrics else {}),
    }
    if train_clean and ds.flipped.any():
        metrics.update(_clean_model_metrics(config, ds, dataset, scaled(progress, 0.35, 0.6), use_cache))
    progress(0.6, "scoring training samples")
    device = next(model.parameters()).device
    test_probs = experiments.predict_proba(model, ds.x_test)
    train_probs = experiments.predict_proba(model, ds.x_train)
    pred_test = test_probs.argmax(1)
    wrong = np.flatnonzero(pred_test != ds.y_test)
    confidence_wrong = test_probs[wrong, pred_test[wrong]]
    misclassified = wrong[np.argsort(-confidence_wrong, kind="stable")]
    target = affected_class(test_probs, ds.y_test, ds.n_classes)
    keep_all_rows = len(ds.y_test) * len(ds.y_train) <= MAX_TEST_ROWS_ENTRIES
    row_ids = np.arange(len(ds.y_test)) if keep_all_rows else misclassified
    holder: dict[str, Attributor] = {}

    def compute() -> cache.CacheEntry:
        t0 = time.perf_counter()
        _, _, xt, yt = experiments.tensors(ds, device)
        method = experiments.fit_method(config, trained, scaled(progress, 0.6, 0.75))
        holder["method"] = method
        t_curv = time.perf_counter() - t0
        # group means are linear in the query gradients: one query row per group, then one row per kept held-out point
        groups = GroupMeanLoss(
            xt, yt, [torch.as_tensor(wrong, device=device), torch.arange(len(yt), device=device)] + [yt == c for c in range(ds.n_classes)]
        )
        queries = Stacked([groups, PerSampleLoss(xt[row_ids], yt[row_ids])])
        influence, self_scores = method.scores_and_self(queries, scaled(progress, 0.75, 1.0))
        arrays = {
            "paper": influence[0],
            "heldout": influence[1],
            "per_class": influence[2 : 2 + ds.n_classes],
            "self": self_scores,
            "rows": influence[2 + ds.n_classes :],
            "row_ids": row_ids,
        }
        meta = {"curvature_seconds": t_curv, "scoring_seconds": time.perf_counter() - t0 - t_curv, "method_note": method.note}
        return cache.CacheEntry(arrays, meta, {})

    payload = {
        "config": experiments.config_payload(config),
        "version": LABEL_BIAS_VERSION,
        "chunk": "stream",
        "rows": "all" if keep_all_rows else "misclassified",
    }
    if dataset is not None:
        payload["dataset"] = experiments.dataset_fingerprint(dataset)
    with experiments.threads_for_run(trained):
        entry, was_cached = cache.cached("label_bias", payload, compute, use_cache)
    a = entry.arrays
    per_class = a["per_class"]
    predicted = train_probs.argmax(1)
    scores = {
        "paper": a["paper"],
        "heldout": a["heldout"],
        "affected_class": per_class[target],
        "predicted_class": per_class[predicted, np.arange(len(predicted))],
        "other_classes": other_classes_score(per_class, np.bincount(ds.y_test, minlength=ds.n_classes), ds.y_train),
        "self": a["self"],
        "train_loss": -np.log(np.clip(train_probs[np.arange(len(ds.y_train)), ds.y_train], 1e-12, None)),
    }
    context = detectors.DetectionContext(trained, use_cache=use_cache)
    estimate = out_of_fold_estimate(context)
    context.allow_out_of_fold = out_of_fold
    progress(
        0.95, "label-noise detectors" + ("" if not context.allow_out_of_fold else f" (out-of-fold trainings, {estimate_text(estimate)})")
    )
    with experiments.threads_for_run(trained):
        detection = detectors.detect(trained, DETECTOR_SCORES, progress=scaled(progress, 0.95, 1.0), context=context)
    scores.update({name: detection.scores[name] for name in DETECTOR_SCORES if name in detection.scores})
    metrics["out_of_fold_estimate"] = estimate
    metrics.update(entry.meta)
    metrics["scores_from_cache"] = was_cached
    metrics["n_misclassified"] = int(len(misclassified))
    metrics["detection"] = _detection_metrics(scores, ds.flipped)
    metrics["total_seconds"] = time.perf_counter() - start_all
    progress(1.0, "label-bias scores ready")
    return LabelBiasResult(
        config=config,
        dataset=ds,
        model=model,
        scores=scores,
        test_probs=test_probs,
        train_probs=train_probs,
        misclassified=misclassified,
        test_rows={int(i): r for i, r in zip(a["row_ids"], a["rows"])},
        affected_class=target,
        metrics=metrics,
        detection=detection,
        detection_context=context,
        _method=holder.get("method"),
        _checkpoints=trained.checkpoints,
    )


def kept_influence(result: LabelBiasResult) -> tuple[np.ndarray, np.ndarray]:
    """(held-out ids, their influence rows (k, n_train)) kept by the run: every held-out row's on small sets, the
    misclassified ones' on large sets (what a flagged row's explanation reads, without computing anything)."""
    ids = np.array(sorted(result.test_rows), dtype=int)
    matrix = np.stack([result.test_rows[i] for i in ids]) if len(ids) else np.zeros((0, len(result.dataset.y_train)))
    return ids, matrix


def influence_on_loss_scale(result: LabelBiasResult) -> bool:
    """Whether the run's influence rows predict a loss change (the method declares it): a flagged row's removal is then
    predicted, and checked by retraining, on the loss scale."""
    from influence_core.methods import get as get_method

    return get_method(result.config.method).predicts_loss_change


def _clean_model_metrics(config: RunConfig, ds: Dataset, dataset: Optional[Dataset], progress: ProgressFn, use_cache: bool) -> dict:
    """The same run trained on the clean labels (``dataset``: an edited copy whose clean labels are taken), its metrics."""
    if dataset is None:
        clean = experiments.train(clean_config(config), progress, use_cache)
    else:
        clean_ds = ds.with_train_labels(ds.y_train_clean, np.zeros(len(ds.y_train), bool))
        clean = experiments.train(config, progress, use_cache, clean_ds)
    return {
        "clean": {"test": clean.metrics["test"], "train": clean.metrics["train"]},
        "clean_train_seconds": clean.metrics["train_seconds"],
    }


def add_clean_model(result: LabelBiasResult, progress: ProgressFn = silent, use_cache: bool = True) -> LabelBiasResult:
    """The comparison model of a result computed with ``train_clean=False`` on its config's own data: the same run on
    the clean labels, its held-out metrics put in the result. A view shows the scores first and trains this after
    (one training of the model: 1.3 s of Label bias's first view on digits, more with other jobs running)."""
    if result.needs_clean_model:
        result.metrics.update(_clean_model_metrics(result.config, result.dataset, None, progress, use_cache))
    return result


def add_out_of_fold_detectors(result: LabelBiasResult, progress: ProgressFn = silent) -> LabelBiasResult:
    """Run the detectors that retrain on folds (the page's click after their estimate), and put their scores and the
    combined ranking that now includes them in the result."""
    context = result.detection_context
    context.allow_out_of_fold = True
    detection = detectors.detect(context.trained, DETECTOR_SCORES, progress=progress, context=context)
    result.scores.update({name: detection.scores[name] for name in DETECTOR_SCORES if name in detection.scores})
    result.detection = detection
    result._thresholds.clear()  # the combined ranking changed: its threshold is fitted again
    result.metrics["detection"] = _detection_metrics(result.scores, result.flipped)
    return result


def out_of_fold_estimate(context: detectors.DetectionContext) -> Optional[float]:
    """Seconds the out-of-fold detectors' trainings would take on this machine (None: a model not retrained here)."""
    if not context.trained_here:
        return None
    return detectors.estimate_seconds(context, [n for n in DETECTOR_SCORES if detectors.get(n).out_of_fold])


# ------------------------------------------------------------------------------------ detection


def robust_threshold(scores: np.ndarray, n_sigmas: float = 5.0) -> float:
    """median + ``n_sigmas`` robust standard deviations (1.4826·MAD): flags outliers of one population."""
    med = float(np.median(scores))
    mad = 1.4826 * float(np.median(np.abs(scores - med)))
    return med + n_sigmas * (mad if mad > 0 else float(np.std(scores)) or 1.0)


# the flagged component may hold at most this share of the training set: beyond it the labels say too little to
# call a minority of them wrong, and a fit that "finds" such a component has split the clean bulk
MAX_FLAGGED_SHARE = 0.25
# the default flags at least this share of the samples (and at least as many as the model predicts another label
# for): a fit that finds no separate component, or puts it above the top score, must not hide the ranking
MIN_FLAGGED_SHARE = 0.02
# positive scores below this fraction of the largest |score| are fitted points (float noise around zero)
NEGLIGIBLE_SCORE = 1e-6


def _mixture_crossing(values: np.ndarray, n_total: int, seed: int, max_components: int) -> Optional[float]:
    """Gaussian mixtures (1..``max_components``) over ``values``, best BIC first: the point where the highest-mean
    component's posterior first reaches 1/2 going up from the next component's mean. Fits whose top component holds
    more than ``MAX_FLAGGED_SHARE`` of ``n_total`` are passed over; None when one population wins or none qualifies."""
    from sklearn.mixture import GaussianMixture

    from influence_core.resources import compute_threads

    centre, scale = float(np.median(values)), float(np.std(values)) or 1.0
    z = ((values - centre) / scale)[:, None]
    # one OpenMP thread: the k-means inits of a few hundred 1-D values are microseconds of work, and waking a thread
    # team for each cost 14 ms (0.1 s a score, 1.3 s of Label bias's first view for six scores; 0.017 s on one)
    with compute_threads(1):
        fits = sorted(
            (GaussianMixture(k, random_state=seed, n_init=2).fit(z) for k in range(1, max_components + 1)), key=lambda g: g.bic(z)
        )
    for fit in fits:
        if fit.n_components == 1:
            return None
        order = np.argsort(fit.means_.ravel())
        top, below = order[-1], order[-2]
        if fit.weights_[top] * len(values) > MAX_FLAGGED_SHARE * n_total:
            continue
        grid = np.linspace(fit.means_[below, 0], fit.means_[top, 0], 512)[:, None]
        crossing = np.flatnonzero(fit.predict_proba(grid)[:, top] >= 0.5)
        if len(crossing):
            return centre + scale * float(grid[crossing[0], 0])
    return None


@dataclass(frozen=True)
class ThresholdChoice:
    """A default threshold and how :func:`choose_threshold` arrived at it: the numbers the page states beside it."""

    value: float  # flag the samples scoring at or above
    n_flagged: int
    n_samples: int
    fit: str  # "mixture": a separate suspicious component; "robust": none, median + robust SDs; "few": too few to fit
    fit_value: float  # the threshold of the fit alone
    fit_flagged: int  # how many samples the fit alone flags
    floor: int  # the fewest samples the default flags
    n_doubted: Optional[int]  # training samples whose label the model does not predict (None: not known)
    n_candidates: int  # the samples that can be flagged: the harmful ones of a signed score, else all
    signed: bool  # fitted over the log of the harmful scores (influence), else over the scores as they are

    @property
    def lifted_to_floor(self) -> bool:
        """Whether the floor, not the fit, set the threshold."""
        return self.value < self.fit_value

    def explanation(self) -> str:
        """The rule and its numbers in a few sentences (what the page says under the threshold slider)."""
        share = self.n_flagged / max(self.n_samples, 1)
        head = f"Default threshold {self.value:.3g} flags {self.n_flagged} of {self.n_samples:,} samples ({share:.1%})."
        if self.fit == "constant":
            return head + " Every sample has the same score: nothing separates them."
        where = f"the log of the {self.n_candidates:,} harmful scores" if self.signed else "the scores"
        would = f"{self.fit_value:.3g}, which would flag {self.fit_flagged}"
        if self.fit == "mixture":
            fit = f"Fit: a Gaussian mixture over {where} puts the start of its suspicious component at {would}."
        elif self.fit == "robust":
            robust = "median + 3 robust SD of those logs" if self.signed else "median + 5 robust SD"
            fit = f"Fit: a Gaussian mixture over {where} finds no separate suspicious component; {robust} = {would}."
        else:
            fit = f"Fit: too few scores for a mixture; median + 5 robust SD = {would}."
        minimum = int(np.ceil(MIN_FLAGGED_SHARE * self.n_samples))
        raw = max(self.n_doubted or 0, minimum)
        minimum_text = f"{MIN_FLAGGED_SHARE:.0%} of {self.n_samples:,} = {minimum}"
        reason = (
            minimum_text
            if self.n_doubted is None
            else f"max({plural(self.n_doubted, 'sample')} the model predicts another label for, {minimum_text})"
        )
        floor = f"Floor: at least {self.floor} {'harmful samples' if self.signed else 'samples'}: {reason}"
        if self.floor < raw:
            cap = (
                f"{MAX_FLAGGED_SHARE:.0%} of the samples" if self.floor < self.n_candidates else f"the {self.n_candidates} harmful samples"
            )
            floor += f" = {raw}, capped at {cap}"
        floor += "."
        if self.floor == 0:
            return f"{head} {fit} No sample scores as harmful, so the floor flags none."
        verdict = (
            f"The fit flags fewer, so the threshold is the {_ordinal(self.floor)} highest score."
            if self.lifted_to_floor
            else "The fit flags at least that many, so it sets the threshold."
        )
        return f"{head} {fit} {floor} {verdict}"


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def choose_threshold(scores: np.ndarray, n_doubted: Optional[int] = None, seed: int = 0, max_components: int = 3) -> ThresholdChoice:
    """A threshold that needs no ground truth: where the scores' suspicious component begins (a mixture fit), but
    never fewer flags than the floor. The one place the Label bias default is defined.

    1. The fit. Signed influence scores (harmful > 0, helpful < 0; a spike at 0 from the points the model fits
       exactly) are fitted on the log of their harmful side only, since harm spans orders of magnitude and a helpful
       point is never suspicious; with one population there, median + 3 robust standard deviations of the logs.
       Non-negative scores (self-influence, training loss) are fitted as they are, else ``robust_threshold``. Either
       way the flagged component must be a minority (at most ``MAX_FLAGGED_SHARE`` of the samples).
    2. The floor: k = max(``n_doubted``, ⌈``MIN_FLAGGED_SHARE``·n⌉), at most ``MAX_FLAGGED_SHARE``·n and at most the
       candidates (the harmful samples of a signed score, else all). ``n_doubted`` is the number of training samples
       whose label the trained model does not predict, the model's own estimate of how many labels are wrong.
    3. The threshold is the lower of the fit's and the k-th highest candidate score: the default flags what the fit
       flags, and never fewer than k. A fit can find no separate component, or put its crossing above the top score
       (a few high scores, the rest spread over orders of magnitude): alone, it flagged 0 or 1 of 455 breast-cancer
       rows while the ranking held 6-10 of the 13 flipped ones in its top 13; the floor is what the ranking shows.

    Measured by ``benchmarks/default_threshold.py`` (benchmarks/README.md): digits / MNIST runs with 20 % of one
    class flipped and clean ones, and breast-cancer rows with 15 planted flips.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n == 0 or np.ptp(s) == 0:
        value = robust_threshold(s) if n else 0.0
        return ThresholdChoice(value, int(np.sum(s >= value)), n, "constant", value, int(np.sum(s >= value)), 0, n_doubted, n, False)
    signed = bool(s.min() < 0)
    candidates = s[s > NEGLIGIBLE_SCORE * np.abs(s).max()] if signed else s
    fit, fit_value = "few", None
    if signed:
        if len(candidates) >= 10:
            logs = np.log(candidates)
            crossing = _mixture_crossing(logs, n, seed, max_components)
            fit = "robust" if crossing is None else "mixture"
            fit_value = float(np.exp(robust_threshold(logs, n_sigmas=3.0) if crossing is None else crossing))
        else:
            fit_value = robust_threshold(s)
    elif n >= 10:
        crossing = _mixture_crossing(s, n, seed, max_components)
        fit = "robust" if crossing is None else "mixture"
        fit_value = robust_threshold(s) if crossing is None else float(crossing)
    else:
        fit_value = robust_threshold(s)
    floor = max(int(n_doubted or 0), int(np.ceil(MIN_FLAGGED_SHARE * n)))
    floor = min(floor, max(1, int(MAX_FLAGGED_SHARE * n)), len(candidates))
    value = float(fit_value)
    if floor > 0:
        value = min(value, float(np.sort(candidates)[-floor]))
    return ThresholdChoice(
        value=value,
        n_flagged=int(np.sum(s >= value)),
        n_samples=n,
        fit=fit,
        fit_value=float(fit_value),
        fit_flagged=int(np.sum(s >= fit_value)),
        floor=floor,
        n_doubted=None if n_doubted is None else int(n_doubted),
        n_candidates=len(candidates),
        signed=signed,
    )


def default_threshold(scores: np.ndarray, seed: int = 0, max_components: int = 3, n_doubted: Optional[int] = None) -> float:
    """The value of :func:`choose_threshold` (the rule is documented there)."""
    return choose_threshold(scores, n_doubted, seed, max_components).value


def detection_table(result: LabelBiasResult, fpr: float = 0.005) -> pd.DataFrame:
    """One row per score: AUROC, AP, TPR at ``fpr`` and at 1%, and the detection at its default threshold."""
    mask = result.flipped
    rows = []
    for name, s in result.scores.items():
        d = result.metrics.get("detection", {}).get(name) or detection_summary(s, mask)
        at = detection_at_threshold(s, mask, result.default_threshold(name))
        rows.append(
            {
                "score": name,
                "what": SCORE_DESCRIPTIONS.get(name, name),
                "AUROC": d["auroc"],
                "AP": d["average_precision"],
                f"TPR @ {fpr:.1%} FPR": tpr_at_fpr(s, mask, fpr),
                "TPR @ 1% FPR": d["tpr_at_1%_fpr"],
                "flipped detected (default thr.)": at["detected_share"],
                "clean flagged (default thr.)": at["clean_flagged_share"],
            }
        )
    return pd.DataFrame(rows)


def flagged_table(result: LabelBiasResult, score: str, threshold: float, cleanlab_issues: Optional[np.ndarray] = None) -> pd.DataFrame:
    """The training samples with ``score >= threshold``, most suspicious first, with ids for export
    (and whether cleanlab flags them too, given its issue mask over the training set)."""
    s = _score(result, score)
    ds = result.dataset
    idx = np.flatnonzero(s >= threshold)
    idx = idx[np.argsort(-s[idx], kind="stable")]
    names = np.asarray(ds.class_names)
    suggested = suggested_labels(result)
    table = pd.DataFrame(
        {
            "row": idx,
            "id": ds.ids_train[idx],
            "label used": names[ds.y_train[idx]],
            "suggested label": names[suggested[idx]],
            f"score ({score})": s[idx],
            "p(label used)": result.train_probs[idx, ds.y_train[idx]],
        }
    )
    if cleanlab_issues is not None:
        table["cleanlab flags"] = np.asarray(cleanlab_issues, bool)[idx]
    if result.detection is not None and len(idx):  # the explanation travels with the export
        flags = result.detection.flagged_by(len(idx))
        table["flagged by detectors"] = [", ".join(n for n in flags.columns if flags.at[r, n]) for r in idx]
    if result.has_ground_truth:
        table["truly flipped"] = ds.flipped[idx]
    return table


def _score(result: LabelBiasResult, score: str) -> np.ndarray:
    if score not in result.scores:
        raise InputError(f"unknown score {score!r}; choose one of {list(result.scores)}")
    return result.scores[score]


def top_influencers(
    result: LabelBiasResult, test_index: int, k: int = 10, progress: ProgressFn = silent
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(most harmful, most helpful) ``k`` training samples for one held-out sample; flipped ones marked "F"."""
    row = result.influence_on_test(test_index, progress)
    order = np.argsort(-row, kind="stable")
    names = np.asarray(result.dataset.class_names)

    def table(idx: np.ndarray) -> pd.DataFrame:
        ds = result.dataset
        return pd.DataFrame(
            {
                "row": idx,
                "id": ds.ids_train[idx],
                "label used": names[ds.y_train[idx]],
                "flipped": np.where(ds.flipped[idx], "F", ""),
                "influence": row[idx],
            }
        )

    return table(order[:k]), table(order[::-1][:k])


def image_of(x: np.ndarray) -> np.ndarray:
    """A (H, W) or (H, W, 3) float image in [0, 1] from one (C, H, W) sample, for st.image."""
    img = np.asarray(x, dtype=np.float32)
    img = img[0] if img.shape[0] == 1 else np.transpose(img[:3], (1, 2, 0))
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _feature_names(ds: Dataset) -> list[str]:
    return ds.feature_names or [f"x{j}" for j in range(ds.x_train.shape[1])]


def with_features(result: LabelBiasResult, table: pd.DataFrame) -> pd.DataFrame:
    """A ``top_influencers`` table of tabular rows with their feature values (in training standard
    deviations, as the model sees them): what a gallery shows for data without images."""
    ds = result.dataset
    features = pd.DataFrame(ds.x_train[table["row"].to_numpy(int)], columns=_feature_names(ds), index=table.index)
    return pd.concat([table.drop(columns=["row"]), features], axis=1)


def held_out_features(result: LabelBiasResult, test_index: int) -> pd.DataFrame:
    """One held-out tabular row's feature values (training standard deviations), indexed by its id."""
    ds = result.dataset
    return pd.DataFrame(ds.x_test[[test_index]], columns=_feature_names(ds), index=[ds.ids_test[test_index]])


def gallery(result: LabelBiasResult, table: pd.DataFrame) -> tuple[list[np.ndarray], list[str]]:
    """Images and captions ("label used", "F" if flipped, influence) of a ``top_influencers`` table."""
    images = [image_of(result.dataset.x_train[int(r)]) for r in table["row"]]
    from influence_core.figures.common import number_format

    spec = number_format(table["influence"], signed=True)  # one format for the gallery: "+1.25e+03" sat beside "+852"
    captions = [f"{lab}{' F' if f else ''} · {v:{spec}}" for lab, f, v in zip(table["label used"], table["flipped"], table["influence"])]
    return images, captions


# ------------------------------------------------------------------------------------- baseline


def cleanlab_baseline(
    config: RunConfig, dataset: Dataset, n_folds: int = 5, progress: ProgressFn = silent, use_cache: bool = True
) -> dict[str, Any]:
    """cleanlab's ``find_label_issues`` (a fixed set) and ``get_label_quality_scores`` (a ranking) on
    out-of-fold probabilities, against the ground-truth flip mask."""
    from influence_core.baselines import cleanlab_flags, out_of_fold_probabilities

    start = time.perf_counter()
    probs = out_of_fold_probabilities(config, dataset, n_folds, progress, use_cache)
    found = cleanlab_flags(dataset.y_train, probs)
    issues, suspicion = found["issues"], found["score"]
    mask = dataset.flipped
    flagged = detection_at_threshold(issues.astype(float), mask, 0.5)
    return {
        "issues": issues,
        "suspicion": suspicion,
        "pred_probs": probs,
        "detected_share": flagged["detected_share"],
        "clean_flagged_share": flagged["clean_flagged_share"],
        "n_flagged": flagged["flagged"],
        "summary": detection_summary(suspicion, mask) if mask.any() else {},
        "seconds": time.perf_counter() - start,
    }


# -------------------------------------------------------------------------------------- what-if


def suggested_labels(result: LabelBiasResult) -> np.ndarray:
    """The label a flagged sample would be changed to: the other class (binary), else the most probable other class."""
    return likeliest_other_labels(result.train_probs, result.dataset.y_train)


def edited_dataset(result: LabelBiasResult, flagged: np.ndarray, action: str) -> Dataset:
    """A copy of the training set with the flagged rows relabelled (``relabel``) or dropped (``remove``).

    The ground-truth mask follows the edit: a relabelled row is flipped iff its new label differs
    from the clean one.
    """
    return result.dataset.edited(flagged, action, result.train_probs)


def retrain_after_fix(
    result: LabelBiasResult, flagged: np.ndarray, action: str, progress: ProgressFn = silent, use_cache: bool = True
) -> dict[str, Any]:
    """Relabel or remove the flagged samples, retrain with the same config and seed, compare held-out accuracy/loss."""
    edited = edited_dataset(result, flagged, action)
    if len(np.unique(edited.y_train)) < 2:
        raise InputError("after this edit the training labels contain one class only: flag fewer samples")
    retrained = experiments.train(result.config, progress, use_cache, edited)
    n_flagged = int(np.sum(flagged)) if np.asarray(flagged).dtype == bool else len(flagged)
    truly = int(result.flipped[flagged].sum())
    return {
        "action": action,
        "n_flagged": n_flagged,
        "flagged_truly_flipped": truly,
        "before": result.metrics["noisy"]["test"],
        "after": retrained.metrics["test"],
        "clean": result.metrics.get("clean", {}).get("test"),
        "flipped_left": int(edited.flipped.sum()),
        "dataset": edited,
    }
