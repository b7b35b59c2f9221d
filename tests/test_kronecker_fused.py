"""The fused Kronecker path (KFAC, EK-FAC) agrees with the libraries' own products on explicit gradient rows.

Fused: per-layer eigenbasis rotations, a Linear layer's per-sample gradient kept as its outer product, never a
p × p matrix nor (for Linear layers) the gradient rows. Unfused reference: every per-sample gradient row formed
and multiplied by laplace-torch's / curvlinops' own inverse.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from influence_core.curvatures import build_curvature
from influence_core.gradients import per_sample_grads
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.models import parameter_names


@pytest.mark.parametrize("kind, options", [("kron", None), ("kron", {"sampled": 1}), ("ekfac", None)])
@pytest.mark.parametrize("scope", ["all", "last_layer"])
def test_fused_self_influence_and_inverse_agree_with_the_library_on_explicit_rows(small_mlp_and_cnn, kind, options, scope):
    model, x, y = small_mlp_and_cnn
    names = parameter_names(model, scope)
    curv = build_curvature(kind, model, x, y, names, 1e-2, 0.05, options=options)
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


def _kfc_factors_by_hand(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per Linear / Conv2d layer, KFAC-expand's factors of the mean cross-entropy's Fisher at ``labels``, from their
    definition (float64): A = Σ_n Σ_p a_np a_npᵀ / (N·P) over the layer's unfolded input patches (no bias column: the
    bias is a block of its own), G = Σ_n Σ_p g_np g_npᵀ / N over the gradients of the summed loss at its outputs."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):

            def keep(mod, inputs, output, name=name):
                output.retain_grad()
                seen[name] = (inputs[0].detach(), output)

            hooks.append(module.register_forward_hook(keep))
    model = model.double()
    F.cross_entropy(model(x.double()), labels, reduction="sum").backward()
    for h in hooks:
        h.remove()
    n, factors = len(x), {}
    for name, (inp, out) in seen.items():
        module = model.get_submodule(name)
        if isinstance(module, nn.Conv2d):
            patches = F.unfold(inp, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, C k², P)
            a, positions = patches.transpose(1, 2).reshape(-1, patches.shape[1]), patches.shape[2]
            g = out.grad.flatten(2).transpose(1, 2).reshape(-1, out.shape[1])
        else:
            a, positions, g = inp, 1, out.grad
        factors[name] = (g.T @ g / n, a.T @ a / (n * positions))
    model.float()
    return factors


def test_sampled_kfac_is_the_kfc_fisher_of_every_row_whatever_the_batching():
    """kron's ``sampled`` knob (curvlinops' KFACLinearOperator, fisher_type="mc", called directly): its inverse equals
    (G ⊗ A + (λ + damping)·I)⁻¹ per weight and (G + (λ + damping)·I)⁻¹ per bias with the KFC factors built by hand from
    their definition over *all* rows at once, at the labels curvlinops draws (one per row from the model's softmax,
    its generator at its default seed), to float32 rounding, although it is fitted in mini-batches of 16 (laplace-torch's
    sum of per-batch factors, Σ_b G_b ⊗ Σ_b A_b, would not be); the exact expectation's KFAC is a different matrix."""
    from influence_core.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(1, 3, 8, width=4).eval()
    x, y = torch.randn(70, 1, 8, 8), torch.randint(0, 3, (70,))
    names = parameter_names(model, "all")
    wd, damping = 1e-2, 0.05
    curv = build_curvature("kron", model, x, y, names, wd, damping, batch_size=16, options={"sampled": 1})

    with torch.no_grad():  # curvlinops' draw: its seeded generator, row after row (the same in one batch or several)
        labels = model(x).softmax(1).multinomial(1, generator=torch.Generator().manual_seed(2147483647)).squeeze(1)
    factors = _kfc_factors_by_hand(model, x, labels)
    g = torch.randn(5, sum(model.get_parameter(n).numel() for n in names), generator=torch.Generator().manual_seed(1))
    expected, start = torch.empty_like(g, dtype=torch.float64), 0
    for name in names:
        layer, kind = name.rsplit(".", 1)
        grad_out, inputs = factors[layer]
        block = grad_out if kind == "bias" else torch.kron(grad_out, inputs)  # vec of an (out, in) weight, row-major
        size = block.shape[0]
        shifted = block + (wd + damping) * torch.eye(size, dtype=torch.float64)
        expected[:, start : start + size] = torch.linalg.solve(shifted, g[:, start : start + size].double().T).T
        start += size

    got = curv.inverse_hvp(g).double()
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * scale, float((got - expected).abs().max() / scale)
    assert (curv.library_inverse_hvp(g).double() - expected).abs().max() <= 1e-5 * scale
    exact = build_curvature("kron", model, x, y, names, wd, damping).inverse_hvp(g).double()
    assert (exact - expected).abs().max() > 1e-2 * scale  # a Monte-Carlo estimate, not the expectation


@pytest.mark.parametrize("kind", ["kron", "ekfac"])
def test_sampled_kronecker_fits_do_not_depend_on_the_batching(kind):
    """The sampled KFAC and EK-FAC fits run in the gradient engine's pass size, not the request's batch size: their
    factors (and EK-FAC's corrected eigenvalues) are sums over rows at labels drawn row by row from one generator,
    so batches of 16 and one batch of every row give the same inverse to float32 rounding."""
    from influence_core.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(1, 3, 8, width=4).eval()
    x, y = torch.randn(70, 1, 8, 8), torch.randint(0, 3, (70,))
    names = parameter_names(model, "all")
    g = torch.randn(5, sum(model.get_parameter(n).numel() for n in names), generator=torch.Generator().manual_seed(1))
    small, whole = (
        build_curvature(kind, model, x, y, names, 1e-2, 0.05, batch_size=b, options={"sampled": 1}).inverse_hvp(g) for b in (16, 512)
    )
    assert (small - whole).abs().max() <= 1e-5 * whole.abs().max()
