"""The sidebar's compute setting: where the long work runs (this process, local Dask workers, or a running cluster).

The setting is the server process's (:mod:`influence_core.distributed`), so every session of this app shares it, as
they share the machine. Nothing here imports torch or Dask until the user applies a setting.
"""

from __future__ import annotations

import os

import streamlit as st

WHERE = {"one": "this process", "local": "local worker processes", "cluster": "a running Dask cluster"}


def compute_setting_panel() -> None:
    from influence_core import distributed
    from pages._results import run_or_explain

    current = distributed.current()
    with st.expander(f"Compute: {current.describe()}", expanded=False):
        where = st.radio("Where the long work runs", list(WHERE), format_func=WHERE.get, key="compute_where", persist_state="session")
        workers = (
            int(st.number_input("Worker processes", 1, 4 * (os.cpu_count() or 1), 2, key="compute_workers", persist_state="session"))
            if where == "local"
            else 0
        )
        address = (
            st.text_input("Scheduler address", placeholder="tcp://HOST:8786", key="compute_address", persist_state="session")
            if where == "cluster"
            else None
        )
        if st.button("Apply", key="compute_apply"):
            setting = run_or_explain(distributed.ComputeSetting, workers=workers, scheduler=(address or "").strip() or None)
            if setting is not None and (where != "cluster" or setting.scheduler):
                with st.spinner(f"Starting {setting.describe()}"):
                    if run_or_explain(distributed.configure, setting) is not None:
                        st.success(f"Long work now runs on {setting.describe()}.")
            elif setting is not None:
                st.error("Give the scheduler's address, e.g. tcp://10.0.0.5:8786 (start one with `dask scheduler`).")
        st.caption(
            "Self-influence, score blocks, TRAK features, the diagonal curvature and LDS retrains go to the workers; the "
            "numbers are the same as in one process. The setting holds for every session of this app."
        )
