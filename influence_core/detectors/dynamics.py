"""Detectors read from the training run itself: the final loss, and what was recorded epoch by epoch while the model
trained (:class:`influence_core.training.TrainingDynamics`), at no extra training."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from influence_core.detectors.base import Detector, register
from influence_core.progress import ProgressFn, silent


def label_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """−log p(given label | x) for every row."""
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))


def area_under_margin(margins: np.ndarray) -> np.ndarray:
    """AUM (Pleiss et al. 2020): each row's assigned-label logit minus its largest other logit, averaged over epochs.
    Low (negative) = the model kept preferring another class for it."""
    return margins.mean(0)


def forgetting_events(margins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(events, never_learned) per row (Toneva et al. 2019): an event is an epoch where a row the model classified
    as its given label the epoch before is no longer so classified; never_learned marks rows it never classified so."""
    correct = margins > 0
    events = (correct[:-1] & ~correct[1:]).sum(0)
    return events, ~correct.any(0)


def _unit_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks scaled into [0, 1): a tie-breaker that never outweighs one whole count."""
    return (rankdata(values) - 1) / max(len(values), 1)


@register
class TrainingLoss(Detector):
    name = "loss"
    label = "training loss"
    description = "−log p(given label) under the final model: what every framework gives for free"

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        return label_loss(self.context.train_probs(), self.context.labels)

    def suggested(self):
        return self.context.train_probs().argmax(1)


@register
class AUM(Detector):
    name = "aum"
    label = "AUM (area under the margin)"
    description = "the given label's logit minus the largest other logit, averaged over training epochs; low = suspicious"
    uses_dynamics = True

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        return -area_under_margin(self.context.trained.dynamics.margins)


@register
class Forgetting(Detector):
    name = "forgetting"
    label = "forgetting events"
    description = (
        "how often the model stopped predicting a row's given label between epochs (rows it never learned count "
        "highest); rows with equal counts ordered by AUM"
    )
    uses_dynamics = True

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        margins = self.context.trained.dynamics.margins
        events, never = forgetting_events(margins)
        counts = np.where(never, len(margins), events).astype(np.float64)
        return counts + _unit_ranks(-area_under_margin(margins))


@register
class LossTrajectory(Detector):
    name = "loss_trajectory"
    label = "loss over training"
    description = "a row's training loss averaged over every epoch: high when the model fitted it late or never"
    uses_dynamics = True

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        return self.context.trained.dynamics.losses.mean(0).astype(np.float64)
