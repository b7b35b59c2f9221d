"""The exact Hessian of the training objective via torch.func (small models, or the last layer)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.curvatures.dense import DenseInverse, cheaper_curvatures, dense_bytes
from influence_core.errors import CurvatureError, InputError
from influence_core.progress import ProgressFn, silent
from influence_core.resources import format_bytes
from influence_core.tasks import CROSS_ENTROPY, CrossEntropyTask, Task
from influence_core.timing import Cost, dense_seconds, product_seconds, remember, seconds_text, time_call

# The one limit on the exact Hessian's size: past it the p² matrix and p Hessian-vector passes per sample are
# minutes to hours on a CPU; auto moves on to a factored curvature.
MAX_EXACT_PARAMS = 20_000
# past this estimated fitting time, a few Lanczos steps first ask whether the Hessian is indefinite (a ReLU network's
# usually is), and forming it costs p Hessian-vector products over the data before Cholesky can refuse it
INDEFINITE_CHECK_SECONDS = 5.0
# Hessian columns computed at once (forward-over-reverse, vmapped): all p at once, as torch.func.hessian does, is
# memory-bound; blocks of 256 were 21x faster on a 14k-parameter CNN (85.8 s -> 4.0 s) and 5.7x on a 9k MLP
TANGENT_BLOCK = 256


def _chunk_bytes_per_sample(request: CurvatureRequest) -> int:
    # forward-over-reverse pushes a block of tangents through each sample's graph; several float32 copies of every
    # activation per tangent are alive at once (measured: ~18 bytes per tangent × activation on an MLP, tests/test_contract.py)
    prof = request.profile
    return 20 * min(prof.n_selected, TANGENT_BLOCK) * max(prof.activations_per_sample, 1)


# a chunk larger than this buys no speed (the p tangents are already a large batch) and takes memory others need
MAX_CHUNK_BYTES = 2**30


def exact_chunk_size(request: CurvatureRequest, upper: int = 2048) -> int:
    """Samples per torch.func.hessian call that fit the memory budget beside the dense matrix (≥ 1)."""
    room = min(request.budget - dense_bytes(request.profile.n_selected), MAX_CHUNK_BYTES)
    return int(max(1, min(upper, room // max(_chunk_bytes_per_sample(request), 1))))


def _flat_params(model: nn.Module, names: Sequence[str]) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in names])


def _loss_of_flat_parameters(model: nn.Module, param_names: Sequence[str], task: Task):
    """(θ flattened over ``param_names``, summed task loss as a function of (θ, x, y)) for torch.func."""
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in param_names]
    sizes = [params[n].numel() for n in param_names]
    others = {n: p.detach() for n, p in params.items() if n not in param_names}
    buffers = dict(model.named_buffers())

    def summed_loss(theta: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        pieces = dict(zip(param_names, (t.reshape(s) for t, s in zip(torch.split(theta, sizes), shapes))))
        out = functional_call(model, ({**others, **pieces}, buffers), (xb,))
        return task.summed(out, yb)

    return _flat_params(model, param_names), summed_loss


def hessian_block(flat: torch.Tensor, summed_loss, first: int, last: int, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Rows ``first:last`` of the Hessian of the summed loss over (xb, yb): one tangent per column, forward over reverse."""
    p = flat.numel()

    def hessian_column(v: torch.Tensor) -> torch.Tensor:  # H v
        return torch.func.jvp(lambda theta: torch.func.grad(summed_loss)(theta, xb, yb), (flat,), (v,))[1]

    basis = torch.zeros(last - first, p, dtype=flat.dtype, device=flat.device)
    basis[torch.arange(last - first), torch.arange(first, last)] = 1.0
    return torch.func.vmap(hessian_column)(basis)


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
    flat, summed_loss = _loss_of_flat_parameters(model, param_names, task)
    if flat.numel() > MAX_EXACT_PARAMS:
        raise InputError(
            f"the exact Hessian over {flat.numel():,} parameters is too large (limit {MAX_EXACT_PARAMS:,}); "
            "use another curvature: " + cheaper_curvatures()
        )
    model.eval()
    p, n = flat.numel(), len(x)
    hessian = torch.zeros(p, p, dtype=flat.dtype, device=flat.device)

    for start in range(0, n, chunk_size):
        xb, yb = x[start : start + chunk_size], y[start : start + chunk_size]
        for first in range(0, p, TANGENT_BLOCK):
            last = min(p, first + TANGENT_BLOCK)
            hessian[first:last] += hessian_block(flat, summed_loss, first, last, xb, yb)
            done = (start + len(xb) * last / p) / n
            progress(min(done, 1.0), "exact Hessian")
    hessian /= n
    # the L2 penalty covers all trainable parameters, so it contributes λ·I on any subset
    hessian += weight_decay * torch.eye(flat.numel(), dtype=flat.dtype, device=flat.device)
    return hessian


