"""Influence signals for data glitches (Myrtakis et al., KDD'25): SI, MI, AAI, GD-class, CNCI, PCID, CFRank.

The influence matrix is TracIn from training to a clean validation set over the saved checkpoints
of plain SGD, on the final linear layer ``head`` (weights and, by default, bias):

    IM[i, j] = -Σ_k η_k ∇L(z_val_j; θ_k)ᵀ ∇L(z_tr_i; θ_k)          (n_train × n_val)

in the house sign convention: **positive = harmful** (a step on z_tr_i raises the loss of
z_val_j), negative = helpful. The paper writes the opposite sign (its "negative influence" is our
positive score); every formula below is the paper's, translated.

For a softmax classifier the per-sample gradient of the cross-entropy w.r.t. the head is in
closed form, ``(softmax − onehot(y)) ⊗ [a, 1]`` with ``a`` the head's input, so

    ∇L(z_val)ᵀ ∇L(z_tr) = (r_valᵀ r_tr) · (a_valᵀ a_tr + 1)

and a whole checkpoint's block is two small matmuls (``r`` = softmax − onehot, C columns;
``a`` = features, h columns) instead of per-sample gradients of C·(h+1) entries. Relabelling
training sample i to class c only changes ``r_tr`` to ``p_i − onehot(c)``, so counterfactual
influence for any candidate label is as cheap. ``include_bias=False`` drops the ``+ 1`` (the bias
gradient), i.e. influence over ``head.weight`` only.

Signals, one value per training row; **``scores`` are oriented so that higher = more suspicious**:

- SI, self-influence: Σ_k η_k ‖∇L(z_i; θ_k)‖².
- MI, marginal influence: Σ_j IM[i, j] (harmful in total = suspicious).
- AAI, average absolute influence: mean_j |IM[i, j]|.
- GD-class: the paper's min_c Σ_{j: y_j = c} I(z_i → z_j), i.e. max_c Σ_{j ∈ c} IM[i, j] here.
- CNCI (Algorithm 1): ncf_i = the class whose validation samples z_i harms most,
  argmax_c Σ_{j ∈ c} max(IM[i, j], 0); then z_i is relabelled to ncf_i and its influence
  recomputed at the final checkpoint θ_T, IM'; CNCI_i = -Σ_{j: y_j = ỹ_i} max(IM'[i, j], 0) ≤ 0
  (the paper's value: near 0 = mislabeled, large negative = clean). ``ncf`` is the repair label.
- PCID (Algorithm 2): u_i[c] = Σ_{j ∈ c} max(-IM[i, j], 0) (help per class), pcf_i =
  argmax_{c ≠ ỹ_i} u_i[c], u'_i the same with z_i relabelled to pcf_i at θ_T, w_i = Σ_c u_i[c];
  PCID_i = 1 / (w_i ‖u_i − u'_i‖_∞), the denominator floored at 1e-12 × its largest value so a
  zero never divides (such rows get the largest finite score).
- CFRank: max(r(CNCI_i), r(PCID_i)) with r the ascending rank (1 = smallest); the detected type is
  "mislabeled" when the CNCI rank is the larger, else "anomaly".

Every class-conditional aggregation runs over all classes 0..C-1 (a one-hot matmul with C
columns), so a class with no validation samples gives a zero column instead of shifting the others.

The pipeline :func:`detect_glitches` (used by the Glitch signals page and ``benchmarks/signals.py``)
loads a dataset, injects glitches (:mod:`influence_core.data.glitches`), carves the clean
validation set from the dataset's **test split** (a stratified, seeded ``val_fraction`` of it;
the rest stays the test set that measures accuracy), trains with SGD (no momentum) and
checkpoints, computes all signals and the baselines (cleanlab ``find_label_issues`` on
out-of-fold probabilities, scikit-learn ``IsolationForest``) and scores them against the truth.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from influence_core import cache, detectors, methods
from influence_core.baselines import cleanlab_flags, isolation_forest_scores, out_of_fold_probabilities
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data.base import Dataset
from influence_core.data.glitches import ANOMALY_KINDS, GLITCH_KINDS, MISLABEL_KINDS, GlitchTruth, inject_glitches
from influence_core.errors import InputError
from influence_core.measurements import PerSampleLoss
from influence_core.methods import Attributor
from influence_core.metrics import auroc, average_precision
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.training import Checkpoint, model_at

# the label-noise detectors shown beside the signals: all but the training loss and cleanlab, which are here already
GLITCH_DETECTORS = tuple(n for n in detectors.detector_names() if n not in ("loss", "cleanlab"))
SIGNALS: dict[str, str] = {
    "SI": "self-influence Σ η‖∇L‖² (mislabeled)",
    "MI": "marginal influence: total harm on the validation set (mislabeled)",
    "AAI": "average absolute influence (anomalies)",
    "GD-class": "largest class-conditional harm (mislabeled)",
    "CNCI": "conditional negative counterfactual influence (mislabeled + repair label)",
    "PCID": "positive counterfactual influence difference (anomalies)",
    "CFRank": "max of the CNCI and PCID ranks (mixtures + type)",
}
"""The influence signals, in table order → what each targets."""

BASELINES: dict[str, str] = {
    "cleanlab": "cleanlab label-quality ranking (out-of-fold probabilities)",
    "cleanlab (own threshold)": "cleanlab find_label_issues: its own flagged set",
    "IsolationForest": "scikit-learn IsolationForest on the inputs",
}
PCID_FLOOR = 1e-12


# ------------------------------------------------------------------------------------------
# last-layer closed form


def _head(model: nn.Module) -> nn.Linear:
    from influence_core.models import head_module

    return head_module(model)[1]


@torch.no_grad()
def head_inputs(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(features entering ``model.head`` (n, h), softmax probabilities (n, C)) for inputs x."""
    head = _head(model)
    captured: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach().flatten(1)))
    probs = []
    try:
        model.eval()
        for start in range(0, len(x), batch_size):
            probs.append(torch.softmax(model(x[start : start + batch_size]).float(), 1))
    finally:
        handle.remove()
    if not probs:
        return torch.zeros(0, head.in_features, device=x.device), torch.zeros(0, head.out_features, device=x.device)
    return torch.cat(captured), torch.cat(probs)


