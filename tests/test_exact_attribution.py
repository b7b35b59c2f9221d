"""Exact attribution (issue 31): the metagradient through the recorded training run, checked against finite
differences of the replayed run, the influence function at a convex optimum, and fixed-randomness retrains."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from influence_core.config import ModelConfig, TrainConfig
from influence_core.errors import InputError
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.models import build_model, parameter_names
from influence_core.replay import Replay
from influence_core.training import TrainingRecipe, train_model


def _data(n: int = 60, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.4 * torch.randn(n, generator=g, dtype=dtype) > 0).long()
    return x, y


def _trained(config: TrainConfig, kind: str = "mlp", n: int = 60, dtype=torch.float64):
    x, y = _data(n, dtype=dtype)
    model = build_model(ModelConfig(kind=kind, hidden=8, depth=1, activation="tanh"), (2,), 2, 0).to(dtype)
    recipe = TrainingRecipe({k: v.clone() for k, v in model.state_dict().items()}, config, 0)
    train_model(model, x, y, config, 0)
    return model.eval(), recipe, x, y


def _context(model, recipe, x, y, **kwargs) -> AttributionContext:
    return AttributionContext(
        model,
        x,
        y,
        parameter_names(model, "all"),
        ADAM.weight_decay if recipe is None else recipe.config.weight_decay,
        training=recipe,
        **kwargs,
    )


ADAM = TrainConfig(optimizer="adam", lr=0.03, epochs=12, batch_size=16, weight_decay=1e-3, lr_schedule="cosine", head_l2=1e-3)


def test_the_replay_is_the_training_run():
    model, recipe, x, y = _trained(ADAM)
    replay = Replay(model, recipe, x, y)
    final, kept = replay.run(keep=True)
    for name, value in replay.unflatten(final.params[0]).items():
        torch.testing.assert_close(value, model.get_parameter(name).detach(), rtol=0, atol=1e-12)
    # √T memory: a state kept every ⌈√T⌉ steps
    assert replay.segment == math.ceil(math.sqrt(len(replay.steps))) and len(kept) == math.ceil(len(replay.steps) / replay.segment)


def test_the_stateless_copy_and_functional_call_replay_the_same_run():
    """A step sets the weights on a stateless copy of the model (cheaper than functional_call); where it cannot (here
    forced off, as for tied weights) functional_call gives the same metagradient."""
    model, recipe, x, y = _trained(ADAM)
    xt, yt = _data(3, seed=7)
    fast, plain = Replay(model, recipe, x, y), Replay(model, recipe, x, y)
    plain._stateless = None
    assert fast._stateless is not None
    scores = []
    for replay in (fast, plain):
        final, kept = replay.run(keep=True)
        cotangents = PerSampleLoss(xt, yt).query_gradients(replay.final_model(final), replay.names)
        scores.append(replay.metagradient(cotangents, kept))
    torch.testing.assert_close(scores[0], scores[1], rtol=1e-12, atol=1e-15)
    assert dict(model.named_parameters()).keys() == set(fast.names)  # the trained model keeps its own weights
    tied = copy.deepcopy(model)
    tied.alias = tied.head  # one weight in two places: setting it on one would leave the other stale
    assert Replay(tied, recipe, x, y)._stateless is None


def test_zeroed_rows_contribute_nothing_and_change_no_random_choice():
    """Weight 0 is the run without the row: whatever the row holds, the same batches train the same model."""
    x, y = _data()
    model = build_model(ModelConfig(kind="mlp", hidden=8, depth=1), (2,), 2, 0).double()
    weights = torch.ones(len(y), dtype=torch.float64)
    weights[[3, 17, 40]] = 0
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    train_model(a, x, y, ADAM, 0, sample_weights=weights)
    x2, y2 = x.clone(), y.clone()
    x2[[3, 17, 40]] += 5.0
    y2[[3, 17, 40]] = 1 - y2[[3, 17, 40]]
    train_model(b, x2, y2, ADAM, 0, sample_weights=weights)
    for k in a.state_dict():
        torch.testing.assert_close(a.state_dict()[k], b.state_dict()[k], rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "config",
    [ADAM, TrainConfig(optimizer="sgd", lr=0.2, epochs=10, batch_size=20, weight_decay=1e-2, lr_schedule="cosine_per_step")],
    ids=["adam-minibatch-cosine", "sgd-cosine-per-step"],
)
def test_the_metagradient_equals_finite_differences_of_the_replayed_run(config):
    model, recipe, x, y = _trained(config)
    method = fit_attributor("metagradient", _context(model, recipe, x, y))
    xt, yt = _data(5, seed=1)
    scores = method.scores(PerSampleLoss(xt, yt))
    replay = method.replay

    def losses(weights):
        final, _ = replay.run(weights)
        return torch.nn.functional.cross_entropy(replay.final_model(final)(xt), yt, reduction="none").detach().numpy()

    eps = 1e-5
    for row in (0, 7, 33, 59):
        up, down = torch.ones(len(y), dtype=torch.float64), torch.ones(len(y), dtype=torch.float64)
        up[row], down[row] = 1 + eps, 1 - eps
        finite = (losses(up) - losses(down)) / (2 * eps)
        np.testing.assert_allclose(scores[:, row] / len(y), finite, rtol=1e-4, atol=1e-4 * np.abs(finite).max())


def test_on_logistic_regression_at_its_optimum_the_metagradient_is_the_influence_function():
    """Full-batch gradient descent run to the optimum of L2 logistic regression: the initial weights are forgotten, and
    the metagradient is the implicit-function derivative −∇fᵀH⁻¹∇ℓᵢ/N, what the exact-Hessian influence function gives."""
    config = TrainConfig(optimizer="sgd", lr=1.0, epochs=600, batch_size=0, weight_decay=5e-2)
    model, recipe, x, y = _trained(config, kind="logreg")
    xt, yt = _data(6, seed=2)
    exact = fit_attributor("metagradient", _context(model, recipe, x, y)).scores(PerSampleLoss(xt, yt))
    influence = fit_attributor("influence", _context(model, recipe, x, y, curvature="exact", damping=0.0)).scores(PerSampleLoss(xt, yt))
    np.testing.assert_allclose(exact, influence, rtol=1e-3, atol=1e-3 * np.abs(influence).max())


def test_removing_small_sets_moves_the_loss_as_the_summed_metagradient_predicts():
    """Fixed randomness: the same run with a few rows' weights zeroed. −Σ_{i∈S} score_i / N against the retrained
    change of held-out losses, over 25 random sets of 2 rows (Pearson ≥ 0.99)."""
    model, recipe, x, y = _trained(ADAM, n=100)
    xt, yt = _data(4, seed=3)
    method = fit_attributor("metagradient", _context(model, recipe, x, y))
    scores = method.scores(PerSampleLoss(xt, yt))
    base = torch.nn.functional.cross_entropy(model(xt), yt, reduction="none").detach().numpy()
    rng = np.random.default_rng(0)
    predicted, actual = [], []
    for _ in range(25):
        dropped = rng.choice(len(y), 2, replace=False)
        weights = torch.ones(len(y), dtype=torch.float64)
        weights[dropped] = 0
        retrained = build_model(ModelConfig(kind="mlp", hidden=8, depth=1, activation="tanh"), (2,), 2, 0).double()
        train_model(retrained, x, y, ADAM, 0, sample_weights=weights)
        after = torch.nn.functional.cross_entropy(retrained.eval()(xt), yt, reduction="none").detach().numpy()
        predicted.append(-scores[:, dropped].sum(1) / len(y))
        actual.append(after - base)
    predicted, actual = np.concatenate(predicted), np.concatenate(actual)
    assert np.corrcoef(predicted, actual)[0, 1] >= 0.99


def test_an_lbfgs_run_gets_the_implicit_form_and_says_so():
    config = TrainConfig(optimizer="lbfgs", epochs=10, weight_decay=1e-2)
    model, recipe, x, y = _trained(config, kind="logreg")
    method = fit_attributor("metagradient", _context(model, recipe, x, y))
    assert "implicit-function" in method.note
    xt, yt = _data(3, seed=4)
    influence = fit_attributor("influence", _context(model, recipe, x, y, curvature="exact", damping=0.0))
    np.testing.assert_allclose(method.scores(PerSampleLoss(xt, yt)), influence.scores(PerSampleLoss(xt, yt)), rtol=1e-10)


def test_what_cannot_be_replayed_is_refused_with_the_reason(monkeypatch):
    model, recipe, x, y = _trained(ADAM)
    with pytest.raises(InputError, match="model trained here"):
        fit_attributor("metagradient", _context(model, None, x, y))
    method = fit_attributor("metagradient", _context(model, recipe, x, y))
    monkeypatch.setenv("INFLUENCE_LAB_MEMORY_GB", "0.0000001")
    with pytest.raises(InputError, match="memory budget .*fewer steps"):
        method.scores(PerSampleLoss(x[:2], y[:2]))
    with pytest.raises(InputError, match="rows the run was trained on"):
        method.on_training_rows(x[:2], y[:2])


def test_several_measurements_share_a_reverse_pass_and_give_the_same_scores():
    model, recipe, x, y = _trained(ADAM)
    xt, yt = _data(6, seed=5)
    together = fit_attributor("metagradient", _context(model, recipe, x, y)).scores(PerSampleLoss(xt, yt))
    one_by_one = fit_attributor("metagradient", _context(model, recipe, x, y, options={"queries_per_pass": 1})).scores(
        PerSampleLoss(xt, yt)
    )
    np.testing.assert_allclose(together, one_by_one, rtol=1e-9, atol=1e-12)


def test_the_cli_scores_and_lds_take_exact_attribution(tmp_path, capsys):
    import pandas as pd

    from influence_core.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    table = pd.DataFrame(x, columns=["a", "b", "c"]).assign(target=(x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int))
    path = tmp_path / "data.csv"
    table.to_csv(path, index=False)
    common = ["--data", str(path), "--label-column", "target", "--model", "mlp", "--smooth", "--epochs", "80", "--quiet"]
    assert main(["scores", *common, "--method", "metagradient", "--out", str(tmp_path / "s.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "s.csv")) == 60  # every row of the file
    out = tmp_path / "lds.csv"
    code = main(
        ["lds", *common, "--methods", "metagradient,ip", "--subsets", "8", "--fraction", "0.95", "--randomness", "fixed", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "randomness: fixed" in printed
    lds = pd.read_csv(out).set_index("method")["lds"]
    assert lds["metagradient"] > 0.8 and lds["metagradient"] > lds["ip"] + 0.2, lds


def test_the_explorer_compares_exact_attribution_with_this_run_retrained():
    """The landing view's test-point check: exact attribution and the chosen method against the same run retrained with
    each point's weight zeroed, with each one's Pearson and the y = x line; exact attribution follows the run."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=240)
    at.run()
    at.radio(key="explorer_view").set_value("test").run()
    at.slider(key="explorer_check_n").set_value(10).run()
    assert not at.exception, at.exception
    assert any("retraining" in c.value and "reverse pass" in c.value for c in at.caption), "the cost is said before the start"
    at.button(key="explorer_exact_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    exact = next(v for k, v in metrics.items() if k.startswith("exact (replay)"))
    assert float(exact) > 0.9, metrics
    spec = next(c.proto.spec for c in at.get("plotly_chart") if "Predicted vs retrained" in c.proto.spec)
    assert "y = x" in spec and "Pearson" in spec


@pytest.mark.parametrize("k", [1, 8])
def test_the_estimate_said_before_a_reverse_pass_is_within_twice_its_time(k):
    """The estimate (a segment timed here) against the scoring it precedes, in the same process: within 2×."""
    import time

    config = TrainConfig(optimizer="adam", lr=0.01, epochs=40, batch_size=32, weight_decay=1e-2, lr_schedule="cosine")
    model, recipe, x, y = _trained(config, n=320, dtype=torch.float32)
    method = fit_attributor("metagradient", _context(model, recipe, x, y))
    xt, yt = _data(k, seed=6, dtype=torch.float32)
    method.estimate_seconds(k)  # the first transform of a process pays its set-up once
    pairs = []
    for _ in range(3):  # a stall of a shared machine during one pair is not the estimate's error: up to three pairs
        messages = []
        estimate = method.estimate_seconds(k)
        start = time.perf_counter()
        method.scores(PerSampleLoss(xt, yt), progress=lambda f, m, said=messages: said.append(m))
        pairs.append((estimate, time.perf_counter() - start))
        assert ("about" in messages[0] or "under a second" in messages[0]) and "reverse pass" in messages[0]
        if 0.5 <= pairs[-1][1] / pairs[-1][0] <= 2.0:
            break
    assert 0.5 <= pairs[-1][1] / pairs[-1][0] <= 2.0, pairs


SGD = TrainConfig(optimizer="sgd", lr=0.2, epochs=10, batch_size=20, weight_decay=1e-2, lr_schedule="cosine_per_step")


@pytest.mark.parametrize("config", [ADAM, SGD], ids=["adam", "sgd"])
def test_the_states_training_keeps_give_the_forward_replays_scores_and_leave_training_unchanged(config):
    """Training can keep the reverse pass's states itself (θ, and Adam's moments from the optimiser's own state, every
    ⌈√T⌉ steps): the run is bit for bit the one trained without keeping them, the states are the forward replay's to
    rounding, and the scores taken from them are the forward replay's."""
    x, y = _data()
    model = build_model(ModelConfig(kind="mlp", hidden=8, depth=1, activation="tanh"), (2,), 2, 0).double()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    plain, keeping = copy.deepcopy(model), copy.deepcopy(model)
    assert train_model(plain, x, y, config, 0).kept_states is None
    kept = train_model(keeping, x, y, config, 0, keep_segment_states=True).kept_states
    for name, value in plain.state_dict().items():
        assert torch.equal(value, keeping.state_dict()[name]), name
    recorded, replayed = TrainingRecipe(initial, config, 0, kept), TrainingRecipe(initial, config, 0)
    from_training = fit_attributor("metagradient", _context(keeping, recorded, x, y))
    from_replay = fit_attributor("metagradient", _context(plain, replayed, x, y))
    assert "states training kept" in from_training.note and "replayed" in from_replay.note
    assert len(from_training.kept) == len(from_replay.kept)
    for a, b in zip([from_training.final_state, *from_training.kept], [from_replay.final_state, *from_replay.kept]):
        for s, t in zip(a.tensors(), b.tensors(), strict=True):
            torch.testing.assert_close(s, t, rtol=1e-10, atol=1e-12)
    xt, yt = _data(5, seed=8)
    with_states, after_replay = (m.scores(PerSampleLoss(xt, yt)) for m in (from_training, from_replay))
    np.testing.assert_allclose(with_states, after_replay, rtol=1e-9, atol=1e-12 * np.abs(after_replay).max())
    # states kept at another spacing than the pass's segments are not taken: the run is replayed forwards
    assert Replay(keeping, recorded, x, y, segment=kept.every + 1).recorded_run() is None


def test_a_run_trained_for_exact_attribution_keeps_its_states_through_the_cache():
    """experiments.train keeps the states when the config's method replays training: in the cache entry (its own, the
    same run trained for another method keeps none and trains the same weights), and back from it to the method, whose
    scores are those of a forward replay to float32 rounding."""
    from influence_core import experiments
    from influence_core import label_bias as lb
    from influence_core.measurements import GroupMeanLoss

    config = lb.preset_config("digits", noise_fraction=0.2, model="cnn", epochs=6).replace(method="metagradient")
    first = experiments.train(config)
    again = experiments.train(config)
    other = experiments.train(config.replace(method="influence"))
    assert not first.metrics["from_cache"] and again.metrics["from_cache"] and not other.metrics["from_cache"]
    assert other.kept_states is None and first.kept_states is not None
    torch.testing.assert_close(again.kept_states.params, first.kept_states.params, rtol=0, atol=0)
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, other.model.state_dict()[name]), name
    _, _, xt, yt = experiments.tensors(again.dataset, torch.device("cpu"))
    heldout_mean = GroupMeanLoss(xt, yt, [torch.arange(len(yt))])
    from_states = experiments.fit_method(config, again)
    from_replay = experiments.fit_method(config, other)
    assert "states training kept" in from_states.note and "replayed" in from_replay.note
    with_states, after_replay = from_states.scores(heldout_mean), from_replay.scores(heldout_mean)
    np.testing.assert_allclose(with_states, after_replay, rtol=1e-3, atol=1e-4 * np.abs(after_replay).max())


