import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own result cache, so no test sees another's entries."""
    monkeypatch.setenv("INFLUENCE_LAB_CACHE", str(tmp_path / "cache"))
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models: one intra-op thread is fastest and does not spin against other jobs on a
    shared 2-core machine. Restored after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_dir() -> Path:
    """../shared beside the checkout (ACAS Xu networks, papers)."""
    return Path(os.environ.get("INFLUENCE_LAB_SHARED", ROOT.parent / "shared"))
