"""Label bias's parts below its threshold: the samples behind one held-out prediction, and the fix-and-retrain of the
flagged samples. Split from pages/label_bias.py, which lays out the run, its scores and the threshold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from influence_core import label_bias as lb
from influence_core.experiments import content_key
from influence_core.figures import label_bias as lb_figures
from influence_core.metrics import accuracy_change
from pages._own_inputs import own_model_card
from pages._progress import compute_seconds_text, page_fragment, progress_status
from pages._results import kept_result, run_or_explain
from pages._widgets import settle_widget


def run_summary(result: Any) -> None:
    """The run at a glance: flipped labels (or rows), held-out accuracy and loss against the clean-label model (a change
    within noise uncoloured), misclassified rows, compute time, the user's model card, and step 1's comparison."""
    ds, m = result.dataset, result.metrics
    truth = result.has_ground_truth
    labels_were = "noisy labels" if truth else "labels as given"
    noisy, clean = m["noisy"]["test"], m.get("clean", {}).get("test")
    k = st.columns(5)
    if truth:
        k[0].metric("Flipped training labels", f"{int(ds.flipped.sum())} / {len(ds.y_train)}")
    else:
        k[0].metric(
            "Training samples",
            f"{len(ds.y_train):,}",
            help="No label was flipped on purpose: there is no ground truth to score the flags against.",
        )
    trained_on = f"of the model trained on the {labels_were}" + (", against the one trained on the clean labels" if clean else "")
    against_clean, measured = accuracy_change(clean["accuracy"], noisy["accuracy"], len(ds.y_test)) if clean else (None, False)
    k[1].metric(
        "Held-out accuracy",
        f"{noisy['accuracy']:.1%}",
        delta=f"{against_clean} vs clean" if clean else None,
        delta_color="normal" if measured else "off",  # a change within two standard errors is not one: no green or red
        help=trained_on + "; a change within two binomial standard errors of the held-out accuracy is not a measured one",
    )
    k[2].metric(
        "Held-out loss",
        f"{noisy['loss']:.3f}",
        delta=f"{noisy['loss'] - clean['loss']:+.3f} vs clean" if clean else None,
        delta_color="inverse",
        help=trained_on,
    )
    k[3].metric("Misclassified held-out", m["n_misclassified"])
    k[4].metric(  # the device in the label: "3.4 s on cpu" did not fit the value's fifth of a 1280-px page
        f"Compute on {m['device']}",
        "cached" if m.get("scores_from_cache") and m.get("from_cache") else compute_seconds_text(m["total_seconds"]),
    )
    own_model_card(m)
    if result.needs_clean_model:
        st.caption("The same model on the clean labels trains next, after the scores below: the comparison with it follows here.")
    if clean:
        with st.expander("Step 1: is the model hurt by the flipped labels?"):
            st.plotly_chart(lb_figures.model_comparison_figure(m), width="stretch", key="label_bias_models")


@page_fragment(key="label_bias_sample_level")
def sample_level(result: Any, config_key: str) -> None:
    """One held-out sample and the training samples that most harm and help its prediction. It reads only kept results,
    so it is a fragment of its own, after the threshold's: a move of the slider does not redraw it (0.05 s of each
    move's 0.3 s), and picking another held-out sample reruns this alone."""
    st.subheader("Sample level: the training samples behind one held-out prediction")
    ds, truth = result.dataset, result.has_ground_truth
    order = result.test_order()
    pred = result.test_probs.argmax(1)
    class_names = np.asarray(ds.class_names)
    tabular = ds.x_train.ndim == 2

    def _describe(i: int) -> str:
        wrong = "✗ misclassified" if pred[i] != ds.y_test[i] else "✓"
        # "true" only where the held-out labels are known clean (flips planted in training); yours are as given
        return f"#{i} ({ds.ids_test[i]}): {'true' if truth else 'label'} {class_names[ds.y_test[i]]}, predicted {class_names[pred[i]]} ({result.test_probs[i, pred[i]]:.0%}) {wrong}"

    # keyed by the run: a held-out index picked on other data means nothing here
    held_out = [int(i) for i in order]
    test_key = f"label_bias_test_{config_key}"
    settle_widget(test_key, held_out[0], held_out)
    test_index = st.selectbox(
        "Held-out sample (misclassified first)", held_out, format_func=_describe, key=test_key, persist_state="session"
    )
    tables = run_or_explain(lb.top_influencers, result, int(test_index), 10)
    if tables is not None:
        if tabular:
            st.caption("Feature values in training standard deviations (what the model sees).")
            st.dataframe(lb.held_out_features(result, int(test_index)), width="stretch", key="label_bias_test_row")
        else:
            st.image(lb.image_of(ds.x_test[int(test_index)]), caption=_describe(int(test_index)), width=96)
        for title, table in zip(("10 most harmful (positive)", "10 most helpful (negative)"), tables):
            if tabular:
                st.markdown(f"**{title}**" + (" — F = flipped" if truth else ""))
                shown = lb.with_features(result, table)
                st.dataframe(shown if truth else shown.drop(columns=["flipped"]), hide_index=True, width="stretch")
            else:
                st.markdown(f"**{title}** — caption: label used in training" + (", F = flipped" if truth else "") + ", influence")
                images, captions = lb.gallery(result, table)
                st.image(images, caption=captions, width=80)


