"""The label-noise detectors side by side and the explanation of one flagged row (issue 32), placed by the detection
views (Label bias, Glitch signals). Layout only: the numbers come from ``influence_core.detectors``."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import streamlit as st

from influence_core import detectors
from influence_core.detectors.explain import check_row_edits, edit_checks_table, explain_row
from influence_core.figures import TABLE_IN_BOX_PX, column_widths
from influence_core.figures import detectors as figures
from influence_core.timing import estimate_text
from pages._progress import page_fragment, progress_status
from pages._results import run_or_explain
from pages._widgets import settle_widget


def detectors_panel(
    detection: "detectors.Detection",
    context: "detectors.DetectionContext",
    k: int,
    key: str,
    mask: Optional[np.ndarray] = None,
    influence_rows: Optional[np.ndarray] = None,
    test_ids: Optional[np.ndarray] = None,
    picture: Optional[Callable[[np.ndarray], Any]] = None,
    run_out_of_fold: Optional[Callable[[], None]] = None,
    out_of_fold_seconds: Optional[float] = None,
    influence_on_loss_scale: bool = False,
    flags: Optional[tuple[str, np.ndarray]] = None,
) -> None:
    """``k``: the rows the view flags (each detector's top ``k`` counts as its flags); ``mask``: planted flips, when
    there are any; ``picture``: a training row's image, for image data; ``run_out_of_fold``: the view's way to run the
    detectors that train on folds, offered with its estimate when they have not run; ``influence_on_loss_scale``: the
    influence rows predict a loss change (the method says so), so a removal's predicted effect is shown and checked;
    ``flags``: (score name, rows flagged) where the view flags by a score of its own, which the panel then names beside
    its ranking (Label bias's panel read "Ranked by combined of AUM, ..." above flags its influence score had set)."""
    lead = detectors.get(detection.default)
    made_of = f" of {', '.join(detectors.label(c) for c in detection.components)}" if detection.components else ""
    why = f": {detection.basis}." if detection.basis else f": {lead.description}."
    if flags is None:
        st.markdown(f"**Ranked by {lead.label}**{made_of}" + why)
    else:
        score, flagged = flags
        st.markdown(
            f"The flags above come from the **{score}** score. The detectors here rank the same rows by themselves; their "
            f"default ranking is **{lead.label}**{made_of}" + why
        )
        if mask is not None and mask.any():
            by_score, by_detectors = int((np.asarray(flagged, bool) & mask).sum()), detection.caught(k, mask)
            compared = "the same number" if by_score == by_detectors else "more" if by_detectors > by_score else "fewer"
            st.markdown(
                f"Of the {int(mask.sum())} planted flips, the {score} flags hold **{by_score}**; the top {k} of "
                f"{lead.label} hold **{by_detectors}** ({compared})."
            )
    waiting = detection.waiting
    for name, why in detection.skipped.items():
        if name not in waiting:
            st.caption(f"{detectors.label(name)} left out: {why}.")
    if waiting and run_out_of_fold is not None:
        about = f" ({estimate_text(out_of_fold_seconds)})" if out_of_fold_seconds else ""
        st.info(
            f"{', '.join(detectors.label(n) for n in waiting)} train the model {context.n_folds} more times{about}; "
            "the ranking above is made without them."
        )
        if st.button(f"Run them{about}", key=f"{key}_out_of_fold"):
            run_out_of_fold()
    table = detection.side_by_side(k, mask)
    share = f"shares of the default's top {k}"
    # a short header, said in full on hover, and widths that fit the expander: the share's header ran past a 1440-px
    # window's edge behind the long descriptions
    shown_share = f"top {k} shared"
    widths = column_widths(
        table,
        {"seconds": ".2f", "AUROC": ".3f", "AP": ".3f"},
        px_per_char=6.5,
        labels={share: shown_share},
        total=TABLE_IN_BOX_PX,
        least={"detector": 27, share: 20},  # the bar beside its percentage
    )
    config = {
        share: st.column_config.ProgressColumn(
            shown_share,
            help=f"share of this detector's top {k} rows that the default's top {k} holds too",
            format="percent",
            min_value=0.0,
            max_value=1.0,
            width=widths[share],
        )
    }
    config["seconds"] = st.column_config.NumberColumn(format="%.2f s", width=widths["seconds"])
    for column in ("AUROC", "AP"):
        if column in table:
            config[column] = st.column_config.NumberColumn(format="%.3f", width=widths[column])
    for column in table.columns:
        config.setdefault(column, st.column_config.Column(width=widths[column]))
    st.dataframe(table, hide_index=True, width="stretch", key=f"{key}_side_by_side", column_config=config)
    st.caption(
        "Equal rankings are named in 'same ranking as' (cleanlab's label quality is the out-of-fold probability of the "
        "given label, so it ranks rows as the out-of-fold loss does)."
        + (" AUROC and AP are measured against the planted flips." if "AUROC" in table else "")
    )
    st.plotly_chart(figures.agreement_figure(detection, k), width="stretch", key=f"{key}_agreement")

    _explanation(detection, context, k, key, influence_rows, test_ids, picture, influence_on_loss_scale)


@page_fragment
def _explanation(detection, context, k, key, influence_rows, test_ids, picture, influence_on_loss_scale) -> None:
    """One flagged row's explanation; a fragment, so picking another row reruns only this (not the view's charts)."""
    ds = context.dataset
    names = np.asarray(ds.class_names)
    order = np.argsort(-detection.suspicion, kind="stable")[:k]
    if not len(order):
        return
    rows = [int(r) for r in order]
    settle_widget(f"{key}_row", rows[0], rows)
    suggestion = detection.suggested.get(detection.default)

    def describe(r: int) -> str:
        rank = rows.index(r) + 1
        to = f" → {names[suggestion[r]]}" if suggestion is not None and suggestion[r] != ds.y_train[r] else ""
        return f"#{rank}: {ds.ids_train[r]} ({names[ds.y_train[r]]}{to})"

    row = st.selectbox("Why is this row flagged?", rows, format_func=describe, key=f"{key}_row", persist_state="session")
    why = explain_row(detection, context, row, k, influence_rows, test_ids)
    st.markdown(why.summary(names, ds.ids_train[row]))
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(figures.verdicts_figure(why.verdicts), width="stretch", key=f"{key}_verdicts")
    with right:
        if picture is not None:
            st.image(picture(ds.x_train[row]), width=96, caption=f"{ds.ids_train[row]}: labelled {names[why.given]}")
        evidence = why.evidence.assign(likeliest=names[why.evidence["likeliest"].to_numpy()])
        st.markdown("**The models' view of its label**")
        st.dataframe(evidence, hide_index=True, width="stretch", key=f"{key}_evidence")
    if why.harms is not None and len(why.harms):
        st.markdown("**Held-out predictions it harms most** (influence > 0: removing it is predicted to lower their loss)")
        harms = why.harms.assign(label=names[why.harms["label"].to_numpy()])
        st.dataframe(harms, hide_index=True, width="stretch", key=f"{key}_harms")
    elif influence_rows is None:
        st.caption("No held-out influence was kept for this run: the rows it harms are not shown.")
    near = [("labelled " + names[why.given], why.nearest_given)]
    if len(why.nearest_suggested):
        near.append(("labelled " + names[why.suggested], why.nearest_suggested))
    for title, found in near:
        st.markdown(f"**Nearest training rows {title}**")
        if picture is not None:
            cols = st.columns(len(found) or 1)
            for col, r in zip(cols, found):
                col.image(picture(ds.x_train[int(r)]), width=64, caption=str(ds.ids_train[int(r)]))
        else:
            st.write(", ".join(str(ds.ids_train[int(r)]) for r in found))
    _retraining_check(context, why, key, influence_rows, test_ids, influence_on_loss_scale)


def _retraining_check(context, why, key, influence_rows, test_ids, on_loss_scale) -> None:
    """Remove the row and relabel it to the suggestion, each the same run trained again, on request."""
    if not context.trained_here:
        st.caption("Checking by retraining trains the model again: a model loaded from your file is not retrained here.")
        return
    names = np.asarray(context.dataset.class_names)
    relabel = why.suggested is not None and why.suggested != why.given
    seconds = (context.trained.metrics.get("train_seconds") or 0.0) * (2 if relabel else 1)
    about = f" ({estimate_text(seconds)})" if seconds else ""
    what = f"without it and relabelled {names[why.suggested]}" if relabel else "without it"
    store = st.session_state.setdefault(f"{key}_checks", {})
    if st.button(f"Check by retraining {what}{about}", key=f"{key}_check"):
        with progress_status(f"Retraining {what}") as report:
            checks = run_or_explain(check_row_edits, context, why.row, why.suggested, influence_rows, test_ids, on_loss_scale, report)
        if checks is not None:
            store[why.row] = checks
    if why.row in store:
        checks = edit_checks_table(store[why.row], names)
        short = {c: c.replace(" (kept rows)", "") for c in checks.columns if c.endswith(" (kept rows)")}
        widths = column_widths(checks, px_per_char=6.5, labels=short, total=TABLE_IN_BOX_PX)
        st.dataframe(
            checks,
            hide_index=True,
            width="stretch",
            key=f"{key}_check_table",
            column_config={
                c: st.column_config.TextColumn(short.get(c, c), help=c if c in short else None, width=widths[c]) for c in checks.columns
            },
        )
        st.caption(
            "Same seed, same initial weights and batch order as the run: each change is the edit's own effect, not a "
            "new draw of training noise. Predicted Δ loss: the influence on the held-out rows this run kept, −influence / n "
            "(first order), against the retrained change of the same rows' mean loss."
        )
