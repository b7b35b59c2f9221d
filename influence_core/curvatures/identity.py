"""H = I: the Hessian-free inner product (IP, TracIn's per-checkpoint term)."""

from __future__ import annotations

import torch
from torch import nn

from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.progress import ProgressFn, silent
from influence_core.tasks import CROSS_ENTROPY, Task
from influence_core.timing import Cost


class IdentityCurvature(Curvature):
    name = "identity"
    label = "identity (Hessian-free inner product)"
    short_label = "identity"
    auto_rank = 100  # always fits: the last resort
    applies_damping = False  # H⁻¹ = I: the inner product itself

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        return 0  # returns the rows it is given

    @classmethod
    def estimate_cost(cls, request: CurvatureRequest) -> Cost:
        return Cost(0.0)  # nothing to fit, nothing to solve

    def __init__(self, param_names):
        self.param_names = list(param_names)

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "IdentityCurvature":
        return cls(request.param_names)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return grads

    def precondition_factors(self, rows):
        return rows

    def self_influence(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        chunk_size: int = 2048,
        backend: str = "auto",
        progress: ProgressFn = silent,
        task: Task = CROSS_ENTROPY,
    ) -> torch.Tensor:
        from influence_core.gradients import per_sample_grad_sq_norms

        # ‖g‖² without forming the gradient rows of Linear layers
        return per_sample_grad_sq_norms(model, x, y, self.param_names, None, chunk_size, backend, progress, task)
