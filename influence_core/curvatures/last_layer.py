"""The full GGN of the last linear layer (``head``), laplace-torch: every model of the zoo has one."""

from __future__ import annotations

import torch

from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.curvatures.dense import DenseInverse, dense_bytes
from influence_core.curvatures.laplace_fit import fit_laplace, prior_precision
from influence_core.models import head_names
from influence_core.tasks import CrossEntropyTask
from influence_core.timing import Cost, dense_seconds, seconds_text


class LastLayerCurvature(Curvature):
    name = "last_layer"
    tasks = (CrossEntropyTask,)  # a GGN of the cross-entropy (laplace-torch)
    label = "full GGN, last layer (laplace-torch)"
    short_label = "last-layer GGN"
    auto_rank = 30
    last_layer_only = True

    def __init__(self, matrix: torch.Tensor, param_names, damping: float):
        self.param_names = list(param_names)
        self.hessian = matrix
        self._inverse = DenseInverse(self.name, matrix, param_names, damping)

    @classmethod
    def unsupported_reason(cls, request: CurvatureRequest):
        if not head_names(request.model):
            return "the model has no nn.Linear layer to take as its last"
        return None

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        prof = request.profile
        batch = min(request.batch_size, request.n_train)
        return dense_bytes(prof.n_head) + 4 * batch * prof.n_outputs * prof.n_head

    @classmethod
    def estimate_cost(cls, request: CurvatureRequest) -> Cost:
        """The fit timed on part of the data (its GGN pass, laplace-torch's set-up, the head's Cholesky factor), and
        the solves of the rows (2p² each)."""
        fit = super().estimate_cost(request)
        solves = dense_seconds(request, "solve", request.profile.n_head, request.rows_to_solve)
        return fit + Cost(solves, f"solves of {request.rows_to_solve:,} rows, {seconds_text(solves)}")

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "LastLayerCurvature":
        prior = prior_precision(request, cls.name)
        names = head_names(request.model)
        request.progress(0.0, "fitting the last layer's GGN (laplace-torch)")
        la = fit_laplace(request.model, request.x, request.y, "last_layer", "full", prior, request.batch_size)
        request.progress(1.0, "fitted the last layer's GGN")
        return cls(la.posterior_precision.detach() / request.n_train, names, request.damping)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return self._inverse.apply(grads)
