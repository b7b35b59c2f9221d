"""Why a row is flagged: the detectors' verdicts side by side, the label the evidence suggests, the held-out
predictions the row harms most (influence), and its nearest training rows of the given and of the suggested class.

Everything here reads what the run already holds (scores, probabilities, an influence matrix when one was kept), so
an explanation takes milliseconds: the views show it as soon as a row is selected. Retraining to check the predicted
effect is the caller's, on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from influence_core.detectors.base import REGISTRY, DetectionContext


@dataclass
class RowExplanation:
    row: int
    given: int
    suggested: Optional[int]  # the default ranking's suggestion (the out-of-fold model's where it ran)
    verdicts: pd.DataFrame  # one line per detector: its score, rank, percentile and whether it flags the row
    evidence: pd.DataFrame  # the probability of the given and the suggested label under each model that has one
    harms: Optional[pd.DataFrame]  # held-out rows it harms most (influence > 0 = harmful), when influence was kept
    nearest_given: np.ndarray  # nearest training rows labelled as this row is
    nearest_suggested: np.ndarray  # nearest training rows labelled with the suggestion

    @property
    def flagged_by(self) -> list[str]:
        return self.verdicts.loc[self.verdicts["flags"], "detector"].tolist()

    def summary(self, class_names, row_id) -> str:
        """One sentence: which row, how many detectors flag it and what the evidence suggests."""
        n = len(self.verdicts)
        who = ", ".join(self.flagged_by) or "none"
        text = f"Row {row_id}: {len(self.flagged_by)} of {n} detectors flag it ({who})"
        if self.suggested is not None and self.suggested != self.given:
            text += f"; the evidence suggests {class_names[self.suggested]} instead of {class_names[self.given]}"
        return text + "."


def nearest_rows(x: np.ndarray, row: int, candidates: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` candidate rows nearest to ``row`` (Euclidean, on flattened inputs), the row itself excluded."""
    candidates = candidates[candidates != row]
    if not len(candidates):
        return candidates
    flat = x.reshape(len(x), -1)
    distance = ((flat[candidates] - flat[row]) ** 2).sum(1)
    return candidates[np.argsort(distance, kind="stable")[:n]]


def explain_row(
    detection,
    context: DetectionContext,
    row: int,
    k: int,
    influence_rows: Optional[np.ndarray] = None,
    test_ids: Optional[np.ndarray] = None,
    n: int = 5,
) -> RowExplanation:
    """Explain training row ``row``. ``k``: how many rows count as flagged per detector (the view's flagged count);
    ``influence_rows`` (n_test, n_train) with ``test_ids`` the held-out index of each of its rows (default 0..n_test),
    positive = harmful, when the run kept them."""
    ds = context.dataset
    given = int(ds.y_train[row])
    ranks = detection.ranks()
    n_rows = len(ds.y_train)
    verdicts = pd.DataFrame(
        {
            "detector": list(detection.scores),
            "label": [REGISTRY[name].label for name in detection.scores],
            "score": [float(s[row]) for s in detection.scores.values()],
            "rank": [int(ranks[name][row]) for name in detection.scores],
        }
    )
    verdicts["top share"] = verdicts["rank"] / n_rows
    verdicts["flags"] = verdicts["rank"] <= k
    suggestion = detection.suggested.get(detection.default)
    suggested = int(suggestion[row]) if suggestion is not None else None
    models = {"final model": context.train_probs()}
    if context.computed("oof_probs") is not None:  # only what already ran: an explanation never starts a training
        models["out-of-fold model"] = context.computed("oof_probs")
    evidence = pd.DataFrame(
        [
            {
                "model": name,
                "p(given)": float(p[row, given]),
                "likeliest": int(p[row].argmax()),
                "p(likeliest)": float(p[row].max()),
            }
            for name, p in models.items()
        ]
    )
    harms = None
    if influence_rows is not None and len(influence_rows):
        column = np.asarray(influence_rows[:, row], dtype=np.float64)
        order = np.argsort(-column, kind="stable")[:n]
        ids = np.arange(len(column)) if test_ids is None else np.asarray(test_ids)
        harms = pd.DataFrame({"held-out row": ids[order], "influence": column[order]})
        harms = harms[harms["influence"] > 0]
        harms["label"] = ds.y_test[harms["held-out row"].to_numpy()]
    target = suggested if suggested is not None and suggested != given else None
    return RowExplanation(
        row=row,
        given=given,
        suggested=suggested,
        verdicts=verdicts,
        evidence=evidence,
        harms=harms,
        nearest_given=nearest_rows(ds.x_train, row, np.flatnonzero(ds.y_train == given), n),
        nearest_suggested=(
            nearest_rows(ds.x_train, row, np.flatnonzero(ds.y_train == target), n) if target is not None else np.array([], dtype=int)
        ),
    )


