"""What-if: the smallest set of training labels whose relabeling flips one test prediction, and Hessian-free influence."""

import numpy as np
import streamlit as st

from influence_core import flipset as fs
from influence_core import hessian_free as hf
from influence_core.experiments import content_key
from influence_core.figures import sign_note
from influence_core.figures.what_if import (
    flip_set_map_figure,
    method_scatter_figure,
    removal_check_figure,
    set_size_histogram_figure,
    set_size_vs_distance_figure,
)
from influence_core.methods import get as get_method
from influence_core.methods import method_short_label
from influence_core.text import plural
from pages._costs import gated_result
from pages._frame import page_header, preload_plotly
from pages._own_inputs import csv_inputs
from pages._pickers import method_and_curvature_knobs, method_picker
from pages._progress import progress_status
from pages._results import kept_result, memoised, run_or_explain
from pages._what_if_parts import show_trim, table_of_test_points
from pages._widgets import described_select, settle_widget

page_header("What-if")
st.caption(
    "Which training labels would have to change for the model to decide a test point the other way? "
    "Algorithm 1 of *Relabel minimal training subset to flip a prediction* (influence of relabeling, exact Hessian "
    "for L2 logistic regression), checked by retraining; and the Hessian-free inner product (IP) next to IF and leave-one-out."
)

with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    name = described_select(
        c1, "Dataset", list(fs.WHAT_IF_DATASETS), fs.WHAT_IF_DATASETS.get, key="whatif_dataset", persist_state="session"
    )
    classes, csv_path, label_column, id_column = (3, 8), None, None, None
    if name in ("digits", "mnist"):
        a, b = c1.columns(2)
        # drawn for digits and MNIST only: back from another dataset, the boxes show the classes the run uses
        settle_widget("whatif_class_a", 3, bounds=(0, 9))
        settle_widget("whatif_class_b", 8, bounds=(0, 9))
        classes = (
            int(a.number_input("Class A", 0, 9, key="whatif_class_a", persist_state="session")),
            int(b.number_input("Class B", 0, 9, key="whatif_class_b", persist_state="session")),
        )
    elif name == "csv":
        csv_path, label_column, id_column = csv_inputs(c1, "whatif")
    noise = c2.slider("Extra label noise (uniform)", 0.0, 0.3, 0.0, step=0.05, key="whatif_noise", persist_state="session")
    model_kind = described_select(
        c2,
        "Model",
        ["logreg", "mlp"],
        {"logreg": "L2 logistic regression (exact Hessian)", "mlp": "MLP 2×32 (last-layer curvature)"}.get,
        index=1 if name == "moons" else 0,
        key="whatif_model",
        persist_state="session",
    )
    weight_decay = c3.select_slider("L2 weight decay λ", [1e-3, 1e-2, 1e-1, 1.0], 1e-2, key="whatif_wd", persist_state="session")
    tau = c3.slider("Threshold τ on p(class 1)", 0.05, 0.95, 0.5, step=0.05, key="whatif_tau", persist_state="session")
    output = c4.radio(
        "Algorithm 1 sums",
        ["probability", "margin"],
        horizontal=True,
        key="whatif_output",
        persist_state="session",
        format_func={"probability": "Δ probability (paper)", "margin": "Δ logit margin"}.get,
    )
    seed = int(c4.number_input("Seed", 0, 10_000, 0, key="whatif_seed", persist_state="session"))
    method = method_picker(
        c4,
        "whatif_method",
        help="what predicts each relabel's effect on the margin (the paper: the "
        "influence function; the Hessian-free ones are cheaper and rougher)",
    )
    method_knobs, _ = method_and_curvature_knobs(c4, method, "auto", "whatif")

if name == "csv" and not label_column:
    if not csv_path:
        st.info("Name your CSV above: numeric feature columns and a label column with two classes.")
    st.stop()
config = fs.what_if_config(model_kind, weight_decay, seed, method, fs.what_if_data(name, classes, noise, csv_path, label_column, id_column))
config = config.with_knobs(method_knobs)
run_key = f"whatif:{tau}:{output}:{content_key(config)}"  # the config names the data (and keys a CSV's content)


def _compute():
    with progress_status("Training and finding flip sets") as report:
        dataset = fs.what_if_dataset(name, classes, noise, seed, csv_path, label_column, id_column)
        return fs.compute_flip_sets(config, dataset, tau, progress=report, output=output)


