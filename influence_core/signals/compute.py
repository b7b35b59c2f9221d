"""The signals from the influence matrix: SI, MI, AAI, GD-class, CNCI, PCID and CFRank, one value per training row."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from influence_core import methods
from influence_core.config import RunConfig
from influence_core.errors import InputError
from influence_core.measurements import PerSampleLoss
from influence_core.methods import Attributor
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.signals.head import counterfactual_rows, influence_rows, trace_head, tracin_self_influence
from influence_core.training import Checkpoint

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
PCID_FLOOR = 1e-12


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
