"""Glitch signals' repair: the suggested repairs of the top rows, what the test split can show, and the retrained
outcome (the page lays out and calls)."""

import streamlit as st

from influence_core.metrics import accuracy_change, accuracy_noise
from influence_core.signals import (
    SIGNALS,
    default_repair_count,
    doubted_relabels,
    retrain_with_repairs,
    suggested_repairs,
)
from influence_core.text import plural
from pages._progress import progress_status
from pages._results import kept_result


def repair_section(report, signal: str, ranked_by_detector: list, most: int, run_key: str, yours: bool) -> None:
    """ "Repair and retrain" for the rows ranked by ``signal`` (an influence signal or a label-noise detector in
    ``ranked_by_detector``): up to ``most`` rows; ``yours``: the user's model file, which is not retrained here."""
    truth = report.has_ground_truth
    st.subheader("Repair and retrain")
    st.caption(
        "Accept the suggested repairs of the top rows by the chosen signal: relabel the rows typed "
        "'mislabeled' to CNCI's suggested label; with PCID / CFRank, remove the rows typed 'anomaly'; ranked by a "
        "label-noise detector, relabel to the label it suggests. Then retrain the same configuration and compare test accuracy."
    )
    r1, r2 = st.columns([1, 2])
    n_repair = r1.number_input(
        "Rows to repair", 1, most, default_repair_count(report, truth), key=f"glitch_n_repair_{run_key}", persist_state="session"
    )
    if signal in SIGNALS or signal in ranked_by_detector:
        relabel, remove = suggested_repairs(report, signal, int(n_repair))
        r2.write(f"Suggested: relabel {plural(len(relabel), 'row')}, remove {len(remove)}.")
        # before anyone accepts: how large a change the test split can show at all (two binomial standard errors)
        n_test, acc = len(report.dataset.y_test), float(report.metrics["test"]["accuracy"])
        noise = accuracy_noise(acc, n_test)
        r2.caption(
            f"Test accuracy is read on {n_test:,} rows ({acc:.1%} now): a change within ±{noise:.1%} (two standard "
            "errors) is not a measured gain. The expected gain itself is only known by retraining."
        )
        doubted, flagged = doubted_relabels(report, relabel)
        if len(doubted):
            r2.warning(
                f"**{len(doubted)} of {len(relabel)} relabels go to a class the out-of-fold models do not favour**: the "
                f"likeliest class of the probabilities cleanlab reads is another label (cleanlab's own filter flags {flagged} "
                f"of these {len(doubted)} rows). Review these before accepting."
            )
            r2.dataframe(doubted, hide_index=True, key="glitch_doubted")

        if yours:
            st.info(
                "Your model is not retrained here. Export the ranked rows above, apply the repairs you accept to your "
                "data, and retrain your model on it; or choose an architecture to train here, and this section retrains it."
            )
            return

        def _retrain():
            with progress_status("Retraining on the repaired data") as progress:
                return retrain_with_repairs(report, relabel, remove, progress=progress)

        outcome = kept_result(r1.button("Accept repairs and retrain", key="glitch_repair"), f"repair:{run_key}", _retrain)
        if outcome is not None:
            o1, o2, o3, o4 = st.columns(4)
            o1.metric("Test accuracy before", f"{outcome.test_accuracy_before:.1%}")
            delta, measured = accuracy_change(outcome.test_accuracy_before, outcome.test_accuracy_after, n_test)
            # a change within the noise gets no coloured arrow ("+0.0%" came with a green one)
            o2.metric(
                "Test accuracy after repair", f"{outcome.test_accuracy_after:.1%}", delta, delta_color="normal" if measured else "off"
            )
            if truth:
                o3.metric(
                    "Relabelled to the true class",
                    f"{outcome.n_relabelled_correctly} / {outcome.n_relabelled}",
                    f"{outcome.n_clean_made_wrong} clean made wrong" if outcome.n_clean_made_wrong else "none made wrong",
                    delta_color="inverse" if outcome.n_clean_made_wrong else "off",
                    help="a relabel of a row whose label was right puts an error in; the rest relabelled a glitch to another wrong class",
                )
                # "Removed rows that were glitches" filled a quarter of a 1280-px page to the pixel
                o4.metric("Glitches among the removed", f"{outcome.n_removed_glitches} / {outcome.n_removed}")
            else:
                o3.metric("Relabelled", outcome.n_relabelled)
                o4.metric("Removed", outcome.n_removed)
                st.caption(
                    "The test rows carry your labels too: if they share the training rows' errors, test accuracy "
                    "can fall when a repair is right. Export the table to fix the source file."
                )
    else:
        r2.info("Repairs follow the influence signals; pick one of them in 'Rank by'.")
