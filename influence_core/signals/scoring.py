"""The signals and baselines scored against the injected truth: F1 at the true ratio, AUROC, AP, repair accuracy."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from influence_core import detectors
from influence_core.data.glitches import GlitchTruth
from influence_core.metrics import auroc, average_precision
from influence_core.signals.compute import SIGNALS, SignalResult

BASELINES: dict[str, str] = {
    "cleanlab": "cleanlab label-quality ranking (out-of-fold probabilities)",
    "cleanlab (own threshold)": "cleanlab find_label_issues: its own flagged set",
    "IsolationForest": "scikit-learn IsolationForest on the inputs",
}
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
