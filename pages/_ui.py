"""Streamlit helpers shared by the pages: progress, error display, the shared sidebar, memoised runs."""

from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import streamlit as st

from influence_core import SIGN_CONVENTION
from influence_core.device import default_device
from influence_core.errors import CurvatureError, InputError

log = logging.getLogger("influence_lab")


@contextmanager
def progress_status(label: str) -> Iterator[Callable[[float, str], None]]:
    """An st.status box with a progress bar; yields a ProgressFn for influence_core."""
    with st.status(label, expanded=False) as status:
        bar = st.progress(0.0)

        def report(fraction: float, message: str) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)

        yield report
        status.update(label=label + " — done", state="complete")


def run_or_explain(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Optional[Any]:
    """Call ``fn``; on bad input show what to fix, on anything else a short message (no traceback)."""
    try:
        return fn(*args, **kwargs)
    except (InputError, CurvatureError) as err:
        st.error(str(err))
    except MemoryError:
        st.error("Out of memory: use fewer training samples, the last-layer scope or a smaller model.")
    except Exception as err:  # noqa: BLE001 — the UI must not show a traceback; the log keeps it
        log.error("unexpected error\n%s", traceback.format_exc())
        st.error(f"Something went wrong ({type(err).__name__}: {err}). The full trace is in the terminal running the app.")
    return None


def memoised(key: str, compute: Callable[[], Any]) -> Any:
    """Keep results of this session in memory (the disk cache covers new sessions)."""
    store = st.session_state.setdefault("_results", {})
    if key not in store:
        value = compute()
        if value is None:
            return None
        store[key] = value
    return store[key]


def page_header(title: str) -> None:
    """The page's title, after making sure the page runs inside app.py's navigation.

    When the first visit to a freshly started server is a deep link (``/what_if``), Streamlit runs the page
    file alone in its legacy ``pages/`` mode: no shared sidebar, and a navigation listing ``app`` and ``ui``.
    Leaving that mode and rerunning makes Streamlit run app.py, whose ``st.navigation`` then opens this page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
    st.title(title)


def shared_sidebar() -> None:
    with st.sidebar:
        st.caption(f"Device: **{default_device()}**")
        st.caption("Influence sign: " + SIGN_CONVENTION + ".")
