"""Config, cache, synthetic data, noise, training and the named pipelines."""

import dataclasses

import numpy as np
import pytest
import torch

from influence_core import cache
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.curvatures.identity import IdentityCurvature
from influence_core.data import noise
from influence_core.data.synthetic import GENERATORS, make_synthetic
from influence_core.errors import InputError
from influence_core.experiments import compute_influence, influence_over_epochs, tensors, train
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.training import model_at

SMALL = RunConfig(
    data=DataConfig(name="moons", n_train=80, n_test=30),
    model=ModelConfig(kind="mlp", hidden=8, depth=1),
    train=TrainConfig(optimizer="adam", lr=0.05, epochs=60, n_checkpoints=4),
    curvature=CurvatureConfig(kind="last_layer", damping=0.01),
)


def test_config_is_frozen_hashable_and_round_trips():
    a, b = RunConfig(), RunConfig()
    assert a == b and hash(a) == hash(b) and a.key() == b.key()
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.seed = 3  # type: ignore[misc]
    c = a.replace(seed=1, data__noise="uniform", data__noise_fraction=0.1)
    assert c.key() != a.key() and c.data.noise == "uniform" and a.data.noise == "none"
    assert RunConfig.from_dict(c.to_dict()) == c


def test_the_cnns_pooling_is_a_config_choice_that_keeps_earlier_cache_keys():
    """Average pooling (smooth in the weights, for exact attribution) is hashed when chosen; at the default (max) the
    config hashes as it did before the option existed (keys computed with the code before it)."""
    assert RunConfig().key() == "3348280332a347ef819b"
    cnn = RunConfig(model=ModelConfig(kind="cnn"))
    assert cnn.key() == "0623bd3d3428e05b1828" and "pooling" not in cnn.to_dict()["model"]
    avg = cnn.replace(model__pooling="avg")
    assert avg.key() != cnn.key() and RunConfig.from_dict(avg.to_dict()) == avg
    from influence_core.models import build_model

    layers = [type(m).__name__ for m in build_model(avg.model, (1, 8, 8), 10, 0).modules()]
    assert layers.count("AvgPool2d") == 2 and "MaxPool2d" not in layers
    assert "MaxPool2d" in [type(m).__name__ for m in build_model(cnn.model, (1, 8, 8), 10, 0).modules()]
    with pytest.raises(InputError, match="pooling must be"):
        cnn.replace(model__pooling="min")


@pytest.mark.parametrize(
    "bad",
    [
        dict(curvature__kind="magic"),
        dict(data__noise_fraction=1.5),
        dict(train__epochs=0),
        dict(model__kind="gpt"),
        dict(curvature__damping=-1.0),
        dict(method="vibes"),
    ],
)
def test_nonsense_configs_are_rejected_with_a_message(bad):
    with pytest.raises(InputError) as err:
        RunConfig().replace(**bad)
    assert "must" in str(err.value) or "needs" in str(err.value)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_synthetic_datasets_are_seeded_and_well_formed(name):
    a, b = make_synthetic(name, 120, 40, seed=3), make_synthetic(name, 120, 40, seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (120, 2) and a.x_test.shape == (40, 2)
    assert set(np.unique(a.y_train)) == {0, 1}
    assert a.flipped.sum() == (1 if name == "single_flip" else 0)
    assert not np.array_equal(make_synthetic(name, 120, 40, seed=4).x_train, a.x_train)


def test_single_flip_toy_flips_exactly_one_label_against_the_rule():
    ds = make_synthetic("single_flip", 200, 50, seed=0)
    rule = (ds.x_train[:, 0] > 0).astype(int)
    assert np.flatnonzero(ds.y_train != rule).tolist() == np.flatnonzero(ds.flipped).tolist()
    assert ds.flipped.sum() == 1


def test_label_noise_returns_ground_truth_mask_and_never_mutates():
    y = np.repeat(np.arange(3), 100)
    original = y.copy()
    noisy, mask = noise.flip_class(y, source=1, target=0, fraction=0.2, seed=0)
    assert mask.sum() == 20 and np.all(y[mask] == 1) and np.all(noisy[mask] == 0)
    assert np.array_equal(noisy[~mask], y[~mask]) and np.array_equal(y, original)
    uni, umask = noise.uniform_noise(y, 0.1, 3, seed=1)
    assert umask.sum() == 30 and np.all(uni[umask] != y[umask])
    single, smask = noise.singular_class(y, 2, 0.1, 3, seed=2)
    assert smask.sum() == 10 and np.all(y[smask] == 2) and np.all(single[smask] != 2)
    again, _ = noise.uniform_noise(y, 0.1, 3, seed=1)
    assert np.array_equal(again, uni)
    with pytest.raises(InputError):
        noise.flip_class(y, 5, 0, 0.1, 0)


def test_second_call_loads_from_cache_and_other_configs_miss():
    first = compute_influence(SMALL)
    assert not first.metrics["from_cache"] and not first.metrics["influence_from_cache"]
    second = compute_influence(SMALL)
    assert second.metrics["from_cache"] and second.metrics["influence_from_cache"]
    np.testing.assert_array_equal(first.self_scores, second.self_scores)
    # a different curvature reuses the trained model but never the scores
    other = compute_influence(SMALL.replace(curvature__kind="identity", method="ip"))
    assert other.metrics["from_cache"] and not other.metrics["influence_from_cache"]
    assert not np.allclose(other.self_scores, first.self_scores)
    # a cache entry whose stored config differs from the request is never returned
    payload = {"config": SMALL.to_dict(), "pairwise": True}
    key, _ = cache.entry_key("influence", payload)
    (cache.cache_root() / "influence" / key / "config.json").write_text('{"tampered": true}')
    assert cache.load("influence", payload) is None
    assert not compute_influence(SMALL).metrics["influence_from_cache"]


def test_training_is_reproducible_from_the_seed():
    a = train(SMALL, use_cache=False)
    b = train(SMALL, use_cache=False)
    for va, vb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(va, vb)
    c = train(SMALL.replace(seed=1), use_cache=False)
    assert not torch.equal(a.model.head.weight, c.model.head.weight)
    assert [ck.epoch for ck in a.checkpoints] == [15, 30, 45, 60]


def test_cosine_schedule_records_the_rate_each_checkpoint_trained_with():
    cosine = SMALL.replace(train__lr_schedule="cosine")
    trained = train(cosine, use_cache=False)
    rates = [c.lr for c in trained.checkpoints]
    epochs = cosine.train.epochs
    # epoch e (1-based) trains at lr·(1 + cos(π(e−1)/E))/2
    expected = [cosine.train.lr * (1 + np.cos(np.pi * (c.epoch - 1) / epochs)) / 2 for c in trained.checkpoints]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0]
    constant = train(SMALL, use_cache=False)
    assert all(c.lr == SMALL.train.lr for c in constant.checkpoints)
    assert not torch.equal(trained.model.head.weight, constant.model.head.weight)