@pytest.mark.parametrize("k", [1, 5])
def test_the_reverse_pass_reports_after_every_step_so_a_stop_takes_effect_within_one(k):
    """The app's Stop takes effect at the next progress call; per segment (⌈√T⌉ steps of a batched pass) that was
    half a minute on Trust's digits MLP. A progress function that raises (as Stop does) must end the pass within
    one step, not one segment, and the fractions must rise to 1."""
    model, recipe, x, y = _trained(ADAM)
    replay = Replay(model, recipe, x, y)
    final, kept = replay.run(keep=True)
    cotangents = torch.randn(k, sum(replay.sizes), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fractions = []
    replay.metagradient(cotangents, kept, lambda f, _m: fractions.append(f))
    steps = len(replay.steps)
    assert len(fractions) >= 2 * steps and fractions[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-12 for a, b in zip(fractions, fractions[1:]))
    assert max(np.diff([0.0, *fractions])) <= 1.0 / steps + 1e-12  # no jump of more than one step's share

    class Stopped(Exception):
        pass

    calls = []

    def stop_at_once(fraction, _message):
        calls.append(fraction)
        if fraction > 0:
            raise Stopped

    with pytest.raises(Stopped):
        replay.metagradient(cotangents, kept, stop_at_once)
    assert replay.segment >= 3 and calls[-1] <= 1.0 / steps + 1e-12  # stopped within the first step, not after a segment