@dataclass
class HeadTrace:
    """Per-checkpoint head inputs and softmax residuals of the training and validation samples."""

    lrs: list[float]
    train_features: list[torch.Tensor]  # (n, h) per checkpoint
    train_probs: list[torch.Tensor]  # (n, C)
    val_features: list[torch.Tensor]  # (m, h)
    val_residuals: list[torch.Tensor]  # (m, C): softmax − onehot(y_val)
    y_train: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    include_bias: bool

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def train_residual(self, k: int, rows: slice, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """softmax − onehot(label) of training rows at checkpoint k (labels default to the observed ones)."""
        probs = self.train_probs[k][rows]
        labels = self.y_train[rows] if labels is None else labels
        return probs - nn.functional.one_hot(labels, self.n_classes).to(probs.dtype)

    def kernel(self, k: int, rows: slice) -> torch.Tensor:
        """a_trᵀ a_val (+ 1 for the bias) at checkpoint k: (rows, m)."""
        out = self.train_features[k][rows] @ self.val_features[k].T
        return out + 1.0 if self.include_bias else out


def trace_head(
    model: nn.Module,
    checkpoints: Sequence[Checkpoint],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    include_bias: bool = True,
    dtype: Optional[torch.dtype] = None,
    progress: ProgressFn = silent,
) -> HeadTrace:
    """Forward passes at every checkpoint: what the closed-form TracIn needs (no gradients taken)."""
    if not checkpoints:
        raise InputError(
            "TracIn needs saved checkpoints: train with n_checkpoints ≥ 1 (your own model: give its earlier weight "
            "files as checkpoints, or pick a method that needs none, such as influence or IP)"
        )
    dtype = dtype or torch.float32  # ranks only: float32 is ample and twice as fast as float64 on CPU
    n_classes = _head(model).out_features
    trace = HeadTrace([], [], [], [], [], y_train, y_val, n_classes, include_bias)
    onehot_val = nn.functional.one_hot(y_val, n_classes).to(dtype)
    for k, ckpt in enumerate(checkpoints):
        at_k = model_at(model, ckpt)
        a_tr, p_tr = head_inputs(at_k, x_train)
        a_val, p_val = head_inputs(at_k, x_val)
        trace.lrs.append(float(ckpt.lr))
        trace.train_features.append(a_tr.to(dtype))
        trace.train_probs.append(p_tr.to(dtype))
        trace.val_features.append(a_val.to(dtype))
        trace.val_residuals.append(p_val.to(dtype) - onehot_val)
        progress((k + 1) / len(checkpoints), f"forward pass at checkpoint {k + 1}/{len(checkpoints)}")
    return trace


def influence_rows(trace: HeadTrace, rows: slice) -> torch.Tensor:
    """TracIn train→validation rows, harmful-positive: -Σ_k η_k (r_tr r_valᵀ) ⊙ (a_tr a_valᵀ + 1)."""
    total = None
    for k, lr in enumerate(trace.lrs):
        block = (trace.train_residual(k, rows) @ trace.val_residuals[k].T) * trace.kernel(k, rows)
        total = -lr * block if total is None else total - lr * block
    return total


def counterfactual_rows(trace: HeadTrace, rows: slice, labels: torch.Tensor, kernel: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Influence of training rows relabelled to ``labels`` (one per row) at the final checkpoint θ_T."""
    k = len(trace.lrs) - 1
    kernel = trace.kernel(k, rows) if kernel is None else kernel
    return -trace.lrs[k] * (trace.train_residual(k, rows, labels) @ trace.val_residuals[k].T) * kernel


def train_val_influence(
    model: nn.Module,
    checkpoints: Sequence[Checkpoint],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    include_bias: bool = True,
) -> np.ndarray:
    """The full (n_train, n_val) TracIn matrix on the head, harmful-positive (for small sets and tests)."""
    trace = trace_head(model, checkpoints, x_train, y_train, x_val, y_val, include_bias)
    return influence_rows(trace, slice(None)).cpu().numpy()


def tracin_self_influence(trace: HeadTrace) -> torch.Tensor:
    """SI_i = Σ_k η_k ‖r_i‖² (‖a_i‖² + 1): TracIn self-influence on the head."""
    total = torch.zeros(trace.n_train, dtype=trace.train_probs[0].dtype, device=trace.y_train.device)
    for k, lr in enumerate(trace.lrs):
        feats = (trace.train_features[k] ** 2).sum(1) + (1.0 if trace.include_bias else 0.0)
        total += lr * (trace.train_residual(k, slice(None)) ** 2).sum(1) * feats
    return total


# ------------------------------------------------------------------------------------------
# signals from influence rows (pure aggregations: usable on any IM, e.g. a hand-made one)


def class_sums(matrix: torch.Tensor, y_val: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Σ_{j: y_val_j = c} matrix[i, j] for every class c = 0..n_classes-1: (rows, n_classes)."""
    onehot = nn.functional.one_hot(y_val, n_classes).to(matrix.dtype)
    return matrix @ onehot


CounterfactualFn = Callable[[torch.Tensor], torch.Tensor]
"""labels (rows,) → the rows' influence matrix with those labels at the final checkpoint."""


def signals_from_rows(
    im: torch.Tensor,
    y_rows: torch.Tensor,
    y_val: torch.Tensor,
    n_classes: int,
    counterfactual: CounterfactualFn,
) -> dict[str, torch.Tensor]:
    """MI, AAI, GD-class, CNCI (+ ncf), the PCID pieces (+ pcf) for a block of training rows.

    ``im`` is harmful-positive (rows, n_val); ``y_rows`` the observed labels of those rows.
    Returns the paper's CNCI values (≤ 0) and ``pcid_denominator`` = w ‖u − u'‖_∞ (PCID is its
    floored inverse, taken once all rows are known: :func:`pcid_from_denominator`).
    """
    harm, help_ = im.clamp(min=0), (-im).clamp(min=0)
    per_class = class_sums(im, y_val, n_classes)
    harm_per_class = class_sums(harm, y_val, n_classes)
    own = nn.functional.one_hot(y_rows, n_classes).bool()

    # CNCI: the class harmed most is the negative counterfactual; relabel there, re-measure harm on ỹ
    ncf = harm_per_class.argmax(1)
    harm_cf = counterfactual(ncf).clamp(min=0)
    cnci = -class_sums(harm_cf, y_val, n_classes).gather(1, y_rows[:, None]).squeeze(1)

    # PCID: the other class helped most is the positive counterfactual; compare help before/after
    u = class_sums(help_, y_val, n_classes)
    pcf = u.masked_fill(own, -1.0).argmax(1)
    u_cf = class_sums((-counterfactual(pcf)).clamp(min=0), y_val, n_classes)
    w = u.sum(1)
    denominator = w * (u - u_cf).abs().amax(1)

    return {
        "MI": im.sum(1),
        "AAI": im.abs().mean(1),
        "GD-class": per_class.amax(1),
        "CNCI": cnci,
        "ncf": ncf,
        "pcid_denominator": denominator,
        "pcf": pcf,
    }


def pcid_from_denominator(denominator: np.ndarray) -> np.ndarray:
    """PCID = 1 / (w ‖u − u'‖_∞), the denominator floored at PCID_FLOOR × its largest value (never ÷ 0)."""
    denominator = np.asarray(denominator, dtype=np.float64)
    top = float(denominator.max()) if len(denominator) else 0.0
    floor = PCID_FLOOR * top if top > 0 else np.finfo(np.float64).tiny
    return 1.0 / np.maximum(denominator, floor)


def ascending_rank(values: np.ndarray) -> np.ndarray:
    """Rank 1 = smallest (ties share their average rank)."""
    from scipy.stats import rankdata

    return rankdata(values, method="average")


def cfrank(cnci: np.ndarray, pcid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CFRank = max(r(CNCI), r(PCID)) and the detected type ("mislabeled" where CNCI's rank wins, else "anomaly")."""
    r_cnci, r_pcid = ascending_rank(cnci), ascending_rank(pcid)
    kind = np.where(r_cnci >= r_pcid, "mislabeled", "anomaly").astype(object)
    return np.maximum(r_cnci, r_pcid), kind


@dataclass
class SignalResult:
    """Every signal per training row. ``scores[name]``: higher = more suspicious (all of SIGNALS).

    ``cnci`` is the paper's value (≤ 0), ``ncf`` its repair label; ``pcf`` PCID's class;
    ``cfrank_type`` "mislabeled" / "anomaly"."""

    scores: dict[str, np.ndarray]
    ncf: np.ndarray
    pcf: np.ndarray
    cfrank_type: np.ndarray
    seconds: float = 0.0


def compute_signals(
    model: nn.Module,
    checkpoints: Sequence[Checkpoint],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    include_bias: bool = True,
    chunk_entries: Optional[int] = None,
    progress: ProgressFn = silent,
) -> SignalResult:
    """All seven signals from the closed-form TracIn matrix, streamed over blocks of training rows."""
    start = time.perf_counter()
    if len(y_val) == 0:
        raise InputError("the validation set is empty: use a larger test split or validation fraction")
    trace = trace_head(model, checkpoints, x_train, y_train, x_val, y_val, include_bias, progress=scaled(progress, 0.0, 0.4))
    n, m = trace.n_train, len(y_val)
    chunk_entries = chunk_entries or (1 << 26 if x_train.device.type == "cuda" else 1 << 22)
    step = max(1, chunk_entries // max(m, 1))
    parts: dict[str, list[torch.Tensor]] = {}
    last = len(trace.lrs) - 1
    for lo in range(0, n, step):
        rows = slice(lo, min(n, lo + step))
        im = influence_rows(trace, rows)
        kernel_t = trace.kernel(last, rows)  # reused by both counterfactuals of this block
        block = signals_from_rows(
            im,
            y_train[rows],
            y_val,
            trace.n_classes,
            lambda labels, rows=rows, kernel_t=kernel_t: counterfactual_rows(trace, rows, labels, kernel_t),
        )
        for key, value in block.items():
            parts.setdefault(key, []).append(value)
        progress(0.4 + 0.6 * rows.stop / n, f"signals for {rows.stop}/{n} training samples")
    out = {key: torch.cat(values).cpu().numpy() for key, values in parts.items()}
    si = tracin_self_influence(trace).cpu().numpy()
    if x_train.device.type == "cuda":
        torch.cuda.synchronize(x_train.device)
    pcid = pcid_from_denominator(out["pcid_denominator"])
    rank, kind = cfrank(out["CNCI"], pcid)
    scores = {"SI": si, "MI": out["MI"], "AAI": out["AAI"], "GD-class": out["GD-class"], "CNCI": out["CNCI"], "PCID": pcid, "CFRank": rank}
    scores = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
    return SignalResult(scores, out["ncf"].astype(np.int64), out["pcf"].astype(np.int64), kind, time.perf_counter() - start)


def compute_signals_by_method(
    method: Attributor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    n_classes: int,
    progress: ProgressFn = silent,
) -> SignalResult:
    """All seven signals from any registered method's train→validation matrix (its counterfactuals: the same fitted
    method at the final model on the relabelled rows, as the paper's θ_T). The closed form of :func:`compute_signals` is
    TracIn's fast path on the head."""
    start = time.perf_counter()
    if len(y_val) == 0:
        raise InputError("the validation set is empty: use a larger test split or validation fraction")
    x_train, y_train = method.context.x_train, method.context.y_train
    validation = PerSampleLoss(x_val, y_val)
    matrix = torch.from_numpy(method.scores(validation, progress=scaled(progress, 0.0, 0.3))).T  # (n_train, n_val)
    si = method.self_scores(scaled(progress, 0.3, 0.4))
    y_val_cpu, n, final = y_val.cpu(), len(y_train), method.at_final_model()
    step = max(1, (1 << 22) // max(len(y_val), 1))
    parts: dict[str, list[torch.Tensor]] = {}
    for lo in range(0, n, step):
        rows = slice(lo, min(n, lo + step))

        def counterfactual(labels: torch.Tensor, rows: slice = rows) -> torch.Tensor:
            relabelled = final.on_training_rows(x_train[rows], labels.to(y_train.device))
            return torch.from_numpy(relabelled.scores(validation)).T

        block = signals_from_rows(matrix[rows], y_train[rows].cpu(), y_val_cpu, n_classes, counterfactual)
        for key, value in block.items():
            parts.setdefault(key, []).append(value)
        progress(0.4 + 0.6 * rows.stop / n, f"signals for {rows.stop}/{n} training samples")
    out = {key: torch.cat(values).numpy() for key, values in parts.items()}
    pcid = pcid_from_denominator(out["pcid_denominator"])
    rank, kind = cfrank(out["CNCI"], pcid)
    scores = {"SI": si, "MI": out["MI"], "AAI": out["AAI"], "GD-class": out["GD-class"], "CNCI": out["CNCI"], "PCID": pcid, "CFRank": rank}
    scores = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
    return SignalResult(scores, out["ncf"].astype(np.int64), out["pcf"].astype(np.int64), kind, time.perf_counter() - start)


def uses_head_closed_form(run: RunConfig) -> bool:
    """TracIn over the head is computed in closed form (two small matmuls per checkpoint); every other method goes
    through the method registry."""
    return methods.get(run.method).head_closed_form and run.curvature.params == "last_layer"


# ------------------------------------------------------------------------------------------
# baselines


def repair_accuracy(suggested: np.ndarray, true_labels: np.ndarray, rows: np.ndarray) -> Optional[float]:
    """Share of ``rows`` (a mask) whose suggested label is the true class (None when there are none)."""
    rows = np.asarray(rows, bool)
    return float(np.mean(suggested[rows] == true_labels[rows])) if rows.any() else None


def flagged_at_ratio(scores: np.ndarray, ratio: float) -> np.ndarray:
    """Mask of the top ``ratio`` share by score (the paper's threshold at the true glitch ratio)."""
    k = int(round(ratio * len(scores)))
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def score_methods(
    signals: SignalResult,
    truth: GlitchTruth,
    y_true: np.ndarray,
    baselines: dict[str, Any],
    detection: Optional["detectors.Detection"] = None,
) -> list[dict[str, Any]]:
    """One row per signal, baseline and label-noise detector: F1 at the true glitch ratio, AUROC, AP, repair and type
    accuracy.

    Every method is scored against all glitches of the run (for single-type runs, that type).
    Repair accuracy (detected) = share of the flagged mislabeled rows whose suggested label is the
    true class; (all) = the same over every mislabeled row, as if all were detected (paper §6.1.2).
    """
    target = truth.glitched
    if not target.any():  # nothing injected: nothing to score against
        return []
    ratio = float(target.mean())
    mislabeled = truth.mislabeled
    rows: list[dict[str, Any]] = []

    def row(name: str, family: str, scores: Optional[np.ndarray], flagged: Optional[np.ndarray] = None) -> dict[str, Any]:
        flagged = flagged_at_ratio(scores, ratio) if flagged is None else flagged
        tp = int(np.sum(flagged & target))
        precision, recall = tp / max(int(flagged.sum()), 1), tp / max(int(target.sum()), 1)
        return {
            "method": name,
            "family": family,
            "F1": (2 * precision * recall / (precision + recall)) if tp else 0.0,
            "AUROC": auroc(scores, target) if scores is not None else None,
            "AP": average_precision(scores, target) if scores is not None else None,
            "flagged": int(flagged.sum()),
            "repair accuracy (detected)": None,
            "repair accuracy (all)": None,
            "type accuracy": None,
        }

    for name in SIGNALS:
        entry = row(name, "influence signal", signals.scores[name])
        flagged = flagged_at_ratio(signals.scores[name], ratio)
        if name in ("CNCI", "CFRank") and mislabeled.any():
            entry["repair accuracy (detected)"] = repair_accuracy(signals.ncf, y_true, flagged & mislabeled)
            entry["repair accuracy (all)"] = repair_accuracy(signals.ncf, y_true, mislabeled)
        if name == "CFRank":
            detected = flagged & target
            if detected.any():
                entry["type accuracy"] = float(np.mean(signals.cfrank_type[detected] == truth.types[detected]))
        rows.append(entry)
    if "cleanlab" in baselines:
        cl = baselines["cleanlab"]
        for name, flagged in (("cleanlab", None), ("cleanlab (own threshold)", cl["issues"])):
            entry = row(name, "baseline", cl["score"], flagged)
            chosen = flagged_at_ratio(cl["score"], ratio) if flagged is None else flagged
            if mislabeled.any():
                entry["repair accuracy (detected)"] = repair_accuracy(cl["suggested"], y_true, chosen & mislabeled)
                entry["repair accuracy (all)"] = repair_accuracy(cl["suggested"], y_true, mislabeled)
            rows.append(entry)
    if "isolation_forest" in baselines:
        rows.append(row("IsolationForest", "baseline", baselines["isolation_forest"]))
    for name, scores in detection.scores.items() if detection is not None else ():
        entry = row(detectors.label(name), "label-noise detector", scores)
        suggestion = detection.suggested.get(name)
        if suggestion is not None and mislabeled.any():
            entry["repair accuracy (detected)"] = repair_accuracy(suggestion, y_true, flagged_at_ratio(scores, ratio) & mislabeled)
            entry["repair accuracy (all)"] = repair_accuracy(suggestion, y_true, mislabeled)
        rows.append(entry)
    return rows


# ------------------------------------------------------------------------------------------
# the pipeline behind the page and the benchmark


@dataclass(frozen=True)
class GlitchConfig:
    """Which glitch to inject and how the signals are computed (the run's data/model/training live in RunConfig)."""

    kind: str = "singular_class"
    ratio: float = 0.1
    source_class: Optional[int] = None  # singular_class: the corrupted class (None = drawn with the seed)
    val_fraction: float = 0.5  # share of the dataset's test split used as the clean validation set
    include_bias: bool = True  # TracIn over head.weight and head.bias (False: head.weight only)
    cleanlab_folds: int = 3  # K-fold out-of-sample probabilities for cleanlab (0 = skip cleanlab)
    isolation_forest: bool = True

    def validate(self) -> None:
        if self.kind not in GLITCH_KINDS:
            raise InputError(f"glitch kind must be one of {', '.join(GLITCH_KINDS)}; got {self.kind!r}")
        if self.kind != "none" and not 0.0 < self.ratio <= 0.5:
            raise InputError(f"glitch ratio must be in (0, 0.5], got {self.ratio}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        if self.cleanlab_folds == 1 or self.cleanlab_folds < 0:
            raise InputError(f"cleanlab folds must be 0 (skip) or ≥ 2, got {self.cleanlab_folds}")


def default_signal(kind: str) -> str:
    """The signal the paper proposes for a glitch kind."""
    if kind in MISLABEL_KINDS:
        return "CNCI"
    if kind in ANOMALY_KINDS:
        return "PCID"
    return "CFRank"


def signal_run_config(
    dataset: str = "digits",
    model: str = "mlp",
    n_train: int = 0,
    n_test: int = 0,
    seed: int = 0,
    epochs: Optional[int] = None,
    path: Optional[str] = None,
    label_column: Optional[str] = None,
    id_column: Optional[str] = None,
    image_size: Optional[int] = None,
    method: str = "tracin",
    glitch: Optional[GlitchConfig] = None,
    own_model: Optional[ModelConfig] = None,
    inputs: Optional[dict] = None,
) -> RunConfig:
    """A run config that trains with plain SGD (no momentum) and 10 checkpoints, as TracIn assumes; influence is taken
    over the last layer (the paper's setting) by ``method`` (TracIn by default: its closed form).

    Learning rates and epochs are set per model so each reaches good accuracy on digits / MNIST.
    ``dataset`` "csv" / "image_folder" reads the user's data at ``path`` (CSV: ``label_column``,
    optional ``id_column``; images resized to ``image_size``, the loader's default when None). ``glitch``:
    what to inject, kept in the config's hashed ``study`` (the paper's singular-class flip by default).

    ``own_model`` (:func:`model_files.own_model_config`) ranks the user's data under a model the user trained on it,
    as it is: nothing is trained here, so nothing can be injected and cleanlab (which retrains per fold) is not run.
    ``inputs`` (:func:`data.preprocessing.input_settings`) feeds it the inputs as it was trained on them.
    TracIn needs the model's earlier weight files as checkpoints (``own_model.checkpoint_files``, learning rate 1 each).
    """
    glitch = glitch or GlitchConfig()
    if own_model is not None:
        if dataset not in ("csv", "image_folder"):
            raise InputError(f"your model goes with your data: choose your CSV file or image folder for it, not {dataset!r}")
        if glitch.kind != "none" or glitch.cleanlab_folds >= 2:
            raise InputError(
                "your model was trained on your data as it is, and it is not retrained here: injected glitches and "
                "cleanlab's out-of-fold probabilities both need a model to train; choose the glitch 'none' and skip "
                "cleanlab, or choose an architecture to train here"
            )
    if model == "cnn":
        train_cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=epochs or 15, batch_size=64, weight_decay=1e-4, n_checkpoints=10)
        model_cfg = ModelConfig(kind="cnn")
    elif model == "logreg":
        train_cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=epochs or 30, batch_size=64, weight_decay=1e-4, n_checkpoints=10)
        model_cfg = ModelConfig(kind="logreg")
    else:
        train_cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=epochs or 30, batch_size=64, weight_decay=1e-4, n_checkpoints=10)
        model_cfg = ModelConfig(kind="mlp", hidden=128, depth=1)
    return RunConfig(
        data=DataConfig(
            name=dataset,
            n_train=n_train,
            n_test=n_test,
            path=path,
            label_column=label_column,
            id_column=id_column,
            image_size=image_size,
            **(inputs or {}),
        ),  # None: the loader's default size
        model=own_model or model_cfg,
        train=train_cfg,
        curvature=CurvatureConfig(kind="auto", params="last_layer"),
        method=method,
        seed=seed,
    ).with_study(glitch)


def split_validation(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, np.ndarray, np.ndarray, np.ndarray]:
    """Carve a stratified, seeded ``fraction`` of the test split as the clean validation set.

    Returns ``(dataset whose test split is the rest, x_val, y_val, ids_val)``.
    """
    from sklearn.model_selection import train_test_split

    n = len(ds.y_test)
    if n < 4:
        raise InputError(f"the test split has {n} rows; the validation set is carved from it: use a larger test split")
    idx = np.arange(n)
    try:
        val, rest = train_test_split(idx, train_size=fraction, random_state=seed, stratify=ds.y_test)
    except ValueError:
        val, rest = train_test_split(idx, train_size=fraction, random_state=seed)
    val, rest = np.sort(val), np.sort(rest)
    if len(np.unique(ds.y_test[val])) < 2:
        raise InputError("the validation set holds one class only: use a larger test split or validation fraction")
    kept = replace(
        ds,
        x_test=ds.x_test[rest],
        y_test=ds.y_test[rest],
        ids_test=ds.ids_test[rest],
        groups_test=None if ds.groups_test is None else ds.groups_test[rest],
    )
    return kept, ds.x_test[val], ds.y_test[val], ds.ids_test[val]


@dataclass
class GlitchReport:
    """Everything the page shows: the glitched data, signals, baselines, the comparison table."""

    run: RunConfig
    glitch: GlitchConfig
    dataset: Dataset  # glitched training rows; test = the test split minus the validation rows
    x_val: np.ndarray
    y_val: np.ndarray
    truth: GlitchTruth
    signals: SignalResult
    baselines: dict[str, Any]
    table: list[dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    detection: Optional["detectors.Detection"] = None  # the label-noise detectors side by side
    detection_context: Optional["detectors.DetectionContext"] = field(default=None, repr=False)

    @property
    def ratio(self) -> float:
        return float(self.truth.glitched.mean())

    @property
    def has_ground_truth(self) -> bool:
        """Whether glitches were injected, so that the signals can be scored (data as it is has none)."""
        return bool(self.truth.glitched.any())


def _prepare(run: RunConfig, glitch: GlitchConfig) -> tuple[Dataset, np.ndarray, np.ndarray, np.ndarray, GlitchTruth]:
    from influence_core.experiments import load_data

    glitch.validate()
    if run.data.noise != "none" and run.data.noise_fraction > 0:
        raise InputError("set the dataset's label noise to 'none': the glitch settings inject the corruption")
    method = methods.get(run.method)
    if method.assumes_sgd and run.train.optimizer != "sgd":
        raise InputError(
            f"{method.short_label or method.label} signals assume plain SGD (no momentum); set the optimizer to 'sgd' (got {run.train.optimizer!r})"
        )
    ds = load_data(run)
    ds, x_val, y_val, ids_val = split_validation(ds, glitch.val_fraction, run.seed)
    ds, truth = inject_glitches(ds, glitch.kind, glitch.ratio, run.seed, glitch.source_class)
    return ds, x_val, y_val, ids_val, truth


def detect_glitches(
    run: RunConfig,
    glitch: Optional[GlitchConfig] = None,
    progress: ProgressFn = silent,
    use_cache: bool = True,
) -> GlitchReport:
    """Inject glitches, train (SGD + checkpoints), compute every signal and baseline, score them. Cached.

    The glitch settings live in the run's hashed ``study`` (``run.with_study(GlitchConfig(...))``, as
    :func:`signal_run_config` does); ``glitch``, when given, is put there first."""
    from influence_core.experiments import _training_payload, dataset_fingerprint, fit_method, train

    if glitch is not None:
        run = run.with_study(glitch)
    glitch = run.study_settings(GlitchConfig)
    progress(0.0, "loading data and injecting glitches")
    ds, x_val, y_val, ids_val, truth = _prepare(run, glitch)
    trained = train(run, scaled(progress, 0.02, 0.45), use_cache, ds)
    device = next(trained.model.parameters()).device
    x_tr_t, y_tr_t = torch.from_numpy(ds.x_train).to(device), torch.from_numpy(ds.y_train).to(device)
    x_val_t, y_val_t = torch.from_numpy(x_val).to(device), torch.from_numpy(y_val).to(device)

    payload = {
        "training": _training_payload(run, ds),
        "study": list(run.study),
        "method": run.method,
        "curvature": asdict(run.curvature),
        "validation": dataset_fingerprint(replace(ds, x_test=x_val, y_test=y_val, ids_test=ids_val, groups_test=None)),
    }

    def compute_signals_entry() -> cache.CacheEntry:
        if uses_head_closed_form(run):
            result = compute_signals(
                trained.model,
                trained.checkpoints,
                x_tr_t,
                y_tr_t,
                x_val_t,
                y_val_t,
                glitch.include_bias,
                progress=scaled(progress, 0.45, 0.6),
            )
        else:
            method = fit_method(run, trained, scaled(progress, 0.45, 0.5))
            result = compute_signals_by_method(method, x_val_t, y_val_t, ds.n_classes, scaled(progress, 0.5, 0.6))
        arrays = {f"score:{k}": v for k, v in result.scores.items()}
        arrays.update(ncf=result.ncf, pcf=result.pcf, cfrank_type=(result.cfrank_type == "mislabeled"))
        return cache.CacheEntry(arrays, {"seconds": result.seconds}, {})

    entry, signals_cached = cache.cached("glitch_signals", payload, compute_signals_entry, use_cache)
    a = entry.arrays
    signals = SignalResult(
        scores={k: a[f"score:{k}"] for k in SIGNALS},
        ncf=a["ncf"],
        pcf=a["pcf"],
        cfrank_type=np.where(a["cfrank_type"], "mislabeled", "anomaly").astype(object),
        seconds=float(entry.meta["seconds"]),
    )

    baselines: dict[str, Any] = {}
    start = time.perf_counter()
    if glitch.cleanlab_folds >= 2:
        progress(0.6, f"cleanlab: {glitch.cleanlab_folds}-fold out-of-sample probabilities")
        probs = out_of_fold_probabilities(run, ds, glitch.cleanlab_folds, scaled(progress, 0.6, 0.95), use_cache)
        baselines["cleanlab"] = cleanlab_flags(ds.y_train, probs)
    if glitch.isolation_forest:
        progress(0.95, "IsolationForest")
        baselines["isolation_forest"] = isolation_forest_scores(ds.x_train, run.seed)
    # the label-noise detectors (issue 32) beside the signals; the out-of-fold ones share cleanlab's folds (the same
    # model, training, seed and fold count: the same probabilities), and wait when cleanlab is switched off
    context = detectors.DetectionContext(trained, max(glitch.cleanlab_folds, 2), use_cache, allow_out_of_fold=glitch.cleanlab_folds >= 2)
    if "cleanlab" in baselines:
        context.memo("oof_probs", lambda: probs)
    progress(0.97, "label-noise detectors")
    detection = detectors.detect(trained, GLITCH_DETECTORS, context=context)
    baseline_seconds = time.perf_counter() - start

    table = score_methods(signals, truth, ds.y_train_clean, baselines, detection)
    metrics = dict(trained.metrics)
    metrics.update(
        signal_seconds=signals.seconds,
        signals_from_cache=signals_cached,
        baseline_seconds=baseline_seconds,
        n_train=len(ds.y_train),
        n_val=len(y_val),
        n_test=len(ds.y_test),
        n_mislabeled=int(truth.mislabeled.sum()),
        n_anomalous=int(truth.anomalous.sum()),
    )
    progress(1.0, "done")
    return GlitchReport(run, glitch, ds, x_val, y_val, truth, signals, baselines, table, metrics, detection, context)


# ------------------------------------------------------------------------------------------
# what the page shows and exports, and the repair action


def flagged_frame(report: GlitchReport, signal: str) -> "Any":
    """A pandas DataFrame of every training row ranked by ``signal`` (most suspicious first).

    Columns: rank, row, id, label, suggested label (CNCI's ncf), detected type (CFRank), every
    signal's score (higher = more suspicious; CNCI is the paper's ≤ 0 value), the ground truth.
    """
    import pandas as pd

    ranked_by_detector = report.detection is not None and signal in report.detection.scores
    if signal not in report.signals.scores and signal not in ("cleanlab", "IsolationForest") and not ranked_by_detector:
        raise InputError(f"unknown signal {signal!r}; choose one of {', '.join(SIGNALS)}")
    ds, names = report.dataset, [str(c) for c in report.dataset.class_names]
    frame = pd.DataFrame(
        {
            "row": np.arange(len(ds.y_train)),
            "id": [str(i) for i in ds.ids_train],
            "label": [names[c] for c in ds.y_train],
            "suggested label": [names[c] for c in report.signals.ncf],
            "detected type": report.signals.cfrank_type,
            **{name: report.signals.scores[name] for name in SIGNALS},
        }
    )
    if "cleanlab" in report.baselines:
        frame["cleanlab"] = report.baselines["cleanlab"]["score"]
        frame["cleanlab suggested"] = [names[c] for c in report.baselines["cleanlab"]["suggested"]]
        frame["cleanlab flags"] = report.baselines["cleanlab"]["issues"]
    if "isolation_forest" in report.baselines:
        frame["IsolationForest"] = report.baselines["isolation_forest"]
    if report.detection is not None:  # each detector's score, and which of them rank the row among their top k
        for name, scores in report.detection.scores.items():
            frame[name] = scores
        k = max(1, int(np.sum(report.detection.suggested.get(report.detection.default, ds.y_train) != ds.y_train)))
        flags = report.detection.flagged_by(k)
        frame["flagged by"] = [", ".join(n for n in flags.columns if row[n]) for _, row in flags.iterrows()]
    if report.has_ground_truth:
        frame["true type"] = report.truth.types
        frame["true label"] = [names[c] if t != "anomaly" else "—" for c, t in zip(ds.y_train_clean, report.truth.types)]
    order = np.argsort(-frame[signal].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def thumbnail(x: np.ndarray, size: int = 84) -> np.ndarray:
    """An image row (C, H, W) as a uint8 (size, size[, 3]) picture for display (nearest-neighbour upscale)."""
    img = np.asarray(x, dtype=np.float32)
    if img.ndim != 3:
        raise InputError("only image datasets have thumbnails")
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / max(hi - lo, 1e-12)
    reps = max(1, size // img.shape[-1])
    img = np.kron(img, np.ones((1, reps, reps), dtype=np.float32))
    img = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
    return (255 * img).astype(np.uint8)


@dataclass
class RepairOutcome:
    test_accuracy_before: float
    test_accuracy_after: float
    n_relabelled: int
    n_relabelled_correctly: int  # new label = the true class
    n_clean_made_wrong: int  # relabels of rows whose label was right: a repair that put an error in
    n_removed: int
    n_removed_glitches: int
    n_train_after: int


def apply_repairs(report: GlitchReport, relabel: dict[int, int], remove: Sequence[int]) -> tuple[Dataset, GlitchTruth]:
    """The glitched training set with rows relabelled (row → class) and rows removed; truth updated alike."""
    ds = report.dataset
    n = len(ds.y_train)
    bad = [r for r in list(relabel) + list(remove) if not 0 <= int(r) < n]
    if bad:
        raise InputError(f"rows {bad[:5]} are out of range: the training set has rows 0..{n - 1}")
    if any(not 0 <= int(c) < ds.n_classes for c in relabel.values()):
        raise InputError(f"repair labels must be classes 0..{ds.n_classes - 1}")
    y = ds.y_train.copy()
    for r, c in relabel.items():
        y[int(r)] = int(c)
    repaired = ds.with_train_labels(y, y != ds.y_train_clean)
    keep = np.ones(n, dtype=bool)
    keep[np.asarray(list(remove), dtype=np.int64)] = False
    mislabeled = (y != ds.y_train_clean) & ~report.truth.anomalous
    truth = GlitchTruth(report.truth.kind, report.truth.ratio, mislabeled[keep], report.truth.anomalous[keep], report.truth.details)
    return repaired.subset_train(keep), truth


def retrain_with_repairs(
    report: GlitchReport,
    relabel: dict[int, int],
    remove: Sequence[int] = (),
    progress: ProgressFn = silent,
    use_cache: bool = True,
) -> RepairOutcome:
    """Apply the repairs, retrain the same config, report test accuracy before and after."""
    from influence_core.experiments import train

    repaired, _ = apply_repairs(report, relabel, remove)
    trained = train(report.run, progress, use_cache, repaired)
    truth_labels = report.dataset.y_train_clean
    removed = np.asarray(list(remove), dtype=np.int64)
    return RepairOutcome(
        test_accuracy_before=float(report.metrics["test"]["accuracy"]),
        test_accuracy_after=float(trained.metrics["test"]["accuracy"]),
        n_relabelled=len(relabel),
        n_relabelled_correctly=int(
            sum(int(c) == int(truth_labels[int(r)]) and not report.truth.anomalous[int(r)] for r, c in relabel.items())
        ),
        n_clean_made_wrong=int(sum(not report.truth.glitched[int(r)] and int(c) != int(truth_labels[int(r)]) for r, c in relabel.items())),
        n_removed=len(removed),
        n_removed_glitches=int(report.truth.glitched[removed].sum()) if len(removed) else 0,
        n_train_after=len(repaired.y_train),
    )


def default_repair_count(report: GlitchReport, truth: bool) -> int:
    """Rows to repair before the user says: with a ground truth, the injected share; without one, as many rows as
    cleanlab flags, else as many as the model predicts another label for (at least one)."""
    n = len(report.dataset.y_train)
    if truth:
        count = report.ratio * n
    elif "cleanlab" in report.baselines:
        count = report.baselines["cleanlab"]["issues"].sum()
    else:
        count = (1 - report.metrics["train"]["accuracy"]) * n
    return max(1, int(round(count)))


def doubted_relabels(report: GlitchReport, relabel: dict[int, int]) -> tuple[pd.DataFrame, int]:
    """The relabels that go to another class than the out-of-fold probabilities cleanlab reads favour: a table (id,
    label now, repair to, the model favours) and how many of them cleanlab's own filter flags. Empty without cleanlab."""
    if not relabel or "cleanlab" not in report.baselines:
        return pd.DataFrame(), 0
    names, ds = report.dataset.class_names, report.dataset
    favoured = report.baselines["cleanlab"]["suggested"]
    doubted = [r for r, c in relabel.items() if int(favoured[r]) != int(c)]
    flagged = int(np.asarray(report.baselines["cleanlab"]["issues"])[doubted].sum()) if doubted else 0
    table = pd.DataFrame(
        {
            "id": [str(ds.ids_train[r]) for r in doubted],
            "label now": [names[ds.y_train[r]] for r in doubted],
            "repair to": [names[relabel[r]] for r in doubted],
            "the model favours": [names[int(favoured[r])] for r in doubted],
        }
    )
    return table, flagged


def suggested_repairs(report: GlitchReport, signal: str, top: int) -> tuple[dict[int, int], list[int]]:
    """Repairs for the ``top`` rows by ``signal``: relabel the ones CFRank types as mislabeled to their
    ncf (when it differs from the label), remove the ones typed as anomalies. Ranked by a label-noise detector, the
    top rows are relabelled to the label it suggests (its model's that never saw the row; CNCI's where it has none)."""
    if report.detection is not None and signal in report.detection.scores:
        suggestion = report.detection.suggested.get(signal, report.signals.ncf)
        order = np.argsort(-report.detection.scores[signal], kind="stable")[: max(0, int(top))]
        return {int(r): int(suggestion[r]) for r in order if suggestion[r] != report.dataset.y_train[r]}, []
    scores = report.signals.scores[signal] if signal in report.signals.scores else None
    if scores is None:
        raise InputError(f"unknown signal {signal!r}; choose one of {', '.join(SIGNALS)}")
    order = np.argsort(-scores, kind="stable")[: max(0, int(top))]
    relabel, remove = {}, []
    for r in order:
        r = int(r)
        if report.signals.cfrank_type[r] == "anomaly" and signal in ("PCID", "CFRank"):
            remove.append(r)
        elif report.signals.ncf[r] != report.dataset.y_train[r]:
            relabel[r] = int(report.signals.ncf[r])
    return relabel, remove
