import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The app asks to confirm a start estimated past 30 s; on a loaded test machine an ordinary run's estimate can pass
# that and a page would wait for the click. The gate itself is tested with its threshold forced to 0 (test_costs);
# everywhere else, and in the servers the browser tests start (they inherit this environment), it stays out of the way.
os.environ.setdefault("INFLUENCE_LAB_CONFIRM_SECONDS", "3600")


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


@pytest.fixture()
def animals(tmp_path):
    """A user's CSV (id `name`, features a–d, label `animal`) whose file carries 15 wrong labels of 300, and the
    row ids of those."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    y = np.repeat(["cat", "dog"], 150)
    x = rng.normal(size=(300, 4)) + np.where(y == "dog", 2.5, -2.5)[:, None]
    wrong = rng.choice(300, 15, replace=False)
    y[wrong] = np.where(y[wrong] == "cat", "dog", "cat")
    table = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    table.insert(0, "name", [f"r{i:03d}" for i in range(300)])
    table["animal"] = y
    path = tmp_path / "animals.csv"
    table.to_csv(path, index=False)
    return path, {f"r{i:03d}" for i in wrong}


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def small_mlp_and_cnn(request):
    """A 3-class MLP (two hidden layers of 12) or SmallCNN on 60 random 1 × 8 × 8 inputs: (model, x, y)."""
    import torch

    from influence_core.config import ModelConfig
    from influence_core.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=request.param, hidden=12, depth=2), (1, 8, 8), 3, 0).eval()
    return model, torch.randn(60, 1, 8, 8), torch.randint(0, 3, (60,))
