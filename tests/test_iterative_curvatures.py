"""The field's iterative and eigenvalue-corrected curvatures against the exact inverse on a small convex model,
where every one of them has a known answer (the GGN is the Hessian for logistic regression's cross-entropy)."""

import subprocess
import sys

import pytest
import torch

from influence_core.config import ModelConfig, TrainConfig
from influence_core.curvatures import build_curvature
from influence_core.data.synthetic import make_synthetic
from influence_core.errors import InputError
from influence_core.models import build_model, parameter_names
from influence_core.training import fit_lbfgs, train_model

WD = 1e-2


@pytest.fixture(scope="module")
def convex():
    ds = make_synthetic("blobs", 200, 20, 0)
    x, y = torch.tensor(ds.x_train, dtype=torch.float64), torch.tensor(ds.y_train)
    model = build_model(ModelConfig(kind="logreg"), (2,), 2, 0).double()
    fit_lbfgs(model, x, y, WD, max_iter=500, tol=1e-12)
    names = parameter_names(model, "all")
    g = torch.randn(7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = build_curvature("exact", model, x, y, names, WD, 0.0).inverse_hvp(g)
    return model, x, y, names, g, exact


def _relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).norm() / ref.norm())


def test_cg_converges_to_the_exact_inverse_and_reports_its_residual(convex):
    model, x, y, names, g, exact = convex
    cg = build_curvature("cg", model, x, y, names, WD, 0.0)
    assert _relative_error(cg.inverse_hvp(g), exact) <= 1e-3
    assert cg.report.startswith("CG: relative residual") and float(cg.report.split()[3]) < 1e-5
    stopped = build_curvature("cg", model, x, y, names, WD, 0.0, options={"max_iter": 1})
    assert _relative_error(stopped.inverse_hvp(g), exact) > 1e-3, "one CG iteration cannot solve a 6-dimensional system"


def test_lissa_converges_to_the_exact_inverse(convex):
    model, x, y, names, g, exact = convex
    lissa = build_curvature("lissa", model, x, y, names, WD, 0.0)
    assert _relative_error(lissa.inverse_hvp(g), exact) <= 1e-2
    short = build_curvature("lissa", model, x, y, names, WD, 0.0, options={"depth": 3})
    assert _relative_error(short.inverse_hvp(g), exact) > 1e-2, "three Neumann terms cannot have converged"


def test_full_rank_arnoldi_equals_exact_and_low_rank_does_not(convex):
    model, x, y, names, g, exact = convex
    full = build_curvature("arnoldi", model, x, y, names, WD, 0.0, options={"rank": 6})
    torch.testing.assert_close(full.inverse_hvp(g), exact, rtol=1e-8, atol=1e-10)
    low = build_curvature("arnoldi", model, x, y, names, WD, 0.0, options={"rank": 2})
    assert _relative_error(low.inverse_hvp(g), exact) > 1e-2


