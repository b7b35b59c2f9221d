"""Conjugate gradients on the damped GGN (curvlinops' CGInverseLinearOperator): H⁻¹g without forming H."""

from __future__ import annotations

import torch

from influence_core.curvatures.base import Curvature, CurvatureRequest, passes_seconds
from influence_core.curvatures.operators import apply_in_chunks, damped_ggn, operator_bytes

CG_MAX_ITER, CG_TOLERANCE = 200, 1e-6


class ConjugateGradientCurvature(Curvature):
    name = "cg"
    label = "conjugate gradients on the GGN (curvlinops)"
    short_label = "CG"
    # not chosen by auto: it converges to what exact / kron already give, at one pass over the data per iteration
    knobs = {
        "max_iter": f"most CG iterations (default {CG_MAX_ITER})",
        "tolerance": f"relative residual to stop at (default {CG_TOLERANCE:g})",
    }

    def __init__(self, operator, inverse, param_names, max_iter: int, tolerance: float):
        self.param_names = list(param_names)
        self._operator, self._inverse = operator, inverse
        self.max_iter, self.tolerance = max_iter, tolerance
        self.report = ""

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        return operator_bytes(request, vectors=6)

    @classmethod
    def estimate_seconds(cls, request: CurvatureRequest) -> float:
        return passes_seconds(request, CG_MAX_ITER)

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "ConjugateGradientCurvature":
        from curvlinops import CGInverseLinearOperator

        max_iter, tolerance = cls.option(request, "max_iter", CG_MAX_ITER), cls.option(request, "tolerance", CG_TOLERANCE)
        operator = damped_ggn(request)
        inverse = CGInverseLinearOperator(
            operator, max_iter=max_iter, max_tridiag_iter=0, tolerance=tolerance, eps=1e-14, stop_updating_after=1e-14
        )
        return cls(operator, inverse, request.param_names, max_iter, tolerance)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        solved = apply_in_chunks(self._inverse, grads)
        # one more product says how far CG got: the relative residual ‖(H + λI)x − g‖ / ‖g‖ of the worst row
        residual = apply_in_chunks(self._operator, solved[:64]) - grads[:64]
        worst = float((residual.norm(dim=1) / grads[:64].norm(dim=1).clamp_min(1e-30)).max()) if len(grads) else 0.0
        self.report = f"CG: relative residual {worst:.1e} (tolerance {self.tolerance:g}, at most {self.max_iter} iterations)"
        return solved
