"""Small models train on one CPU thread (training.threads_for_training): on a shared 2-core machine two threads wait for
each other at every microsecond op (the Label bias CNN: 23-116 s on two threads, 4.3 s on one). The count is given
back after, and large steps keep torch's own setting."""

from __future__ import annotations

import pytest
import torch

from influence_core import training
from influence_core.config import ModelConfig, TrainConfig
from influence_core.models import build_model


def _threads_seen_while_training(kind: str, shape: tuple[int, ...], batch: int) -> set[int]:
    model = build_model(ModelConfig(kind=kind, hidden=16, depth=1), shape, 3, 0)
    seen: set[int] = set()

    def note(module, *_) -> None:  # training-mode forwards only (the step counter's own pass runs in eval mode, before)
        if module.training:
            seen.add(torch.get_num_threads())

    model.register_forward_hook(note)
    x, y = torch.randn(2 * batch, *shape), torch.randint(0, 3, (2 * batch,))
    training.train_model(model, x, y, TrainConfig(optimizer="sgd", lr=0.1, epochs=1, batch_size=batch, n_checkpoints=1), 0)
    return seen


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_small_model_trains_on_one_thread_and_gives_the_count_back(two_threads):
    assert training.step_flops(build_model(ModelConfig(kind="mlp", hidden=16, depth=1), (8,), 3, 0), torch.zeros(1, 8), 32) < 1e6
    assert _threads_seen_while_training("mlp", (8,), 32) == {1}
    assert torch.get_num_threads() == 2


def test_a_large_step_keeps_torchs_thread_count(two_threads, monkeypatch):
    monkeypatch.setattr(training, "ONE_THREAD_STEP_FLOPS", 1.0)  # every step counts as large
    assert _threads_seen_while_training("mlp", (8,), 32) == {2}
    assert torch.get_num_threads() == 2


def test_the_one_thread_limit_finds_libraries_loaded_after_its_first_use(monkeypatch):
    """threadpoolctl's controller lists the libraries loaded when it is built: one built before scipy's OpenBLAS loaded
    left that pool on two threads (a detector after a training, test_costs' one-thread test in another order)."""
    import sys
    import types

    from influence_core import resources

    first = resources._native_pools()
    assert resources._native_pools() is first  # no new import: the scan is not repeated (3 ms each)
    monkeypatch.setitem(sys.modules, "influence_lab_test_newly_imported", types.ModuleType("influence_lab_test_newly_imported"))
    assert resources._native_pools() is not first
