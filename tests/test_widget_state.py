"""Widgets show the choice the page computes with, after the data or model changes under them (issue 34, item 3).

Found in Chromium: Label bias's Score box read "heldout" while the chart and table used "paper" (after switching to
the user's CSV); What-if's test-point box showed 0 while the text said test #3; Trust's held-out point box 443 while
the chart used 21; the explorer's "Size points by" once. Each time the page had stopped for a run, or the data had
changed, under a keyed widget, and the server kept one value while the browser drew another.

What the browser shows for a widget is what the server sends with it: the value, when it sends one (``set_value``),
else the widget's default, where a browser that draws the widget anew starts. ``shown`` reads that from the widget's
message; each test changes the data under a widget and checks it against what the page computed with, read from the
page's own text, table or chart.
"""

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def shown(widget: Any) -> Any:
    """What the browser shows for a widget of the last run: the value sent with it, else its default. Select boxes
    and radios give the option as displayed (after ``format_func``), number inputs the number, sliders their values."""
    p = widget.proto
    kind = type(p).__name__
    if kind in ("Selectbox", "Radio"):
        return p.raw_value if p.set_value else p.options[p.default]
    if kind in ("NumberInput", "Checkbox"):
        return p.value if p.set_value else p.default
    if kind == "Slider" and not p.options:
        return list(p.value) if p.set_value else list(p.default)
    raise TypeError(f"no rule for a {kind}")


