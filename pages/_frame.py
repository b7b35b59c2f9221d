"""The app's frame: the navigation over the views, the page header and the shared sidebar with its device line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

# light imports only: app.py imports this module before st.navigation, and torch (~1.5 s, far more on a busy
# machine) would hold back the navigation and leave Streamlit's raw file list over a blank page meanwhile
from influence_core import SIGN_CONVENTION
from influence_core.processes import start_process_pools_fresh
from pages._progress import take_stop_request

# (file, title, icon), relative to app.py; the first is the landing page on the embedded default dataset
PAGE_ICON = Path(__file__).resolve().parents[1] / "docs" / "icon.png"


VIEWS = [
    ("pages/explorer.py", "2D explorer", ":material/scatter_plot:"),
    ("pages/label_bias.py", "Label bias", ":material/label:"),
    ("pages/glitch_signals.py", "Glitch signals", ":material/bug_report:"),
    ("pages/what_if.py", "What-if", ":material/swap_horiz:"),
    ("pages/region_cuts.py", "Region cuts", ":material/flight:"),
    ("pages/trust.py", "Trust", ":material/verified:"),
]


_RUN_BY_APP = "_run_by_app_navigation"


def app_frame() -> Any:
    """Page config, ``st.navigation`` over the views and the shared sidebar."""
    start_process_pools_fresh()  # a library's process pool must not fork the server (influence_core.processes)
    # a local file: a material-icon favicon is fetched from a font server, which fails offline on every page
    st.set_page_config(page_title="Influence Lab", page_icon=str(PAGE_ICON), layout="wide")
    navigation = st.navigation([st.Page(file, title=title, icon=icon, default=(i == 0)) for i, (file, title, icon) in enumerate(VIEWS)])
    shared_sidebar()
    return navigation


def run_app() -> None:
    """app.py: navigation and sidebar, then the chosen page, marked as run through app.py."""
    navigation = app_frame()
    st.session_state[_RUN_BY_APP] = True
    navigation.run()


def page_header(title: str, device_after_imports: bool = False) -> None:
    """The page's title, with app.py's navigation and sidebar in place. The sidebar's device line follows at once,
    or, with ``device_after_imports``, at the page's :func:`import_with_progress` (it waits for torch).

    When the first visit to a freshly started server is a deep link (``/what_if``), Streamlit runs the page
    file alone in its legacy ``pages/`` mode: no shared sidebar, and a navigation listing ``app`` and ``ui``.
    The page then sets up the app's frame itself (which also ends that mode for the server).
    """
    if not st.session_state.pop(_RUN_BY_APP, False):
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is None:
            app_frame()
        else:
            # st.navigation switches the run to app.py's identity; keep this page's, or its widgets would
            # get new ids (and lose their values) on the next, normal run
            with ctx.run_with_active_hash(ctx.pages_manager.current_page_script_hash):
                app_frame()
    take_stop_request()
    st.title(title)
    if not device_after_imports:
        show_device()


_DEVICE_SLOT = "_sidebar_device_slot"


def shared_sidebar() -> None:
    """The sidebar. Its device line (which imports torch) is written by :func:`show_device`, after the page's own
    first elements: the landing view shows its data while torch still loads. Until then, on a fresh server, its slot
    holds an invisible plotly chart, the first element of every page's first run: the browser starts on plotly.js
    (4.7 MB) 0.2-0.4 s sooner than at the page's own first chart, which comes after the sidebar and the title."""
    import sys

    with st.sidebar:
        slot = st.session_state[_DEVICE_SLOT] = st.empty()
        if "torch" not in sys.modules:
            preload_plotly("sidebar_plotly_preload", slot)
        st.caption("Influence sign: " + SIGN_CONVENTION + ".")
        from pages._compute import compute_setting_panel

        compute_setting_panel()


def show_device() -> None:
    """Write the sidebar's device line (once per run; imports torch)."""
    slot = st.session_state.pop(_DEVICE_SLOT, None)
    if slot is not None:
        from influence_core.device import default_device
        from influence_core.timing import want_heavy_imports

        want_heavy_imports()  # the page needs torch now: serve.py's warm-up goes on beside it

        slot.caption(f"Device: **{default_device()}**")


def preload_plotly(key: str, slot=None):
    """An empty, invisible plotly chart sent before the page's imports: the browser fetches and compiles plotly.js
    (about 1 s on a 2-core machine, measured) while the server still imports torch, instead of after the page's first
    real figure arrives (the landing view's first plot came 1.3 s after its script ended; 0.4 s with this). Returns
    its slot (a new one unless given): call ``.empty()`` on it once the page's results are computed."""
    slot = st.empty() if slot is None else slot
    blank = {
        "data": [{"type": "scatter", "x": [], "y": [], "hoverinfo": "skip"}],
        "layout": {"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "xaxis": {"visible": False}, "yaxis": {"visible": False}},
    }
    slot.plotly_chart(blank, config={"displayModeBar": False, "staticPlot": True}, key=key)
    return slot
