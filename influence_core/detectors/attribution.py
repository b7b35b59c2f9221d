"""Self-influence as a detector: TracIn's from the checkpoints the run saved (it sees the training run, not only its
end, which is where it wins over the final model's scores)."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from influence_core.detectors.base import DetectionContext, Detector, register
from influence_core.progress import ProgressFn, silent


@register
class TracInSelfInfluence(Detector):
    name = "tracin"
    label = "TracIn self-influence"
    description = "Σ over checkpoints of the learning rate × a row's squared loss gradient"
    method = "tracin"

    @classmethod
    def _config(cls, context: DetectionContext):
        # the method's own config: the run's method (and the scope its curvature implies) is not this detector's
        return dataclasses.replace(context.config, method=cls.method, method_options=())

    @classmethod
    def unavailable_reason(cls, context: DetectionContext) -> Optional[str]:
        from influence_core import methods
        from influence_core.experiments import attribution_context

        return methods.get(cls.method).unavailable_reason(attribution_context(cls._config(context), context.trained))

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        from influence_core.experiments import fit_method
        from influence_core.progress import scaled

        attributor = fit_method(self._config(self.context), self.context.trained, scaled(progress, 0.0, 0.3))
        return np.asarray(attributor.self_scores(scaled(progress, 0.3, 1.0)), dtype=np.float64)
