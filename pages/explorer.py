"""2D explorer: decision regions of a toy model with training points sized by influence."""

import streamlit as st

from pages._costs import confirm_start, cost_note, estimated
from pages._frame import page_header, preload_plotly
from pages._loading import import_with_progress, imports_pending, let_the_browser_draw
from pages._own_inputs import OWN_MODEL, own_model_card, own_model_inputs
from pages._progress import TIMING, compute_seconds_text, page_fragment, progress_status
from pages._results import memoised, one_thread, run_or_explain
from pages._widgets import described_select, settle_widget


def show_training_data(slot) -> None:
    """The chosen toy data, drawn before torch is imported (numpy, scikit-learn and plotly only): on a fresh server
    the person sees the data in about a second instead of a progress bar for four (issue 20)."""
    from influence_core.config import explorer_data_config
    from influence_core.data.registry import load_dataset
    from influence_core.figures import decision_region_figure

    state = st.session_state
    widgets = {
        "dataset": "explorer_dataset",
        "n_train": "explorer_n_train",
        "noise": "explorer_noise",
        "noise_fraction": "explorer_fraction",
    }
    data = explorer_data_config(**{arg: state[key] for arg, key in widgets.items() if key in state})  # its defaults: the widgets'
    ds = load_dataset(data, int(state.get("explorer_seed", 0)))
    figure = decision_region_figure(
        None, None, None, ds.x_train, ds.y_train, None, ds.flipped, "", x_test=ds.x_test, y_test=ds.y_test, class_names=ds.class_names
    )
    with slot.container():
        st.plotly_chart(figure, key="explorer_data_preview", width="stretch", config={"displayModeBar": False})
        st.caption(
            "The training data (circles) and test points (diamonds). The model trains once PyTorch has loaded (the first visit after a server start)."
        )


# the title, then (on a fresh server) the data: the imports below take seconds
page_header("2D explorer", device_after_imports=True)
st.caption(
    "Train a small model on a toy dataset, then see which training points it leans on. "
    "Point size = influence; click a point (or pick its id) to see its influence on, or from, the others."
)
plotly_slot = preload_plotly("explorer_plotly_preload")  # the browser loads plotly.js while the server imports
if imports_pending():
    run_or_explain(show_training_data, plotly_slot)
    let_the_browser_draw()
import_with_progress()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from influence_core.config import EXPLORER_ACTIVATION, EXPLORER_WEIGHT_DECAY, default_damping, explorer_config  # noqa: E402
from influence_core.costs import estimate_run, influence_is_cached  # noqa: E402
from influence_core.data.synthetic import DESCRIPTIONS, SHORT_NAMES  # noqa: E402
from influence_core.experiments import (  # noqa: E402
    compute_influence,
    content_key,
    decision_grid,
    epochs_are_cached,
    influence_over_epochs,
)
from influence_core.figures import decision_region_figure, epochs_figure, sign_note  # noqa: E402
from influence_core.metrics import detection_summary  # noqa: E402
from influence_core.timing import Cost, seconds_text  # noqa: E402
from pages._explorer_checks import RetrainingChecks  # noqa: E402  (imports torch: after the progress box)
from pages._pickers import curvature_picker, method_and_curvature_knobs, method_picker  # noqa: E402

