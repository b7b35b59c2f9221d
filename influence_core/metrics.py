"""Detection metrics of a suspicion score against a ground-truth mask (e.g. flipped labels)."""

from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn import config_context
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve


def _has_both(mask: np.ndarray) -> bool:
    return 0 < int(np.sum(mask)) < len(mask)


def auroc(scores: np.ndarray, mask: np.ndarray) -> Optional[float]:
    """Area under the ROC curve of ``scores`` ranking the True rows of ``mask`` first (None if undefined)."""
    return float(roc_auc_score(mask, scores)) if _has_both(mask) else None


def average_precision(scores: np.ndarray, mask: np.ndarray) -> Optional[float]:
    return float(average_precision_score(mask, scores)) if _has_both(mask) else None


def tpr_at_fpr(scores: np.ndarray, mask: np.ndarray, fpr: float) -> Optional[float]:
    """Share of positives caught when at most ``fpr`` of negatives are flagged."""
    return _tprs_at(scores, mask, [fpr])[0]


def _tprs_at(scores: np.ndarray, mask: np.ndarray, fprs_wanted: list[float]) -> list[Optional[float]]:
    if not _has_both(mask):
        return [None] * len(fprs_wanted)
    fprs, tprs, _ = roc_curve(mask, scores)
    return [float(tprs[np.searchsorted(fprs, fpr, side="right") - 1]) for fpr in fprs_wanted]


def f1_at_ratio(scores: np.ndarray, mask: np.ndarray, ratio: Optional[float] = None) -> float:
    """F1 when the top ``ratio`` share (default: the true glitch ratio) is flagged (KDD'25 protocol)."""
    ratio = float(np.mean(mask)) if ratio is None else ratio
    k = int(round(ratio * len(scores)))
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[np.argsort(-scores, kind="stable")[:k]] = True
    return float(f1_score(mask, flagged, zero_division=0.0))


def threshold_sweep(scores: np.ndarray, mask: np.ndarray, n: int = 200) -> dict[str, np.ndarray]:
    """For thresholds spanning the scores: share of positives and of negatives at or above each."""
    thresholds = np.unique(np.quantile(scores, np.linspace(0, 1, n)))
    pos, neg = scores[mask], scores[~mask]
    share = lambda s: (s[None, :] >= thresholds[:, None]).mean(1) if len(s) else np.zeros(len(thresholds))  # noqa: E731
    return {"threshold": thresholds, "positives_above": share(pos), "negatives_above": share(neg)}


def detection_at_threshold(scores: np.ndarray, mask: np.ndarray, threshold: float) -> dict[str, float]:
    """Confusion counts and rates of flagging ``scores >= threshold`` against ``mask``."""
    flagged = scores >= threshold
    tp, fp = int(np.sum(flagged & mask)), int(np.sum(flagged & ~mask))
    fn, tn = int(np.sum(~flagged & mask)), int(np.sum(~flagged & ~mask))
    return {
        "flagged": int(flagged.sum()),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "detected_share": tp / max(tp + fn, 1),
        "clean_flagged_share": fp / max(fp + tn, 1),
        "precision": tp / max(tp + fp, 1),
    }


def detection_summary(scores: np.ndarray, mask: np.ndarray) -> dict[str, Optional[float]]:
    """AUROC, AP, F1 at the true ratio, and TPR at 0.5% / 1% / 5% FPR. scikit-learn's argument checks are skipped
    here (the arrays are the engine's own): they were most of the 13 ms a score took, 0.17 s of Label bias's first view."""
    with config_context(skip_parameter_validation=True, assume_finite=True):
        tprs = _tprs_at(scores, mask, [0.005, 0.01, 0.05])
        return {
            "auroc": auroc(scores, mask),
            "average_precision": average_precision(scores, mask),
            "f1_at_true_ratio": f1_at_ratio(scores, mask) if _has_both(mask) else None,
            "tpr_at_0.5%_fpr": tprs[0],
            "tpr_at_1%_fpr": tprs[1],
            "tpr_at_5%_fpr": tprs[2],
        }


def accuracy_noise(accuracy: float, n_rows: int) -> float:
    """Two binomial standard errors of an accuracy read on ``n_rows`` rows: a change within it is not a measured one
    (the standard error is floored at one row's worth, so 100 % accuracy still has a band)."""
    n = max(int(n_rows), 1)
    return float(2 * np.sqrt(max(accuracy * (1 - accuracy), 1.0 / n) / n))


def accuracy_change(before: float, after: float, n_rows: int) -> tuple[str, bool]:
    """The change as a page writes it, and whether it is beyond :func:`accuracy_noise` of the reading before."""
    change, noise = after - before, accuracy_noise(before, n_rows)
    measured = abs(change) > noise
    return f"{change:+.1%}" + ("" if measured else f" (within ±{noise:.1%}: no measured change)"), measured


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two paired samples; NaN with fewer than three pairs or a constant side."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else float("nan")
