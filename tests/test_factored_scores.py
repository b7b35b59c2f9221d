"""Test × train score matrices through outer products (influence_core/factored.py) equal the formed computation.

Reference: every per-sample gradient row formed (vmap backend) and multiplied by the curvature library's own inverse
(laplace-torch, curvlinops) or by nothing (IP). The factored path must give the same matrix, must not form the
training rows of Linear layers while doing so, and must fall back to formed rows where a layer is called twice.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from influence_core import gradients
from influence_core.config import ModelConfig
from influence_core.factored import InBasis, Outer
from influence_core.gradients import per_sample_grads
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.methods.base import preconditioned_queries
from influence_core.models import build_model, parameter_names

SHAPE = (1, 8, 8)


def _reference(curvature, model, names, x, y, xq, yq) -> torch.Tensor:
    """−(H⁻¹ G_query) G_trainᵀ from formed rows (H⁻¹ by the library; None: IP)."""
    train = per_sample_grads(model, x, y, names, backend="vmap").double()
    queries = per_sample_grads(model, xq, yq, names, backend="vmap")
    pre = queries if curvature is None else curvature.library_inverse_hvp(queries)
    return -(pre.double() @ train.T)


@pytest.mark.parametrize("curvature", ["identity", "kron", "ekfac"])
def test_factored_matrix_equals_formed_rows_times_the_library_inverse(small_mlp_and_cnn, curvature, monkeypatch):
    model, x, y = small_mlp_and_cnn
    names = parameter_names(model, "all")
    method_name = "ip" if curvature == "identity" else "influence"
    method = fit_attributor(method_name, AttributionContext(model, x, y, names, 1e-2, curvature, 0.05))
    xq, yq = torch.randn(13, *SHAPE), torch.randint(0, 3, (13,))
    expected = _reference(getattr(method, "curvature", None), model, names, x, y, xq, yq)

    formed_calls = []
    original = gradients._LayersEngine.chunk
    monkeypatch.setattr(gradients._LayersEngine, "chunk", lambda self, *a: formed_calls.append(1) or original(self, *a))
    got = torch.tensor(method.scores(PerSampleLoss(xq, yq))).double()
    assert not formed_calls, "the training rows were formed"
    scale = expected.abs().max()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * scale), (got - expected).abs().max() / scale


def test_the_queries_keep_the_form_each_curvature_allows():
    torch.manual_seed(1)
    model = build_model(ModelConfig(kind="mlp", hidden=40, depth=1), (60,), 5, 0).eval()
    x, y = torch.randn(400, 60), torch.randint(0, 5, (400,))
    names = parameter_names(model, "all")
    measurement = PerSampleLoss(x[:7], y[:7])
    forms = {}
    for curvature in ("identity", "kron", "ekfac"):
        method = fit_attributor("influence", AttributionContext(model, x, y, names, 1e-3, curvature, 1e-2))
        forms[curvature] = preconditioned_queries(method.curvature, measurement, model, names).blocks
    first = "body.0.weight"
    assert isinstance(forms["identity"][first], Outer) and forms["identity"][first].rank == 1
    # KFAC's inverse eigenvalues 1 / (λ_out λ_inᵀ + δ) are of low rank: a few outer products per query, not 40 × 60
    assert isinstance(forms["kron"][first], Outer) and forms["kron"][first].rank <= 20
    assert isinstance(forms["ekfac"][first], (Outer, InBasis))
    assert all(isinstance(forms[c]["body.0.bias"], Outer) for c in forms)


class _TwiceThrough(nn.Module):
    """One Linear applied twice (its gradient is a sum of two outer products per sample): formed rows, not factored."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x)))))


def test_a_layer_called_twice_is_scored_from_formed_rows():
    torch.manual_seed(2)
    model = _TwiceThrough().eval()
    x, y = torch.randn(50, 6), torch.randint(0, 3, (50,))
    names = parameter_names(model, "all")
    method = fit_attributor("ip", AttributionContext(model, x, y, names, 1e-2, "identity", 0.0))
    rows = next(gradients.iter_factored_grads(model, x, y, names))[1]
    assert isinstance(rows.blocks["shared.weight"], torch.Tensor)
    xq, yq = torch.randn(4, 6), torch.randint(0, 3, (4,))
    expected = _reference(None, model, names, x, y, xq, yq)
    got = torch.tensor(method.scores(PerSampleLoss(xq, yq))).double()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())
