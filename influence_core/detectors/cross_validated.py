"""Detectors that ask a model which never saw the row: out-of-fold probabilities of the same model class and
training (k folds, each trained without its rows), and cleanlab's label quality on them and on a plain scikit-learn
logistic regression as a user would run it out of the box."""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from influence_core.detectors.base import DetectionContext, Detector, register
from influence_core.detectors.dynamics import label_loss
from influence_core.progress import ProgressFn, silent


@register
class OutOfFoldLoss(Detector):
    name = "oof_loss"
    label = "out-of-fold loss"
    description = "−log p(given label) under the same model trained on the other folds: a memorised flip cannot hide"
    out_of_fold = True

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        return label_loss(self.context.oof_probs(progress), self.context.labels)

    def suggested(self):
        return self.context.oof_probs().argmax(1)


@register
class Cleanlab(Detector):
    name = "cleanlab"
    label = "cleanlab (same model, out-of-fold)"
    description = "1 − cleanlab's label quality on the out-of-fold probabilities of the same model and training"
    out_of_fold = True

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        from influence_core.baselines import cleanlab_flags

        return cleanlab_flags(self.context.labels, self.context.oof_probs(progress))["score"]

    def suggested(self):
        return self.context.oof_probs().argmax(1)


def logistic_oof_probabilities(x: np.ndarray, labels: np.ndarray, n_classes: int, n_folds: int, seed: int) -> np.ndarray:
    """5-fold probabilities of scikit-learn's standardised logistic regression (its defaults): cleanlab's own
    quick-start, and what a user with no model of their own would run."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    flat = x.reshape(len(x), -1)
    try:
        splits = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(flat, labels))
    except ValueError:
        splits = list(KFold(n_folds, shuffle=True, random_state=seed).split(flat))
    probs = np.full((len(flat), n_classes), 1e-12)
    for fit_rows, held_rows in splits:
        model = make_pipeline(StandardScaler(), LogisticRegression())
        with warnings.catch_warnings():  # its defaults, as the user would run them: not converged on images, and said so here
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(flat[fit_rows], labels[fit_rows])
        probs[np.ix_(held_rows, model.classes_)] = model.predict_proba(flat[held_rows])
    return probs / probs.sum(1, keepdims=True)


@register
class CleanlabLogistic(Detector):
    name = "cleanlab_logreg"
    label = "cleanlab (logistic regression, out of the box)"
    description = "1 − cleanlab's label quality on a scikit-learn logistic regression's 5-fold probabilities"

    @classmethod
    def unavailable_reason(cls, context: DetectionContext) -> Optional[str]:
        return None

    def _probs(self) -> np.ndarray:
        ctx = self.context
        return ctx.memo(
            "logistic_oof",
            lambda: logistic_oof_probabilities(ctx.dataset.x_train, ctx.labels, ctx.dataset.n_classes, ctx.n_folds, ctx.config.seed),
        )

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        from influence_core.baselines import cleanlab_flags

        return cleanlab_flags(self.context.labels, self._probs())["score"]

    def suggested(self):
        return self._probs().argmax(1)
