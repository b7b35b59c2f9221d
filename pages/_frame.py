"""The app's frame: the navigation over the views, the page header and the shared sidebar with its device line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

# light imports only: app.py imports this module before st.navigation, and torch (~1.5 s, far more on a busy
# machine) would hold back the navigation and leave Streamlit's raw file list over a blank page meanwhile
from influence_core import SIGN_CONVENTION
from influence_core.processes import start_process_pools_fresh

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
    st.title(title)
    if not device_after_imports:
        show_device()


_DEVICE_SLOT = "_sidebar_device_slot"


def shared_sidebar() -> None:
    """The sidebar. Its device line (which imports torch) is written by :func:`show_device`, after the page's own
    first elements: the landing view shows its data while torch still loads."""
    with st.sidebar:
        st.session_state[_DEVICE_SLOT] = st.empty()
        st.caption("Influence sign: " + SIGN_CONVENTION + ".")
        from pages._compute import compute_setting_panel

        compute_setting_panel()


def show_device() -> None:
    """Write the sidebar's device line (once per run; imports torch)."""
    slot = st.session_state.pop(_DEVICE_SLOT, None)
    if slot is not None:
        from influence_core.device import default_device

        slot.caption(f"Device: **{default_device()}**")
