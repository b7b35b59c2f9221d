"""The Trust view: pick methods, measure LDS on one set of retrains, see intervals, spread, cost and one point."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_trust_page_measures_lds_for_the_chosen_methods():
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/trust.py").run()
    assert not at.exception, at.exception
    assert not at.get("plotly_chart"), "nothing is measured before the button"
    at.multiselect(key="trust_methods").set_value(["influence@exact", "ip", "trak"])
    at.slider(key="trust_subsets").set_value(10)
    at.button(key="trust_go").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    table = at.dataframe[0].value
    assert set(table["method"]) == {"influence@exact", "ip", "trak"}
    assert (table["lds"] > 0.5).all(), table  # logistic regression on moons: every method orders the retrains
    assert len(at.get("plotly_chart")) == 4  # intervals, cost, per-point spread, one point's scatter
    # the leave-one-out side of the chosen point: exact influence on logistic regression predicts single removals
    at.selectbox(key="trust_point_method").set_value("influence@exact").run()
    at.button(key="trust_loo_go").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert len(at.get("plotly_chart")) == 5
    pearson = [m for m in at.metric if m.label.startswith("Pearson")]
    assert pearson and float(pearson[0].value) > 0.9, [m.value for m in at.metric] or [i.value for i in at.info]


def test_trust_asks_this_run_with_rows_zeroed_and_exact_attribution_leads_on_smooth_training():
    """Fixed randomness on the smooth MLP: exact attribution is listed by default and leads every approximation."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/trust.py").run()
    at.selectbox(key="trust_model").set_value("mlp").run()
    assert "metagradient" in at.multiselect(key="trust_methods").value
    at.radio(key="trust_randomness").set_value("fixed")
    at.checkbox(key="trust_smooth").check()
    at.multiselect(key="trust_methods").set_value(["metagradient", "influence@exact", "influence@ekfac", "trak", "ip"])
    at.slider(key="trust_subsets").set_value(10)
    at.slider(key="trust_fraction").set_value(0.9)
    at.button(key="trust_go").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    # the smooth MLP's exact Hessian is indefinite: that method is left out with the reason, the others are measured
    # (the whole measurement stopped with the error, found walking the view in Chromium)
    assert any("influence@exact" in w.value and "left out" in w.value for w in at.warning), [w.value for w in at.warning]
    lds = at.dataframe[0].value.set_index("method")["lds"]
    assert lds["metagradient"] > 0.9 and lds["metagradient"] == lds.max(), lds
    assert any("rows' weights zeroed" in c.value for c in at.caption)
    # the data under the widgets changes: a box that no longer applies shows what the run uses (unticked), not a greyed tick
    at.selectbox(key="trust_model").set_value("logreg").run()
    assert not at.exception, at.exception
    assert at.checkbox(key="trust_smooth").value is False and at.checkbox(key="trust_smooth").disabled
    assert at.checkbox(key="trust_ceiling").value is False and at.checkbox(key="trust_ceiling").disabled


def test_trust_says_the_cost_and_asks_before_a_long_measurement(monkeypatch):
    """Measure LDS is timed first; past the confirmation threshold nothing is scored or retrained until the button that
    states the estimate is clicked (a walk found an 8-minute measurement on digits started with no word of its cost)."""
    from influence_core import timing

    monkeypatch.setattr(timing, "CONFIRM_SECONDS", 0.0)  # every start asks
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/trust.py").run()
    at.multiselect(key="trust_methods").set_value(["influence@exact", "ip"])
    at.slider(key="trust_subsets").set_value(5)
    at.button(key="trust_go").click().run()
    assert not at.exception, at.exception
    confirm = [b for b in at.button if b.label.startswith("Scoring and retraining: ")]
    assert len(confirm) == 1 and not at.get("plotly_chart"), [b.label for b in at.button]
    assert any("5 retrains" in c.value for c in [*at.caption, *at.info, *at.markdown]), "the estimate names the retrains"
    confirm[0].click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert set(at.dataframe[0].value["method"]) == {"influence@exact", "ip"}