@dataclass
class EditCheck:
    """One flagged row removed or relabelled, the same run trained again (same seed, same initial weights, same
    batches: the difference is this edit's effect, not a new draw of training noise), against the run as it is."""

    edit: str  # "remove" or "relabel to <class index>"
    loss_before: float  # mean loss over every held-out row
    loss_after: float
    accuracy_before: float
    accuracy_after: float
    predicted_change: Optional[float]  # removal, loss-scale influence: the predicted change of the kept rows' mean loss
    retrained_change: Optional[float]  # the same quantity after retraining (None where nothing was predicted)
    seconds: float

    @property
    def loss_change(self) -> float:
        return self.loss_after - self.loss_before


def held_out_losses(model, dataset) -> tuple[np.ndarray, float]:
    """Each held-out row's loss under ``model`` (``lds.measured``, as LDS measures it) and the held-out accuracy."""
    from influence_core.experiments import predict_proba, tensors
    from influence_core.lds import measured

    _, _, xt, yt = tensors(dataset, next(model.parameters()).device)
    accuracy = float(np.mean(predict_proba(model, dataset.x_test).argmax(1) == dataset.y_test))
    return measured(model, xt, yt, "loss"), accuracy


def check_row_edits(
    context: DetectionContext,
    row: int,
    suggested: Optional[int],
    influence_rows: Optional[np.ndarray] = None,
    test_ids: Optional[np.ndarray] = None,
    on_loss_scale: bool = False,
    progress=None,
) -> list[EditCheck]:
    """Remove row ``row`` (its weight zeroed), and relabel it to ``suggested`` where that differs from its label; each
    is the same run trained again. With ``influence_rows`` on the loss scale (``on_loss_scale``: the method's scores
    predict a loss change), the removal's predicted change of the kept held-out rows' mean loss stands beside the
    retrained one (first order: −influence / n)."""
    import time

    from influence_core import experiments
    from influence_core.errors import InputError
    from influence_core.progress import scaled, silent

    progress = progress or silent
    if not context.trained_here:
        raise InputError("checking by retraining trains the model again, and a model loaded from your file is not retrained here")
    trained, ds = context.trained, context.dataset
    n = len(ds.y_train)
    before, accuracy_before = held_out_losses(trained.model, ds)
    kept = np.arange(len(ds.y_test)) if test_ids is None else np.asarray(test_ids, dtype=int)
    edits: list[tuple[str, dict]] = [("remove", {"sample_weights": np.where(np.arange(n) == row, 0.0, 1.0)})]
    if suggested is not None and int(suggested) != int(ds.y_train[row]):
        labels = ds.y_train.copy()
        labels[row] = int(suggested)
        edits.append((f"relabel to {int(suggested)}", {"dataset": ds.with_train_labels(labels, labels != ds.y_train_clean)}))
    out = []
    for i, (edit, how) in enumerate(edits):
        started = time.perf_counter()
        step = scaled(progress, i / len(edits), (i + 1) / len(edits))
        retrained = experiments.train(trained.config, step, context.use_cache, how.get("dataset", ds), how.get("sample_weights"))
        after, accuracy_after = held_out_losses(retrained.model, ds)
        predicted = retrained_change = None
        if edit == "remove" and on_loss_scale and influence_rows is not None and len(influence_rows):
            predicted = float(np.mean(-np.asarray(influence_rows[:, row], dtype=np.float64) / n))
            retrained_change = float(np.mean(after[kept] - before[kept]))
        out.append(
            EditCheck(
                edit,
                float(before.mean()),
                float(after.mean()),
                accuracy_before,
                accuracy_after,
                predicted,
                retrained_change,
                time.perf_counter() - started,
            )
        )
    return out


def edit_checks_table(checks: list[EditCheck], class_names) -> pd.DataFrame:
    """What a view shows of :func:`check_row_edits`: one line per edit, before → after."""
    rows = []
    for c in checks:
        edit = c.edit if c.edit == "remove" else f"relabel to {class_names[int(c.edit.rsplit(' ', 1)[1])]}"
        rows.append(
            {
                "edit": edit,
                "held-out loss": f"{c.loss_before:.4f} → {c.loss_after:.4f} ({c.loss_change:+.4f})",
                "held-out accuracy": f"{c.accuracy_before:.1%} → {c.accuracy_after:.1%}",
                "predicted Δ loss (kept rows)": "—" if c.predicted_change is None else f"{c.predicted_change:+.2e}",
                "retrained Δ loss (kept rows)": "—" if c.retrained_change is None else f"{c.retrained_change:+.2e}",
                "seconds": f"{c.seconds:.1f}",
            }
        )
    return pd.DataFrame(rows)
