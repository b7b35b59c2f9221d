"""Matrix-free curvature operators from curvlinops, shared by the iterative backends (CG, LiSSA, Arnoldi).

The operator is the GGN of the mean training loss over the chosen parameters (curvlinops' ``GGNLinearOperator``,
one pass over the data per product), plus (λ + damping)·I: the same damped matrix the dense backends invert.
The GGN equals the Hessian for the cross-entropy of a linear model, so on logistic regression these converge to
``exact``.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from influence_core.curvatures.base import CurvatureRequest
from influence_core.errors import InputError
from influence_core.progress import beat
from influence_core.tasks import CrossEntropyTask


class DampedOperator:
    """A + shift·I for a curvlinops operator A, in curvlinops' interface (so its inverses wrap it)."""

    def __new__(cls, operator, shift: float):
        from curvlinops._torch_base import PyTorchLinearOperator

        class _Damped(PyTorchLinearOperator):
            SELF_ADJOINT = True

            def __init__(self) -> None:
                super().__init__(operator._in_shape, operator._out_shape)

            @property
            def dtype(self):
                return operator.dtype

            @property
            def device(self):
                return operator.device

            def _matmat(self, X: List[Tensor]) -> List[Tensor]:
                out = [ax + shift * x for ax, x in zip(operator._matmat(X), X)]
                products[0] += 1
                beat(f"{products[0]} products with the curvature")  # an iterative solve's only sign of life
                return out

        products = [0]
        return _Damped()


def selected_parameters(model: nn.Module, names) -> list[nn.Parameter]:
    params = dict(model.named_parameters())
    return [params[n] for n in names]


def batches(request: CurvatureRequest, size: Optional[int] = None) -> list[tuple[Tensor, Tensor]]:
    """The request's rows in mini-batches of ``size`` (default: its ``batch_size``)."""
    b = max(1, size or request.batch_size)
    return [(request.x[i : i + b], request.y[i : i + b]) for i in range(0, len(request.x), b)]


def pass_batches(request: CurvatureRequest) -> list[tuple[Tensor, Tensor]]:
    """The request's rows in the gradient engine's pass size (:func:`~influence_core.gradients.pass_rows`: on CPU as
    many rows as keep the activations within the caches; unlimited on a GPU), at most its ``batch_size``: for a
    library's fit whose result is a sum over rows, the same in any batching (curvlinops' KFAC and EK-FAC from sampled
    labels, drawn row by row from one generator). On the MNIST SmallCNN (one CPU thread) the sampled KFAC factors took
    3.2-4.1 s at 128 rows, 4.1-4.5 s at 512 and 5.7-6.0 s at 2,048 (64 to 184 rows within the noise of each other), the
    sampled EK-FAC fit 6.6 s at 184 rows (this size) against 8.1 s at 512."""
    from influence_core.gradients import pass_rows

    rows = pass_rows(request.model, tuple(request.x.shape[1:]))
    return batches(request, min(request.batch_size, rows or request.batch_size))


def ggn_operator(request: CurvatureRequest):
    """curvlinops' GGN of the mean cross-entropy over the request's parameters (undamped, no weight decay)."""
    from curvlinops import GGNLinearOperator

    if not isinstance(request.task, CrossEntropyTask):
        raise InputError(f"the iterative curvatures use the GGN of the cross-entropy; this task is {request.task.name}")
    return cross_entropy_operator(GGNLinearOperator, request)


def cross_entropy_operator(operator_class, request: CurvatureRequest):
    """A curvlinops operator (GGN, Hessian, ...) of the mean cross-entropy over the request's parameters and data."""
    request.model.eval()
    return operator_class(
        request.model,
        nn.CrossEntropyLoss(reduction="mean"),
        selected_parameters(request.model, request.param_names),
        batches(request),
        check_deterministic=False,
        num_data=request.n_train,
    )


def damped_ggn(request: CurvatureRequest):
    """(GGN + (λ + damping)·I) as a curvlinops operator."""
    return DampedOperator(ggn_operator(request), request.weight_decay + request.damping)


# right-hand sides an iterative inverse solves at once (and what its cost is counted in)
SOLVE_COLUMNS = 256


def apply_in_chunks(operator, grads: Tensor, chunk: int = SOLVE_COLUMNS) -> Tensor:
    """(k, p) rows → (k, p) rows of ``operator @ gᵀ``, ``chunk`` right-hand sides at a time (their vectors stay small)."""
    out = torch.empty_like(grads)
    for start in range(0, len(grads), chunk):
        block = grads[start : start + chunk]
        out[start : start + len(block)] = (operator @ block.T.to(operator.dtype)).T.to(grads.dtype)
    return out


def solve_cost_blocks(request: CurvatureRequest) -> list[int]:
    """The column widths the request's rows are solved in."""
    from influence_core.timing import column_blocks

    return column_blocks(request.rows_to_solve, SOLVE_COLUMNS)


def operator_bytes(request: CurvatureRequest, vectors: int = 8, columns: int = 256) -> int:
    """A batch's forward and backward with ``columns`` right-hand sides, and ``vectors`` copies of them (CG's iterates)."""
    prof = request.profile
    batch = min(request.batch_size, request.n_train)
    return 8 * batch * prof.activations_per_sample * prof.n_outputs + 4 * vectors * columns * prof.n_selected