def test_tracin_is_the_learning_rate_weighted_sum_over_checkpoints():
    trained = train(SMALL)
    x, y, xt, yt = tensors(trained.dataset, next(trained.model.parameters()).device)
    names = [n for n, _ in trained.model.named_parameters()]

    def ip_at(checkpoint):  # the inner product (H = I) at one checkpoint's weights, through the method registry
        return fit_attributor("ip", AttributionContext(model_at(trained.model, checkpoint), x, y, names, 0.0))

    tracin = fit_attributor("tracin", AttributionContext(trained.model, x, y, names, 0.0, checkpoints=list(trained.checkpoints)))
    expected = sum(c.lr * ip_at(c).scores(PerSampleLoss(xt, yt)) for c in trained.checkpoints)
    np.testing.assert_allclose(tracin.scores(PerSampleLoss(xt, yt)), expected, rtol=1e-5, atol=1e-7)
    self_expected = sum(c.lr * ip_at(c).self_scores() for c in trained.checkpoints)
    np.testing.assert_allclose(tracin.self_scores(), self_expected, rtol=1e-5)
    # the same as the identity curvature's quadratic form at each checkpoint
    by_curvature = sum(
        c.lr * IdentityCurvature(names).self_influence(model_at(trained.model, c), x, y).detach().cpu().numpy() for c in trained.checkpoints
    )
    np.testing.assert_allclose(tracin.self_scores(), by_curvature, rtol=1e-5)


def test_influence_concentrates_on_the_flipped_point_as_training_goes_on():
    config = RunConfig(
        data=DataConfig(name="single_flip", n_train=150, n_test=50),
        model=ModelConfig(kind="mlp", hidden=16, depth=1),
        train=TrainConfig(optimizer="adam", lr=0.01, epochs=1000, n_checkpoints=5, weight_decay=1e-4, checkpoint_spacing="log"),
        curvature=CurvatureConfig(kind="last_layer", damping=0.01),
    )
    epochs, per_epoch = influence_over_epochs(config)
    # early on every point pulls about equally; once the boundary is learnt the wrong label dominates
    flipped = int(np.flatnonzero(make_synthetic("single_flip", 150, 50, 0).flipped)[0])
    share = per_epoch[:, flipped] / per_epoch.sum(1)
    assert len(epochs) == 5 and per_epoch.shape == (5, 150)
    assert np.argmax(per_epoch[-1]) == flipped
    assert share[0] < 0.1 and share[-1] > 0.3, share


def test_pipeline_rejects_a_single_class():
    from influence_core.data.base import Dataset

    ds = make_synthetic("blobs", 40, 10, 0)
    one = Dataset(
        name="one",
        x_train=ds.x_train,
        y_train=np.zeros(40, int),
        x_test=ds.x_test,
        y_test=ds.y_test,
        class_names=["0", "1"],
        ids_train=np.arange(40),
        ids_test=np.arange(10),
    )
    with pytest.raises(InputError, match="one class"):
        train(SMALL, dataset=one)