# the browser loads plotly.js while the model trains, not after its first figure arrives (1.5 s of a cold visit's first
# result with one core busy; emptied once the result is in)
plotly_slot = preload_plotly("whatif_plotly_preload")
result = memoised(run_key, lambda: run_or_explain(_compute))
plotly_slot.empty()
if result is None:
    st.stop()
ds, search = result.dataset, result.relabel
n_test = len(ds.y_test)

m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Test accuracy", f"{result.metrics['test']['accuracy']:.1%}")
m2.metric("Flip set found", f"{search.found.mean():.0%}")
m3.metric("Median k (found)", f"{np.median(search.k[search.found]):.0f}" if search.found.any() else "—")
m4.metric(
    "Labels flipped here",
    int(ds.flipped.sum()),
    help="Training labels this page flipped (the extra label noise above). Labels as they came are taken as given: "
    "which of them are wrong is not known here.",
)
m5.metric("Removal variant found", f"{result.remove.found.mean():.0%}")


def _on_click() -> None:
    points = (st.session_state.get("whatif_plot") or {}).get("selection", {}).get("points", [])
    if points and points[0].get("curve_number") == 1:
        st.session_state["whatif_test_id"] = int(points[0]["point_index"])


left, right = st.columns([3, 2])
with right:
    st.subheader("Test points")
    picked = st.dataframe(
        table_of_test_points(result), hide_index=True, height=260, on_select="rerun", selection_mode="single-row", key="whatif_table"
    )
    rows = (
        (picked or {}).get("selection", {}).get("rows", [])
        if isinstance(picked, dict)
        else getattr(getattr(picked, "selection", None), "rows", [])
    )
    if rows and rows[0] != st.session_state.get("whatif_last_row"):
        st.session_state["whatif_last_row"] = rows[0]
        st.session_state["whatif_test_id"] = int(rows[0])
    # a test point of this data (the smallest flip set first); the box shows the point the page describes (issue 34)
    settle_widget("whatif_test_id", int(np.argmin(np.where(search.found, search.k, 10**9))), bounds=(0, n_test - 1))
    t = int(
        st.number_input("Test point (click one in the plot or the table)", 0, n_test - 1, key="whatif_test_id", persist_state="session")
    )
    settle_widget("whatif_mode", "relabel", ["relabel", "remove"])
    mode = st.radio(
        "Set",
        ["relabel", "remove"],
        horizontal=True,
        key="whatif_mode",
        persist_state="session",
        format_func={"relabel": "relabel (Algorithm 1)", "remove": "remove (Yang et al. 2023)"}.get,
    )
    chosen = result.flip_set(t, mode)
    found = bool(result.search(mode).found[t])
    st.write(
        # the class by its name, as the labels beside it are ("p(class 1)" sat beside digit names: "true 3 … predicted 3")
        f"Test #{t}: true **{ds.class_names[ds.y_test[t]]}**, p({ds.class_names[1]}) = **{result.test_probs[t]:.3f}** → predicted "
        f"**{ds.class_names[result.predicted[t]]}**."
    )
    if found:
        st.write(
            f"{'Relabeling' if mode == 'relabel' else 'Removing'} **{len(chosen)}** of {len(ds.y_train)} training points "
            f"is predicted to flip it ({result.search(mode).predicted_after[t]:.3f} after, in {result.output} units; τ = {tau})."
        )
        with st.expander(f"The {len(chosen)} training rows to review"):
            rows = result.flip_set_table(t, mode)
            st.dataframe(rows.drop(columns=["train row"]), hide_index=True, width="stretch", key="whatif_set_rows")
            st.download_button(
                "Export (CSV)", rows.to_csv(index=False), f"flip_set_test{t}_{mode}.csv", "text/csv", key="whatif_set_export"
            )
    else:
        st.info("No flip set: even every training point together is not predicted to cross the threshold.")

    def _verify():
        with progress_status("Retraining with the set edited") as report:
            return fs.verify_flip_sets(result, [t], mode, report)

    def _grow(cost):
        with progress_status("Growing the set: retrain, re-run Algorithm 1, add", cost) as report:
            return fs.refine_flip_set(result, t, progress=report)

    # retraining results stay on screen for this model, test point and set (until one of them changes)
    verified = kept_result(found and st.button("Verify by retraining", key="whatif_verify"), f"{run_key}:verify:{t}:{mode}", _verify)
    failed = verified is not None and not verified.flipped[0]
    if verified is not None:
        p_new = 1 / (1 + np.exp(-verified.retrained_margin[0]))
        (st.success if verified.flipped[0] else st.warning)(
            f"Retrained with the set {'relabelled' if mode == 'relabel' else 'removed'} (same seed, labels edited on a copy): "
            f"p({ds.class_names[1]}) = {p_new:.3f} → {'flipped' if verified.flipped[0] else 'not flipped'}."
            + (
                " Algorithm 1 is first order: the retrained model moved less than predicted. **Next step:** grow the set "
                "below — retrain, run Algorithm 1 again on the retrained model, add its points, until retraining flips "
                "the prediction (it confirmed 98–100 % of sets on breast cancer, benchmarks/README.md)."
                if failed
                else ""
            )
        )
    grown = None
    if mode == "relabel":
        grown = gated_result(
            found and st.button("Grow the set until retraining flips it", key="whatif_refine", type="primary" if failed else "secondary"),
            f"{run_key}:grow:{t}",
            "Growing the set",
            lambda: fs.refinement_cost(result),
            _grow,
        )
    elif failed:
        st.info("Growing the set works on relabel sets: choose **relabel** under Set to take the next step.")
    if grown is not None:
        st.write(
            f"Iterative refinement: {grown.one_shot_k} → {len(grown.indices)} points in {plural(grown.rounds, 'retraining')}; "
            f"{'flipped' if grown.flipped else 'still not flipped'}"
            f"{' (the added points are ringed in red)' if len(grown.indices) > grown.one_shot_k else ''}."
        )