with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    dataset = described_select(
        c1,
        "Dataset",
        list(DESCRIPTIONS),
        DESCRIPTIONS.get,
        SHORT_NAMES.get,
        index=list(DESCRIPTIONS).index("single_flip"),
        key="explorer_dataset",
        persist_state="session",
    )
    n_train = c1.slider("Training points", 50, 1000, 200, step=50, key="explorer_n_train", persist_state="session")
    noise = described_select(
        c2,
        "Label noise",
        ["none", "uniform", "flip_class"],
        {"none": "none", "uniform": "uniform (any class → other)", "flip_class": "class 1 → class 0"}.get,
        key="explorer_noise",
        persist_state="session",
    )
    fraction = c2.slider(
        "Noise fraction", 0.0, 0.4, 0.1, step=0.01, disabled=noise == "none", key="explorer_fraction", persist_state="session"
    )
    model_kind = described_select(
        c3,
        "Model",
        ["mlp", "logreg", OWN_MODEL],
        {"mlp": "MLP", "logreg": "logistic regression (L2)", OWN_MODEL: "your trained model (a file)"}.get,
        key="explorer_model",
        persist_state="session",
        help="Your model: one you trained on this toy data (export it below: the coordinates are in the CSV), with "
        "two inputs and one output per class. Keep the dataset, points, noise and seed it was trained on.",
    )
    yours = model_kind == OWN_MODEL  # scored as it is: nothing here retrains it
    own_model, _ = own_model_inputs(c3, "explorer", "toy") if yours else (None, None)  # the toy's two coordinates, as they are
    depth, hidden, activation, weight_decay = 1, 16, EXPLORER_ACTIVATION, EXPLORER_WEIGHT_DECAY  # yours brings its own
    if not yours:
        with c3.expander("Model details"):
            depth = st.slider("Hidden layers", 1, 4, 1, disabled=model_kind != "mlp")
            hidden = st.select_slider("Width", [4, 8, 16, 32, 64], 16, disabled=model_kind != "mlp")
            activations = ["tanh", "relu", "sigmoid"]
            activation = st.selectbox(
                "Activation",
                activations,
                index=activations.index(EXPLORER_ACTIVATION),
                disabled=model_kind != "mlp",
                help="tanh is smooth: influence functions assume a twice-differentiable objective, and "
                "retraining settles at an optimum (ReLU's kinks stop it short)",
            )
            weight_decay = st.select_slider(
                "L2 weight decay",
                [1e-4, 1e-3, 1e-2, 1e-1],
                EXPLORER_WEIGHT_DECAY,
                help="lighter weight decay makes influence on an MLP less reliable (check it against retraining)",
            )
    method = method_picker(c4, "explorer_method")
    curvature = curvature_picker(c4, "explorer_curvature", "last_layer", method)
    method_knobs, curvature_knobs = method_and_curvature_knobs(c4, method, curvature, "explorer")
    with c4.expander("Damping and seed"):
        dampings = [0.0, 1e-3, 1e-2, 1e-1, 1.0]
        settle_widget(f"explorer_damping_{model_kind}", default_damping(model_kind), dampings)  # keyed by model: comes back
        damping = st.select_slider(
            "Damping",
            dampings,
            key=f"explorer_damping_{model_kind}",
            persist_state="session",
            help="added to the Hessian's diagonal before inverting",
        )
        seed = st.number_input("Seed", 0, 10_000, 0, key="explorer_seed", persist_state="session")

if yours and own_model is None:
    st.info("Name your trained model above: its weights file and architecture, or a torch.export program (.pt2).")
    st.stop()
config = explorer_config(
    dataset,
    n_train,
    noise,
    fraction,
    "mlp" if yours else model_kind,
    hidden,
    depth,
    activation,
    weight_decay,
    method,
    curvature,
    damping,
    int(seed),
    own_model=own_model,
).with_knobs(method_knobs, curvature_knobs)


def _estimate():
    with one_thread(), progress_status(TIMING, transient=True) as report:
        return estimate_run(config, progress=report)


run_key = "explorer:" + content_key(config)
cost = None
if run_key not in st.session_state.get("_results", {}) and run_or_explain(influence_is_cached, config) is False:
    cost = memoised("explorer_cost:" + content_key(config), lambda: estimated(_estimate))
    cost_note(c4, cost)
    if not confirm_start(cost, run_key, "Training and computing influence"):
        plotly_slot.empty()
        st.stop()


def _compute():
    what = ("Loading your model" if yours else "Training") + " and computing influence"
    with one_thread(), progress_status(what, cost) as report:
        return compute_influence(config, progress=report)


result = memoised(run_key, lambda: run_or_explain(_compute))
plotly_slot.empty()
if result is None:
    st.stop()

