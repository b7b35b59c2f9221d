"""The linear datamodeling score: a convex model's exact influence scores high, a random scorer near zero,
retrains are deterministic and reused, bad settings are refused before any retraining."""

import numpy as np
import pytest

from influence_core import experiments
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.errors import InputError
from influence_core.lds import lds_from_scores, linear_datamodeling_score, random_subsets

CONVEX = RunConfig(
    data=DataConfig(name="blobs", n_train=120, n_test=30),
    model=ModelConfig(kind="logreg"),
    train=TrainConfig(optimizer="lbfgs", epochs=20, weight_decay=1e-2, n_checkpoints=3),
    curvature=CurvatureConfig(kind="exact", damping=0.0),
)


@pytest.fixture(scope="module")
def convex_lds():
    return linear_datamodeling_score(CONVEX, ["influence", "ip"], n_subsets=30, fraction=0.5, seed=0)


def test_exact_influence_on_a_convex_model_scores_high(convex_lds):
    assert convex_lds.lds["influence"] >= 0.9, convex_lds.lds
    low, high = convex_lds.interval["influence"]
    assert low <= convex_lds.lds["influence"] <= high and high - low < 0.2
    table = convex_lds.table()
    assert list(table.columns) == ["method", "lds", "lds_low", "lds_high", "seconds"] and len(table) == 2


def test_a_random_scorer_scores_near_zero(convex_lds):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=convex_lds.scores["influence"].shape)
    assert abs(np.nanmean(lds_from_scores(noise, convex_lds.subsets, convex_lds.actual))) < 0.1


def test_retrains_are_deterministic_and_a_cached_retrain_is_reused(convex_lds):
    first = linear_datamodeling_score(CONVEX, ["ip"], n_subsets=30, fraction=0.5, seed=0)  # this test's own cache
    assert first.retrains_from_cache == 0
    again = linear_datamodeling_score(CONVEX, ["influence@cg"], n_subsets=30, fraction=0.5, seed=0)
    assert again.retrains_from_cache == 30, "every subset was retrained before: all must come from the cache"
    np.testing.assert_array_equal(again.subsets, convex_lds.subsets)
    np.testing.assert_array_equal(again.actual, convex_lds.actual)
    assert abs(again.lds["influence@cg"] - convex_lds.lds["influence"]) < 1e-3  # CG converges to the exact inverse
    np.testing.assert_array_equal(random_subsets(50, 4, 0.5, 3), random_subsets(50, 4, 0.5, 3))


def test_an_earlier_results_scores_are_reused_for_another_fraction(convex_lds, monkeypatch):
    """One scoring serves several subset fractions: the earlier scores are taken, not recomputed."""
    from influence_core.methods.influence_functions import InfluenceFunction

    monkeypatch.setattr(InfluenceFunction, "scores", lambda *a, **k: pytest.fail("scored again"))
    other = linear_datamodeling_score(CONVEX, ["influence"], n_subsets=10, fraction=0.9, seed=0, scored=convex_lds)
    np.testing.assert_array_equal(other.scores["influence"], convex_lds.scores["influence"])
    assert other.seconds["influence"] == convex_lds.seconds["influence"] and other.subsets.shape == (10, 120)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction": 1.0}, "fraction must be between 0 and 1"),
        ({"fraction": 0.0}, "fraction must be between 0 and 1"),
        ({"n_subsets": 1}, "at least 2 subsets"),
        ({"fraction": 0.02}, "holds one class only"),
        ({"methods": ["nope"]}, "unknown method"),
        ({"methods": ["ip@exact"]}, "takes no curvature"),
        ({"methods": ["trak:rank=3"]}, "has no option rank"),
        ({"methods": ["trak:ensemble"]}, "written name=number"),
    ],
)
def test_bad_settings_are_refused_before_any_retraining(kwargs, message, monkeypatch):
    monkeypatch.setattr(experiments, "train", lambda *a, **k: pytest.fail("trained before refusing the settings"))
    args = {"methods": ["influence"], "n_subsets": 5, "fraction": 0.5, **kwargs}
    with pytest.raises(InputError, match=message):
        linear_datamodeling_score(CONVEX, args.pop("methods"), **args)


def test_methods_that_order_every_subset_alike_are_named_equal():
    """Trust showed IP and TracIn with identical LDS and no note: equal results are grouped from the per-point values."""
    from influence_core.lds import LDSResult

    same = np.array([0.5, 0.7, np.nan])
    result = LDSResult(
        ["ip", "tracin", "trak"],
        {},
        {},
        {"ip": same, "tracin": same.copy(), "trak": np.array([0.5, 0.6, 0.1])},
        {},
        np.zeros((2, 3), bool),
        np.zeros((2, 3)),
    )
    assert result.equal_groups() == [["ip", "tracin"]]
