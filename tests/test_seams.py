"""Behaviour follows what a class declares, not its name (issue 33): three probes, each written here as a new
contributor would write one new file, must behave like their originals in the registries, the CLI, the
retraining check, the Glitch-signals and Hessian-free pipelines and the contract test:

- ``probe_influence``: the influence function under another name;
- ``probe_ip``: a method that subclasses IP;
- ``probe_lambda``: a curvature H ≈ λI (so (H + δI)⁻¹ = I / (λ + δ)).

They are registered for the tests of this module only and removed afterwards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import test_contract as contract  # tests/ is on the path (see test_score_store)
import torch
from test_contract import trained_mlp  # noqa: F401  (the contract's fixture, used by the probes' contract run)

from influence_core import curvatures, methods
from influence_core.curvatures.base import REGISTRY as CURVATURES
from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.methods.base import REGISTRY as METHODS

LAMBDA = 3.0


@pytest.fixture(scope="module")
def probes():
    from influence_core.methods.influence_functions import InfluenceFunction
    from influence_core.methods.inner_product import InnerProduct

    class ProbeInfluence(InfluenceFunction):
        name = "probe_influence"
        label = "probe: the influence function renamed"
        short_label = "probe IF"

    class ProbeIP(InnerProduct):
        name = "probe_ip"
        label = "probe: IP subclassed"
        short_label = "probe IP"

    class ProbeLambda(Curvature):
        name = "probe_lambda"
        label = "probe: H ≈ λI"
        short_label = "probe λI"

        def __init__(self, param_names, shift):
            self.param_names, self.shift = list(param_names), shift

        @classmethod
        def fit(cls, request: CurvatureRequest) -> "ProbeLambda":
            return cls(request.param_names, LAMBDA + request.damping)

        def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
            return grads / self.shift

        def quadratic_form(self, grads: torch.Tensor) -> torch.Tensor:
            return (grads * grads).sum(1) / self.shift

    yield ProbeInfluence, ProbeIP, ProbeLambda
    for registry, name in ((METHODS, "probe_influence"), (METHODS, "probe_ip"), (CURVATURES, "probe_lambda")):
        registry.pop(name, None)


def test_the_probes_reach_the_registries_and_config_validation(probes):
    from influence_core.config import CurvatureConfig, RunConfig

    assert {"probe_influence", "probe_ip"} <= set(methods.method_names())
    assert "probe_lambda" in curvatures.curvature_names()
    RunConfig(method="probe_influence", curvature=CurvatureConfig(kind="probe_lambda")).validate()
    assert methods.get("probe_influence").predicts_loss_change and methods.get("probe_influence").uses_curvature
    assert not methods.get("probe_ip").predicts_loss_change and not methods.get("probe_ip").head_closed_form


def test_the_probes_pass_the_contract(probes, trained_mlp):  # noqa: F811  (the imported fixture)
    """The contract test's own checks, called on the probes (its parametrisation was fixed before they existed)."""
    for method, curvature in (("probe_influence", "probe_lambda"), ("probe_influence", "exact"), ("probe_ip", None)):
        contract.test_shapes_sign_and_self_consistency(trained_mlp, method, curvature)
    contract.test_huge_damping_turns_every_curvature_into_ip_over_lambda(trained_mlp, "probe_lambda")
    contract.test_every_curvature_estimates_and_labels_itself(trained_mlp, "probe_lambda")


def _small_run(method: str, curvature: str = "exact", model: str = "logreg"):
    from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig

    return RunConfig(
        data=DataConfig(name="blobs", n_train=60, n_test=20),
        model=ModelConfig(kind=model, hidden=8, depth=1, activation="tanh"),
        train=TrainConfig(optimizer="lbfgs" if model == "logreg" else "adam", lr=0.05, epochs=20, weight_decay=1e-2),
        curvature=CurvatureConfig(kind=curvature, params="all", damping=0.01),
        method=method,
    )


def test_a_renamed_influence_function_is_checked_on_the_loss_scale(probes):
    """The retraining check decided the loss scale by ``method == "influence"``: a renamed influence function gave the
    same scores but lost its retrained / predicted slope. Now the same scores give the same check."""
    from influence_core.experiments import compute_influence
    from influence_core.retraining_check import check_by_retraining, strongest_for_test_point

    original = compute_influence(_small_run("influence"), use_cache=False)
    probe = compute_influence(_small_run("probe_influence"), use_cache=False)
    np.testing.assert_allclose(probe.pairwise, original.pairwise, rtol=1e-6, atol=1e-9)
    removed = strongest_for_test_point(original.pairwise, 0, 5)
    checks = [check_by_retraining(r, removed, [0]) for r in (original, probe)]
    assert checks[0].on_loss_scale and checks[1].on_loss_scale
    assert checks[0].slope == pytest.approx(checks[1].slope, rel=1e-6)