ds, m = result.dataset, result.metrics
summary = detection_summary(result.self_scores, ds.flipped) if ds.flipped.any() else {}
k1, k2, k3, k4, k5 = st.columns(5)
k1.metric("Train accuracy", f"{m['train']['accuracy']:.1%}")
k2.metric("Test accuracy", f"{m['test']['accuracy']:.1%}")
k3.metric("Flipped labels", int(ds.flipped.sum()))
k4.metric(
    "Flip AUROC",
    f"{summary['auroc']:.3f}" if summary.get("auroc") is not None else "—",
    help="how well self-influence ranks the flipped labels first: 1 = all of them on top, 0.5 = no better than chance",
)
k5.metric("Compute", "cached" if m["influence_from_cache"] else compute_seconds_text(m["train_seconds"] + m["influence_seconds"]))
own_model_card(m)
POINT_TRACES = {1: "train", 2: "test"}  # trace order of figures.decision_region_figure


def _on_point_click() -> None:
    """Clicking a train/test point switches the view to that point (runs before widgets exist)."""
    selection = st.session_state.get("explorer_plot")
    points = (selection or {}).get("selection", {}).get("points", [])
    which = POINT_TRACES.get(points[0].get("curve_number")) if points else None
    if which is None:
        return
    idx = int(points[0]["point_index"])
    st.session_state["explorer_view"] = which
    st.session_state[f"explorer_{which}_id"] = idx


xs, ys, probs = decision_grid(result.model, np.r_[ds.x_train, ds.x_test])


def _kept_figure(name: str, build):
    """This run's figures, built once per session (a plotly figure takes ~40 ms to build; a point clicked again
    or an epoch revisited costs nothing). Keyed by the run, so a new setting starts afresh."""
    store = st.session_state.setdefault("_explorer_figures", {})
    key = f"{result.config.key()}:{id(result)}:{name}"
    if key not in store:
        if len(store) > 200:
            store.clear()
        store[key] = build()
    return store[key]


# the interactive parts are fragments: a click, a radio or the epoch slider reruns its own part, not the page's
# training, metrics and the other part (issue 20: ≤ 300 ms server time per interaction)
@page_fragment
def _points_view() -> None:
    # without the pairwise matrix (too large for this data) only self-influence can be shown: the radio offers only it,
    # so it reads what the plot shows (it read "influence on one test point" over a self-influence plot, issue 34)
    views = ["self", "test", "train"] if result.pairwise is not None else ["self"]
    settle_widget("explorer_view", "self", views)
    view = st.radio(
        "Size points by",
        views,
        horizontal=True,
        key="explorer_view",
        persist_state="session",
        format_func={
            "self": "self-influence (how hard each point pulls the model)",
            "test": "influence on one test point",
            "train": "influence of one training point",
        }.get,
    )
    if result.pairwise is None:
        st.warning("The pairwise matrix was too large to compute for this dataset size: only self-influence can be shown.")

    test_values, test_label, highlight, signed = None, "", None, False
    train_values, label = result.self_scores, "self-influence"
    # ids within this data (its size changes under the box), kept while valid; they start where there is something to
    # see: the test point with the largest loss, the training point that pulls hardest (test #0 is often fitted with
    # ~zero loss gradient, and nothing moves it)
    if view == "test":
        settle_widget("explorer_test_id", int(result.hardest_test_points(1)[0]), bounds=(0, len(ds.y_test) - 1))
        idx = int(st.number_input("Test point id", 0, len(ds.y_test) - 1, key="explorer_test_id", persist_state="session"))
        train_values, label, signed, highlight = result.pairwise[idx], f"influence on test #{idx}", True, ("test", idx)
    elif view == "train":
        settle_widget("explorer_train_id", int(np.argmax(result.self_scores)), bounds=(0, len(ds.y_train) - 1))
        idx = int(st.number_input("Training point id", 0, len(ds.y_train) - 1, key="explorer_train_id", persist_state="session"))
        test_values, test_label, highlight = result.pairwise[:, idx], f"influence of train #{idx}", ("train", idx)

    figure = _kept_figure(
        f"points:{view}:{highlight}",
        lambda: decision_region_figure(
            xs,
            ys,
            probs,
            ds.x_train,
            ds.y_train,
            train_values,
            ds.flipped,
            label,
            signed,
            ds.x_test,
            ds.y_test,
            test_values,
            highlight,
            ds.class_names,
            test_value_label=test_label,
        ),
    )
    st.plotly_chart(figure, on_select=_on_point_click, selection_mode=("points",), key="explorer_plot", width="stretch")
    st.caption(sign_note() + ". Self-influence ∇Lᵀ H⁻¹ ∇L is ≥ 0: large = the model bends to fit that point.")

    if highlight is not None:
        RetrainingChecks(result, config, method, yours).for_point(view, highlight[1])
    _points_table(train_values, label, signed)


