"""Glitch signals: inject mislabels / anomalies, rank training data by influence signals, repair."""

import pandas as pd
import streamlit as st

from influence_core import detectors
from influence_core.data.glitches import GLITCH_KINDS, GLITCH_SHORT_NAMES
from influence_core.experiments import content_key
from influence_core.figures import TABLE_PX, column_widths, number_format
from influence_core.signals import (
    SIGNALS,
    GlitchConfig,
    default_signal,
    detect_glitches,
    flagged_frame,
    signal_run_config,
    thumbnail,
)
from influence_core.text import plural
from pages._detectors import detectors_panel
from pages._frame import page_header
from pages._glitch_parts import repair_section
from pages._own_inputs import OWN_DATA, OWN_MODEL, OwnDataInputs, ask_for_own_data, own_data_inputs, own_model_card, own_model_inputs
from pages._pickers import method_and_curvature_knobs, method_has, method_picker
from pages._progress import compute_seconds_text, progress_status
from pages._results import memoised, run_or_explain
from pages._widgets import described_select, settle_widget

page_header("Glitch signals")
st.caption(
    "Inject mislabeled samples or anomalies (or bring your own CSV / image folder as it is), train with plain SGD, "
    "and rank the training data by "
    "influence signals (TracIn over checkpoints, last layer, train → clean validation set). "
    "CNCI targets mislabels and suggests a repair label, PCID targets anomalies, CFRank mixtures. "
    "Every score below: higher = more suspicious (CNCI keeps the paper's scale, ≤ 0, near 0 = mislabeled)."
)

DATASETS = {
    "digits": "sklearn digits (8×8, 1,797 images)",
    "mnist": "MNIST (28×28)",
    "fashion_mnist": "Fashion-MNIST (28×28)",
    **OWN_DATA,
}
MODELS = {
    "mlp": "MLP (one hidden layer of 128)",
    "logreg": "logistic regression",
    "cnn": "small CNN",
    OWN_MODEL: "your trained model (a file)",
}

with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    dataset = described_select(c1, "Dataset", list(DATASETS), DATASETS.get, key="glitch_dataset", persist_state="session")
    own = dataset in OWN_DATA
    mine = own_data_inputs(c1, dataset, "glitch") if own else OwnDataInputs()
    if not own:
        n_train = c1.select_slider(
            "Training rows (MNIST sets)",
            [1000, 2000, 4000, 6000],
            2000,
            disabled=dataset == "digits",
            key="glitch_n_train",
            persist_state="session",
        )
    models = [m for m in MODELS if not (dataset == "csv" and m == "cnn") and (own or m != OWN_MODEL)]
    model = described_select(
        c3, "Model", models, MODELS.get, key=f"glitch_model_{dataset == 'csv'}" + ("_own" if own else ""), persist_state="session"
    )
    yours = model == OWN_MODEL  # trained on the data as it is: nothing injected, nothing retrained
    own_model, inputs = own_model_inputs(c3, "glitch", dataset) if yours else (None, None)
    kinds = [k for k in GLITCH_KINDS if k != "none" and not (dataset == "csv" and k in ("brightness", "stripe"))]
    if own:  # the data as it is first: the point of bringing your own
        kinds = ["none"] + kinds
    kind = described_select(
        c2,
        "Glitch",
        kinds[:1] if yours else kinds,
        GLITCH_KINDS.get,
        GLITCH_SHORT_NAMES.get,
        key=f"glitch_kind_{'own' if own else 'builtin'}" + ("_yours" if yours else ""),
        persist_state="session",
        help="Your model was trained on your data as it is: injecting glitches would need a model trained on them." if yours else None,
    )
    ratio = c2.slider("Glitch ratio", 0.02, 0.3, 0.1, step=0.01, key="glitch_ratio", persist_state="session", disabled=kind == "none")
    epochs = c3.slider("Epochs (SGD, no momentum)", 5, 60, 15, step=5, key="glitch_epochs", persist_state="session", disabled=yours)
    method = method_picker(
        c3,
        "glitch_method" + ("_yours" if yours else ""),
        "ip" if yours else "tracin",  # at one set of weights, TracIn's gradient product is IP
        label="Influence matrix (last layer)",
        help="TracIn is the paper's (closed form, fastest; it needs training checkpoints); every other method runs through the engine",
    )
    method_knobs, _ = method_and_curvature_knobs(c3, method, "auto", "glitch")
    with c4:
        seed = st.number_input("Seed", 0, 10_000, 0, key="glitch_seed", persist_state="session")
        val_fraction = st.slider("Validation share of the test split", 0.1, 0.9, 0.5, step=0.1, key="glitch_val", persist_state="session")
        folds = st.selectbox(
            "cleanlab folds",
            [0] if yours else [0, 2, 3, 5],
            index=0 if yours else 1,
            key="glitch_folds" + ("_yours" if yours else ""),
            persist_state="session",
            format_func=lambda f: "skip cleanlab" if f == 0 else f"{f}-fold",
            help="cleanlab's out-of-fold probabilities retrain the model per fold: not for your model" if yours else None,
        )
        include_bias = st.checkbox(
            "Bias in the TracIn layer",
            True,
            key="glitch_bias",
            persist_state="session",
            disabled=not method_has(method, "head_closed_form"),
        )

