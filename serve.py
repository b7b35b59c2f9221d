"""Start the dashboard with the heavy imports already under way: `python serve.py [streamlit options]`.

`streamlit run app.py` imports nothing of the app until the first browser session runs it, so the first visit waits
for torch, scikit-learn, BackPACK and cleanlab: about 4 s of the
landing view's first plot on an idle 2-core machine (benchmarks/README.md, ui_latency.py). Here a background thread
imports what a first figure needs while Streamlit's server starts, then torch and the rest (and trains a toy model
once) as soon as a page asks for them, or after a few seconds without a visitor; the app itself is unchanged, and a
session that arrives before the warm-up ends simply waits on the same imports.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def warm_up() -> None:
    """What the landing view's first run would import and warm up (a failure here only costs the head start). The
    app's cost estimates wait for its end before they time anything (influence_core.timing.warming_up)."""
    from influence_core.timing import warming_up

    try:
        with warming_up():
            _import_and_train()
    except Exception as err:  # noqa: BLE001 — the app imports again, and reports its own errors, when it runs
        print(
            f"influence-lab: the background warm-up stopped ({type(err).__name__}: {err}); the first view imports instead", file=sys.stderr
        )


# how long the warm-up holds torch back for a first visitor's page (when none asks for it sooner)
HOLD_HEAVY_IMPORTS_SECONDS = 5.0


def _import_and_train() -> None:
    # what a page's first figure needs (the landing view draws its data before torch), then torch once a page asks for
    # it or no visitor came: torch imported beside the first visit's page load and plotly.js compile took the CPU
    # they need (first plot 3.3-3.9 s with it, 2.8 s without; ui_latency.py)
    import plotly.graph_objects  # noqa: F401
    import sklearn.datasets  # noqa: F401

    import influence_core.data.registry  # noqa: F401
    import influence_core.figures  # noqa: F401
    from influence_core.timing import heavy_imports_wanted

    heavy_imports_wanted(HOLD_HEAVY_IMPORTS_SECONDS)
    import torch

    import influence_core.experiments  # noqa: F401  (the curvatures, the methods, the data registry)
    from influence_core.config import TrainConfig
    from influence_core.training import train_model

    # a first training's one-off costs (its kernels' set-up), as the pages train; torch.optim's classes, which import
    # torch._dynamo (1.5 s), are not used (influence_core.optimisers)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    train_model(model, torch.zeros(8, 2), torch.tensor([0, 1] * 4), TrainConfig(epochs=2, batch_size=4, n_checkpoints=1), seed=0)
    # what the other views' first runs import next: BackPACK (the GGN fits) and cleanlab (the label-noise detectors)
    import backpack  # noqa: F401
    import cleanlab.filter  # noqa: F401


def main(argv: list[str]) -> None:
    # Streamlit's own modules first, in this thread: imported from two threads at once, modules that import each other
    # in a cycle deadlock (narwhals' stable.v1 / v2 did, in 2 of 12 starts, when the warm-up imported them meanwhile)
    import narwhals.stable.v1  # noqa: F401
    import narwhals.stable.v2  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import streamlit.runtime.scriptrunner  # noqa: F401
    import streamlit.web.bootstrap  # noqa: F401
    import streamlit.web.server  # noqa: F401
    from streamlit.web import cli

    from influence_core.processes import start_process_pools_fresh

    start_process_pools_fresh()  # before any thread starts: a library's process pool must not fork the server
    threading.Thread(target=warm_up, name="influence-lab-warm-up", daemon=True).start()

    sys.argv = ["streamlit", "run", str(APP), *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
