"""A fresh server's first visit: the heavy imports under a progress box, plotly.js fetched while they run."""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

from pages._frame import show_device
from pages._progress import progress_status

# what a first visit to a view imports, with each module's rough share of the wait (measured with -X importtime)
HEAVY_IMPORTS = (
    ("torch", 1.5),  # not torch._dynamo (1.5 s more): training steps without torch.optim's classes (optimisers.py)
    ("sklearn.datasets", 0.9),
    ("backpack", 0.05),  # the GGN fits (laplace-torch, 1-2 s to import, only for models beyond the zoo)
    ("pandas", 0.2),
    ("plotly.graph_objects", 0.2),
)


# On a fresh server's first visit the landing view sends its data's figure before torch loads; the browser then fetches
# and compiles plotly.js and draws it (about 1.5 s of a 2-core machine). Importing torch at once took the CPU it needed
# (first plot 3.2-3.6 s); waiting this long first: 2.4 s, the influence result about 0.5 s later (4.8 -> 5.4 s;
# ui_latency.py, three cold servers each)
DRAW_BEFORE_IMPORTS_SECONDS = 1.2


def let_the_browser_draw() -> None:
    """Hold the page's imports back while the browser draws the figure just sent (a fresh server's first run)."""
    import time

    time.sleep(DRAW_BEFORE_IMPORTS_SECONDS)


def _not_imported(modules: Optional[Sequence[tuple[str, float]]] = None) -> list[tuple[str, float]]:
    import sys

    return [(name, weight) for name, weight in (HEAVY_IMPORTS if modules is None else modules) if name not in sys.modules]


def imports_pending() -> bool:
    """Whether :func:`import_with_progress` still has work (a fresh server's first run)."""
    return bool(_not_imported())


def import_with_progress(
    modules: Optional[Sequence[tuple[str, float]]] = None, label: str = "Loading PyTorch and scikit-learn (once per server start)"
) -> None:
    """Import the modules not imported yet under a progress box: on a fresh server the first view's imports are
    seconds of blank page otherwise. Then the sidebar's device line."""
    import importlib

    from influence_core.timing import want_heavy_imports

    want_heavy_imports()  # serve.py's warm-up holds torch back until a page needs it
    missing = _not_imported(modules)
    if missing:
        total = sum(weight for _, weight in missing)
        with progress_status(label, stoppable=False) as report:  # an import cannot end early, and every view needs it
            done = 0.0
            for name, weight in missing:
                report(done / total, f"importing {name}")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation, raised on import
                    importlib.import_module(name)
                done += weight
            report(1.0, "imported")
    show_device()