if own and not mine.complete:
    ask_for_own_data(dataset, mine)
if yours and own_model is None:
    st.info("Name your trained model above: its weights file and architecture, or a torch.export program (.pt2).")
    st.stop()
is_mnist = dataset in ("mnist", "fashion_mnist")
run = run_or_explain(
    signal_run_config,
    dataset,
    model,
    n_train=n_train if is_mnist else 0,
    n_test=2000 if is_mnist else 0,
    seed=int(seed),
    epochs=int(epochs),
    path=mine.path,
    label_column=mine.label_column,
    id_column=mine.id_column,
    image_size=mine.image_size,
    method=method,
    own_model=own_model,
    inputs=inputs,
    glitch=GlitchConfig(
        kind=kind, ratio=float(ratio), val_fraction=float(val_fraction), include_bias=include_bias, cleanlab_folds=int(folds)
    ),
)
if run is None:
    st.stop()
run = run_or_explain(run.with_knobs, method_knobs) or st.stop()
run_key = f"glitch:{content_key(run)}"  # the glitch settings are inside the run config's hash


def _compute():
    what = "Loading your model" if yours else "Training" if kind == "none" else "Injecting glitches, training"
    with progress_status(f"{what}, computing signals and baselines") as report:
        return detect_glitches(run, progress=report)


report = memoised(run_key, lambda: run_or_explain(_compute))
if report is None:
    st.stop()

m = report.metrics
truth = report.has_ground_truth
k1, k2, k3, k4, k5 = st.columns(5)
k1.metric("Test accuracy", f"{m['test']['accuracy']:.1%}")
if truth:
    k2.metric("Mislabeled rows", m["n_mislabeled"])
    k3.metric("Anomalies", m["n_anomalous"])
else:
    k2.metric(
        "Model disagrees with the label",
        f"{1 - m['train']['accuracy']:.1%}",
        help="Training rows whose label is not the class the final model predicts for them.",
    )
    cleanlab_issues = report.baselines.get("cleanlab", {}).get("issues")
    k3.metric(
        "cleanlab flags",
        "skipped" if cleanlab_issues is None else int(cleanlab_issues.sum()),
        help="cleanlab's own ground-truth-free choice of likely label errors (out-of-fold probabilities): "
        "a second opinion on the signals' ranking.",
    )
k4.metric("Train / validation rows", f"{m['n_train']} / {m['n_val']}")
if yours:  # not trained here: no training time to show
    k5.metric("Signals time", "cached" if m["signals_from_cache"] else compute_seconds_text(m["signal_seconds"]))
else:  # one figure: "0.03 s / 0.4 s" did not fit a fifth of a 1280-px page
    k5.metric(
        "Compute",
        "cached" if m["signals_from_cache"] else compute_seconds_text(m["signal_seconds"] + m["train_seconds"]),
        help=f"signals {m['signal_seconds']:.2f} s, training {m['train_seconds']:.1f} s",
    )
own_model_card(m)

if truth:
    st.subheader("Signals and baselines")
    st.caption(
        f"F1 with the threshold at the true glitch ratio ({report.ratio:.1%} of the training rows); "
        "repair accuracy: share of the mislabeled rows whose suggested label is the true class "
        "(detected = among those flagged at that threshold)."
    )
    table = pd.DataFrame(report.table)
    # shares read in percent, as the accuracy above (0.936 beside 93.6 % read as two quantities); F1, AUROC and AP
    # stay scores in [0, 1]
    shares = [c for c in ("repair accuracy (detected)", "repair accuracy (all)", "type accuracy") if c in table.columns]
    for c in shares:
        table[c] = 100 * pd.to_numeric(table[c], errors="coerce")
    formats = {c: ".1f" if c in shares else ".3f" for c in table.columns if c not in ("method", "family", "flagged")}
    # Streamlit draws missing numbers as "None" whatever the format says: write "—" where a measure does not apply
    # (padded to one width, so the text columns still sort in numeric order: " 93.6%" < "100.0%")
    not_applicable = [
        c for c in table.columns if table[c].isna().any() and (pd.api.types.is_numeric_dtype(table[c]) or table[c].isna().all())
    ]
    for c in not_applicable:
        width = 6 if c in shares else 5
        table[c] = table[c].map(
            lambda v, c=c, w=width: "—" if pd.isna(v) else f"{v:{w}.{1 if c in shares else 3}f}" + ("%" if c in shares else "")
        )
    # short headers, said in full on hover: the long ones ran past a 1440-px window's edge
    short = {"repair accuracy (detected)": "repair (flagged)", "repair accuracy (all)": "repair (all)"}
    explained = {
        "repair accuracy (detected)": "repair accuracy among the mislabeled rows flagged at the true ratio",
        "repair accuracy (all)": "repair accuracy over every mislabeled row",
    }
    # ~6.5 px a character (Source Sans measures 5.5–6.4) leaves the method's name room to read whole
    widths = column_widths(table, formats, px_per_char=6.5, labels=short, total=TABLE_PX, least={"method": 27})
    config = {}
    for c in table.columns:
        named = {"label": short[c], "help": explained[c]} if c in short else {}
        if c in ("method", "family"):
            config[c] = st.column_config.TextColumn(width=widths[c], pinned=c == "method")
        elif c in not_applicable:
            config[c] = st.column_config.TextColumn(width=widths[c], alignment="right", **named)
        elif c in formats:
            config[c] = st.column_config.NumberColumn(format="%.1f%%" if c in shares else "%.3f", width=widths[c], **named)
        else:
            config[c] = st.column_config.NumberColumn(width=widths[c], **named)
    st.dataframe(table, hide_index=True, width="stretch", key="glitch_table", column_config=config)
