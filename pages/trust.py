"""Trust: how right are the scores? The linear datamodeling score of the methods you pick, on one set of retrains."""

import numpy as np
import streamlit as st

from influence_core import lds
from influence_core.figures import retraining_check_figure
from influence_core.figures import trust as trust_figures
from influence_core.text import plural
from influence_core.timing import seconds_text
from pages._costs import gated_result
from pages._frame import page_header
from pages._progress import TIMING, progress_status
from pages._results import kept_result, one_thread, run_or_explain
from pages._widgets import described_select, settle_widget

page_header("Trust")
st.caption(
    "Retrain on random halves of the training set, then ask each method to predict every held-out point's loss on each "
    "half from its scores (the linear datamodel: the sum of the scores of the points kept). The linear datamodeling "
    "score (LDS) is the rank correlation between prediction and retraining, averaged over held-out points: 1 = the method "
    "orders the retrained outcomes perfectly, 0 = no better than chance. It is the field's accuracy measure (TRAK, dattri, kronfluence)."
)

with st.container(border=True):
    c1, c2, c3 = st.columns([1, 1, 2])
    dataset = described_select(
        c1, "Dataset", list(lds.TRUST_DATASETS), lds.TRUST_DATASETS.get, key="trust_dataset", persist_state="session"
    )
    model = described_select(c1, "Model", list(lds.TRUST_MODELS), lds.TRUST_MODELS.get, key="trust_model", persist_state="session")
    subsets = c2.slider(
        "Retrained subsets",
        5,
        100,
        20,
        step=5,
        key="trust_subsets",
        persist_state="session",
        help="more subsets narrow each point's correlation; every retrain is cached for later runs",
    )
    fraction = c2.slider("Share of the training set in each", 0.1, 0.9, 0.5, step=0.1, key="trust_fraction", persist_state="session")
    seed = int(c2.number_input("Seed", 0, 10_000, 0, key="trust_seed", persist_state="session"))
    randomness = c1.radio(
        "Retraining without rows means",
        list(lds.RANDOMNESS),
        key="trust_randomness",
        persist_state="session",
        format_func={"resampled": "a new run", "fixed": "this run, rows zeroed"}.get,
        help="a new run on each subset (training noise included: no method can predict it; the ceiling measures it), or "
        "the same run with the dropped rows' weights zeroed: same initial weights, same batches (what exact attribution answers)",
    )
    # a disabled box shows the value the run uses: unchecked where it does not apply (it stayed ticked and greyed)
    settle_widget("trust_smooth", False, [False] if model == "logreg" else [False, True])
    settle_widget("trust_ceiling", False, [False] if randomness == "fixed" else [False, True])
    smooth = c1.checkbox(
        "Smooth training",
        key="trust_smooth",
        persist_state="session",
        disabled=model == "logreg",
        help="the MLP's learning rate annealed to 0 and weight decay 1e-2: training smooth in the rows' weights, where exact "
        "attribution follows retraining (it changes the answer: on moons at 5 % dropped, LDS 0.67 → 0.98)",
    )
    ceiling = c1.checkbox(
        "Seed-noise ceiling",
        key="trust_ceiling",
        persist_state="session",
        disabled=randomness == "fixed",
        help="retrain each subset under a second seed: doubles the retrains",
    )
    chosen = c3.multiselect(
        "Methods (method@curvature)",
        lds.method_specs(),
        lds.default_specs(),
        key="trust_methods",
        wrap=True,  # seven chips in a column scroll sideways otherwise, hiding what the run measures
        persist_state="session",
        help="each influence-function entry names its curvature; all run against the same retrains",
    )
    clicked = c3.button("Measure LDS", type="primary", key="trust_go", disabled=not chosen)

config = run_or_explain(lds.trust_config, dataset, model, seed, smooth)
if config is None:
    st.stop()
store = f"trust:{config.key()}:{subsets}:{fraction}:{','.join(chosen)}:{randomness}:{ceiling}"


def _estimate():
    with one_thread(), progress_status(TIMING, transient=True) as report:
        return lds.estimate_lds(config, chosen, subsets, fraction, seed, randomness=randomness, ceiling=ceiling, progress=report)


def _measure(cost):
    with progress_status(f"Scoring with {plural(len(chosen), 'method')} and retraining {subsets} subsets", cost) as report:
        return lds.linear_datamodeling_score(
            config, chosen, subsets, fraction, seed, progress=report, randomness=randomness, ceiling=ceiling
        )


