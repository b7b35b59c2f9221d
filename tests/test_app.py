"""The dashboard under Streamlit's AppTest: renders without exceptions, widgets change the output."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture
def explorer() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def test_explorer_renders_plot_and_metrics(explorer):
    assert not explorer.error, [e.value for e in explorer.error]
    assert explorer.get("plotly_chart"), "no plot rendered"
    metrics = _metrics(explorer)
    assert metrics["Flipped labels"] == "1"
    assert float(metrics["Test accuracy"].rstrip("%")) > 90
    # the single flipped point is the most self-influential one: detection is perfect or nearly
    assert float(metrics["AUROC (self-influence → flipped)"]) > 0.95


def test_explorer_widgets_change_the_output(explorer):
    explorer.selectbox(key="explorer_dataset").set_value("moons")
    explorer.selectbox(key="explorer_noise").set_value("uniform").run()
    explorer.slider(key="explorer_fraction").set_value(0.2)
    explorer.run()
    assert not explorer.exception, explorer.exception
    flipped = int(_metrics(explorer)["Flipped labels"])
    assert flipped == round(0.2 * 200)
    # switch to "influence on one test point" and pick another test point
    explorer.radio(key="explorer_view").set_value("test").run()
    assert not explorer.exception
    explorer.number_input(key="explorer_test_id").set_value(5).run()
    assert not explorer.exception
    tables = explorer.dataframe
    assert any("influence on test #5" in t.value.columns for t in tables)


def test_explorer_starts_on_points_with_something_to_see(explorer):
    explorer.radio(key="explorer_view").set_value("test").run()
    k = int(explorer.number_input(key="explorer_test_id").value)
    column = f"influence on test #{k}"
    table = next(t.value for t in explorer.dataframe if column in t.value.columns)
    assert table[column].abs().max() > 1e-3, "the first test point shown is moved by nothing"  # test #0: ~1e-25
    explorer.radio(key="explorer_view").set_value("train").run()
    i = int(explorer.number_input(key="explorer_train_id").value)
    table = next(t.value for t in explorer.dataframe if "flipped" in t.value.columns)
    assert bool(table.loc[table["id"] == i, "flipped"].iloc[0]), "the first training point shown is the flipped one"


def test_bad_settings_show_a_message_not_a_traceback(explorer):
    # an exact Hessian without damping on an MLP is often indefinite: the page must say what to fix
    explorer.selectbox(key="explorer_curvature").set_value("exact")
    explorer.select_slider(key="explorer_damping_mlp").set_value(0.0)
    explorer.run()
    assert not explorer.exception, explorer.exception
    messages = [e.value for e in explorer.error]
    assert all("damping" in m for m in messages), messages
    assert messages or explorer.get("plotly_chart")


def test_explorer_checks_influence_against_retraining(explorer):
    explorer.selectbox(key="explorer_model").set_value("logreg").run()
    explorer.selectbox(key="explorer_curvature").set_value("exact")
    assert explorer.select_slider(key="explorer_damping_logreg").value == 0.0  # positive definite already: no damping
    next(s for s in explorer.select_slider if s.label == "L2 weight decay").set_value(1e-2).run()
    assert not explorer.exception, explorer.exception
    table = next(t.value for t in explorer.dataframe if {"flipped", "label used"} <= set(t.value.columns))
    flipped_row = int(table.loc[table["flipped"], "id"].iloc[0])
    explorer.radio(key="explorer_view").set_value("train").run()
    explorer.number_input(key="explorer_train_id").set_value(flipped_row).run()
    assert "Pearson" not in _metrics(explorer), "nothing retrains before the button"
    explorer.button(key="explorer_check_button").click().run()
    assert not explorer.exception, explorer.exception
    metrics = _metrics(explorer)
    # removing the flipped point from L2 logistic regression, exact Hessian: leave-one-out over all 200 test points
    assert float(metrics["Pearson"]) >= 0.98, metrics
    assert 0.8 <= float(metrics["Retrained / predicted"]) <= 1.25, metrics
    assert float(metrics["Same sign"].rstrip("%")) >= 90, metrics
    assert any("after retraining" in m.value for m in explorer.markdown)
    assert any(c.key == "explorer_check_plot" for c in explorer.get("plotly_chart"))


@pytest.mark.parametrize("edit", ["remove", "relabel"])
def test_explorer_removes_or_relabels_the_point_and_retrains(explorer, edit):
    explorer.radio(key="explorer_view").set_value("train").run()  # opens on the flipped point (it pulls hardest)
    assert "Flipped labels left" not in _metrics(explorer), "nothing retrains before the button"
    explorer.radio(key="explorer_edit").set_value(edit).run()
    explorer.button(key="explorer_edit_button").click().run()
    assert not explorer.exception, explorer.exception
    after = {m.label: m for m in explorer.metric}
    assert after["Flipped labels left"].value == "0" and after["Flipped labels left"].delta == "-1"
    # −8.0e-3 removed, −7.9e-3 relabelled (influence predicted −3.0e-3 for the removal)
    assert float(after["Mean test loss after"].delta) < -2e-3, "fixing the one wrong label lowers the test loss"
    assert any(c.key == "explorer_edit_plot" for c in explorer.get("plotly_chart"))
    assert _metrics(explorer)["Flipped labels"] == "1", "the stored data keeps its flip"
