"""The fused Kronecker path (KFAC, EK-FAC) agrees with the libraries' own products on explicit gradient rows.

Fused: per-layer eigenbasis rotations, a Linear layer's per-sample gradient kept as its outer product, never a
p × p matrix nor (for Linear layers) the gradient rows. Unfused reference: every per-sample gradient row formed
and multiplied by laplace-torch's / curvlinops' own inverse.
"""

from __future__ import annotations

import pytest
import torch

from influence_core.curvatures import build_curvature
from influence_core.gradients import per_sample_grads
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.models import parameter_names


@pytest.mark.parametrize("kind", ["kron", "ekfac"])
@pytest.mark.parametrize("scope", ["all", "last_layer"])
def test_fused_self_influence_and_inverse_agree_with_the_library_on_explicit_rows(small_mlp_and_cnn, kind, scope):
    model, x, y = small_mlp_and_cnn
    names = parameter_names(model, scope)
    curv = build_curvature(kind, model, x, y, names, 1e-2, 0.05)
    rows = per_sample_grads(model, x, y, names, backend="vmap").double()
    reference_inverse = curv.library_inverse_hvp(rows.float()).double()
    reference_self = (rows * reference_inverse).sum(1)
    assert reference_self.min() > 0

    fused_inverse = curv.inverse_hvp(rows.float()).double()
    assert torch.allclose(fused_inverse, reference_inverse, rtol=1e-4, atol=1e-6 * reference_inverse.abs().max())
    for backend in ("layers", "vmap"):  # outer products kept (layers) or rows rotated (vmap): the same numbers
        fused_self = curv.self_influence(model, x, y, chunk_size=17, backend=backend).double()
        assert torch.allclose(fused_self, reference_self, rtol=1e-4), (backend, (fused_self / reference_self - 1).abs().max())
    assert torch.allclose(curv.quadratic_form(rows.float()).double(), reference_self, rtol=1e-4)


@pytest.mark.parametrize("kind", ["kron", "ekfac"])
def test_the_influence_method_scores_through_the_fused_path_consistently(small_mlp_and_cnn, kind):
    """A training point's score on its own loss is minus its (fused) self-score, in one pass or two."""
    model, x, y = small_mlp_and_cnn
    ctx = AttributionContext(model, x, y, parameter_names(model, "all"), 1e-2, kind, 0.05)
    method = fit_attributor("influence", ctx)
    scores, own = method.scores_and_self(PerSampleLoss(x[:9], y[:9]))
    assert torch.allclose(torch.tensor(-scores[:, :9].diagonal()), torch.tensor(own[:9]), rtol=1e-4)
    assert torch.allclose(torch.tensor(method.self_scores()), torch.tensor(own), rtol=1e-4)
