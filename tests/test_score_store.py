"""Out-of-core score matrices: the same numbers as in memory, lazy reads, a killed run resumes, refusals before work."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from influence_core import experiments, score_store
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.errors import InputError
from influence_core.score_store import ScoreMatrix

CONFIG = RunConfig(
    data=DataConfig(name="moons", n_train=230, n_test=40),
    model=ModelConfig(kind="mlp", hidden=8, depth=1, activation="tanh"),
    train=TrainConfig(optimizer="adam", lr=0.05, epochs=40, weight_decay=1e-3),
    curvature=CurvatureConfig(kind="exact", damping=0.1),
)
BLOCK = 50  # 230 rows → 5 blocks, the last one short


@pytest.fixture
def small_blocks(monkeypatch):
    """Every matrix goes out of core, in blocks of 50 training rows."""
    monkeypatch.setattr(experiments, "MAX_PAIRWISE_ENTRIES", 10)
    monkeypatch.setattr(score_store, "block_rows_for", lambda *args, **kwargs: BLOCK)


def in_memory() -> np.ndarray:
    return experiments.compute_influence(CONFIG, use_cache=False, pairwise=True).pairwise


def test_the_out_of_core_matrix_equals_the_in_memory_one_and_reads_like_it(small_blocks):
    result = experiments.compute_influence(CONFIG, pairwise=True)
    stored = result.pairwise
    assert isinstance(stored, ScoreMatrix) and stored.shape == (40, 230)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiments, "MAX_PAIRWISE_ENTRIES", 10**9)
        reference = in_memory()
    assert isinstance(reference, np.ndarray)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(np.asarray(stored), reference, atol=1e-6 * scale)
    np.testing.assert_allclose(stored[7], reference[7], atol=1e-6 * scale)  # a test point's row
    np.testing.assert_allclose(stored[:, 123], reference[:, 123], atol=1e-6 * scale)  # a training point's column
    rows, cols = np.array([3, 1]), np.array([0, 199, 51])
    np.testing.assert_allclose(stored[np.ix_(rows, cols)], reference[np.ix_(rows, cols)], atol=1e-6 * scale)
    np.testing.assert_allclose(stored.mean(0), reference.mean(0), atol=1e-6 * scale)  # streamed over blocks
    np.testing.assert_allclose(stored.sum(1), reference.sum(1), atol=1e-5 * scale)
    for by, key in (("abs", np.abs(reference[5])), ("harmful", reference[5]), ("helpful", -reference[5])):
        assert list(stored.top_k(5, 10, by)) == list(np.argsort(-key, kind="stable")[:10])
    # a second run reads the finished store from the cache, computing nothing
    again = experiments.compute_influence(CONFIG, pairwise=True)
    assert again.metrics["influence_from_cache"] and again.pairwise.path == stored.path


KILLED_RUN = textwrap.dedent(
    """
    import os
    from influence_core import experiments, score_store
    from test_score_store import BLOCK, CONFIG  # tests/ on PYTHONPATH: a package named 'tests' in site-packages cannot shadow it

    experiments.MAX_PAIRWISE_ENTRIES = 10
    score_store.block_rows_for = lambda *args, **kwargs: BLOCK
    score = score_store._score_block
    calls = []

    def dies_in_the_third_block(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os._exit(9)  # as a kill would: no cleanup, no finally
        return score(*args, **kwargs)

    score_store._score_block = dies_in_the_third_block
    experiments.compute_influence(CONFIG, pairwise=True)
    """
)


def test_a_run_killed_mid_matrix_resumes_and_gives_the_same_matrix(small_blocks, tmp_path):
    env = {**os.environ, "INFLUENCE_LAB_CACHE": os.environ["INFLUENCE_LAB_CACHE"], "PYTHONPATH": str(Path(__file__).resolve().parent)}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-2000:]

    computed = []
    score = score_store._score_block

    def counting(block, *args, **kwargs):
        computed.append(block)
        return score(block, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(score_store, "_score_block", counting)
        resumed = experiments.compute_influence(CONFIG, pairwise=True)
    assert sorted(computed) == [2, 3, 4], "only the blocks the killed run had not finished are computed"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiments, "MAX_PAIRWISE_ENTRIES", 10**9)
        reference = in_memory()
    np.testing.assert_allclose(np.asarray(resumed.pairwise), reference, atol=1e-6 * np.abs(reference).max())


def test_a_matrix_the_disk_cannot_hold_is_refused_before_any_scoring(small_blocks, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    scored = []
    monkeypatch.setattr(score_store, "_score_block", lambda *a, **k: scored.append(1))
    with pytest.raises(InputError, match="on disk"):
        experiments.compute_influence(CONFIG, pairwise=True)
    assert not scored


def test_queries_whose_gradients_exceed_the_memory_budget_are_refused(monkeypatch):
    monkeypatch.setenv("INFLUENCE_LAB_MEMORY_GB", str(1000 / 2**30))  # 1,000 bytes: not even 40 query rows of 41 floats
    with pytest.raises(InputError, match="held-out rows"):
        experiments.compute_influence(CONFIG.replace(curvature__kind="identity"), pairwise=True)


def test_a_deleted_store_is_recomputed_not_a_traceback(small_blocks):
    import shutil

    first = experiments.compute_influence(CONFIG, pairwise=True).pairwise
    values = np.asarray(first)
    shutil.rmtree(first.path)
    again = experiments.compute_influence(CONFIG, pairwise=True).pairwise
    np.testing.assert_array_equal(np.asarray(again), values)
