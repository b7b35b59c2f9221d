"""Kronecker-factored GGN (KFAC, laplace-torch) over Linear and Conv2d layers."""

from __future__ import annotations

import torch

from influence_core.curvatures.base import CurvatureRequest
from influence_core.curvatures.eigenbasis import EigenbasisCurvature, KroneckerEigenbasis, laplace_eigenbasis
from influence_core.curvatures.laplace_fit import fit_laplace, prior_precision, subset_for, subset_reason
from influence_core.knobs import Knob
from influence_core.tasks import CrossEntropyTask

KRON_LAYER_TYPES = {"Linear", "Conv2d"}

# The Kronecker factors from one label sampled from the model per row (a Monte-Carlo Fisher, as kronfluence fits
# them: one backward per batch) instead of the exact GGN expectation (one backward per class).
SAMPLED_KNOB = Knob(
    "1: Kronecker factors from one label sampled from the model per row, as kronfluence's Fisher (one backward per "
    "batch instead of one per class); 0: the exact GGN expectation",
    0,
    bool,
)


class KroneckerCurvature(EigenbasisCurvature):
    name = "kron"
    tasks = (CrossEntropyTask,)  # a GGN of the cross-entropy (laplace-torch)
    label = "Kronecker-factored GGN, KFAC (laplace-torch)"
    short_label = "KFAC"
    auto_rank = 10
    knobs = {"sampled": SAMPLED_KNOB}

    def __init__(self, precision, n_train: int, param_names, param_sizes: dict[str, int]):
        self.param_names = list(param_names)
        self._precision = precision  # laplace-torch KronDecomposed of the *summed* GGN + prior
        self._n = n_train
        self._basis = laplace_eigenbasis(precision, n_train, param_names, param_sizes)

    @classmethod
    def unsupported_reason(cls, request: CurvatureRequest):
        reason = subset_reason(request, cls.name)
        if reason:
            return reason
        others = request.profile.selected_module_types - KRON_LAYER_TYPES
        if others:
            return f"KFAC factors only Linear and Conv2d layers; this model's selected parameters include {', '.join(sorted(others))}"
        return None

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        prof = request.profile
        factors = sum(a * a + g * g for a, g in prof.factor_sides)
        batch = min(request.batch_size, request.n_train)
        # two copies of each factor (and its eigendecomposition) in float64, plus a batch's backward with C outputs
        return 16 * 2 * factors + 8 * batch * prof.activations_per_sample * prof.n_outputs

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "KroneckerCurvature":
        prior = prior_precision(request, cls.name)
        request.progress(0.0, "fitting the Kronecker-factored GGN (laplace-torch)")
        sampled = {"stochastic": True} if cls.option(request, "sampled", 0) else None  # laplace-torch: curvlinops' MC Fisher
        la = fit_laplace(request.model, request.x, request.y, subset_for(request, cls.name), "kron", prior, request.batch_size, sampled)
        request.progress(1.0, "fitted the Kronecker-factored GGN")
        sizes = {n: p.numel() for n, p in request.model.named_parameters() if n in set(request.param_names)}
        return cls(la.posterior_precision, request.n_train, request.param_names, sizes)

    def eigenbasis(self) -> KroneckerEigenbasis:
        return self._basis

    def library_inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        """laplace-torch's own product (the reference the fused path is tested against)."""
        return self._n * self._precision.bmm(grads.unsqueeze(1), exponent=-1).squeeze(1)
