"""Typed knobs (issue 33 item 1): each method and curvature declares its settings with a type, default and range; a
config's validation refuses a wrong one before any work; one widget shows them in every view with a picker, and only a
knob moved off its default reaches the config (an untouched one keeps the cache key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from influence_core import curvatures, methods
from influence_core.config import CurvatureConfig, RunConfig
from influence_core.errors import InputError
from influence_core.knobs import Knob

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_knob_is_typed_with_a_default_in_its_range():
    for registry, names in ((methods, methods.method_names()), (curvatures, curvatures.curvature_names(include_auto=False))):
        for name in names:
            for knob_name, knob in registry.get(name).knobs.items():
                assert isinstance(knob, Knob) and knob.kind in (int, float, bool), (name, knob_name)
                if knob.default is not None:
                    assert knob.parse(knob_name, knob.default) == knob.default, (name, knob_name)


def test_a_config_refuses_a_knob_of_the_wrong_type_or_range_naming_what_to_give():
    with pytest.raises(InputError, match="projection_dim must be from 1"):
        RunConfig(method="trak", method_options=(("projection_dim", 0),))
    with pytest.raises(InputError, match="whole number"):
        RunConfig(method="trak", method_options=(("projection_dim", 2.5),))
    with pytest.raises(InputError, match="sampled is 0 or 1"):
        RunConfig(curvature=CurvatureConfig(kind="diag", options=(("sampled", 3),)))
    with pytest.raises(InputError, match="has no option depth; its options: rank"):
        RunConfig(curvature=CurvatureConfig(kind="arnoldi", options=(("depth", 3),)))
    config = RunConfig(method="trak", method_options=(("projection_dim", 64),))
    assert config.with_knobs() is config and config.with_knobs((("ensemble", 2),)).method_options == (("ensemble", 2),)


def test_label_bias_shows_the_chosen_methods_knobs_and_computes_with_the_one_moved(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from influence_core import label_bias as lb

    monkeypatch.setenv("INFLUENCE_LAB_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.run()
    at.switch_page("pages/label_bias.py").run()
    at.selectbox(key="label_bias_method").select("trak").run()
    assert not at.exception, at.exception
    knob = at.number_input(key="label_bias_method_trak_projection_dim")
    assert knob.value == methods.get("trak").knobs["projection_dim"].default

    def computed() -> list:
        return [r.config for r, _ in at.session_state["_results"].values() if isinstance(r, lb.LabelBiasResult)]

    assert any(c.method == "trak" and c.method_options == () for c in computed())  # untouched: no option, same key
    knob.set_value(64).run()
    assert not at.exception, at.exception
    assert any(c.method == "trak" and c.method_options == (("projection_dim", 64),) for c in computed())


def test_region_cuts_shows_the_chosen_methods_knobs_and_computes_with_the_one_moved(tmp_path, monkeypatch):
    """Region cuts had no knob inputs (its RegionConfig carried no method options): now the same widget as the other
    views, and the study's engine config carries the moved knob."""
    from streamlit.testing.v1 import AppTest

    from influence_core.regions import RegionStudy

    monkeypatch.setenv("INFLUENCE_LAB_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.switch_page("pages/region_cuts.py")
    for key, value in {"rc_points": 2000, "rc_epochs": 5, "rc_depth": 2, "rc_hidden": 16, "rc_n_cuts": 1, "rc_resolution": 40}.items():
        at.session_state[key] = value
    at.session_state["rc_method"] = "trak"
    at.run()
    assert not at.exception, at.exception
    knob = at.number_input(key="rc_method_trak_projection_dim")
    assert knob.value == methods.get("trak").knobs["projection_dim"].default

    def studied() -> list:
        return [r for r, _ in at.session_state["_results"].values() if isinstance(r, RegionStudy)]

    assert any(s.config.method == "trak" and s.config.method_options == () for s in studied())
    knob.set_value(32).run()
    assert not at.exception, at.exception
    moved = [s for s in studied() if s.config.method_options == (("projection_dim", 32),)]
    assert moved and moved[0].config.run_config().method_options == (("projection_dim", 32),)