else:
    st.caption(
        "Your data as it is: no glitch was injected, so there is nothing to score the signals against. "
        "The signals rank every row, so some row always comes first: trust the top rows where "
        + ("cleanlab flags them too and " if "cleanlab" in report.baselines else "")
        + "the model disagrees with their label. The validation rows (held out, labels as "
        "given) are what the signals measure influence on."
    )

GALLERY_IMAGES = 12  # two rows of six thumbnails under the table, for image data
st.subheader("Flagged training samples")
ranked_by_detector = list(report.detection.scores) if report.detection is not None else []
choices = (
    list(SIGNALS)
    + [
        b
        for b, present in (("cleanlab", "cleanlab" in report.baselines), ("IsolationForest", "isolation_forest" in report.baselines))
        if present
    ]
    + ranked_by_detector
)
# injected glitches: the paper's pick per kind; your data as it is (wrong labels to find): the measured default detector
lead = report.detection.default if kind == "none" and report.detection is not None else default_signal(kind)
f1, f2 = st.columns([2, 1])
settle_widget(f"glitch_signal_{kind}", lead, choices)
signal = f1.selectbox(
    "Rank by",
    choices,
    key=f"glitch_signal_{kind}",
    persist_state="session",
    format_func=lambda s: (
        f"{s}: {SIGNALS[s]}" if s in SIGNALS else f"{detectors.label(s)}" if s in ranked_by_detector else f"{s}: baseline"
    ),
)
top = f2.slider("Show the top", 5, 100, 20, step=5, key="glitch_top", persist_state="session")
frame = run_or_explain(flagged_frame, report, signal)
if frame is None:
    st.stop()
shown = [
    "rank",
    "id",
    "label",
    "suggested label",
    "detected type",
    signal,
    "CNCI",
    "PCID",
    "true type",
    "true label",
    *([] if truth else ["cleanlab flags"]),
    "flagged by",
]
shown = list(dict.fromkeys(c for c in shown if c in frame.columns))
# signals span many orders of magnitude (PCID reached 1.8e10): one format per column, fixed where its values allow it
# and scientific for every row where not (%.3g wrote 1.25e+3 in the row above 852)
score_columns = [c for c in shown if c in SIGNALS or c in ("cleanlab", "IsolationForest") or c in ranked_by_detector]
flagged_rows = frame[shown].head(top)
formats = {c: number_format(flagged_rows[c]) for c in score_columns}
widths = column_widths(flagged_rows, formats, total=TABLE_PX)
st.dataframe(
    flagged_rows,
    hide_index=True,
    width="stretch",
    key="glitch_flagged",
    column_config={
        c: st.column_config.NumberColumn(format="%" + formats[c], width=widths[c])
        if c in formats
        else st.column_config.Column(width=widths[c])
        for c in shown
    },
)
st.download_button(
    "Export all rows with every signal (CSV)",
    frame.to_csv(index=False),
    f"glitch_signals_{dataset}_{kind}_ranked_by_{signal}.csv",
    "text/csv",
    key="glitch_export",
)

if report.dataset.is_image:
    n_rows = len(flagged_rows)
    n_images = min(n_rows, GALLERY_IMAGES)
    # the gallery stops at two rows of six; "Show the top 20" above 12 pictures said nothing of it
    st.caption(
        f"The top {plural(n_images, 'row')} as images"
        + (f" (the gallery stops at {GALLERY_IMAGES}; the table above lists all {n_rows})." if n_images < n_rows else ".")
    )
    cols = st.columns(6)
    for i, row in enumerate(frame.head(n_images).to_dict("records")):
        cols[i % 6].image(
            thumbnail(report.dataset.x_train[int(row["row"])]),
            width=84,
            caption=f"#{row['rank']} {row['label']} → {row['suggested label']} · {row['detected type']}"
            + (f" (truth: {row['true type']})" if truth else ""),
        )

if report.detection is not None:
    with st.expander("Label-noise detectors side by side, and why each row is flagged", expanded=False):
        detectors_panel(
            report.detection,
            report.detection_context,
            k=max(int(round(report.ratio * len(report.dataset.y_train))), 1) if truth else top,
            key="glitch_detectors",
            mask=report.truth.mislabeled if truth and report.truth.mislabeled.any() else None,
            picture=thumbnail if report.dataset.is_image else None,
        )

repair_section(report, signal, ranked_by_detector, max(1, len(frame)), run_key, yours)