result = gated_result(clicked, store, "Scoring and retraining", _estimate, _measure)
if result is None:
    st.info(
        "Pick the methods and press **Measure LDS**: the work is timed on this machine first, and a start estimated past "
        "half a minute asks before it begins. Retrains are cached, so adding a method later only scores it."
    )
    st.stop()

table = result.table().sort_values("lds", ascending=False)
for name, why in result.skipped.items():
    st.warning(f"**{name}** is left out: {why}.")
for group in result.equal_groups():
    st.info(
        f"{' and '.join(group)} have the same LDS at every held-out point: their scores order every retrained subset alike "
        "(one is a positive multiple of the other here), so they are one result, not two."
    )
left, right = st.columns([3, 2])
with left:
    st.plotly_chart(trust_figures.lds_bars_figure(table, result), width="stretch", key="trust_bars")
    st.caption(
        "Retrained as "
        + (
            "the same run with the dropped rows' weights zeroed (fixed randomness)."
            if result.randomness == "fixed"
            else "a new run on each subset (resampled randomness)."
        )
    )
with right:
    st.plotly_chart(trust_figures.cost_figure(table), width="stretch", key="trust_cost")

shown = table.assign(
    interval=[f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(table["lds_low"], table["lds_high"])],
    # in words, each in its own unit: IP's 1.2e-4 s read 0.00 at two decimals, and one format for the column wrote
    # 2.73e+1 beside 6.83e-1
    time=[seconds_text(s) for s in table["seconds"]],
    note=[result.notes[m] or "—" for m in table["method"]],
)
st.dataframe(
    shown[["method", "lds", "interval", "time", "note"]],
    hide_index=True,
    key="trust_table",
    column_config={
        "lds": st.column_config.NumberColumn("LDS", format="%.3f"),
        "time": st.column_config.TextColumn("time to score", help="wall time each method took to score", alignment="right"),
    },
)
st.caption(
    f"{subsets} subsets of {fraction:.0%} retrained ({result.retrains_from_cache} from the cache, {seconds_text(result.retrain_seconds)}), "
    f"{result.actual.shape[1]} held-out points. An interval that overlaps another's is not a measured difference."
)

st.plotly_chart(trust_figures.spread_figure(result, list(table["method"])), width="stretch", key="trust_box")

st.subheader("One held-out point")
p1, p2 = st.columns([1, 3])
# the methods measured and their held-out points follow the run: the boxes show the ones the figures use (issue 34)
methods = list(table["method"])
settle_widget("trust_point_method", methods[0], methods)
method = p1.selectbox("Method", methods, key="trust_point_method", persist_state="session")
worst_first = [int(i) for i in np.argsort(np.nan_to_num(result.per_test[method], nan=2.0))]
settle_widget("trust_point", worst_first[0], worst_first)
point = int(p1.selectbox("Held-out point (worst ordered first)", worst_first, key="trust_point", persist_state="session"))
predicted, retrained = lds.subset_scatter(result, method, point)
title = f"{method} on held-out point {point}: Spearman {result.per_test[method][point]:+.2f} over {subsets} subsets"
p2.plotly_chart(trust_figures.subset_figure(predicted, retrained, title), width="stretch", key="trust_scatter")
p1.caption("Each dot is one retrained subset. A method that is right puts them on a rising line.")

st.markdown("**The same point, leave-one-out:** remove the method's strongest training points for it one at a time, retrain each time.")
l1, l2 = st.columns([1, 3])
settle_widget("trust_loo_removals", 10, bounds=(3, 30))
removals = int(l1.slider("Points removed, one at a time", 3, 30, key="trust_loo_removals", persist_state="session"))
loo_clicked = l1.button("Check against leave-one-out", key="trust_loo_go")


def _leave_one_out():
    with progress_status(f"Retraining without each of {removals} points") as report:
        return lds.leave_one_out_check(config, result, method, point, removals, progress=report)


check = kept_result(loo_clicked, f"{store}:loo:{method}:{point}:{removals}", _leave_one_out)
if check is not None:
    l2.plotly_chart(retraining_check_figure(check), width="stretch", key="trust_loo_plot")
    if check.can_tell:
        l1.metric("Pearson, predicted vs retrained", f"{check.pearson:+.2f}")
        l1.caption(f"Spearman {check.spearman:+.2f}; same sign {check.sign_agreement:.0%}; size ratio {check.slope:.2f}.")
    else:
        l1.info(
            f"Only {check.n_above_noise} of {len(check.train_indices)} removals moved this point's loss by more than retraining "
            "noise: the check cannot tell here. Pick a point the method orders worse, or remove more points."
        )
