"""The on-disk result cache: a damaged entry is a miss (recomputed and replaced), concurrent saves of one key
all succeed, and an unwritable cache folder warns but keeps the computed result."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from influence_core import cache
from influence_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

PAYLOAD = {"what": "unit"}


def _entry(scale: float = 1.0) -> cache.CacheEntry:
    return cache.CacheEntry(
        {"self": np.arange(5.0) * scale, "pairwise": np.ones((2, 5)) * scale},
        {"influence_seconds": 0.5 * scale, "epochs": [1, 2]},
        {"final": {"w": torch.ones(3) * scale}},
    )


def _folder(kind: str, payload: dict) -> Path:
    return cache.cache_root() / kind / cache.entry_key(kind, payload)[0]


def test_an_entry_round_trips():
    cache.save("unit", PAYLOAD, _entry(2.0))
    hit = cache.load("unit", PAYLOAD)
    assert hit is not None
    np.testing.assert_array_equal(hit.arrays["self"], np.arange(5.0) * 2)
    assert hit.meta == {"influence_seconds": 1.0, "epochs": [1, 2]}
    assert torch.equal(hit.tensors["final"]["w"], torch.full((3,), 2.0))


FAULTS = {
    "truncated": lambda f: f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 2)]),
    "deleted": lambda f: f.unlink(),
    "emptied": lambda f: f.write_bytes(b""),
    "json {}": lambda f: f.write_text("{}"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("name", ["config.json", "arrays.npz", "meta.json", "tensors.pt", "manifest.json"])
def test_a_damaged_file_is_a_miss_that_is_recomputed_and_replaced(name, fault):
    cache.save("unit", PAYLOAD, _entry())
    target = _folder("unit", PAYLOAD) / name
    if not target.exists():
        pytest.skip(f"this cache writes no {name}")
    FAULTS[fault](target)
    assert cache.load("unit", PAYLOAD) is None, f"{name} {fault}: a damaged entry was returned"
    calls = []
    entry, was_cached = cache.cached("unit", PAYLOAD, lambda: calls.append(1) or _entry(3.0))
    assert not was_cached and calls == [1]
    assert entry.meta["influence_seconds"] == 1.5
    again = cache.load("unit", PAYLOAD)  # replaced by the recomputed entry
    assert again is not None and again.meta["influence_seconds"] == 1.5 and set(again.tensors) == {"final"}


def test_an_entry_saved_with_other_keys_is_a_miss():
    cache.save("unit", PAYLOAD, _entry())
    folder = _folder("unit", PAYLOAD)
    (folder / "meta.json").write_text('{"influence_seconds": 1.0}')  # valid JSON, one key short
    assert cache.load("unit", PAYLOAD) is None


def _tiny_config() -> RunConfig:
    return RunConfig(
        data=DataConfig(name="moons", n_train=60, n_test=30),
        model=ModelConfig(kind="logreg"),
        train=TrainConfig(epochs=20, optimizer="lbfgs", n_checkpoints=2),
    )


def test_every_damaged_file_of_a_real_run_is_recomputed(one_torch_thread):
    """Run, damage each file of each entry (truncate, delete, empty) in turn, run again: same numbers, no traceback."""
    from influence_core.experiments import compute_influence

    config = _tiny_config()
    first = compute_influence(config)
    files = sorted(p for p in cache.cache_root().rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"arrays.npz", "meta.json", "tensors.pt"}, files
    for path in files:
        for fault in ("truncated", "deleted", "emptied"):
            if not path.exists():  # a recompute rewrote the entry: damage the new file
                compute_influence(config)
            FAULTS[fault](path)
            again = compute_influence(config)
            np.testing.assert_allclose(
                again.self_scores, first.self_scores, rtol=1e-5, atol=1e-8, err_msg=f"{path.relative_to(cache.cache_root())} {fault}"
            )
    assert compute_influence(config).metrics["influence_from_cache"], "the last rerun stored a good entry again"


def _save_many(args: tuple[str, int]) -> int:
    root, n = args
    os.environ["INFLUENCE_LAB_CACHE"] = root
    failures = 0
    for _ in range(n):
        try:
            cache.save("race", PAYLOAD, _entry(1.0))
        except Exception:  # noqa: BLE001 — counted, the test says how many
            failures += 1
    return failures


def test_concurrent_saves_of_one_key_all_succeed(tmp_path):
    root = str(tmp_path / "race-cache")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        failures = pool.map(_save_many, [(root, 25)] * 4)
    assert sum(failures) == 0, f"{sum(failures)} of 100 saves failed"
    os.environ["INFLUENCE_LAB_CACHE"] = root  # restored by the autouse fixture's monkeypatch
    hit = cache.load("race", PAYLOAD)
    assert hit is not None and hit.meta["influence_seconds"] == 0.5
    leftovers = [p.name for p in (Path(root) / "race").iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert not leftovers, f"temporary folders left behind: {leftovers}"


def _unwritable_cache(tmp_path: Path) -> Path:
    """A cache folder that cannot be created, for root too: its parent is a file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache's parent folder should be")
    return blocker / "results"


def test_an_unwritable_cache_warns_and_keeps_the_result(tmp_path, monkeypatch):
    monkeypatch.setenv("INFLUENCE_LAB_CACHE", str(_unwritable_cache(tmp_path)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entry, was_cached = cache.cached("unit", PAYLOAD, lambda: _entry(4.0))
    assert not was_cached and entry.meta["influence_seconds"] == 2.0
    messages = [str(w.message) for w in caught if issubclass(w.category, cache.CacheWarning)]
    assert messages and "cache" in messages[0] and "not-a-folder" in messages[0], [str(w.message) for w in caught]


def test_cli_writes_its_output_when_the_cache_cannot_be_written(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from influence_core.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "target": (x[:, 0] > 0).astype(int)}).to_csv(tmp_path / "d.csv", index=False)
    monkeypatch.setenv("INFLUENCE_LAB_CACHE", str(_unwritable_cache(tmp_path)))
    code = main(
        [
            "scores",
            "--data",
            str(tmp_path / "d.csv"),
            "--label-column",
            "target",
            "--out",
            str(tmp_path / "o.csv"),
            "--quiet",
            "--epochs",
            "5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "o.csv")) == 40
    assert "warning:" in err and "cache" in err, err
