"""Hessian-free influence: IP against hand-computed gradients and exact IF, impacts, ensembles, trimming."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from influence_core import flipset as fs
from influence_core import hessian_free as hf
from influence_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.errors import InputError
from influence_core.models import MLP, LogisticRegression
from influence_core.training import Checkpoint, _snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_mlp_data(seed: int = 0):
    torch.manual_seed(seed)
    model = MLP(3, 2, hidden=5, depth=1).double().eval()
    x, xv = torch.randn(7, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    return model, x, torch.randint(0, 2, (7,)), xv, torch.randint(0, 2, (4,))


def _flat_grad(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def test_ip_is_minus_the_inner_product_of_hand_computed_gradients():
    model, x, y, xv, yv = _tiny_mlp_data()
    g_val = _flat_grad(model, nn.functional.cross_entropy(model(xv), yv))
    expected = [-(g_val @ _flat_grad(model, nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]))).item() for i in range(7)]
    np.testing.assert_allclose(hf.impact_scores("ip", model, x, y, xv, yv), expected, rtol=1e-8, atol=1e-12)
    # dropout rate 0 leaves the model as it is: the ensemble equals IP; a positive rate changes it, reproducibly
    np.testing.assert_allclose(hf.impact_scores("ip_ensemble", model, x, y, xv, yv, ensemble_size=3, dropout_rate=0.0), expected, rtol=1e-8)
    a = hf.impact_scores("ip_ensemble", model, x, y, xv, yv, ensemble_size=3, dropout_rate=0.3, seed=1)
    assert not np.allclose(a, expected)
    np.testing.assert_array_equal(a, hf.impact_scores("ip_ensemble", model, x, y, xv, yv, ensemble_size=3, dropout_rate=0.3, seed=1))


def test_tracin_reuses_the_engine_and_matches_the_generic_checkpoint_sum():
    model, x, y, xv, yv = _tiny_mlp_data()
    ckpts = []
    for k, lr in enumerate((0.5, 0.2)):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        ckpts.append(Checkpoint(k + 1, lr, _snapshot(model)))
    utility = hf.impact_scores("tracin", model, x, y, xv, yv, "utility", checkpoints=ckpts)  # influence.tracin, mean over validation rows
    by_hand = sum(c.lr * hf.impact_scores("ip", _at(model, c), x, y, xv, yv) for c in ckpts)
    np.testing.assert_allclose(utility, by_hand, rtol=1e-5, atol=1e-9)
    with pytest.raises(InputError, match="checkpoints"):
        hf.impact_scores("tracin", model, x, y, xv, yv, checkpoints=[])


def _at(model: nn.Module, ckpt: Checkpoint) -> nn.Module:
    clone = copy.deepcopy(model)
    clone.load_state_dict(ckpt.state)
    return clone.eval()


def test_fairness_gradient_matches_finite_differences_and_attack_crosses_the_boundary():
    torch.manual_seed(0)
    model = LogisticRegression(3, 2).double().eval()
    xv = torch.randn(30, 3, dtype=torch.float64)
    yv = torch.randint(0, 2, (30,))
    groups = torch.arange(30) % 2
    names = [n for n, _ in model.named_parameters()]
    g = hf.impact_gradient(model, "fairness", xv, yv, names, groups)
    direction = torch.randn_like(g)
    eps = 1e-6
    values = []
    for sign in (1, -1):
        m = copy.deepcopy(model)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(
                torch.nn.utils.parameters_to_vector(m.parameters()) + sign * eps * direction, m.parameters()
            )
        values.append(hf.impact_value(m, "fairness", xv, yv, groups).item())
    assert (values[0] - values[1]) / (2 * eps) == pytest.approx((g @ direction).item(), rel=1e-5)
    # the white-box attack: γ = 1 lands on the boundary, γ = 2 mirrors the margin
    logits = lambda inp: model(inp)[:, 1] - model(inp)[:, 0]  # noqa: E731
    with torch.no_grad():
        np.testing.assert_allclose(logits(hf.adversarial_inputs(model, xv, 1.0)).numpy(), 0.0, atol=1e-10)
        np.testing.assert_allclose(logits(hf.adversarial_inputs(model, xv, 2.0)).numpy(), -logits(xv).numpy(), atol=1e-10)
    with pytest.raises(InputError, match="linear"):
        hf.adversarial_inputs(MLP(3, 2), xv.float())
    with pytest.raises(InputError, match="sensitive attribute"):
        hf.impact_gradient(model, "fairness", xv, yv, names, None)


def test_blobs_ip_tracks_exact_if_and_both_track_leave_one_out():
    check = hf.synthetic_check("blobs", 0, methods=("influence", "ip"), use_cache=False)
    assert check.pearson >= 0.95
    assert check.auroc["influence"] > 0.95 and check.auroc["ip"] > 0.95
    result = check.result
    rows = np.argsort(-np.abs(result.scores["influence"]))[[0, 1, 2, 5, 20, 60, 140]]
    loo = hf.leave_one_out_scores(result, rows)
    assert np.corrcoef(loo, result.scores["influence"][rows])[0, 1] > 0.95
    assert np.all(np.sign(loo[:3]) == np.sign(result.scores["influence"][rows[:3]]))
    # fairness and robustness impacts run end to end on a biased copy, IF and IP agree in sign on the strongest
    biased = fs.inject_group_bias(hf.synthetic_flip_dataset("blobs", 0), 0.4, 0.9, seed=0).dataset
    for impact in ("fairness", "robustness"):
        r = hf.hessian_free_scores(
            hf.impact_study(hf.synthetic_config("blobs"), impact=impact, methods=("influence", "ip")), biased, use_cache=False
        )
        assert r.correlation()["pearson"] > 0.3, impact


def test_moons_mlp_ip_ranks_flipped_points_first():
    check = hf.synthetic_check("moons", 0, methods=("ip", "ip_ensemble", "tracin"), use_cache=False)
    assert check.result.dataset.flipped.sum() == 20 and len(check.result.dataset.y_train) == 200
    assert check.auroc["ip"] > 0.75 and check.auroc["ip_ensemble"] > 0.75 and check.auroc["tracin"] > 0.7


def test_trim_and_retrain_removes_flipped_points_and_leaves_the_input_alone():
    ds = fs.add_label_noise(fs.breast_cancer_dataset(test_fraction=0.4, seed=0), 0.2, 0)
    y_before = ds.y_train.copy()
    cfg = RunConfig(
        data=DataConfig(name="csv"), model=ModelConfig(kind="logreg"), train=TrainConfig(optimizer="lbfgs", epochs=10, weight_decay=1e-2)
    )
    tr = hf.trim_and_retrain(hf.impact_study(cfg, trim_methods=("ip",), trim_seeds=(0, 1)), ds, use_cache=False)
    assert np.array_equal(ds.y_train, y_before)
    assert len(tr.removed["ip"]) == round(0.05 * len(ds.y_train))
    assert tr.flipped_share_removed["ip"] > 0.8  # the base rate is 0.2
    table = tr.table()
    assert list(table["key"]) == ["none", "ip"] and len(tr.accuracy["ip"]) == 2
    assert np.all(np.isnan(table["dp_gap_mean"]))  # no sensitive attribute here
    paired = np.subtract(tr.accuracy["ip"], tr.accuracy["none"])
    row = table.set_index("key").loc["ip"]
    assert row["change_vs_untrimmed"] == pytest.approx(paired.mean())
    assert row["change_se"] == pytest.approx(np.std(paired, ddof=1) / np.sqrt(2))
    assert table.set_index("key").loc["none", "change_vs_untrimmed"] == 0.0
    with pytest.raises(InputError, match="fraction"):
        hf.trim_and_retrain(hf.impact_study(cfg, trim_fraction=0.7), ds)


def test_trim_selection_per_label_keeps_the_label_shares():
    labels = np.array([0] * 60 + [1] * 40)
    scores = np.where(labels == 0, 10.0, 0.0) + np.arange(100) * 1e-3  # every label-0 row outranks every label-1 row
    assert set(labels[hf.trim_selection(scores, labels, 10, "none")]) == {0}
    picked = hf.trim_selection(scores, labels, 10, "class")
    assert np.bincount(labels[picked]).tolist() == [6, 4]
    assert set(picked[labels[picked] == 1]) == {96, 97, 98, 99}  # the top scores within label 1
    with pytest.raises(InputError, match="balance"):
        hf.trim_selection(scores, labels, 10, "auto")


def test_the_trim_recommendation_is_computed_from_the_paired_changes_it_sits_above():
    """A +2.8 % ± 0.9 % paired gain is a measured gain (the page once said 'do not trim' above it); a flat change is not;
    one seed measures no noise at all."""
    from influence_core.hessian_free import TrimResult

    untrimmed = [0.90, 0.91, 0.89, 0.90, 0.92]
    helped = TrimResult(
        fraction=0.05,
        seeds=[0, 1, 2, 3, 4],
        accuracy={"none": untrimmed, "ip": [a + d for a, d in zip(untrimmed, (0.02, 0.03, 0.04, 0.02, 0.03))], "tracin": untrimmed},
        fairness={"none": [0.0] * 5, "ip": [0.0] * 5, "tracin": [0.0] * 5},
        removed={"ip": [1, 2], "tracin": [3, 4]},
        flipped_share_removed={"none": 0.0, "ip": 0.5, "tracin": 0.0},
    )
    ok, said = helped.recommendation()
    assert ok and helped.raised_beyond_noise() == ["ip"] and "+2.8%" in said
    flat = TrimResult(
        fraction=0.05,
        seeds=[0, 1, 2, 3, 4],
        accuracy={"none": untrimmed, "ip": untrimmed},
        fairness={"none": [0.0] * 5, "ip": [0.0] * 5},
        removed={"ip": [1]},
        flipped_share_removed={"none": 0.0, "ip": 0.0},
    )
    assert flat.recommendation()[0] is False and "does not support" in flat.recommendation()[1]
    one = TrimResult(0.05, [0], {"none": [0.9], "ip": [0.95]}, {"none": [0.0], "ip": [0.0]}, {"ip": [1]}, {})
    assert one.recommendation() == (False, one.recommendation()[1]) and "One seed" in one.recommendation()[1]


def test_the_trim_result_names_methods_that_removed_the_same_rows_and_their_overlap():
    """Equal rows in the trim table are equal because the same rows were removed: the result says which, and how much
    every pair of removed sets overlaps (the page once worked this out itself)."""
    from influence_core.hessian_free import TrimResult

    runs = {m: [0.9, 0.91] for m in ("none", "ip", "tracin", "influence")}
    trimmed = TrimResult(
        fraction=0.05,
        seeds=[0, 1],
        accuracy=runs,
        fairness={m: [0.0, 0.0] for m in runs},
        removed={"ip": np.array([1, 2, 3, 4]), "tracin": np.array([4, 3, 2, 1]), "influence": np.array([1, 2, 7, 8])},
        flipped_share_removed={},
    )
    assert trimmed.same_removed_groups() == [["ip", "tracin"]]
    overlap = trimmed.removed_overlap()
    assert overlap.shape == (3, 3) and np.allclose(np.diag(overlap.to_numpy()), 1.0)
    assert overlap.to_numpy()[0, 2] == 0.5 and overlap.to_numpy()[2, 1] == 0.5
    alone = TrimResult(0.05, [0], {"none": [0.9], "ip": [0.9]}, {"none": [0.0], "ip": [0.0]}, {"ip": np.array([1])}, {})
    assert alone.same_removed_groups() == [] and alone.removed_overlap().empty


def test_the_scored_result_names_the_leave_one_out_rows_and_each_methods_flip_detection():
    """What-if's page once ranked rows and computed the AUROC table itself; the result does."""
    from types import SimpleNamespace

    from influence_core.hessian_free import HessianFreeResult

    flipped = np.zeros(30, bool)
    flipped[:5] = True
    scores = {"influence": np.r_[np.full(5, 3.0), np.linspace(-1, 1, 25)], "ip": np.r_[np.full(5, -5.0), np.zeros(25)]}
    result = HessianFreeResult(None, SimpleNamespace(flipped=flipped), None, "utility", scores)
    table = result.flip_detection()
    assert table.iloc[0, 1] == 1.0 and table.iloc[1, 1] == 0.0  # influence finds the flips, IP ranks them last
    ranked_by, top = result.strongest(5)
    assert ranked_by == result.compared[0] and sorted(top.tolist()) == [0, 1, 2, 3, 4]
    assert HessianFreeResult(None, SimpleNamespace(flipped=np.zeros(3, bool)), None, "utility", {"ip": np.ones(3)}).flip_detection().empty
