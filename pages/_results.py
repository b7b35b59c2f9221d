"""How a page runs work and keeps what it gives: failures explained without a traceback, results kept for the
session (and for a button, on screen after its click), small models on one torch thread."""

from __future__ import annotations

import logging
import traceback
import warnings
from typing import Any, Callable, Optional

import streamlit as st

from influence_core.errors import CurvatureError, DataWarning, InputError

log = logging.getLogger("influence_lab")


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
    """Keep results of this session in memory (the disk cache covers new sessions). What the data
    loaders warned about while computing (skipped files) is kept with the result and shown on every run.
    Key it on ``experiments.content_key(config)``, not ``config.key()``: the config names a user's file by
    path only, and an edited file must not bring back the old result."""
    store = st.session_state.setdefault("_results", {})
    if key not in store:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            value = compute()
        notes = []
        for w in caught:
            if issubclass(w.category, DataWarning):
                notes.append(str(w.message))
            else:  # not ours to show: back to the terminal, as if never caught
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        if value is None:
            for note in notes:
                st.warning(note)
            return None
        store[key] = (value, list(dict.fromkeys(notes)))
    value, notes = store[key]
    for note in notes:
        st.warning(note)
    return value


def kept_result(clicked: bool, store_key: str, compute: Callable[[], Any]) -> Optional[Any]:
    """A button's result that stays on screen after the click: ``compute`` runs on the click (through
    :func:`run_or_explain`, so a failure is explained and nothing is kept); returns the last result kept
    under ``store_key``."""
    if clicked:
        value = run_or_explain(compute)
        if value is not None:
            st.session_state[store_key] = value
    return st.session_state.get(store_key)


def one_thread():
    """Run small models' work (the explorer's 200-point toys) on one torch thread. On this 2-core machine with
    the other core busy, two OpenMP threads wait on each other at every tiny op: the landing view's training took
    6.1 s on two threads and 0.23 s on one (400 Adam steps of a 16-unit MLP). Large work keeps torch's default."""
    from influence_core.resources import compute_threads

    return compute_threads(1)