def test_ekfac_is_at_least_as_close_to_exact_as_kfac():
    """On the contract test's MLP (several layers, where KFAC's factorisation is not exact), and on a linear model."""
    from influence_core.config import TrainConfig

    ds = make_synthetic("moons", 120, 10, 0)
    x, y = torch.tensor(ds.x_train, dtype=torch.float64), torch.tensor(ds.y_train)
    mlp = build_model(ModelConfig(kind="mlp", hidden=6, depth=1, activation="tanh"), (2,), 2, 0).double()
    train_model(mlp, x, y, TrainConfig(optimizer="adam", lr=0.05, epochs=60, weight_decay=WD), 0)
    for model in (mlp,):
        names = parameter_names(model, "all")
        g = torch.randn(5, sum(p.numel() for p in model.parameters()), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        # the exact GGN as the reference: EK-FAC and KFAC both approximate the GGN, not the indefinite Hessian
        reference = build_curvature("arnoldi", model, x, y, names, WD, 0.1, options={"rank": 10_000}).inverse_hvp(g)
        ekfac = _relative_error(build_curvature("ekfac", model, x, y, names, WD, 0.1).inverse_hvp(g), reference)
        kfac = _relative_error(build_curvature("kron", model, x, y, names, WD, 0.1).inverse_hvp(g), reference)
        assert ekfac <= kfac + 1e-12, (ekfac, kfac)


def test_unknown_curvature_options_are_refused_with_the_ones_that_exist(convex):
    model, x, y, names, _, _ = convex
    with pytest.raises(InputError, match="no option depth; its options: rank"):
        build_curvature("arnoldi", model, x, y, names, WD, 0.0, options={"depth": 3})


def test_the_cli_passes_curvature_options_and_prints_the_convergence(tmp_path):
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).frame.sample(120, random_state=0)
    csv = tmp_path / "bc.csv"
    data.to_csv(csv, index=False)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "influence_core",
            "scores",
            "--data",
            str(csv),
            "--label-column",
            "target",
            "--curvature",
            "cg",
            "--curvature-option",
            "max_iter=300",
            "--out",
            str(tmp_path / "s.csv"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "CG: relative residual" in out.stderr
    assert len(pd.read_csv(tmp_path / "s.csv")) == 120
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "influence_core",
            "scores",
            "--data",
            str(csv),
            "--label-column",
            "target",
            "--curvature",
            "cg",
            "--curvature-option",
            "rank",
            "--out",
            str(tmp_path / "t.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "NAME=NUMBER" in bad.stderr


def test_the_sampled_diagonal_estimates_the_exact_one_from_one_backward_per_batch():
    """diag's ``sampled`` knob (squared per-sample gradients at labels drawn from the model, kronfluence's sampled-label
    Fisher): unbiased, so on many rows its diagonal is close to the exact expectation's (BackPACK's); seeded, so the same
    rows give the same estimate."""
    from influence_core.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(1, 4, 8)
    x, y = torch.randn(1500, 1, 8, 8), torch.randint(0, 4, (1500,))
    names = parameter_names(model, "all")
    exact = build_curvature("diag", model, x, y, names, WD, 0.0).diagonal
    sampled = build_curvature("diag", model, x, y, names, WD, 0.0, options={"sampled": 1}).diagonal
    again = build_curvature("diag", model, x, y, names, WD, 0.0, options={"sampled": 1}).diagonal
    assert torch.equal(sampled, again)
    assert not torch.equal(sampled, exact)  # it is an estimate, not the same computation
    assert torch.corrcoef(torch.stack([sampled, exact]))[0, 1] > 0.97
    assert abs(sampled.sum() / exact.sum() - 1) < 0.05


@pytest.mark.parametrize("kind", ["kron", "ekfac"])
def test_sampled_kronecker_factors_estimate_the_exact_ones(kind):
    """KFAC's and EK-FAC's ``sampled`` knob (factors from one label drawn from the model per row, kronfluence's Fisher;
    the CNN's like-for-like peer rows): an estimate, not the exact expectation's computation, close to it on many rows
    and seeded, so the same rows give the same curvature."""
    from influence_core.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(1, 4, 8).eval()
    x, y = torch.randn(1500, 1, 8, 8), torch.randint(0, 4, (1500,))
    names = parameter_names(model, "all")
    g = torch.randn(40, sum(model.get_parameter(n).numel() for n in names), generator=torch.Generator().manual_seed(1))
    exact = build_curvature(kind, model, x, y, names, WD, 0.0).inverse_hvp(g)
    sampled = build_curvature(kind, model, x, y, names, WD, 0.0, options={"sampled": 1}).inverse_hvp(g)
    again = build_curvature(kind, model, x, y, names, WD, 0.0, options={"sampled": 1}).inverse_hvp(g)
    assert torch.equal(sampled, again)
    assert not torch.allclose(sampled, exact, rtol=1e-4)  # it is an estimate, not the same computation
    assert _relative_error(sampled, exact) < 0.2
    assert torch.corrcoef(torch.stack([(g * sampled).sum(1), (g * exact).sum(1)]))[0, 1] > 0.97


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_summed_squared_gradients_equal_the_formed_rows_and_sampled_labels_are_drawn_from_the_model(kind):
    """The sampled diagonal's engine: Σ_i g_ij² per column, a Linear layer's as (g²)ᵀ(a²), equals the formed rows'; with
    labels drawn from a model that is sure of one class, it is the squared gradient at that class."""
    from influence_core.gradients import per_sample_grad_sq_sums, per_sample_grads
    from influence_core.models import build_model
    from influence_core.tasks import SampledLabelCrossEntropy

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, hidden=10, depth=2), (1, 8, 8), 3, 0).eval()
    x, y = torch.randn(70, 1, 8, 8), torch.randint(0, 3, (70,))
    names = parameter_names(model, "all")
    rows = per_sample_grads(model, x, y, names, backend="vmap")
    assert torch.allclose(per_sample_grad_sq_sums(model, x, y, names, chunk_size=16), rows.square().sum(0), rtol=1e-4, atol=1e-9)
    with torch.no_grad():  # a head that always answers class 2 with certainty: the draws are all 2
        model.head.bias.copy_(torch.tensor([-60.0, -60.0, 60.0]))
    sure = per_sample_grad_sq_sums(model, x, y, names, chunk_size=16, task=SampledLabelCrossEntropy(seed=1))
    at_two = per_sample_grads(model, x, torch.full_like(y, 2), names, backend="vmap").square().sum(0)
    assert torch.allclose(sure, at_two, rtol=1e-4, atol=1e-12)


