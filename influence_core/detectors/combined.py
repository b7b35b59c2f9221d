"""The combined ranking: the mean of its detectors' rank percentiles. Detectors that disagree in *why* a row is
suspicious (the model never fitting it, a model that never saw it doubting it) are complementary, and averaging
ranks needs no scale calibration and no fitting on labelled noise: nothing here is tuned on an evaluation case.
Which detectors it averages was chosen on development seeds of ``benchmarks/label_noise.py`` (see its README
section), and changes when the benchmark measures a better one."""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence

import numpy as np
from scipy.stats import rankdata

from influence_core.detectors.base import REGISTRY, DetectionContext, Detector, register
from influence_core.progress import ProgressFn, scaled, silent


def rank_average(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over detectors of each row's rank percentile (ties share their mean rank); higher = more suspicious."""
    return np.mean([rankdata(s) / len(s) for s in scores], axis=0)


@register
class Combined(Detector):
    name = "combined"
    label = "combined (rank average)"
    # chosen on development seed 100 of benchmarks/label_noise.py (9 cases): the best mean AUROC of every rank average of
    # 2-4 detectors was TracIn + AUM + loss over training + cleanlab-logreg (0.9465); these three reach 0.9457 without
    # TracIn's pass, and none of them trains the model again (the best single detector there, AUM: 0.9334)
    components: ClassVar[tuple[str, ...]] = ("aum", "loss_trajectory", "cleanlab_logreg")
    description = "the mean rank of " + ", ".join(components)

    @classmethod
    def used_components(cls, context: DetectionContext) -> tuple[str, ...]:
        """The components that can run on this run (a loaded model has no training dynamics and no folds)."""
        return tuple(c for c in cls.components if REGISTRY[c].unavailable_reason(context) is None)

    @classmethod
    def unavailable_reason(cls, context: DetectionContext) -> Optional[str]:
        if not cls.used_components(context):
            return f"none of {', '.join(cls.components)} can run on this model"
        return None

    @classmethod
    def extra_trainings(cls, context: DetectionContext) -> int:
        return max(REGISTRY[c].extra_trainings(context) for c in cls.used_components(context))

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        used = self.used_components(self.context)
        parts = []
        for i, name in enumerate(used):
            detector = REGISTRY[name](self.context)
            parts.append(detector.scores(scaled(progress, i / len(used), (i + 1) / len(used))))
        return rank_average(parts)

    def suggested(self):
        for name in self.used_components(self.context):  # the first component with a view of the label
            suggestion = REGISTRY[name](self.context).suggested()
            if suggestion is not None:
                return suggestion
        return None
