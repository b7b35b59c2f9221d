"""A dense symmetric positive-definite curvature, inverted through its Cholesky factor (shared by the
exact Hessian and the last layer's full GGN)."""

from __future__ import annotations

from typing import Sequence

import torch

from influence_core.errors import CurvatureError


def dense_bytes(p: int) -> int:
    """The matrix in float32, its float64 copy and its Cholesky factor."""
    return 20 * p * p


class DenseInverse:
    """(H + damping·I)⁻¹ for a dense H that already includes the damping."""

    def __init__(self, name: str, hessian: torch.Tensor, param_names: Sequence[str], damping: float):
        self.param_names = list(param_names)
        self.hessian = hessian
        chol, info = torch.linalg.cholesky_ex(hessian.double())
        if int(info) != 0:
            min_eig = torch.linalg.eigvalsh(hessian.double()).min().item()
            # the smallest eigenvalue is of the damped matrix: the damping that makes it positive is the current one
            # plus what is missing, with a margin of 10 % (at least 1e-3) so that rounding does not undo it
            needed = damping - min_eig
            advice = needed + max(0.1 * abs(needed), 1e-3)
            raise CurvatureError(
                f"the {name} Hessian is not positive definite (smallest eigenvalue {min_eig:.3g} at damping {damping:g}); "
                f"raise the damping to {advice:.3g} or more, or use another curvature: " + cheaper_curvatures()
            )
        self._chol = chol

    def apply(self, grads: torch.Tensor) -> torch.Tensor:
        solved = torch.cholesky_solve(grads.T.double(), self._chol.to(grads.device))
        return solved.T.to(grads.dtype)


def cheaper_curvatures() -> str:
    """What a refusal of a dense curvature suggests instead (the registry's own words for it)."""
    from influence_core.curvatures import cheaper_curvatures_text  # the registry imports this module

    return cheaper_curvatures_text()