def test_the_sampled_diagonal_serves_the_last_layer_too():
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", hidden=8, depth=1), (5,), 3, 0).eval()
    x, y = torch.randn(3000, 5), torch.randint(0, 3, (3000,))
    head = parameter_names(model, "last_layer")
    exact = build_curvature("diag", model, x, y, head, WD, 0.0).diagonal
    sampled = build_curvature("diag", model, x, y, head, WD, 0.0, options={"sampled": 1}).diagonal
    assert sampled.shape == exact.shape and abs(sampled.sum() / exact.sum() - 1) < 0.05


def test_an_indefinite_exact_hessian_is_found_by_lanczos_before_the_matrix_is_formed(convex, monkeypatch):
    """A ReLU network's Hessian is indefinite away from a strict minimum: a few Hessian-vector products prove it (a
    negative Ritz value lies inside the spectrum), so exact is refused, and auto moves on, without the p columns."""
    from influence_core.curvatures import exact
    from influence_core.errors import CurvatureError

    monkeypatch.setattr(exact, "INDEFINITE_CHECK_SECONDS", 0.0)  # check even this small model
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", hidden=16, depth=2), (2,), 2, 0)
    ds = make_synthetic("moons", 200, 20, 0)
    x, y = torch.tensor(ds.x_train), torch.tensor(ds.y_train)
    train_model(model, x, y, TrainConfig(epochs=30), 0)
    names = parameter_names(model, "all")
    h = exact.exact_hessian(model, x, y, names, 0.0)
    smallest = float(torch.linalg.eigvalsh(h.double()).min())
    assert smallest < -1e-4  # the premise: this model's Hessian is indefinite
    formed, form = [], exact.exact_hessian
    monkeypatch.setattr(exact, "exact_hessian", lambda *a, **k: formed.append(1) or form(*a, **k))
    with pytest.raises(CurvatureError, match="found by Lanczos") as refused:
        build_curvature("exact", model, x, y, names, 0.0, 0.0)
    assert not formed
    bound = float(str(refused.value).split("an eigenvalue of ")[1].split(" ")[0])
    assert smallest - 1e-6 <= bound < 0  # a Ritz value: never below the true smallest eigenvalue
    note = build_curvature("auto", model, x, y, names, 0.0, 0.0).note
    assert "skipped exact: the exact Hessian is not positive definite" in note and not formed
    # a positive definite Hessian (logistic regression with weight decay) passes the check and is formed as before
    model, x, y, names, g, reference = convex
    assert exact.smallest_ritz_value(exact.CurvatureRequest(model, x, y, names, WD, 0.0)) > 0
    torch.testing.assert_close(build_curvature("exact", model, x, y, names, WD, 0.0).inverse_hvp(g), reference)
    assert formed == [1]


