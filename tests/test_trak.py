"""TRAK against its unprojected formula, and its projection's determinism and seams."""

import numpy as np
import pytest
import torch

from influence_core.config import ModelConfig, RunConfig, TrainConfig
from influence_core.data.synthetic import make_synthetic
from influence_core.errors import InputError
from influence_core.gradients import per_sample_grads
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.methods.trak import RandomProjection
from influence_core.models import build_model, parameter_names
from influence_core.tasks import CORRECT_CLASS_MARGIN
from influence_core.training import train_model


@pytest.fixture(scope="module")
def trained():
    ds = make_synthetic("moons", 90, 15, 0)
    x, y = torch.tensor(ds.x_train, dtype=torch.float64), torch.tensor(ds.y_train)
    xt, yt = torch.tensor(ds.x_test, dtype=torch.float64), torch.tensor(ds.y_test)
    model = build_model(ModelConfig(kind="mlp", hidden=5, depth=1, activation="tanh"), (2,), 2, 0).double()
    result = train_model(model, x, y, TrainConfig(optimizer="adam", lr=0.05, epochs=80, weight_decay=1e-3, n_checkpoints=4), 0)
    return model.eval(), result.checkpoints, x, y, xt, yt


def test_projection_to_at_least_p_dimensions_equals_the_unprojected_formula(trained):
    model, _, x, y, xt, yt = trained
    names = parameter_names(model, "all")
    p = sum(q.numel() for q in model.parameters())
    context = AttributionContext(model, x, y, names, 0.0, damping=0.0, seed=4, options={"projection_dim": p + 9})
    got = fit_attributor("trak", context).scores(PerSampleLoss(xt, yt))
    # by hand, no projection: score = ∇ℓ_queryᵀ (ΦᵀΦ / n)⁺ ∇f_i · (1 − p_i)
    phi = per_sample_grads(model, x, y, names, task=CORRECT_CLASS_MARGIN)
    kernel = torch.linalg.pinv(phi.T @ phi / len(x), hermitian=True)
    q = 1 - torch.softmax(model(x), 1).gather(1, y[:, None]).squeeze(1)
    expected = (per_sample_grads(model, xt, yt, names) @ kernel @ phi.T * q[None, :]).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())


def test_a_small_projection_differs_and_the_same_seed_gives_the_same_scores(trained):
    model, ckpts, x, y, xt, yt = trained
    names = parameter_names(model, "all")

    def scores(dim, seed):
        context = AttributionContext(model, x, y, names, 1e-3, damping=1e-3, checkpoints=ckpts, seed=seed, options={"projection_dim": dim})
        return fit_attributor("trak", context).scores(PerSampleLoss(xt, yt))

    full = scores(64, 0)
    np.testing.assert_array_equal(scores(64, 0), full)
    assert not np.allclose(scores(3, 0), full)
    assert not np.allclose(scores(3, 1), scores(3, 0))


def test_projection_in_blocks_equals_one_matrix():
    g = torch.randn(5, 1000, generator=torch.Generator().manual_seed(0))
    blocked = RandomProjection(1000, 16, seed=3, device=torch.device("cpu"), block=128)(g)
    whole = RandomProjection(1000, 16, seed=3, device=torch.device("cpu"), block=128)
    matrix = torch.cat([whole._block(i, min(128, 1000 - s)) for i, s in enumerate(range(0, 1000, 128))])
    torch.testing.assert_close(blocked, g @ matrix)


def test_an_ensemble_needs_that_many_checkpoints_and_bad_knobs_are_refused(trained):
    model, ckpts, x, y, _, _ = trained
    names = parameter_names(model, "all")
    with pytest.raises(InputError, match="ensemble of 9 needs 9 saved checkpoints"):
        fit_attributor("trak", AttributionContext(model, x, y, names, 1e-3, checkpoints=ckpts, options={"ensemble": 9}))
    assert fit_attributor("trak", AttributionContext(model, x, y, names, 1e-3, checkpoints=ckpts, options={"ensemble": 3})).note.endswith(
        "3 models"
    )
    with pytest.raises(InputError, match="has no option rank; its options: projection_dim"):
        RunConfig(model=ModelConfig(kind="mlp"), method="trak", method_options=(("rank", 3),))
