"""Self-influence as a detector: TracIn's from the checkpoints the run saved (it sees the training run, not only its
end, which is where it wins over the final model's scores), and on request the exact one, differentiated through the
recorded training (one reverse pass per batch of training rows: costly, so never run by default)."""

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


@register
class ExactSelfInfluence(TracInSelfInfluence):
    name = "metagradient_self"
    label = "exact self-influence (metagradient)"
    description = "−n ∂ℓᵢ(θ_T)/∂wᵢ through the recorded training: how much a row's own weight in training lowers its own final loss"
    method = "metagradient"
    on_request = True

    @classmethod
    def unavailable_reason(cls, context: DetectionContext) -> Optional[str]:
        from influence_core.methods.exact_attribution import MAX_SELF_ROWS

        if len(context.labels) > MAX_SELF_ROWS:
            return f"{cls.label} takes a reverse pass through training per batch of rows: {len(context.labels):,} rows is more than {MAX_SELF_ROWS:,}"
        return super().unavailable_reason(context)
