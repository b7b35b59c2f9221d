"""What-if's parts that only show a result: the test points' table; Trim and retrain's table, notes and figure (the page
lays out and calls)."""

import numpy as np
import pandas as pd
import streamlit as st

from influence_core import hessian_free as hf
from influence_core.figures import TABLE_PX, column_widths
from influence_core.figures.what_if import trim_figure


def table_of_test_points(result) -> pd.DataFrame:
    """One row per test point of a flip-set run: its label, prediction and the relabel / remove set sizes (-1: none)."""
    ds, search, names = result.dataset, result.relabel, np.asarray(result.dataset.class_names)
    return pd.DataFrame(
        {
            "test #": np.arange(len(ds.y_test)),
            "id": ds.ids_test,
            "true": names[ds.y_test],
            "p(class 1)": result.test_probs.round(3),
            "predicted": names[result.predicted],
            "k (relabel)": np.where(search.found, search.k, -1),
            "k (remove)": np.where(result.remove.found, result.remove.k, -1),
        }
    )


TRIM_COLUMNS = {  # the table's names, read as a person would say them; None = the column is left out
    "method": "Method",
    "accuracy_mean": "Held-out accuracy",
    "accuracy_std": "± std over seeds",
    "change_vs_untrimmed": "Change vs untrimmed",
    "change_se": "± standard error",
    "dp_gap_mean": "Demographic-parity gap",
    "flipped_share_removed": "Flipped labels among the removed",
    "per_class_seeds": "Seeds trimmed per class",
    "key": None,
}


# the headers the table shows (the full names on hover)
TRIM_HEADERS = {
    "± std over seeds": "± std",
    "± standard error": "± SE",
    "Demographic-parity gap": "DP gap",
    "Flipped labels among the removed": "Flipped removed",
    "Seeds trimmed per class": "Per class",
}


def _percent(value: float, signed: bool = False) -> str:
    """One percent format for the page ('95.1%', '+0.4%'); '—' where there is nothing to show (it read 'None')."""
    return "—" if value is None or not np.isfinite(value) else (f"{value:+.1%}" if signed else f"{value:.1%}")


def show_trim(trimmed, n_seeds: int, flipped_known: bool) -> None:
    """Trim and retrain's result: the table (each column named in full on hover), what is the same and why, the
    recommendation computed from the table's own numbers, and the figure."""
    frame = trimmed.table()
    shown = pd.DataFrame({"Method": frame["method"]})
    for column in ("accuracy_mean", "accuracy_std", "change_vs_untrimmed", "change_se", "dp_gap_mean", "flipped_share_removed"):
        if column == "accuracy_std" and n_seeds < 2:
            continue  # a std over one run is 0 by construction, not a measurement
        if column == "dp_gap_mean" and not frame[column].notna().any():
            continue  # no groups on this data
        if column == "flipped_share_removed" and not flipped_known:
            continue  # nothing is known to be flipped
        signed = column == "change_vs_untrimmed"
        paired = column in ("change_vs_untrimmed", "change_se")  # the baseline has no change against itself
        shown[TRIM_COLUMNS[column]] = [
            _percent(v, signed) if not (paired and k == "none") else "—" for v, k in zip(frame[column], frame["key"])
        ]
    if (frame["per_class_seeds"] > 0).any():
        shown[TRIM_COLUMNS["per_class_seeds"]] = [f"{c} of {n_seeds}" for c in frame["per_class_seeds"]]
    # short headers, said in full on hover, in widths that fit the page: with fairness groups and per-class seeds its
    # eight long headers ran past a 1440-px window's edge
    short = {name: TRIM_HEADERS[name] for name in shown.columns if name in TRIM_HEADERS}
    widths = column_widths(shown, px_per_char=6.5, labels=short, total=TABLE_PX, least={"Method": 27})
    st.dataframe(
        shown,
        hide_index=True,
        key="whatif_trim_table",
        column_config={
            c: st.column_config.TextColumn(short.get(c, c), help=c if c in short else None, width=widths[c]) for c in shown.columns
        },
    )
    st.caption(
        "Change vs untrimmed: held-out accuracy after trimming minus before, paired by seed, ± its standard error — "
        "a change within about two standard errors is not a measured change."
    )

    # methods that remove the same rows give the same retrained model: say so rather than show identical rows unexplained
    for group in trimmed.same_removed_groups():
        st.info(
            f"{', '.join(hf.method_title(k) for k in group)} remove the same {len(trimmed.removed[group[0]])} training rows "
            "(first seed), so their rows in the table are the same retrained models."
        )
    overlap = trimmed.removed_overlap()
    if not overlap.empty:
        with st.expander("Overlap of the removed rows between methods"):
            st.dataframe(overlap.map(_percent), key="whatif_trim_overlap")

    helped, said = trimmed.recommendation()
    (st.success if helped else st.warning)(said)

    fig = trim_figure(frame, n_seeds, flipped_known=flipped_known)
    if fig is not None:
        st.plotly_chart(fig, width="stretch", key="whatif_trim_plot")