with left:
    fig = flip_set_map_figure(
        fs.project_2d(ds),
        ds.y_train,
        ds.flipped,
        result.predicted,
        result.test_probs,
        search.k,
        chosen,
        mode,
        t,
        added=None if grown is None else np.setdiff1d(grown.indices, chosen),
    )
    st.plotly_chart(fig, on_select=_on_click, selection_mode=("points",), key="whatif_plot", width="stretch")

tab_k, tab_cmp, tab_trim = st.tabs(["Distribution of k", "IF vs IP vs leave-one-out", "Trim and retrain"])


def _with_sensitive_attribute(dataset, impact: str):
    """Fairness needs a binary group per sample: add a synthetic, biased one where the data has none."""
    if impact != "fairness" or dataset.groups_train is not None:
        return dataset
    st.info(
        "No sensitive attribute in this dataset: a synthetic one was added, with 90% of group 1's training positives relabelled negative."
    )
    return fs.inject_group_bias(dataset, seed=seed).dataset


with tab_k:
    found_rows = np.flatnonzero(search.found)
    # How far to trust the one-shot sets on this data: the paper's "flip successful" share, by retraining a sample.
    v1, v2 = st.columns([1, 3])
    settle_widget("whatif_n_check", min(100, max(1, len(found_rows))), bounds=(1, max(1, len(found_rows))))
    n_check = int(
        v1.number_input(
            "Sets to verify", 1, max(1, len(found_rows)), key="whatif_n_check", persist_state="session", disabled=not len(found_rows)
        )
    )

    sample = np.random.default_rng(seed).permutation(found_rows)[:n_check]

    def _check_sample(cost):
        with progress_status(f"Retraining {len(sample)} times, one set relabelled each time", cost) as report:
            return fs.verify_flip_sets(result, sample, "relabel", report)

    clicked = v1.button(
        "Check a random sample",
        key="whatif_verify_all",
        help="Relabel each sampled set on a copy of the labels and retrain; the time it will take is said first",
        disabled=not len(found_rows),
    )
    checked = gated_result(
        clicked, f"{run_key}:verify_sample:{n_check}", "Retraining", lambda: fs.verification_cost(result, sample), _check_sample
    )
    status = np.full(len(search.k), "not checked", dtype=object)
    if checked is not None:
        status[checked.test_indices] = np.where(checked.flipped, "flipped", "did not flip")
        v2.metric(
            "Confirmed by retraining",
            f"{checked.success_rate:.0%} of {len(checked.flipped)} sets",
            help="Share of the checked one-shot sets whose relabelling flips the prediction after retraining "
            "(the paper reports 39–99 % depending on the dataset). 'Grow the set' above fixes single ones.",
        )
    a, b = st.columns(2)
    a.plotly_chart(set_size_histogram_figure(search.k[found_rows]), width="stretch", key="whatif_hist")
    b.plotly_chart(
        set_size_vs_distance_figure(search.k[found_rows], result.confidence_distance()[found_rows], status[found_rows]),
        width="stretch",
        key="whatif_kp",
    )