def smallest_ritz_value(request: CurvatureRequest, steps: int = 40) -> Optional[float]:
    """The smallest Ritz value of the damped Hessian (mean cross-entropy + (λ + damping)·I) after at most ``steps``
    Lanczos steps on curvlinops' Hessian-vector products (one pass over the data each); None when the task is not the
    cross-entropy. A Ritz value lies inside the spectrum, so a negative one proves the matrix indefinite, and the
    steps stop there. (scipy's ARPACK returns converged Ritz values only, and an eigenvalue near 0 converges slowly:
    on a 14k-parameter CNN it returned none after 60 products, where 20 plain Lanczos steps proved a negative one.)"""
    from curvlinops import HessianLinearOperator

    from influence_core.curvatures.operators import cross_entropy_operator

    if not isinstance(request.task, CrossEntropyTask):
        return None
    operator = cross_entropy_operator(HessianLinearOperator, request)
    shift = request.weight_decay + request.damping
    p = request.profile.n_selected
    basis = [torch.full((p,), p**-0.5, dtype=torch.float64, device=request.x.device)]
    alphas: list[float] = []
    betas: list[float] = []
    smallest = None
    for _ in range(min(steps, p)):
        w = (operator @ basis[-1].to(operator.dtype)).double()
        alphas.append(float(w @ basis[-1]))
        for q in basis:  # full reorthogonalisation: without it, rounding makes ghost copies of converged values
            w -= (w @ q) * q
        tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        smallest = float(np.linalg.eigvalsh(tridiagonal)[0]) + shift
        norm = float(w.norm())
        if smallest < 0 or norm < 1e-10:  # a proof, or the Krylov space is invariant (its values are exact)
            break
        betas.append(norm)
        basis.append(w / norm)
    return smallest


# smallest_ritz_value's answers in this process, by what they depend on: the check before the estimate and the fit's
# own see the same trained weights (the same cached training), and 40 passes over the data are not repeated
_RITZ_VALUES: dict[tuple, Optional[float]] = {}


def _checked_ritz_value(request: CurvatureRequest) -> Optional[float]:
    import hashlib

    digest = hashlib.sha256()
    for name in request.param_names:
        digest.update(request.model.get_parameter(name).detach().cpu().numpy().tobytes())
    for tensor in (request.x, request.y):
        digest.update(tensor.detach().cpu().numpy().tobytes())
    key = (digest.hexdigest(), tuple(request.param_names), request.weight_decay, request.damping, type(request.task).__name__)
    if key not in _RITZ_VALUES:
        _RITZ_VALUES[key] = smallest_ritz_value(request)
    return _RITZ_VALUES[key]


