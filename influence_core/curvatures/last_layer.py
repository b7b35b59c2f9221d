"""The full GGN of the last linear layer (``head``): BackPACK for the zoo's plain chains of layers, laplace-torch for
any other model (ResNet18, a user's own)."""

from __future__ import annotations

import torch

from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.curvatures.dense import DenseInverse, dense_bytes
from influence_core.curvatures.laplace_fit import as_sequential, backpack_batches, fit_laplace, prior_precision
from influence_core.models import head_names
from influence_core.tasks import CrossEntropyTask
from influence_core.timing import Cost, dense_seconds, seconds_text


class LastLayerCurvature(Curvature):
    name = "last_layer"
    tasks = (CrossEntropyTask,)  # a GGN of the cross-entropy
    label = "full GGN, last layer (BackPACK; laplace-torch beyond the zoo)"
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
        seq = as_sequential(request.model)
        if seq is not None and list(request.param_names) == names:
            request.progress(0.0, "fitting the last layer's GGN (BackPACK)")
            summed = _backpack_head_ggn(seq, request.x, request.y, request.batch_size)
            request.progress(1.0, "fitted the last layer's GGN")
            eye = torch.eye(len(summed), dtype=summed.dtype, device=summed.device)
            return cls((summed + prior * eye) / request.n_train, names, request.damping)
        request.progress(0.0, "fitting the last layer's GGN (laplace-torch)")
        la = fit_laplace(request.model, request.x, request.y, "last_layer", "full", prior, request.batch_size)
        request.progress(1.0, "fitted the last layer's GGN")
        return cls(la.posterior_precision.detach() / request.n_train, names, request.damping)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return self._inverse.apply(grads)


def _backpack_head_ggn(seq: torch.nn.Sequential, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Σᵢ GGNᵢ of the last layer's weight and bias (in that order, as laplace-torch flattens them), from BackPACK's
    square root of the GGN: one backward of the summed cross-entropy per batch, Σ Vᵀ V over its C columns. The zoo's
    models take this road rather than laplace-torch's, whose import (torchmetrics, torchvision) took 1-2 s of the
    landing view's and Region cuts' first result; tests/test_contract.py checks it against laplace-torch's fit."""
    from backpack.extensions import SqrtGGNExact

    params = [p for p in list(seq.children())[-1].parameters() if p.requires_grad]
    chosen = {id(p) for p in params}
    for p in seq.parameters():
        p.requires_grad_(id(p) in chosen)  # the body needs no gradient: BackPACK then extends only the head
    size = sum(p.numel() for p in params)
    total = torch.zeros(size, size, device=x.device, dtype=params[0].dtype)
    for _ in backpack_batches(seq, x, y, batch_size, SqrtGGNExact()):
        # sqrt_ggn_exact: (C, rows, *shape) per parameter, joined along the flattened parameters
        v = torch.cat([p.sqrt_ggn_exact.detach().flatten(start_dim=2) for p in params], dim=2)
        total += torch.einsum("crp,crq->pq", v, v)
    return total
