"""The engine's contract, over every registered curvature × method: a new backend or method that is one file
plus its registration is checked here with no other edit.

For each: the shapes; the sign convention (a training point scored on its own loss is minus its self-score,
and self-scores are ≥ 0); chunk-size invariance; agreement with the exact inverse where it must agree
(huge damping turns every curvature into IP / λ; the last-layer GGN is the exact Hessian on a linear
model); estimates that refuse what does not fit before anything is allocated; and a fit whose peak memory
stays inside the budget the estimate was checked against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from influence_core import curvatures, methods
from influence_core.config import ModelConfig, TrainConfig
from influence_core.curvatures import CurvatureRequest, build_curvature
from influence_core.curvatures.exact import exact_hessian
from influence_core.data.synthetic import make_synthetic
from influence_core.errors import InputError
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.methods import base as method_base
from influence_core.models import build_model, parameter_names
from influence_core.training import TrainingRecipe, train_model

CURVATURE_NAMES = curvatures.curvature_names(include_auto=False)
METHOD_NAMES = methods.method_names()
WD = 1e-2


@pytest.fixture(scope="module")
def trained_mlp():
    ds = make_synthetic("moons", 80, 12, 0)
    x, y = torch.tensor(ds.x_train), torch.tensor(ds.y_train)
    xt, yt = torch.tensor(ds.x_test), torch.tensor(ds.y_test)
    model = build_model(ModelConfig(kind="mlp", hidden=6, depth=1, activation="tanh"), (2,), 2, 0)
    config = TrainConfig(optimizer="adam", lr=0.05, epochs=60, weight_decay=WD, n_checkpoints=3)
    recipe = TrainingRecipe({k: v.clone() for k, v in model.state_dict().items()}, config, 0)
    result = train_model(model, x, y, config, 0)
    trained = _Trained((model.eval(), result.checkpoints, x, y, xt, yt))
    trained.recipe = recipe  # how it was trained: for the methods that replay the run
    return trained


class _Trained(tuple):
    """(model, checkpoints, x, y, x_test, y_test), with the run's ``recipe`` beside them."""


def _context(trained, curvature: str = "auto", damping: float = 0.05, **options) -> AttributionContext:
    model, ckpts, x, y, _, _ = trained
    return AttributionContext(
        model, x, y, parameter_names(model, "all"), WD, curvature, damping, ckpts, seed=3, options=options, training=trained.recipe
    )


def _pairs():
    """Every method; the curvature-using ones under every curvature."""
    for method in METHOD_NAMES:
        if methods.get(method).uses_curvature:
            yield from ((method, c) for c in CURVATURE_NAMES)
        else:
            yield method, None


PAIRS = list(_pairs())


@pytest.mark.parametrize(("method", "curvature"), PAIRS)
def test_shapes_sign_and_self_consistency(trained_mlp, method, curvature):
    _, _, x, y, xt, yt = trained_mlp
    attributor = fit_attributor(method, _context(trained_mlp, curvature or "auto", ensemble_size=2))
    scores = attributor.scores(PerSampleLoss(xt, yt))
    own = attributor.self_scores()
    assert scores.shape == (len(xt), len(x)) and own.shape == (len(x),)
    assert np.isfinite(scores).all() and np.isfinite(own).all()
    if methods.get(method).self_scores_nonnegative:
        assert (own >= -1e-6 * np.abs(own).max()).all(), "self-scores are quadratic forms of a positive-definite H⁻¹"
    # a training point scored on its own loss is −gᵢᵀH⁻¹gᵢ: the harmful-positive sign convention, in one line
    on_itself = attributor.scores(PerSampleLoss(x[:6], y[:6]))
    np.testing.assert_allclose(np.diag(on_itself[:, :6]), -own[:6], rtol=2e-4, atol=1e-7)
    both, own_again = attributor.scores_and_self(PerSampleLoss(xt, yt))
    # one pass may take outer products and the other formed rows: equal to float32 rounding of the matrix's scale
    np.testing.assert_allclose(both, scores, rtol=1e-5, atol=1e-6 * np.abs(scores).max())
    np.testing.assert_allclose(own_again, own, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("method", "curvature"), PAIRS)