def fix_and_retrain(result: Any, config: Any, score_name: str, threshold: float, at: dict, yours: bool) -> None:
    """Relabel or remove the samples flagged at ``threshold`` by ``score_name`` (``at``: the detection there) and retrain
    the same run; before, after and clean. ``yours``: the person's own model, which is not retrained here."""
    ds, truth, scores = result.dataset, result.has_ground_truth, result.scores[score_name]
    labels_were = "noisy labels" if truth else "labels as given"
    st.subheader("What if: fix the flagged samples and retrain")
    if yours:
        st.info(
            "Your model is not retrained here. Export the flagged samples above, fix or drop them in your data, and "
            "retrain your model on it; or choose an architecture to train here, and this section retrains it for you."
        )
        return
    a1, a2 = st.columns([1, 3])
    relabel_to = "the other class" if ds.n_classes == 2 else "the model's likeliest other class"
    settle_widget("label_bias_action", "relabel", ["relabel", "remove"])  # off the page while your model is scored
    action = a1.radio(
        "Action",
        ["relabel", "remove"],
        key="label_bias_action",
        persist_state="session",
        format_func={"relabel": f"relabel to {relabel_to}", "remove": "remove from training"}.get,
    )

    def _fix():
        with progress_status("Retraining on the edited training set") as report:
            return score_name, threshold, lb.retrain_after_fix(result, scores >= threshold, action, report)

    clicked = a1.button(f"{action.capitalize()} {at['flagged']} and retrain", key="label_bias_retrain", disabled=at["flagged"] == 0)
    saved = kept_result(clicked, f"label_bias_fix:{content_key(config)}", _fix)
    if saved:
        fixed_by, fixed_at, fix = saved
        rows = {f"{labels_were} (before)": fix["before"], f"after {fix['action']}": fix["after"]}
        if fix["clean"]:
            rows["clean labels (reference)"] = fix["clean"]
        fixed = pd.DataFrame(rows).T.rename(columns={"accuracy": "held-out accuracy", "loss": "held-out loss"})
        fixed["held-out accuracy"] *= 100
        a2.dataframe(
            fixed,
            width="stretch",
            key="label_bias_fix_table",
            column_config={
                "held-out accuracy": st.column_config.NumberColumn(format="%.1f%%"),
                "held-out loss": st.column_config.NumberColumn(format="%.3f"),
            },
        )
        change, _ = accuracy_change(fix["before"]["accuracy"], fix["after"]["accuracy"], len(ds.y_test))
        caption = (
            f"Held-out accuracy {change} on {len(ds.y_test):,} rows. {fix['n_flagged']} flagged at threshold {fixed_at:.3g} ({fixed_by})"
        )
        if truth:
            caption += f", {fix['flagged_truly_flipped']} of them truly flipped; {fix['flipped_left']} flipped labels left in training."
        else:
            caption += (
                ". Held-out labels are yours too: if they share the training set's errors, accuracy on them can fall when the fix is right."
            )
        a2.caption(caption)