class ExactCurvature(Curvature):
    name = "exact"
    label = "exact Hessian (torch.func)"
    short_label = "exact Hessian"
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
    def forming_seconds(cls, request: CurvatureRequest) -> float:
        """Forming the p × p matrix: p / block blocks of Hessian columns per chunk of samples, one block of a whole chunk
        timed here (a block's cost per sample grows with the chunk: it is memory-bound, 0.5 ms per sample at 512 and
        1.1 ms at 1,024 on the digits MLP), scaled by the samples."""
        p, n = request.profile.n_selected, request.n_train
        m = max(1, min(n, exact_chunk_size(request)))
        width = min(p, TANGENT_BLOCK)

        def measure() -> float:
            flat, summed_loss = _loss_of_flat_parameters(request.model, list(request.param_names), request.task)
            x, y = request.x, request.y
            return time_call(
                lambda: hessian_block(flat, summed_loss, 0, width, x[:m], y[:m]),
                x.device,
                warm=lambda: hessian_block(flat, summed_loss, 0, width, x[:2], y[:2]),
            )

        return (p / width) * n * remember(request, ("exact_block", m), measure) / m  # a narrower last block: its share

    @classmethod
    def checks_definiteness(cls, request: CurvatureRequest) -> bool:
        return cls.forming_seconds(request) > INDEFINITE_CHECK_SECONDS and request.profile.n_selected > 2

    @classmethod
    def check_before_fit(cls, request: CurvatureRequest) -> None:
        """Lanczos' definiteness check where forming takes longer than ``INDEFINITE_CHECK_SECONDS`` (a second, against
        minutes of forming: Label bias's CNN asked to confirm 9 minutes, then stopped here in a second). Its answer is
        kept for the same trained weights, data and damping, so the fit after the estimate does not repeat it."""
        if not cls.checks_definiteness(request):
            return
        request.progress(0.0, "Lanczos: is the Hessian positive definite?")
        ritz = _checked_ritz_value(request)
        if ritz is not None and ritz <= 0:
            raise CurvatureError(
                f"the exact Hessian is not positive definite (an eigenvalue of {ritz:.3g} or less at damping "
                f"{request.damping:g}, found by Lanczos before forming the {request.profile.n_selected:,}² matrix); raise "
                f"the damping above {request.damping - ritz:.3g}, or use another curvature: " + cheaper_curvatures()
            )

    @classmethod
    def estimate_cost(cls, request: CurvatureRequest) -> Cost:
        """Lanczos' check (up to 40 Hessian-vector products over the data) where forming takes longer than
        ``INDEFINITE_CHECK_SECONDS``; forming (p tangents per sample, in blocks); the Cholesky factor (p³/3); the solves of
        the rows (2p² each)."""
        from influence_core.curvatures.operators import cross_entropy_operator

        p, rows = request.profile.n_selected, request.rows_to_solve
        parts = []
        if cls.checks_definiteness(request) and isinstance(request.task, CrossEntropyTask):
            from curvlinops import HessianLinearOperator

            def hessian(sub: CurvatureRequest):
                return cross_entropy_operator(HessianLinearOperator, sub)

            hvp = product_seconds(request, hessian, 1)
            steps = min(40, p)
            parts.append(Cost.of(steps, hvp, f"Lanczos: up to {steps} Hessian-vector products × {seconds_text(hvp)}"))
        forming = cls.forming_seconds(request)
        parts.append(Cost(forming, f"forming: {p:,} tangents × {request.n_train:,} samples, {seconds_text(forming)}"))
        factor = dense_seconds(request, "cholesky", p)  # of the float64 copy
        parts.append(Cost(factor, f"Cholesky of {p:,}², {seconds_text(factor)}"))
        solve = dense_seconds(request, "solve", p, rows)
        parts.append(Cost(solve, f"solves of {rows:,} rows, {seconds_text(solve)}"))
        return Cost.total(parts)

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "ExactCurvature":
        names = list(request.param_names)
        need = cls.estimate_bytes(request)
        if need > request.budget:
            raise InputError(
                f"the exact Hessian over {request.profile.n_selected:,} parameters needs {format_bytes(need)} "
                f"(budget {format_bytes(request.budget)}); use another curvature: " + cheaper_curvatures()
            )
        cls.check_before_fit(request)
        h = exact_hessian(
            request.model, request.x, request.y, names, request.weight_decay, exact_chunk_size(request), request.progress, request.task
        )
        h += request.damping * torch.eye(len(h), dtype=h.dtype, device=h.device)
        return cls(h, names, request.damping)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return self._inverse.apply(grads)
