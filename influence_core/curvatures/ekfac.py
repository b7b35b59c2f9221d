"""Eigenvalue-corrected KFAC (George et al. 2018; Grosse et al. 2023, as kronfluence): KFAC's eigenbases with the
eigenvalues refitted to the GGN's diagonal in that basis (curvlinops' EKFACLinearOperator, exact damping)."""

from __future__ import annotations

import torch
from torch import nn

from influence_core.curvatures.base import CurvatureRequest
from influence_core.curvatures.eigenbasis import EigenbasisCurvature, KroneckerEigenbasis, curvlinops_eigenbasis
from influence_core.curvatures.kronecker import SAMPLED_KNOB, KroneckerCurvature
from influence_core.curvatures.operators import apply_in_chunks, batches, pass_batches, selected_parameters
from influence_core.tasks import CrossEntropyTask


class EkfacCurvature(EigenbasisCurvature):
    name = "ekfac"
    tasks = (CrossEntropyTask,)  # a GGN of the cross-entropy (curvlinops' EKFAC operator)
    label = "EK-FAC: eigenvalue-corrected KFAC (curvlinops)"
    short_label = "EK-FAC"
    auto_rank = 5  # at least as close to exact as KFAC, at a second pass over the data
    knobs = {"sampled": SAMPLED_KNOB}

    def __init__(self, inverse, param_names, param_sizes: dict[str, int]):
        self.param_names = list(param_names)
        self._inverse = inverse
        self._basis = curvlinops_eigenbasis(inverse, param_names, param_sizes)

    @classmethod
    def unsupported_reason(cls, request: CurvatureRequest):
        return KroneckerCurvature.unsupported_reason(request)

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        prof = request.profile
        batch = min(request.batch_size, request.n_train)
        # factors, their eigenvectors and the corrected eigenvalues (one per weight), plus a batch's backward
        factors = sum(a * a + g * g for a, g in prof.factor_sides)
        return 8 * 3 * factors + 8 * 2 * prof.n_selected + 8 * batch * prof.activations_per_sample * prof.n_outputs * 2

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "EkfacCurvature":
        from curvlinops import EKFACLinearOperator, KFACInverseLinearOperator

        request.model.eval()
        request.progress(0.0, "EK-FAC: Kronecker factors and corrected eigenvalues (curvlinops)")
        sampled = cls.option(request, "sampled", 0)
        operator = EKFACLinearOperator(
            request.model,
            nn.CrossEntropyLoss(reduction="mean"),
            selected_parameters(request.model, request.param_names),
            # sums over rows, the same in any batching: the sampled fit in the engine's pass size, where it was measured
            # faster (the exact one, a backward per class, keeps the request's batch size)
            pass_batches(request) if sampled else batches(request),
            fisher_type="mc" if sampled else "type-2",
            mc_samples=1,
            check_deterministic=False,
            num_data=request.n_train,
        )
        inverse = KFACInverseLinearOperator(operator, damping=request.weight_decay + request.damping, use_exact_damping=True)
        sizes = {n: p.numel() for n, p in request.model.named_parameters() if n in set(request.param_names)}
        fitted = cls(inverse, request.param_names, sizes)  # the factors and the refitted eigenvalues: two passes
        request.progress(1.0, "EK-FAC fitted")
        return fitted

    def eigenbasis(self) -> KroneckerEigenbasis:
        return self._basis

    def library_inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        """curvlinops' own product (the reference the fused path is tested against)."""
        return apply_in_chunks(self._inverse, grads)