def test_ip_and_its_subclass_are_not_narrowed_by_the_curvature_box_they_ignore(probes):
    """The explorer's greyed-out curvature box (last-layer GGN) narrowed IP to the head; the scope is decided once,
    after asking the method whether it uses a curvature, and the ignored box does not split the cache either."""
    from influence_core.experiments import compute_influence, config_payload, influence_params, train

    for method in ("ip", "probe_ip"):
        exact, last = _small_run(method, "exact", "mlp"), _small_run(method, "last_layer", "mlp")
        trained = train(exact, use_cache=False)
        names = [n for n, p in trained.model.named_parameters() if p.requires_grad]
        assert influence_params(last, trained.model) == names
        assert config_payload(exact) == config_payload(last)
        a, b = (compute_influence(c, use_cache=False).self_scores for c in (exact, last))
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # a method that inverts a curvature is still narrowed by a last-layer one
    trained = train(_small_run("probe_influence", "last_layer", "mlp"), use_cache=False)
    assert len(influence_params(_small_run("probe_influence", "last_layer", "mlp"), trained.model)) == 2


def test_a_method_asked_of_another_run_takes_its_own_scope(probes):
    """fit_method(config, trained, method=...) decided the scope by the run's method: IP asked of an influence run with a
    last-layer curvature (the explorer's landing view, and the retraining checks that compare methods) was narrowed to
    the head. It takes the scope it has as the run's own method."""
    from influence_core.experiments import fit_method, train

    run = _small_run("influence", "last_layer", "mlp")
    trained = train(run, use_cache=False)
    for method in ("ip", "probe_ip"):
        asked = fit_method(run, trained, method=method)
        own = fit_method(run.replace(method=method), trained)
        assert asked.param_names == own.param_names == [n for n, p in trained.model.named_parameters() if p.requires_grad]
        np.testing.assert_allclose(asked.self_scores(), own.self_scores(), rtol=1e-6)
    assert len(fit_method(run, trained, method="probe_influence").param_names) == 2  # one that inverts it is narrowed


def test_the_cli_check_reads_the_loss_scale_from_the_method(probes, tmp_path, capsys):
    from influence_core.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    table = pd.DataFrame(x, columns=["a", "b", "c"]).assign(target=(x[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(int))
    path = tmp_path / "data.csv"
    table.to_csv(path, index=False)
    common = ["check", "--data", str(path), "--label-column", "target", "--model", "logreg", "--removals", "6", "--quiet"]
    printed = {}
    for method in ("probe_influence", "probe_ip"):
        assert main([*common, "--method", method, "--curvature", "exact"]) == 0
        printed[method] = capsys.readouterr().out
    assert "slope of retrained on predicted" in printed["probe_influence"]
    assert "not on the loss scale" in printed["probe_ip"]


def test_a_curvature_declares_its_tasks_and_auto_sees_it():
    """A curvature of the cross-entropy is refused for a margin before fitting, and auto skips it saying why."""
    from influence_core.config import ModelConfig
    from influence_core.models import build_model, parameter_names
    from influence_core.tasks import MARGIN

    model = build_model(ModelConfig(kind="mlp", hidden=4, depth=1), (2,), 2, 0)
    x, y = torch.randn(30, 2), torch.randint(0, 2, (30,))
    request = CurvatureRequest(model, x, y, parameter_names(model, "all"), 1e-2, 0.1, MARGIN)
    reason, _, _ = curvatures.assess("ekfac", request)
    assert reason is not None and "cross" in reason.lower() and "margin" in reason
    fitted = curvatures.fit_curvature("auto", request)
    for name in curvatures.curvature_names(include_auto=False):
        if curvatures.get(name).auto_rank is not None and curvatures.get(name).auto_rank < curvatures.get(fitted.__class__.name).auto_rank:
            assert name in fitted.note, (name, fitted.note)


def test_no_method_or_curvature_name_is_compared_outside_its_own_file():
    """Behaviour follows declarations: no ``== "tracin"`` / ``!= "identity"`` in the engine, the pipelines or the pages."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    names = "|".join(re.escape(n) for n in (*methods.method_names(), *curvatures.curvature_names(include_auto=False)))
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({names})["']""")
    own = {root / "influence_core" / "methods", root / "influence_core" / "curvatures"}
    found = []
    for path in [*(root / "influence_core").rglob("*.py"), *(root / "pages").glob("*.py")]:
        if any(parent in own for parent in path.parents):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not re.search(r"(params|scope) ==", line):  # "last_layer" is also a scope
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
