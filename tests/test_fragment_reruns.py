"""A slider's rerun does only its part of the page (issue 34, item 6): Region cuts' fixed-input sliders and Label
bias's threshold slider live in ``st.fragment``s, and what the rest of the page computed (the surrogate, the models,
the gallery's figures) is not computed again.

AppTest reruns the whole script on ``run()``; the browser asks for a fragment's rerun when one of its widgets
changes. ``_fragment_run`` sends the browser's request (a rerun naming the fragment), so these tests see what a
person's slider move costs. The functions the pages call are wrapped to count their calls. Speed itself is measured
in ``benchmarks/ui_latency.py``, not here.
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path

import pytest
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _count_calls(monkeypatch, module, names: list[str], calls: collections.Counter) -> None:
    """Wrap ``module.name`` for each name so that each call adds one to ``calls[name]``."""
    for name in names:
        original = getattr(module, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


def _fragment_run(at: AppTest, key: str, monkeypatch) -> AppTest:
    """Rerun only the fragment ``@st.fragment(key=key)``, as the browser does after one of its widgets changed (the
    widget values set on ``at`` are sent with it). Raises if the page has no such fragment."""
    import streamlit.testing.v1.local_script_runner as local_runner

    (fragment_id,) = at._fragment_storage.resolve_target(key)
    with monkeypatch.context() as patch:
        patch.setattr(local_runner, "RerunData", functools.partial(RerunData, fragment_id=fragment_id))
        return at.run()


def _region_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("pages/region_cuts.py")
    for key, value in {"rc_points": 2000, "rc_epochs": 20, "rc_depth": 3, "rc_hidden": 32, "rc_n_cuts": 2, "rc_resolution": 40}.items():
        at.session_state[key] = value
    return at


REGION_FUNCTIONS = ["run_region_study", "boundary_distance_ratio", "rank_cut_centres", "make_cut", "cut_figure"]


def _count_region_calls(monkeypatch) -> collections.Counter:
    import influence_core.figures.regions as figures
    import influence_core.regions as regions

    calls: collections.Counter = collections.Counter()
    _count_calls(monkeypatch, regions, REGION_FUNCTIONS[:-1], calls)
    _count_calls(monkeypatch, figures, ["cut_figure"], calls)
    return calls


def _focus_caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if "rendered in" in c.value)


def test_region_cuts_psi_slider_reruns_only_the_focus_cut(monkeypatch):
    calls = _count_region_calls(monkeypatch)
    at = _region_page().run()
    assert not at.exception, at.exception
    assert calls["run_region_study"] == 1 and calls["cut_figure"] == 1 + 2  # the focus cut and two gallery cuts
    before = _focus_caption(at)

    calls.clear()
    at.slider(key=[s.key for s in at.slider if s.label == "psi (rad)"][0]).set_value(1.0)
    _fragment_run(at, "rc_focus_cut", monkeypatch)
    assert not at.exception, at.exception
    after = _focus_caption(at)
    assert "psi = 1" in after and after != before
    # one cut and one figure: the focus cut's; no training, no ranking, no nearest-neighbour search, no gallery
    assert dict(calls) == {"make_cut": 1, "cut_figure": 1}
    assert len(at.get("plotly_chart")) == 1  # the fragment's own chart; the gallery is left as it was drawn


def test_region_cuts_page_rerun_keeps_the_gallery_figures(monkeypatch):
    """A rerun of the whole page (a click in the gallery, a widget above the cuts) builds the focus cut's figure only:
    the gallery's cuts and figures are kept with the study."""
    calls = _count_region_calls(monkeypatch)
    at = _region_page().run()
    calls.clear()
    at.run()
    assert not at.exception, at.exception
    assert calls["cut_figure"] == 1 and calls["make_cut"] == 1, dict(calls)
    assert calls["run_region_study"] == 0 and calls["boundary_distance_ratio"] == 0 and calls["rank_cut_centres"] == 0
    assert len(at.get("plotly_chart")) == 1 + 2
    assert any(m.label == "Boundary distance ratio" for m in at.metric)  # filled after the cuts, still shown


def test_region_study_trains_a_small_surrogate_on_one_thread(monkeypatch):
    """The default surrogate is small: it trains on one torch thread whatever the process uses, and the process's
    setting comes back after; a large one keeps torch's setting."""
    import torch

    from influence_core import experiments, regions
    from influence_core.regions import ACASXU_LARGE, RegionConfig

    seen = []
    original = experiments.compute_influence

    def watched(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(regions, "compute_influence", watched)
    torch.set_num_threads(2)
    try:
        regions.run_region_study(RegionConfig(n_points=400, hidden=16, depth=2, epochs=2), use_cache=False)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert RegionConfig().one_thread and not RegionConfig(**ACASXU_LARGE).one_thread


LABEL_BIAS_FUNCTIONS = ["run_label_bias", "preset_config", "retrain_after_fix", "top_influencers"]


def test_label_bias_threshold_slider_reruns_only_its_part(monkeypatch, tmp_path):
    from influence_core import label_bias as lb
    from influence_core.figures import label_bias as lb_figures

    calls: collections.Counter = collections.Counter()
    _count_calls(monkeypatch, lb, LABEL_BIAS_FUNCTIONS, calls)
    _count_calls(monkeypatch, lb_figures, ["model_comparison_figure", "detection_curves_figure", "influence_bar_figure"], calls)
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["label_bias_dataset"] = "csv"
    at.run()
    at.switch_page("pages/label_bias.py")
    csv = _breast_cancer_csv(tmp_path)
    at.session_state["label_bias_csv_path"] = str(csv)
    at.run()
    assert not at.exception, at.exception
    assert calls["run_label_bias"] == 1
    key = f"label_bias_threshold_{lb.DEFAULT_SCORE}"
    slider = at.slider(key=key)
    before = {m.label: m.value for m in at.metric}["Flagged samples"]
    button = at.button(key="label_bias_retrain").label

    calls.clear()
    slider.set_value(slider.max)
    _fragment_run(at, "label_bias_threshold", monkeypatch)
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Flagged samples"] == "1" != before  # only the top score is at or above the slider's maximum
    assert at.button(key="label_bias_retrain").label == "Relabel 1 and retrain" != button
    # the bars follow the threshold; nothing above the slider runs again (config, models, scores, their figures)
    assert calls["influence_bar_figure"] == 1
    assert calls["run_label_bias"] == 0 and calls["preset_config"] == 0 and calls["model_comparison_figure"] == 0, dict(calls)
    assert not any(m.label == "Held-out accuracy" for m in at.metric)  # the page's top is not drawn again
    assert calls["top_influencers"] == 0, dict(calls)  # the held-out sample's section is a fragment of its own

    calls.clear()
    at.button(key="label_bias_retrain").click()
    _fragment_run(at, "label_bias_threshold", monkeypatch)  # the button is in the fragment: its click reruns it alone
    assert not at.exception, at.exception
    assert calls["retrain_after_fix"] == 1 and calls["run_label_bias"] == 0, dict(calls)
    assert [d.value for d in at.dataframe if "held-out accuracy" in d.value.columns]


def _breast_cancer_csv(tmp_path) -> Path:
    """scikit-learn's breast-cancer table as a user's CSV (logistic regression, exact Hessian: seconds)."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")
    path = tmp_path / "cells.csv"
    frame.to_csv(path, index=False)
    return path
