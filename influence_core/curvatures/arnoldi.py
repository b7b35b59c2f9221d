"""Arnoldi influence (Schioppa et al. 2022): the top-k eigenpairs of the GGN (scipy's Lanczos ``eigsh`` on curvlinops'
operator), H⁻¹ ≈ V diag(1 / (λᵢ + λ + damping)) Vᵀ in that subspace. Full rank equals the exact GGN inverse."""

from __future__ import annotations

import numpy as np
import torch

from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.curvatures.operators import ggn_operator, operator_bytes
from influence_core.knobs import Knob
from influence_core.timing import Cost, dense_seconds, product_model, seconds_text

ARNOLDI_RANK = 50


class ArnoldiCurvature(Curvature):
    name = "arnoldi"
    label = "Arnoldi: top eigenvectors of the GGN (curvlinops + scipy)"
    short_label = "Arnoldi"
    knobs = {"rank": Knob("eigenpairs kept (the parameter count = exact)", ARNOLDI_RANK, int, 1)}

    def __init__(self, vectors: torch.Tensor, values: torch.Tensor, shift: float, param_names):
        self.param_names = list(param_names)
        self.vectors, self.values, self.shift = vectors, values, shift
        self.report = f"Arnoldi: rank {len(values)}, eigenvalues {float(values.max()):.3g} … {float(values.min()):.3g}"

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        p = request.profile.n_selected
        rank = min(cls.option(request, "rank", ARNOLDI_RANK), p)
        return operator_bytes(request, vectors=2, columns=1) + 8 * p * (2 * rank + 2) + (16 * p * p if rank >= p - 1 else 0)

    @classmethod
    def estimate_cost(cls, request: CurvatureRequest) -> Cost:
        """Lanczos (ARPACK): about 4 one-column GGN products per eigenpair kept, each timed here; at full rank the
        matrix itself (p columns) and its eigendecomposition."""
        p = request.profile.n_selected
        rank = min(cls.option(request, "rank", ARNOLDI_RANK), p)
        if rank >= p - 1:
            product = product_model(request, ggn_operator, min(p, 256))
            seconds = product(p) + dense_seconds(request, "eigh", p)
            return Cost(seconds, f"Arnoldi at full rank: the {p:,}² GGN and its eigendecomposition, {seconds_text(seconds)}")
        one = product_model(request, ggn_operator, 1)(1)
        return Cost.of(4 * rank, one, f"Arnoldi: about {4 * rank} GGN products × {seconds_text(one)}")

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "ArnoldiCurvature":
        from scipy.sparse.linalg import eigsh

        rank = cls.option(request, "rank", ARNOLDI_RANK)
        operator = ggn_operator(request)
        p = request.profile.n_selected
        device = request.x.device
        if rank >= p - 1:  # full rank: the matrix itself, column by column, then a dense eigendecomposition
            dense = operator @ torch.eye(p, dtype=operator.dtype, device=device)
            values, vectors = torch.linalg.eigh(((dense + dense.T) / 2).double())
        else:
            request.progress(0.0, f"Lanczos: top {rank} eigenpairs")
            vals, vecs = eigsh(operator.to_scipy(np.float64), k=rank, which="LA", v0=np.ones(p) / np.sqrt(p))
            values, vectors = torch.from_numpy(vals), torch.from_numpy(vecs)
        values = values.clamp_min(0.0)  # the GGN is positive semi-definite: negatives are rounding
        return cls(vectors.to(device), values.to(device), request.weight_decay + request.damping, request.param_names)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        v = self.vectors.to(grads.device, torch.float64)
        coefficients = (grads.double() @ v) / (self.values.to(grads.device) + self.shift)
        return (coefficients @ v.T).to(grads.dtype)
