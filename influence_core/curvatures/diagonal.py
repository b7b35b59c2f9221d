"""Diagonal GGN: BackPACK for plain chains of layers (the zoo), laplace-torch for any other model."""

from __future__ import annotations

import torch
from torch import nn

from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.curvatures.laplace_fit import as_sequential, backpack_batches, fit_laplace, prior_precision, subset_for, subset_reason
from influence_core.errors import CurvatureError
from influence_core.gradients import per_sample_grad_sq_sums
from influence_core.knobs import Knob
from influence_core.models import head_names
from influence_core.progress import ProgressFn, silent
from influence_core.tasks import CROSS_ENTROPY, CrossEntropyTask, SampledLabelCrossEntropy, Task


class DiagonalCurvature(Curvature):
    name = "diag"
    tasks = (CrossEntropyTask,)  # a GGN of the cross-entropy
    label = "diagonal GGN (BackPACK; laplace-torch beyond the zoo)"
    short_label = "diagonal GGN"
    auto_rank = 20
    knobs = {
        "sampled": Knob(
            "1: a Monte-Carlo GGN from one label sampled from the model per row, as kronfluence's Fisher (one backward "
            "per batch instead of one per class); 0: the exact expectation",
            0,
            bool,
        ),
    }

    def __init__(self, diagonal: torch.Tensor, param_names):
        self.param_names = list(param_names)
        if (diagonal <= 0).any():
            raise CurvatureError("the diagonal curvature has non-positive entries: raise the damping above 0")
        self.diagonal = diagonal

    @classmethod
    def _uses_backpack(cls, request: CurvatureRequest) -> bool:
        all_params = subset_for(request, cls.name) == "all"
        return all_params and list(request.param_names) != head_names(request.model) and as_sequential(request.model) is not None

    @classmethod
    def unsupported_reason(cls, request: CurvatureRequest):
        return subset_reason(request, cls.name)

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        prof = request.profile
        batch = min(request.batch_size, request.n_train)
        if cls._uses_backpack(request):  # one backward of the GGN's square root (C columns) per batch
            return 8 * batch * prof.activations_per_sample * prof.n_outputs + 8 * prof.n_selected
        # laplace-torch's default backend forms per-sample Jacobians over every selected weight
        return 4 * batch * prof.n_outputs * prof.n_selected * 2 + 8 * prof.n_selected

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "DiagonalCurvature":
        prior = prior_precision(request, cls.name)
        n = request.n_train
        from influence_core.distributed import sum_over_rows

        if cls.option(request, "sampled", 0):
            # squared per-sample gradients at labels drawn from the model, from the gradient engine: one backward per
            # chunk, and a Linear layer's as (g²)ᵀ(a²) without its rows (any model, any parameters)
            summed = sum_over_rows(
                per_sample_grad_sq_sums,
                request.x,
                request.y,
                request.progress,
                "diagonal GGN (sampled labels)",
                model=request.model,
                param_names=list(request.param_names),
                chunk_size=request.batch_size,
                task=SampledLabelCrossEntropy(seed=0),
            )
            return cls((summed.detach() + prior) / n, request.param_names)
        if not cls._uses_backpack(request):
            request.progress(0.0, "fitting the diagonal GGN (laplace-torch)")
            la = fit_laplace(request.model, request.x, request.y, subset_for(request, cls.name), "diag", prior, request.batch_size)
            request.progress(1.0, "fitted the diagonal GGN")
            return cls(la.posterior_precision.detach() / n, request.param_names)
        # Σᵢ diag GGNᵢ over chunks of the rows (on the Dask workers when there is a cluster), then the prior once
        summed = sum_over_rows(
            _backpack_diagonal,
            request.x,
            request.y,
            request.progress,
            "diagonal GGN",
            model=request.model,
            batch_size=request.batch_size,
        )
        return cls((summed + prior) / n, request.param_names)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return grads / self.diagonal.to(grads.device)

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

        # Σ_j g_j² / d_j without forming the gradient rows of Linear layers
        return per_sample_grad_sq_norms(model, x, y, self.param_names, 1.0 / self.diagonal, chunk_size, backend, progress, task)


def _backpack_diagonal(x: torch.Tensor, y: torch.Tensor, progress: ProgressFn, model: nn.Module, batch_size: int) -> torch.Tensor:
    """Σ_i diag GGN_i over all weights (no prior): BackPACK's DiagGGNExact, one backward of the summed cross-entropy
    per batch, as laplace-torch's BackPACK backend computes it.

    laplace-torch's default (curvlinops) diagonal materialises per-sample Jacobians over all weights (≈ 9 GB and 45 s
    for 512 MNIST images on CPU). BackPACK is called here directly rather than through laplace-torch: importing
    laplace-torch (torchmetrics, torchvision) took 1-3.5 s of Label bias's first view, BackPACK 0.04 s; the numbers
    are the same (tests/test_label_bias.py checks them against laplace-torch's own fit).
    """
    from backpack.extensions import DiagGGNExact

    seq = as_sequential(model)
    params = [p for p in seq.parameters() if p.requires_grad]
    total = torch.zeros(sum(p.numel() for p in params), device=x.device, dtype=params[0].dtype)
    for start in backpack_batches(seq, x, y, batch_size, DiagGGNExact()):
        total += torch.cat([p.diag_ggn_exact.detach().reshape(-1) for p in params])
        progress(min(start + batch_size, len(x)) / len(x), "diagonal GGN (BackPACK)")
    return total