def test_chunk_size_does_not_change_scores(trained_mlp, method, curvature, monkeypatch):
    _, _, _, _, xt, yt = trained_mlp
    attributor = fit_attributor(method, _context(trained_mlp, curvature or "auto", ensemble_size=2))
    whole = attributor.scores(PerSampleLoss(xt, yt))
    monkeypatch.setattr(method_base, "CHUNK_BYTES", 1)  # the smallest chunks the stream takes (32 rows of 80)
    np.testing.assert_allclose(attributor.scores(PerSampleLoss(xt, yt)), whole, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("curvature", CURVATURE_NAMES)
def test_huge_damping_turns_every_curvature_into_ip_over_lambda(trained_mlp, curvature):
    """(H + λI)⁻¹ → I/λ as λ grows, whatever H is: each backend must apply its damping the same way."""
    _, _, _, _, xt, yt = trained_mlp
    damping = 1e4
    influence = fit_attributor("influence", _context(trained_mlp, curvature, damping))
    ip = fit_attributor("ip", _context(trained_mlp))
    names = influence.param_names
    ip.context.param_names = names  # the last-layer backend narrows the scope: compare over the same parameters
    expected = ip.scores(PerSampleLoss(xt, yt)) / (damping if curvatures.get(curvature).applies_damping else 1.0)
    # (H + λI)⁻¹ = I/λ − H/λ² + …: off by about ‖H‖/λ of the largest score
    np.testing.assert_allclose(influence.scores(PerSampleLoss(xt, yt)), expected, rtol=0, atol=2e-3 * np.abs(expected).max())


def test_last_layer_ggn_equals_exact_hessian_on_a_linear_model():
    ds = make_synthetic("blobs", 60, 10, 1)
    x, y = torch.tensor(ds.x_train, dtype=torch.float64), torch.tensor(ds.y_train)
    model = build_model(ModelConfig(kind="logreg"), (2,), 2, 0).double().eval()
    names = parameter_names(model, "all")
    exact = build_curvature("exact", model, x, y, names, WD, 0.01)
    last = build_curvature("last_layer", model, x, y, names, WD, 0.01)
    g = torch.randn(4, len(exact.hessian), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(last.inverse_hvp(g), exact.inverse_hvp(g), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind, shape", [("mlp", (2,)), ("cnn", (1, 8, 8))])
def test_last_layer_ggn_of_the_zoo_equals_laplace_torchs(kind, shape):
    """The zoo's models take BackPACK's road to the last layer's GGN, others laplace-torch's: both give one matrix."""
    from influence_core.curvatures.laplace_fit import fit_laplace

    model = build_model(ModelConfig(kind=kind), shape, 3, 0).double().eval()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(70, *shape, generator=gen, dtype=torch.float64), torch.randint(0, 3, (70,), generator=gen)
    names = parameter_names(model, "last_layer")
    fitted = build_curvature("last_layer", model, x, y, names, WD, 0.01, batch_size=32)
    prior = len(x) * (WD + 0.01)
    reference = fit_laplace(model, x, y, "last_layer", "full", prior, 32).posterior_precision.detach() / len(x)
    torch.testing.assert_close(fitted.hessian, reference.to(fitted.hessian.dtype), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("curvature", CURVATURE_NAMES)
def test_every_curvature_estimates_and_labels_itself(trained_mlp, curvature):
    model, _, x, y, _, _ = trained_mlp
    cls = curvatures.get(curvature)
    request = CurvatureRequest(model, x, y, parameter_names(model, "all"), WD, 0.05)
    reason, need, seconds = curvatures.assess(curvature, request)
    assert reason is None and need >= 0 and seconds >= 0
    assert cls.label and curvatures.curvature_label(curvature) == cls.label


@pytest.mark.parametrize("curvature", CURVATURE_NAMES)
def test_a_request_past_the_budget_is_refused_before_fitting(trained_mlp, curvature, monkeypatch):
    """A backend that needs memory is refused before fitting when its estimate passes the budget; one that estimates
    it stores nothing (the identity) serves any budget. Read from the estimate, not the name."""
    model, _, x, y, _, _ = trained_mlp
    cls = curvatures.get(curvature)
    request = CurvatureRequest(model, x, y, parameter_names(model, "all"), WD, 0.05, memory_budget=1)
    if curvatures.assess(curvature, request)[1] <= request.budget:
        assert curvatures.fit_curvature(curvature, request).param_names
        return
    monkeypatch.setattr(cls, "fit", classmethod(lambda *_: pytest.fail("fitted although the estimate did not fit")))
    with pytest.raises(InputError, match="needs about .*memory budget .*choose auto or one that fits: "):
        curvatures.fit_curvature(curvature, request)


def test_auto_picks_the_most_accurate_that_fits_and_says_why(trained_mlp):
    model, _, x, y, _, _ = trained_mlp
    names = parameter_names(model, "all")
    roomy = curvatures.fit_curvature("auto", CurvatureRequest(model, x, y, names, WD, 0.05))
    assert roomy.note.startswith("auto chose exact")
    exact_need = curvatures.assess("exact", CurvatureRequest(model, x, y, names, WD, 0.05))[1]
    tight = curvatures.fit_curvature("auto", CurvatureRequest(model, x, y, names, WD, 0.05, memory_budget=exact_need - 1))
    tight_request = CurvatureRequest(model, x, y, names, WD, 0.05, memory_budget=exact_need - 1)
    runner_up = next(
        n
        for n in curvatures.curvature_names(include_auto=False)
        if curvatures.get(n).auto_rank is not None and n != "exact" and curvatures.assess(n, tight_request)[1] < exact_need
    )
    assert tight.note.startswith(f"auto chose {runner_up}") and "exact: needs" in tight.note


def test_auto_moves_on_from_an_indefinite_exact_hessian(trained_mlp):
    model, _, x, y, _, _ = trained_mlp
    names = parameter_names(model, "all")
    if torch.linalg.eigvalsh(exact_hessian(model, x, y, names, 0.0).double()).min() > 0:
        pytest.skip("this toy's undamped Hessian happens to be positive definite")  # pragma: no cover - seed-dependent
    chosen = curvatures.fit_curvature("auto", CurvatureRequest(model, x, y, names, 0.0, 1e-3))
    assert "exact: the exact Hessian is not positive definite" in chosen.note and not chosen.note.startswith("auto chose exact")


def test_the_default_cnn_on_images_is_not_given_the_exact_hessian():
    """Issue: `scores --model cnn` on a small image folder asked the exact Hessian for 144 GB and was killed. The estimate
    must refuse it, and auto must pick a curvature that fits."""
    model = build_model(ModelConfig(kind="cnn"), (1, 16, 16), 2, 0).eval()
    x, y = torch.rand(24, 1, 16, 16), torch.randint(0, 2, (24,))
    names = parameter_names(model, "all")
    request = CurvatureRequest(model, x, y, names, 1e-4, 0.01, memory_budget=2 * 2**30)
    with pytest.raises(InputError, match="needs about"):
        curvatures.fit_curvature("exact", request)
    chosen = curvatures.fit_curvature("auto", request)
    assert chosen.note.startswith(("auto chose ekfac", "auto chose kron")), chosen.note


PEAK_SCRIPT = r"""
import json, resource, sys, torch
from influence_core.config import ModelConfig
from influence_core.curvatures import CurvatureRequest, assess, fit_curvature
from influence_core.models import build_model, parameter_names
import laplace, backpack  # noqa: F401  (their import costs memory of its own, not the fit's)
torch.manual_seed(0)
kind, budget = sys.argv[1], int(sys.argv[2])
model = build_model(ModelConfig(kind="mlp", hidden=32, depth=1), (40,), 3, 0).eval()
x, y = torch.randn(600, 40), torch.randint(0, 3, (600,))
request = CurvatureRequest(model, x, y, parameter_names(model, "all"), 1e-2, 1.0, memory_budget=budget)
need = assess(kind, request)[1]
fit_curvature("identity", request)  # warm the code paths shared by every backend
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
curvature = fit_curvature(kind, request)
curvature.inverse_hvp(torch.randn(8, sum(p.numel() for n, p in model.named_parameters() if n in curvature.param_names)))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"need": need, "grew": after - before}))
"""


@pytest.mark.parametrize("curvature", CURVATURE_NAMES)
def test_a_fit_stays_inside_the_budget_it_was_estimated_against(curvature):
    """Peak RSS growth of a fit (in a fresh process) against its budget: the estimate is what the fit may take."""
    budget = 128 * 2**20
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, curvature, str(budget)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["need"] <= budget
    assert figures["grew"] <= budget + 48 * 2**20, figures  # allocator and first-call slack


def test_the_core_never_imports_streamlit_and_its_computing_modules_build_no_figures():
    """Layering (issue 14): pages lay out, ``influence_core.figures`` draws, the rest computes.

    Importing every core module must load neither streamlit nor, outside ``figures``, plotly.
    """
    import pkgutil

    import influence_core

    modules = [
        m.name
        for m in pkgutil.walk_packages(influence_core.__path__, "influence_core.")
        if ".figures" not in m.name and not m.name.endswith("__main__")
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'streamlit', 'plotly'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"the core loaded {loaded}"


def test_influence_core_has_no_import_cycle():
    """The layers import-linter keeps (.importlinter) need an order: no module of the core may reach itself through
    its imports (config once imported the method and curvature registries to check names, tying 15 modules into one
    cycle). Counts function-level imports too."""
    import grimp

    graph = grimp.build_graph("influence_core", cache_dir=None)
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's components of the import graph (iterative: the core has hundreds of modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
    return out


def test_a_config_naming_an_unregistered_method_or_curvature_is_refused_by_the_registries():
    """config.py is a leaf; the registries check names and options in every config's validation."""
    import influence_core.experiments  # noqa: F401  (where runs are made: it loads both registries)
    from influence_core.config import CurvatureConfig, RunConfig

    with pytest.raises(InputError, match="method must be one of"):
        RunConfig(method="no-such-method")
    with pytest.raises(InputError, match="curvature must be one of"):
        RunConfig(curvature=CurvatureConfig(kind="no-such-curvature"))
    with pytest.raises(InputError, match="has no option"):
        RunConfig(curvature=CurvatureConfig(kind="arnoldi", options=(("no_such_knob", 1),)))
    code = "import influence_core.config, sys; print(sorted(m for m in sys.modules if m.startswith('influence_core.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "['influence_core.config', 'influence_core.errors']", loaded


def test_every_study_setting_is_inside_the_one_hashed_config():
    """Glitch, region and Hessian-free settings live in RunConfig.study: they change the key, survive a JSON round
    trip, are validated on the way in, and a config never hands back another study's settings."""
    from influence_core import hessian_free as hf
    from influence_core.config import RunConfig
    from influence_core.regions import RegionConfig
    from influence_core.signals import GlitchConfig, signal_run_config

    a = signal_run_config("digits", glitch=GlitchConfig(kind="uniform", ratio=0.1))
    b = signal_run_config("digits", glitch=GlitchConfig(kind="uniform", ratio=0.2))
    assert a.key() != b.key()
    again = RunConfig.from_dict(json.loads(a.to_json()))
    assert again.key() == a.key() and again.study_settings(GlitchConfig) == GlitchConfig(kind="uniform", ratio=0.1)
    with pytest.raises(InputError, match="ratio"):
        signal_run_config("digits", glitch=GlitchConfig(kind="uniform", ratio=0.9))
    with pytest.raises(InputError, match="GlitchConfig"):
        a.study_settings(RegionConfig)

    region = RegionConfig(family="hcas", n_points=500).run_config()
    assert region.data.name == "hcas_table" and region.study_settings(RegionConfig).n_points == 500
    assert RegionConfig(family="hcas", n_points=600).run_config().key() != region.key()

    trim = hf.impact_study(hf.synthetic_config("blobs"), trim_seeds=[0, 1], impact="fairness")
    assert hf.study_of(trim).trim_seeds == (0, 1) and hf.study_of(trim).impact == "fairness"
    assert RunConfig.from_dict(json.loads(trim.to_json())) == trim  # hashable, and lists come back as tuples
    with pytest.raises(InputError, match="impact"):
        hf.impact_study(hf.synthetic_config("blobs"), impact="speed")


def test_chunk_size_follows_the_memory_budget_and_the_models_activations(monkeypatch):
    """The streamed chunk is sized from the memory there is, not a constant: a small budget gives small chunks, and
    a model whose per-sample activations dwarf its parameters (a convolution) gets fewer rows than its size alone
    would allow."""
    from influence_core.config import ModelConfig
    from influence_core.models import build_model, parameter_names

    monkeypatch.setenv("INFLUENCE_LAB_MEMORY_GB", "1")  # 1 GiB budget -> chunks of 128 MiB
    small = method_base.chunk_rows(100_000, 1_000)
    monkeypatch.setenv("INFLUENCE_LAB_MEMORY_GB", "16")  # -> 1 GiB chunks (the CPU's cap)
    large = method_base.chunk_rows(100_000, 1_000)
    assert small == 128 * 2**20 // (8 * 101_000)  # 166 rows
    assert large == 2**30 // (8 * 101_000)  # 1,328 rows
    cnn = build_model(ModelConfig(kind="cnn"), (1, 28, 28), 10, 0)
    names = parameter_names(cnn, "all")
    params = sum(p.numel() for n, p in cnn.named_parameters() if n in names)
    with_activations = method_base.model_chunk_rows(cnn, names, (1, 28, 28))
    assert with_activations < method_base.chunk_rows(params)
    assert with_activations >= 32


@pytest.mark.parametrize("path", ["formed", "ghost"])
def test_ip_on_a_cnn_is_the_same_whichever_conv_path_is_taken(path, monkeypatch):
    """Issue 35: the IP self-influence and test × train matrix on the SmallCNN equal the formed vmap gradients' to
    float32 rounding whether every Conv2d is formed or taken in the ghost form (Σ_{p,q} (g_p·g′_q)(a_p·a′_q))."""
    from influence_core import gradients

    monkeypatch.setattr(gradients, "CONV_PATH_OVERRIDE", path)
    model = build_model(ModelConfig(kind="cnn"), (1, 12, 12), 3, 0).eval()
    names = parameter_names(model, "all")
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(40, 1, 12, 12, generator=g), torch.randint(0, 3, (40,), generator=g)
    xq, yq = torch.randn(6, 1, 12, 12, generator=g), torch.randint(0, 3, (6,), generator=g)
    method = fit_attributor("ip", AttributionContext(model, x, y, names, WD, "identity", 0.0))
    rows = gradients.per_sample_grads(model, x, y, names, backend="vmap").double()
    rows_q = gradients.per_sample_grads(model, xq, yq, names, backend="vmap").double()
    for got, expected in (
        (torch.as_tensor(method.self_scores()).double(), (rows**2).sum(1)),
        (torch.as_tensor(method.scores(PerSampleLoss(xq, yq))).double(), -(rows_q @ rows.T)),
    ):
        assert ((got - expected).abs().max() / expected.abs().max()) < 2e-5


def test_no_page_builds_or_restyles_a_figure():
    """Pages lay out, figures draw (issue 33): plotly is out of pages by import-linter's contract, and this catches
    the other road, a page changing a figure it was handed (the explorer set heights and hid a legend itself)."""
    import re
    from pathlib import Path

    pages = Path(__file__).resolve().parents[1] / "pages"
    drawing = re.compile(r"\.(update_layout|update_traces|update_xaxes|update_yaxes|add_trace|add_scatter|add_shape|add_annotation)\(")
    found = [
        f"{p.name}:{i}" for p in sorted(pages.glob("*.py")) for i, line in enumerate(p.read_text().splitlines(), 1) if drawing.search(line)
    ]
    assert not found, found