def _points_table(train_values, label: str, signed: bool) -> None:
    """The most influential training points by what the plot sizes them by, and every point's score to export."""
    with st.container():
        table = pd.DataFrame(
            {
                "id": ds.ids_train,
                **{name: ds.x_train[:, j] for j, name in enumerate(ds.feature_names)},  # to train a model of your own on
                "label used": ds.y_train,
                "clean label": ds.y_train_clean,
                "flipped": ds.flipped,
                label: train_values,
            }
        ).sort_values(label, ascending=False, key=np.abs if signed else None)
        st.subheader("Most influential training points")
        st.dataframe(table.head(15), hide_index=True, width="stretch")
        st.download_button(
            "Export all scores (CSV)",
            table.to_csv(index=False),
            f"explorer_{dataset}_{model_kind}_{label.replace(' ', '_').replace('#', '')}_all_training_points.csv",
            "text/csv",
        )


def _epochs_cost() -> Cost:
    """The scores above once per checkpoint (self-influence only, so at most their time each): a slow curvature
    (LiSSA: minutes over ten checkpoints) is said, and asked about, before it starts."""
    if epochs_are_cached(config):
        return None
    per = float(m["influence_seconds"])  # as measured when computed, also when the scores came from the cache
    n = max(len(result.checkpoints), 1)
    return Cost.of(n, per, f"{n} checkpoints × {seconds_text(per)}, the scores above once each") if per else None


def _epochs(cost):
    with one_thread(), progress_status("Self-influence at each checkpoint", cost) as report:
        return influence_over_epochs(config, progress=report)


@page_fragment
def _over_training() -> None:
    st.subheader("Influence over training")
    if yours and not config.model.checkpoint_files:
        st.info("Your model came without its training checkpoints: give its earlier weight files (TracIn checkpoints, above) to see this.")
        return
    epochs_key = "epochs:" + content_key(config)
    cost = None if epochs_key in st.session_state.get("_results", {}) else _epochs_cost()
    if not confirm_start(cost, epochs_key, "Self-influence over training"):
        return
    epochs_result = memoised(epochs_key, lambda: run_or_explain(_epochs, cost))
    if epochs_result is not None:
        epochs, per_epoch = epochs_result
        over, at_epoch = st.columns([2, 3])
        if ds.flipped.any():
            share = per_epoch[:, ds.flipped].sum(1) / np.maximum(per_epoch.sum(1), 1e-30)
            over.plotly_chart(epochs_figure(epochs, share, "flipped points' share of self-influence"), width="stretch")
        settle_widget("explorer_epoch", epochs[-1], list(epochs))  # the run's checkpoints: another run saves others
        epoch = over.select_slider("Epoch", options=list(epochs), key="explorer_epoch", persist_state="session")
        k = list(epochs).index(epoch)
        top = np.argsort(-per_epoch[k])[:5]
        over.dataframe(pd.DataFrame({"id": top, "flipped": ds.flipped[top], "self-influence": per_epoch[k][top]}), hide_index=True)
        at_epoch.plotly_chart(
            _kept_figure(
                f"epoch:{epoch}",
                lambda: decision_region_figure(
                    xs,
                    ys,
                    probs,
                    ds.x_train,
                    ds.y_train,
                    per_epoch[k],
                    ds.flipped,
                    f"self-influence at epoch {epoch}",
                    class_names=ds.class_names,
                    height=380,
                    legend=False,  # no room kept for one
                ),
            ),
            width="stretch",
            key="explorer_epoch_plot",
        )


_points_view()
_over_training()
