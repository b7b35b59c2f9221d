"""Training steps by torch.optim's functional kernels (influence_core.optimisers): the same steps as
torch.optim.Adam / SGD and CosineAnnealingLR, and no torch._dynamo import on the way (1.5 s of a cold view)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from influence_core.config import TrainConfig
from influence_core.optimisers import cosine_rate, optimiser_for, schedule_for
from influence_core.training import step_learning_rates, train_model

ROOT = Path(__file__).resolve().parents[1]


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _run(model, step, zero_grad, schedule_step, steps: int = 30) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(32, 5, generator=generator), torch.randint(0, 3, (32,), generator=generator)
        zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        step()
        schedule_step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_steps_under_a_cosine_schedule_match_torch_optims_own_classes(name):
    ours_model, theirs_model = _model(), _model()
    ours = optimiser_for(name, list(ours_model.parameters()), lr=0.05, weight_decay=1e-3)
    ours_schedule = schedule_for("cosine", ours, 30)
    if name == "adam":
        theirs = torch.optim.Adam(theirs_model.parameters(), lr=0.05, weight_decay=1e-3, fused=True)
    else:
        theirs = torch.optim.SGD(theirs_model.parameters(), lr=0.05, weight_decay=1e-3)
    theirs_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=30)
    got = _run(ours_model, ours.step, ours.zero_grad, ours_schedule.step)
    want = _run(theirs_model, theirs.step, theirs.zero_grad, theirs_schedule.step)
    # the closed-form rate and the scheduler's recursive one differ in the last bits of a float64 (the kernels take
    # the rate as a double): the weights agree to float32 rounding, and moved from where they started
    for a, b, start in zip(got, want, _model().parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, start.detach())
    if name == "adam":
        for p_ours, p_theirs in zip(ours_model.parameters(), theirs_model.parameters()):
            for key in ("exp_avg", "exp_avg_sq", "step"):
                torch.testing.assert_close(ours.state[p_ours][key], theirs.state[p_theirs][key], rtol=1e-6, atol=1e-9)


def test_constant_rate_steps_are_identical_to_torch_adam():
    ours_model, theirs_model = _model(), _model()
    ours = optimiser_for("adam", list(ours_model.parameters()), lr=0.01, weight_decay=1e-4)
    theirs = torch.optim.Adam(theirs_model.parameters(), lr=0.01, weight_decay=1e-4, fused=True)
    got = _run(ours_model, ours.step, ours.zero_grad, lambda: None)
    want = _run(theirs_model, theirs.step, theirs.zero_grad, lambda: None)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_cosine_rates_follow_torchs_scheduler():
    stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(stand_in, T_max=7)
    for step in range(1, 8):
        stand_in.step()
        scheduler.step()
        assert cosine_rate(0.3, step, 7) == pytest.approx(stand_in.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
    cfg = TrainConfig(epochs=4, lr=0.2, batch_size=10, lr_schedule="cosine_per_step")
    rates = step_learning_rates(cfg, 25)  # 3 steps an epoch, annealed over 12
    assert [len(epoch) for epoch in rates] == [3, 3, 3, 3]
    assert rates[0][0] == 0.2 and rates[1][1] == pytest.approx(cosine_rate(0.2, 4, 12))


def test_training_a_model_imports_no_torch_dynamo():
    code = textwrap.dedent(
        """
        import sys, torch
        from influence_core.config import TrainConfig
        from influence_core.training import train_model
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
        for name in ("adam", "sgd"):
            train_model(model, x, y, TrainConfig(optimizer=name, epochs=2, batch_size=16, lr_schedule="cosine"), seed=0)
        print("torch._dynamo" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_train_model_takes_the_same_steps_as_before_with_torch_adam(monkeypatch):
    """The training loop with torch.optim.Adam put back (its classes and scheduler) ends at the same weights."""
    import influence_core.training as training

    x, y = torch.randn(64, 5, generator=torch.Generator().manual_seed(3)), torch.randint(0, 3, (64,))
    cfg = TrainConfig(optimizer="adam", lr=0.02, epochs=5, batch_size=16, weight_decay=1e-3, n_checkpoints=1)
    ours = train_model(_model(), x, y, cfg, seed=0).model
    monkeypatch.setattr(
        training, "_optimiser", lambda c, params: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay, fused=True)
    )
    theirs = train_model(_model(), x, y, cfg, seed=0).model
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
