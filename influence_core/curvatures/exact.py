"""The exact Hessian of the training objective via torch.func (small models, or the last layer)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from influence_core.curvatures.base import Curvature, CurvatureRequest, format_bytes, passes_seconds
from influence_core.curvatures.dense import DenseInverse, dense_bytes
from influence_core.errors import InputError
from influence_core.progress import ProgressFn, silent
from influence_core.tasks import CROSS_ENTROPY, Task

# The one limit on the exact Hessian's size: past it the p² matrix and p Hessian-vector passes per sample are
# minutes to hours on a CPU; auto moves on to a factored curvature.
MAX_EXACT_PARAMS = 20_000


def _chunk_bytes_per_sample(request: CurvatureRequest) -> int:
    # forward-over-reverse pushes p tangents through each sample's graph; several float32 copies of every activation per
    # tangent are alive at once (measured: ~18 bytes per tangent × activation on an MLP, tests/test_contract.py)
    prof = request.profile
    return 20 * prof.n_selected * max(prof.activations_per_sample, 1)


# a chunk larger than this buys no speed (the p tangents are already a large batch) and takes memory others need
MAX_CHUNK_BYTES = 2**30


def exact_chunk_size(request: CurvatureRequest, upper: int = 2048) -> int:
    """Samples per torch.func.hessian call that fit the memory budget beside the dense matrix (≥ 1)."""
    room = min(request.budget - dense_bytes(request.profile.n_selected), MAX_CHUNK_BYTES)
    return int(max(1, min(upper, room // max(_chunk_bytes_per_sample(request), 1))))


def _flat_params(model: nn.Module, names: Sequence[str]) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in names])


def exact_hessian(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Sequence[str],
    weight_decay: float,
    chunk_size: int = 2048,
    progress: ProgressFn = silent,
    task: Task = CROSS_ENTROPY,
) -> torch.Tensor:
    """Hessian of mean task loss + (λ/2)‖θ‖² with respect to the flattened ``param_names``."""
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in param_names]
    sizes = [params[n].numel() for n in param_names]
    others = {n: p.detach() for n, p in params.items() if n not in param_names}
    buffers = dict(model.named_buffers())
    flat = _flat_params(model, param_names)
    if flat.numel() > MAX_EXACT_PARAMS:
        raise InputError(
            f"the exact Hessian over {flat.numel():,} parameters is too large (limit {MAX_EXACT_PARAMS:,}); "
            "use the auto, kron, diag or last-layer curvature"
        )

    def summed_loss(theta: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        pieces = dict(zip(param_names, (t.reshape(s) for t, s in zip(torch.split(theta, sizes), shapes))))
        out = functional_call(model, ({**others, **pieces}, buffers), (xb,))
        return task.summed(out, yb)

    model.eval()
    hessian = torch.zeros(flat.numel(), flat.numel(), dtype=flat.dtype, device=flat.device)
    n = len(x)
    for start in range(0, n, chunk_size):
        hessian += torch.func.hessian(summed_loss)(flat, x[start : start + chunk_size], y[start : start + chunk_size])
        progress(min(start + chunk_size, n) / n, "exact Hessian")
    hessian /= n
    # the L2 penalty covers all trainable parameters, so it contributes λ·I on any subset
    hessian += weight_decay * torch.eye(flat.numel(), dtype=flat.dtype, device=flat.device)
    return hessian


class ExactCurvature(Curvature):
    name = "exact"
    label = "exact Hessian (torch.func)"
    auto_rank = 0

    def __init__(self, hessian: torch.Tensor, param_names: Sequence[str], damping: float):
        self.param_names = list(param_names)
        self.hessian = hessian
        self._inverse = DenseInverse("exact", hessian, param_names, damping)

    @classmethod
    def unsupported_reason(cls, request: CurvatureRequest):
        p = request.profile.n_selected
        if p > MAX_EXACT_PARAMS:
            return f"the exact Hessian over {p:,} parameters is past its limit of {MAX_EXACT_PARAMS:,}"
        return None

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        # the dense matrix plus at least one sample's forward-over-reverse pass
        return dense_bytes(request.profile.n_selected) + _chunk_bytes_per_sample(request)

    @classmethod
    def estimate_seconds(cls, request: CurvatureRequest) -> float:
        return passes_seconds(request, request.profile.n_selected, per_output=False)  # one tangent per parameter

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "ExactCurvature":
        names = list(request.param_names)
        need = cls.estimate_bytes(request)
        if need > request.budget:
            raise InputError(
                f"the exact Hessian over {request.profile.n_selected:,} parameters needs {format_bytes(need)} "
                f"(budget {format_bytes(request.budget)}); use the auto, kron, diag or last-layer curvature"
            )
        h = exact_hessian(
            request.model, request.x, request.y, names, request.weight_decay, exact_chunk_size(request), request.progress, request.task
        )
        h += request.damping * torch.eye(len(h), dtype=h.dtype, device=h.device)
        return cls(h, names, request.damping)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return self._inverse.apply(grads)