def _open(page: str, **state: Any) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _ran_clean(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _csv(path: Path, seed: int) -> Path:
    """A small two-class table: four numeric features, a text label, a few wrong labels."""
    rng = np.random.default_rng(seed)
    y = np.repeat(["cat", "dog"], 60)
    x = rng.normal(size=(120, 4)) + np.where(y == "dog", 0.6, -0.6)[:, None]
    wrong = rng.choice(120, 12, replace=False)
    y[wrong] = np.where(y[wrong] == "cat", "dog", "cat")
    table = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    table["animal"] = y
    table.to_csv(path, index=False)
    return path


def test_label_bias_score_box_shows_the_score_of_the_chart_and_table_after_the_data_changes(tmp_path):
    first, second = _csv(tmp_path / "first.csv", 0), _csv(tmp_path / "second.csv", 1)
    at = _open("pages/label_bias.py", label_bias_dataset="csv", label_bias_csv_path=str(first))
    _ran_clean(at)
    at.selectbox(key="label_bias_score").set_value("paper").run()
    _ran_clean(at)

    def computed_score() -> str:  # the threshold slider, chart and flagged table all take the score the page computed with
        return next(s.key for s in at.slider if (s.key or "").startswith("label_bias_threshold_")).removeprefix("label_bias_threshold_")

    assert computed_score() == "paper"
    # the user names their other file: the page asks for it while the path is empty, then runs on it
    at.text_input(key="label_bias_csv_path").set_value("").run()
    assert not at.exception and not at.get("plotly_chart")
    at.text_input(key="label_bias_csv_path").set_value(str(second)).run()
    _ran_clean(at)
    box, score = at.selectbox(key="label_bias_score"), computed_score()
    assert box.value == score, (box.value, score)
    assert shown(box) == box.format_func(score), f"the Score box shows {shown(box)!r}; the chart and table use {score!r}"


def test_label_bias_greyed_flip_share_reads_the_zero_your_model_is_scored_at(tmp_path):
    """A share of a class flipped, then your trained model: the run takes your labels as they are (no flip), and the
    greyed slider must say 0, not the share it kept."""
    import torch

    from influence_core import experiments
    from influence_core import label_bias as lb

    path = _csv(tmp_path / "animals.csv", 0)
    model = experiments.train(lb.preset_config("csv", path=str(path), label_column="animal", model="mlp")).model
    weights = tmp_path / "mine.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    at = _open("pages/label_bias.py", label_bias_dataset="csv", label_bias_csv_path=str(path))
    at.slider(key="label_bias_own_fraction").set_value(0.2).run()
    _ran_clean(at)
    assert "Flipped training labels" in [m.label for m in at.metric]
    at.selectbox(key="label_bias_model_csv").set_value("file").run()
    at.text_input(key="label_bias_model_file").set_value(str(weights)).run()
    _ran_clean(at)
    metrics = [m.label for m in at.metric]
    assert "Training samples" in metrics and "Flipped training labels" not in metrics, metrics  # scored with no flip
    share = at.slider(key="label_bias_own_fraction")
    assert share.disabled and share.value == 0.0 and shown(share) == [0.0], (share.value, shown(share))


def test_what_if_test_point_box_shows_the_point_the_text_describes_after_the_data_changes():
    at = _open("pages/what_if.py")
    _ran_clean(at)
    box = at.number_input(key="whatif_test_id")
    picked = 3 if box.value != 3 else 4
    box.set_value(picked).run()
    _ran_clean(at)

    def described() -> int:
        said = [m.value for m in at.markdown if re.match(r"Test #\d+:", m.value)]
        assert len(said) == 1, [m.value for m in at.markdown]
        return int(re.match(r"Test #(\d+):", said[0]).group(1))

    assert described() == picked
    # other data: the CSV choice stops the page until a file is named; the user goes on to the half moons instead
    at.selectbox(key="whatif_dataset").set_value("csv").run()
    assert not at.exception and "whatif_test_id" not in [b.key for b in at.number_input]
    at.selectbox(key="whatif_dataset").set_value("moons").run()
    _ran_clean(at)
    box, t = at.number_input(key="whatif_test_id"), described()
    assert box.value == t, (box.value, t)
    assert shown(box) == t, f"the test-point box shows {shown(box)}; the text describes test #{t}"


def _scatter_point(at: AppTest) -> int:
    """The held-out point of Trust's one-point chart, from its title."""
    chart = next(c for c in at.get("plotly_chart") if "trust_scatter" in c.proto.id)
    title = json.loads(chart.proto.spec)["layout"]["title"]["text"]
    return int(re.search(r"held-out point (\d+)", title).group(1))


def test_trust_point_box_shows_the_point_of_the_chart_after_the_data_changes():
    at = _open("pages/trust.py")
    at.multiselect(key="trust_methods").set_value(["ip"])
    at.slider(key="trust_subsets").set_value(5)
    at.button(key="trust_go").click().run()
    _ran_clean(at)
    box = at.selectbox(key="trust_point")
    picked = int(box.options[3])  # not the worst-ordered first: the box's default
    box.set_value(picked).run()
    assert _scatter_point(at) == picked
    # other data: nothing is measured on it until the button, then the one-point chart is back
    at.selectbox(key="trust_dataset").set_value("blobs").run()
    assert not at.exception and not at.get("plotly_chart")
    at.button(key="trust_go").click().run()
    _ran_clean(at)
    box, point = at.selectbox(key="trust_point"), _scatter_point(at)
    assert int(box.value) == point, (box.value, point)
    assert shown(box) == str(point), f"the held-out point box shows {shown(box)}; the chart uses {point}"
    method = at.selectbox(key="trust_point_method")
    assert method.value == "ip" and shown(method) == "ip"


def _points_column(at: AppTest) -> str:
    """What the explorer sized the points by, as its table of training points names the column."""
    table = next(t.value for t in at.dataframe if "label used" in t.value.columns)
    return table.columns[-1]


def test_explorer_view_and_point_boxes_show_what_the_plot_uses_after_the_model_changes():
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    _ran_clean(at)
    at.radio(key="explorer_view").set_value("test").run()
    box = at.number_input(key="explorer_test_id")
    picked = 7 if box.value != 7 else 8
    box.set_value(picked).run()
    assert _points_column(at) == f"influence on test #{picked}"
    # another model: "your model" stops the page until a file is named; the user picks logistic regression instead
    at.selectbox(key="explorer_model").set_value("file").run()
    assert not at.exception and "explorer_test_id" not in [b.key for b in at.number_input]
    at.selectbox(key="explorer_model").set_value("logreg").run()
    _ran_clean(at)
    column = _points_column(at)
    view = at.radio(key="explorer_view")
    assert view.value == "test" and shown(view) == view.format_func("test"), (shown(view), column)
    box = at.number_input(key="explorer_test_id")
    assert column == f"influence on test #{box.value}" and shown(box) == box.value, (shown(box), column)


def test_explorer_view_radio_reads_self_influence_when_the_data_is_too_large_for_the_pairwise_matrix(monkeypatch):
    """More training points than the pairwise matrix is computed for: the plot can only show self-influence, and
    the radio must say so (it kept reading "influence on one test point")."""
    from influence_core import experiments

    real = experiments.pairwise_plan
    monkeypatch.setattr(
        experiments, "pairwise_plan", lambda n_test, n_train, pairwise: "none" if n_train > 200 else real(n_test, n_train, pairwise)
    )
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.radio(key="explorer_view").set_value("test").run()
    _ran_clean(at)
    assert _points_column(at).startswith("influence on test #")
    at.slider(key="explorer_n_train").set_value(250).run()
    assert not at.exception, at.exception
    assert _points_column(at) == "self-influence"
    view = at.radio(key="explorer_view")
    assert view.value == "self" and shown(view) == view.format_func("self"), (view.value, shown(view))
    assert not [b for b in at.number_input if b.key in ("explorer_test_id", "explorer_train_id")], (
        "a point id box beside a plot no point chooses"
    )


def test_a_views_choices_are_kept_when_the_person_leaves_it_and_comes_back():
    """Streamlit drops the state of widgets not drawn in a run: leaving a view for another and coming back reset every
    choice there (a walk's Trust recomputed from its defaults). The pages' keyed widgets keep their values for the
    session (``persist_state="session"``), and the browser is sent the kept value."""
    at = _open("pages/what_if.py")
    at.selectbox(key="whatif_dataset").set_value("moons").run()
    at.number_input(key="whatif_test_id").set_value(5).run()
    _ran_clean(at)
    at.switch_page("pages/trust.py").run()
    assert not at.exception and "whatif_dataset" not in [s.key for s in at.selectbox]
    at.switch_page("pages/what_if.py").run()
    _ran_clean(at)
    dataset, point = at.selectbox(key="whatif_dataset"), at.number_input(key="whatif_test_id")
    assert (dataset.value, point.value) == ("moons", 5)
    assert shown(dataset).startswith("2D half moons") and shown(point) == 5, (shown(dataset), shown(point))
    assert any(m.value.startswith("Test #5:") for m in at.markdown)


def test_an_uploaded_csv_is_still_used_when_the_person_comes_back_to_the_view(tmp_path):
    """A file uploader cannot keep its file across views: Label bias came back asking "Name your data above" for a CSV
    uploaded minutes before (a walk). The saved upload is kept for the session and used while no other is given, and
    the page says so. (AppTest cannot upload: the kept upload is set as the uploader's save leaves it.)"""
    from influence_core.data_access import save_upload

    path = save_upload("pets.csv", _csv(tmp_path / "pets.csv", 0).read_bytes())
    at = _open("pages/label_bias.py", label_bias_dataset="csv", _label_bias_csv_path_uploaded=("pets.csv", path))
    _ran_clean(at)
    assert any("Using pets.csv, uploaded earlier in this session" in c.value for c in at.caption)
    assert at.get("plotly_chart"), "the page did not run on the kept upload"
    # a typed path takes precedence over the kept upload
    other = _csv(tmp_path / "other.csv", 1)
    at.text_input(key="label_bias_csv_path").set_value(str(other)).run()
    _ran_clean(at)
    assert not any("uploaded earlier" in c.value for c in at.caption)
