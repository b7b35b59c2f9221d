"""What the Glitch signals view shows and does with a report: the ranked rows, the suggested repairs, and a retrain
with the repairs accepted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from influence_core.data.base import Dataset
from influence_core.data.glitches import GlitchTruth
from influence_core.errors import InputError
from influence_core.progress import ProgressFn, silent
from influence_core.signals.compute import SIGNALS
from influence_core.signals.pipeline import GlitchReport

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