with tab_cmp:
    settle_widget("whatif_impact", "utility", list(hf.IMPACTS))
    impact = st.radio(
        "Impact",
        list(hf.IMPACTS),
        horizontal=True,
        key="whatif_impact",
        persist_state="session",
        format_func={
            "utility": "utility (test loss)",
            "fairness": "fairness (DP gap)",
            "robustness": "robustness (attacked test loss)",
        }.get,
    )
    st.caption("The test set serves as validation set here. " + sign_note() + ".")
    study = hf.impact_study(config, impact=impact)
    if st.button("Compute " + ", ".join(method_short_label(m) for m in hf.study_of(study).methods), key="whatif_scores_go"):
        st.session_state["whatif_scores_on"] = True
    if st.session_state.get("whatif_scores_on"):
        scored_ds = _with_sensitive_attribute(ds, impact)

        def _scores():
            with progress_status("Scoring training points") as report:
                return hf.hessian_free_scores(study, scored_ds, progress=report)

        scored = memoised(run_key + ":hf:" + impact, lambda: run_or_explain(_scores))
        if scored is not None:
            pair = scored.compared
            if pair is not None:
                a, b = pair
                correlation = scored.correlation()
                if correlation["pearson"] >= 0.9995:  # "1.000": one result, and below one series hides the other
                    st.info(
                        f"{hf.method_title(a)} and {hf.method_title(b)} give the same scores here (Pearson "
                        f"{correlation['pearson']:.3f}): one result, not two. In the leave-one-out check below one "
                        "series lies over the other."
                    )
                st.plotly_chart(
                    method_scatter_figure(
                        scored.scores[a],
                        scored.scores[b],
                        scored.dataset.flipped,
                        hf.method_title(a),
                        hf.method_title(b),
                        correlation,
                        same_scale=all(get_method(m).predicts_loss_change for m in pair),
                    ),
                    width="stretch",
                    key="whatif_ifip",
                )
            detection = scored.flip_detection()
            if not detection.empty:
                st.dataframe(detection, hide_index=True, key="whatif_auroc")
            ranked_by, top = scored.strongest(20)

            def _loo():
                with progress_status("Retraining without each of the 20") as report:
                    return hf.leave_one_out_scores(scored, top, report)

            clicked = model_kind == "logreg" and st.button("Leave-one-out for the 20 strongest", key="whatif_loo")
            loo = kept_result(clicked, run_key + ":loo:" + impact, _loo)
            if loo is not None:
                shown = pair or (ranked_by,)
                st.plotly_chart(
                    removal_check_figure(
                        loo,
                        {hf.method_title(m): scored.scores[m][top] for m in shown},
                        {hf.method_title(m): get_method(m).predicts_loss_change for m in shown},
                    ),
                    width="stretch",
                    key="whatif_loo_plot",
                )

with tab_trim:
    st.caption("Remove the 5% most harmful training points by each method and retrain; held-out half of the test set.")
    if not ds.flipped.any():
        st.caption(
            "No label noise is injected or known here. On clean data a fixed 5% trim removes good points (clean breast "
            "cancer: −0.5 points of accuracy over 50 seeds, benchmarks/README.md); the measurement below says whether it "
            "does on yours."
        )
    settle_widget("whatif_trim_impact", "utility", ["utility", "fairness"])
    trim_impact = st.radio("Rank by", ["utility", "fairness"], horizontal=True, key="whatif_trim_impact", persist_state="session")
    settle_widget("whatif_trim_seeds", 5, bounds=(1, 20))
    n_seeds = st.slider(
        "Seeds",
        1,
        20,
        key="whatif_trim_seeds",
        persist_state="session",
        help="Each seed is a new validation / held-out split and training. Below ~10 seeds a change of "
        "half a point is mostly the split's noise (measured on breast cancer: benchmarks/README.md).",
    )
    clicked = st.button("Trim and retrain", key="whatif_trim_go", help="The time it will take is said first")
    data = _with_sensitive_attribute(ds, trim_impact)
    trim_study = hf.impact_study(config, impact=trim_impact, trim_seeds=range(n_seeds))

    def _trim(cost):
        with progress_status("Trimming and retraining", cost) as report:
            return hf.trim_and_retrain(trim_study, data, progress=report)

    trimmed = gated_result(
        clicked, f"{run_key}:trim:{trim_impact}:{n_seeds}", "Trimming and retraining", lambda: hf.trim_cost(trim_study, data), _trim
    )
    if trimmed is not None:
        show_trim(trimmed, n_seeds, flipped_known=bool(ds.flipped.any()))
