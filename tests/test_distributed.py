"""Past one process: a local Dask cluster gives the one-process numbers, survives a killed worker, and a cluster
that cannot be reached is refused in seconds with nothing lost. Small on purpose: CI has 2 cores."""

from __future__ import annotations

import os
import signal
import socket
import time

import numpy as np
import pytest
import torch

from influence_core import distributed
from influence_core.config import ModelConfig
from influence_core.errors import InputError
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.models import build_model, parameter_names

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="cnn", hidden=12, depth=2), SHAPE, 3, 0).eval()
    x, y = torch.randn(600, *SHAPE), torch.randint(0, 3, (600,))
    return model, x, y


@pytest.fixture(scope="module")
def cluster():
    distributed.configure(distributed.ComputeSetting(workers=2))
    yield
    distributed.shutdown()


def _one_process(fn):
    """``fn()`` with the cluster set aside (the client is kept, only hidden)."""
    client = distributed._state["client"]
    distributed._state["client"] = None
    try:
        return fn()
    finally:
        distributed._state["client"] = client


def _close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() <= 1e-6 * np.abs(b).max()


@pytest.mark.parametrize("method, curvature", [("influence", "ekfac"), ("influence", "diag"), ("trak", "auto")])
def test_two_local_workers_give_the_one_process_scores(cluster, model_and_data, method, curvature):
    model, x, y = model_and_data
    assert distributed.n_workers() == 2
    names = parameter_names(model, "all")
    context = AttributionContext(model, x, y, names, 1e-2, curvature, 0.05, options={"projection_dim": 64} if method == "trak" else {})
    fitted = _one_process(lambda: fit_attributor(method, context))
    queries = PerSampleLoss(x[:20], y[:20])
    local_scores, local_self = _one_process(lambda: (fitted.scores(queries), fitted.self_scores()))
    assert _close(fitted.scores(queries), local_scores) and _close(fitted.self_scores(), local_self)
    if method == "trak":  # its training features are computed on the workers too
        on_cluster = fit_attributor(method, context)
        assert _close(on_cluster.scores(queries), local_scores)


def test_a_curvature_summed_over_rows_on_the_workers_equals_the_one_process_fit(cluster, model_and_data):
    from influence_core.curvatures import build_curvature

    model, x, y = model_and_data
    names = parameter_names(model, "all")
    local = _one_process(lambda: build_curvature("diag", model, x, y, names, 1e-2, 0.05))
    on_cluster = build_curvature("diag", model, x, y, names, 1e-2, 0.05)
    assert _close(on_cluster.diagonal, local.diagonal)


def test_lds_retrains_on_the_workers_give_the_one_process_lds(cluster):
    from influence_core.lds import linear_datamodeling_score, trust_config

    config = trust_config("moons", "logreg").replace(data__n_train=120, data__n_test=30)
    on_cluster = linear_datamodeling_score(config, ["influence", "ip"], n_subsets=6, fraction=0.5, use_cache=False)
    local = _one_process(lambda: linear_datamodeling_score(config, ["influence", "ip"], n_subsets=6, fraction=0.5, use_cache=False))
    np.testing.assert_allclose(on_cluster.actual, local.actual, rtol=1e-6)
    assert on_cluster.lds == pytest.approx(local.lds, rel=1e-6)


def test_a_worker_killed_mid_run_is_replaced_and_the_result_is_the_same(cluster, model_and_data):
    model, x, y = model_and_data
    names = parameter_names(model, "all")
    fitted = _one_process(lambda: fit_attributor("influence", AttributionContext(model, x, y, names, 1e-2, "diag", 0.05)))
    reference = _one_process(lambda: fitted.self_scores())
    before = distributed.worker_pids()
    killed = []

    def kill_one_worker_at_the_first_result(share, message=""):
        if not killed and share > 0:
            victim = next(iter(before.values()))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    fn = fitted.curvature.self_influence
    result = distributed.over_rows(fn, x, y, 0, kill_one_worker_at_the_first_result, rows=20, model=model, task=fitted.context.task)
    assert killed, "the progress never reported a finished block"
    assert _close(result.numpy(), reference)
    deadline = time.time() + 30
    while time.time() < deadline and (len(distributed.worker_pids()) < 2 or killed[0] in distributed.worker_pids().values()):
        time.sleep(0.5)
    assert killed[0] not in distributed.worker_pids().values(), "the killed worker is not the one answering now"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_refused_in_seconds_with_a_clear_message():
    before = distributed.current()
    start = time.perf_counter()
    with pytest.raises(InputError, match="could not reach the Dask scheduler") as err:
        distributed.configure(distributed.ComputeSetting(scheduler=f"tcp://127.0.0.1:{_free_port()}"))
    assert time.perf_counter() - start < 15
    assert "dask scheduler" in str(err.value) and "Nothing was computed" in str(err.value)
    assert distributed.current() == before, "a refused setting leaves the one before in place"


def test_the_cli_refuses_an_unreachable_scheduler_before_any_work_and_keeps_the_old_output(tmp_path, capsys):
    from influence_core.cli import main

    data = tmp_path / "table.csv"
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{u:.3f},{v:.3f},{int(u + v > 0)}" for u, v in rng.normal(size=(60, 2))]
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "scores.csv"
    out.write_text("the previous run's scores\n")
    start = time.perf_counter()
    code = main(
        ["scores", "--data", str(data), "--label-column", "label", "--out", str(out), "--scheduler", f"tcp://127.0.0.1:{_free_port()}"]
    )
    assert code == 2 and time.perf_counter() - start < 20
    assert "could not reach the Dask scheduler" in capsys.readouterr().err
    assert out.read_text() == "the previous run's scores\n"


@pytest.mark.parametrize("setting", [dict(workers=-1), dict(workers=2, scheduler="tcp://127.0.0.1:1"), dict(scheduler="localhost:8786")])
def test_settings_that_make_no_sense_are_refused(setting):
    with pytest.raises(InputError):
        distributed.ComputeSetting(**setting)
