"""Influence functions under a curvature: −∇f(θ̂)ᵀ (H + λI)⁻¹ ∇ℓ(z_i; θ̂) (Koh & Liang)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from influence_core.curvatures import CurvatureRequest, fit_curvature
from influence_core.distributed import over_rows
from influence_core.measurements import Measurement
from influence_core.methods.base import Attributor, preconditioned_queries, stream_scores
from influence_core.progress import ProgressFn, silent
from influence_core.tasks import Task


class InfluenceFunction(Attributor):
    name = "influence"
    label = "influence function (H⁻¹)"
    short_label = "influence (H⁻¹)"
    uses_curvature = True
    predicts_loss_change = True

    def fit(self, progress: ProgressFn = silent) -> "InfluenceFunction":
        c = self.context
        request = CurvatureRequest(
            c.model,
            c.x_train,
            c.y_train,
            list(c.param_names),
            c.weight_decay,
            c.damping,
            c.task,
            progress=progress,
            options=dict(c.curvature_options),
        )
        self.curvature = fit_curvature(c.curvature, request)
        self._last_queries: list = []  # (measurement, H⁻¹ G_query) of the last scores(): shared by the clones that score blocks
        return self

    def _preconditioned(self, measurement: Measurement):
        """H⁻¹ ∇f for the measurement's queries, kept for the next call with the same measurement: an out-of-core matrix
        scores block after block of training rows against the same queries (an iterative inverse would re-solve each time)."""
        memo = self.__dict__.setdefault("_last_queries", [])
        if memo and memo[0][0] is measurement:
            return memo[0][1]
        pre = preconditioned_queries(self.curvature, measurement, self.context.model, self.param_names)
        memo[:] = [(measurement, pre)]
        return pre

    @property
    def note(self) -> str:
        """What auto chose, and how an iterative backend converged (known once it has scored)."""
        return "; ".join(part for part in (self.curvature.note, self.curvature.report) if part)

    @note.setter
    def note(self, _value: str) -> None:  # the base class sets an empty note before fitting
        pass

    @property
    def param_names(self) -> list[str]:
        return self.curvature.param_names  # the last-layer curvature narrows the scope to the head

    def scores(self, measurement: Measurement, train_task: Optional[Task] = None, progress: ProgressFn = silent) -> np.ndarray:
        c = self.context
        pre = self._preconditioned(measurement)
        out, _ = stream_scores(
            c.model, self.param_names, c.x_train, c.y_train, pre, train_task or c.task, backend=c.backend, progress=progress
        )
        return out.detach().cpu().numpy()

    def self_scores(self, progress: ProgressFn = silent) -> np.ndarray:
        c = self.context
        return (
            over_rows(self.curvature.self_influence, c.x_train, c.y_train, 0, progress, model=c.model, backend=c.backend, task=c.task)
            .detach()
            .cpu()
            .numpy()
        )

    def scores_and_self(self, measurement: Measurement, progress: ProgressFn = silent) -> tuple[np.ndarray, np.ndarray]:
        """Both in one pass over the training gradients (label bias scores many group queries and itself)."""
        c = self.context
        pre = self.curvature.inverse_hvp(measurement.query_gradients(c.model, self.param_names))
        out, own = stream_scores(c.model, self.param_names, c.x_train, c.y_train, pre, c.task, self.curvature, c.backend, progress)
        return out.detach().cpu().numpy(), own.detach().cpu().numpy()