def test_the_estimate_refuses_an_indefinite_exact_hessian_before_asking_to_confirm_its_forming(monkeypatch):
    """Label bias's CNN with the exact Hessian asked to confirm 9 minutes of forming, then stopped on Lanczos' check
    within a second (issue 34). The estimate, made on the trained model, now raises the refusal itself (the page then
    starts nothing long); the run's own fit gives the same refusal without running Lanczos again."""
    from influence_core import costs, experiments
    from influence_core.config import explorer_config
    from influence_core.curvatures import exact
    from influence_core.errors import CurvatureError

    monkeypatch.setattr(exact, "INDEFINITE_CHECK_SECONDS", 0.0)  # check even this small model
    checks, check = [], exact.smallest_ritz_value
    monkeypatch.setattr(exact, "smallest_ritz_value", lambda request, **k: checks.append(1) or check(request, **k))
    monkeypatch.setattr(exact.ExactCurvature, "forming_seconds", classmethod(lambda cls, request: 600.0))  # "minutes"
    config = explorer_config().replace(curvature__kind="exact", curvature__damping=0.0)
    with pytest.raises(CurvatureError, match="not positive definite .* found by Lanczos"):
        costs.estimate_run(config)
    assert checks == [1]
    with pytest.raises(CurvatureError, match="not positive definite .* found by Lanczos"):
        experiments.compute_influence(config)
    assert checks == [1], "the run's fit ran Lanczos again on the same trained weights"
    # with enough damping the check passes and the estimate counts the forming, as before
    damped = config.replace(curvature__damping=1.0)
    assert costs.estimate_run(damped).seconds >= 600


def test_a_refused_dense_curvature_names_the_others_as_the_app_shows_them():
    """The refusal named 'kron' and 'diag', which the app's curvature box shows as KFAC and diagonal GGN."""
    from influence_core.curvatures import curvature_short_label
    from influence_core.curvatures.dense import cheaper_curvatures

    text = cheaper_curvatures()
    assert text.startswith("auto, ") and all(f"{curvature_short_label(n)} ({n})" in text for n in ("kron", "diag", "last_layer")), text
    assert "KFAC (kron)" in text


@pytest.mark.parametrize("kind", ["lissa", "cg"])
def test_an_iterative_solve_beats_at_every_product_so_stop_ends_it_within_one(convex, kind):
    """A LiSSA or CG solve runs inside curvlinops with no progress of its own: one block of the explorer's LiSSA ran
    half a minute with the box unchanged and Stop unheard (issue 34). Each product with the curvature beats; a beat
    that raises (as the app's Stop does) ends the solve at once."""
    from influence_core.progress import beating

    model, x, y, names, g, _ = convex
    curvature = build_curvature(kind, model, x, y, names, WD, 0.0, options={"depth": 50} if kind == "lissa" else {})
    beats = []
    with beating(beats.append):
        curvature.inverse_hvp(g)
    assert len(beats) >= (50 if kind == "lissa" else 2) and beats[-1].endswith("products with the curvature")

    class Stopped(Exception):
        pass

    def stop(_message):
        raise Stopped

    with beating(stop), pytest.raises(Stopped):
        curvature.inverse_hvp(g)
    curvature.inverse_hvp(g)  # outside, nothing beats: the same solve runs to its end
