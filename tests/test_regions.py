"""Region exploration (ACAS-Xu-style): reader output, oracle labels, Cook's distance, cuts, the page."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_dir
from streamlit.testing.v1 import AppTest

from influence_core.curvatures import build_curvature
from influence_core.data.acas import read_nnet
from influence_core.errors import InputError
from influence_core.experiments import tensors
from influence_core.figures.regions import DRAWN_POINTS, cut_figure
from influence_core.models import parameter_names
from influence_core.regions import (
    RegionConfig,
    boundary_distance_ratio,
    disagreement_summary,
    make_cut,
    rank_cut_centres,
    run_region_study,
    top_cuts,
)

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TINY = ROOT / "tests" / "fixtures" / "tiny.nnet"
ACASXU = shared_dir() / "acasxu"


def tiny_outputs(x: np.ndarray) -> np.ndarray:
    """tiny.nnet by hand: clip to ±10, (x - (2, -1)) / (4, 2), ReLU layer, linear layer, ×10 + 1."""
    z = (np.clip(x, -10, 10) - np.array([2.0, -1.0])) / np.array([4.0, 2.0])
    h = np.maximum(z @ np.array([[1.0, -1.0], [0.5, 2.0]]).T + np.array([0.0, -1.0]), 0)
    return (h @ np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).T + np.array([0.5, 0.0, -2.0])) * 10 + 1


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    import os

    os.environ["INFLUENCE_LAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    config = RegionConfig(family="nnet", path=str(TINY), n_points=1500, hidden=32, depth=2, epochs=60, batch_size=256, lr=2e-2, seed=3)
    return run_region_study(config, use_cache=False)


def test_reader_known_output_at_fixed_input() -> None:
    net = read_nnet(TINY)
    out = net(torch.tensor([[1.0, 2.0]])).numpy()[0]
    # worked by hand: normalised (-0.25, 1.5) → hidden (0, 1.875) → (0.5, 1.875, -0.125) → ×10 + 1
    np.testing.assert_allclose(out, [6.0, 19.75, -0.25], atol=1e-4)
    np.testing.assert_allclose(out, tiny_outputs(np.array([[1.0, 2.0]]))[0], atol=1e-4)


def test_oracle_labels_and_surrogate(tiny_study) -> None:
    info, ds = tiny_study.info, tiny_study.dataset
    np.testing.assert_array_equal(info.labels, tiny_outputs(info.x_raw).argmin(1))
    np.testing.assert_array_equal(ds.y_train, info.labels[ds.ids_train])
    assert len(ds.y_test) == pytest.approx(0.2 * 1500, abs=2)
    assert tiny_study.agreement >= 0.95, tiny_study.agreement
    summary = disagreement_summary(tiny_study)
    assert summary["confusion"].sum() == len(ds.y_test)
    assert summary["n_disagree"] == int(round((1 - tiny_study.agreement) * len(ds.y_test)))


def test_cook_distance_matches_exact_last_layer(tiny_study) -> None:
    model, ds = tiny_study.model, tiny_study.dataset
    x, y, _, _ = tensors(ds, next(model.parameters()).device)
    cfg = tiny_study.config
    exact = build_curvature("exact", model, x, y, parameter_names(model, "last_layer"), cfg.weight_decay, cfg.damping)
    expected = exact.self_influence(model, x, y).detach().cpu().numpy()
    assert (tiny_study.cook >= 0).all()
    np.testing.assert_allclose(tiny_study.cook, expected, rtol=1e-3, atol=1e-6 * expected.max())
    assert (np.diff(tiny_study.cook[tiny_study.ranking]) <= 0).all()


def test_cut_generation(tiny_study) -> None:
    study = tiny_study
    top = int(study.ranking[0])
    cut = make_cut(study, study.x_train_raw[top], axes=(0, 1), resolution=25, tolerance=0.05, seed_position=top)
    assert cut.xx.shape == cut.model_labels.shape == (25, 25)
    grid = np.c_[cut.xx.ravel(), cut.yy.ravel()]
    np.testing.assert_array_equal(cut.oracle_labels.ravel(), tiny_outputs(grid).argmin(1))
    assert cut.disagreement_fraction < 0.1
    # a 2-input network: the slice fixes nothing, so every training point is in it
    assert len(cut.point_positions) == len(study.dataset.y_train)
    assert cut.total_influence == pytest.approx(study.cook.sum())
    fig = cut_figure(study, cut)
    assert len(fig.data) >= 4 and fig.data[1].customdata.shape[0] == min(len(cut.point_positions), DRAWN_POINTS)


def test_cut_figure_draws_the_most_influential_points(tiny_study) -> None:
    """Past the limit a cut draws its largest Cook's distances, each at the size it has among all slice points, and
    its legend says how many of how many it shows."""
    study = tiny_study
    top = int(study.ranking[0])
    cut = make_cut(study, study.x_train_raw[top], axes=(0, 1), resolution=25, tolerance=0.05, seed_position=top)
    limit = len(cut.point_positions) // 4
    fig = cut_figure(study, cut, max_points=limit)
    for trace in (fig.data[1], fig.data[3]):  # the surrogate's and the oracle's panel
        drawn = trace.customdata[:, 0].astype(int)
        assert len(drawn) == limit
        np.testing.assert_array_equal(np.sort(drawn), np.sort(study.ranking[:limit]))
    assert f"{limit:,} largest of {len(cut.point_positions):,}" in fig.data[1].name
    full = cut_figure(study, cut)
    order = {int(p): i for i, p in enumerate(full.data[1].customdata[:, 0])}
    np.testing.assert_allclose(fig.data[1].marker.size, [full.data[1].marker.size[order[int(p)]] for p in drawn])


def test_top_influence_near_boundary(tiny_study) -> None:
    ratio = boundary_distance_ratio(tiny_study, top_fraction=0.1)
    assert ratio["ratio"] < 0.7, ratio
    with pytest.raises(InputError):
        boundary_distance_ratio(tiny_study, top_fraction=1.5)


def test_missing_acasxu_folder_names_files(tmp_path) -> None:
    with pytest.raises(InputError, match="ACASXU_run2a_"):
        run_region_study(RegionConfig(family="acasxu", path=str(tmp_path / "nowhere"), tau=1))
    with pytest.raises(InputError, match="tau"):
        RegionConfig(family="hcas", tau=7).validate()


@pytest.mark.skipif(not ACASXU.is_dir(), reason="shared ACAS Xu networks not present")
def test_acasxu_cuts_fix_three_inputs_and_rank_by_influence() -> None:
    study = run_region_study(
        RegionConfig(family="acasxu", path=str(ACASXU), tau=1, n_points=3000, hidden=32, depth=3, epochs=20, seed=1), use_cache=False
    )
    centres = rank_cut_centres(study, n_cuts=3, tolerance=0.1)
    totals = [t for _, t in centres]
    assert totals == sorted(totals, reverse=True) and len(centres) == 3
    cuts = top_cuts(study, n_cuts=2, resolution=20, tolerance=0.1)
    for cut in cuts:
        pts = study.x_train_raw[cut.point_positions]
        for i in (3, 4):  # v_own, v_int within 10 % of their range of the centre
            assert np.all(np.abs(pts[:, i] - cut.center_raw[i]) <= 0.1 * np.ptp(study.info.box[i]) + 1e-6)
        assert cut.total_influence == pytest.approx(study.cook[cut.point_positions].sum())
        assert cut.seed_position in set(cut.point_positions.tolist())


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/region_cuts.py")
    at.session_state["rc_points"] = 2000
    at.session_state["rc_epochs"] = 20
    at.session_state["rc_depth"] = 3
    at.session_state["rc_hidden"] = 32
    at.session_state["rc_n_cuts"] = 2
    at.session_state["rc_resolution"] = 40
    return at


def test_page_renders_hcas_cuts_and_reacts() -> None:
    at = _page()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Region cuts"
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Surrogate agreement (held-out)"].rstrip("%")) > 80
    assert len(at.get("plotly_chart")) == 1 + 2  # focused cut + two gallery cuts
    psi = at.slider[[s.label for s in at.slider].index("psi (rad)")]
    before = [c.value for c in at.caption if "rendered in" in c.value][0]
    psi.set_value(1.0).run()
    assert not at.exception, at.exception
    after = [c.value for c in at.caption if "rendered in" in c.value][0]
    assert "psi = 1" in after and after != before
    at.slider(key="rc_n_cuts").set_value(3).run()
    assert len(at.get("plotly_chart")) == 1 + 3


def test_page_acasxu_missing_folder_message(tmp_path) -> None:
    at = _page()
    at.run()
    at.selectbox(key="rc_family").set_value("acasxu").run()
    at.text_input(key="rc_folder").set_value(str(tmp_path / "empty")).run()
    assert not at.exception, at.exception
    assert any("ACASXU_run2a_" in e.value for e in at.error), [e.value for e in at.error]
    if ACASXU.is_dir():  # the real networks: three fixed inputs get a slider each
        at.text_input(key="rc_folder").set_value(str(ACASXU)).run()
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        labels = [s.label for s in at.slider]
        assert {"psi (rad)", "v_own (ft/s)", "v_int (ft/s)"} <= set(labels), labels
        assert len(at.get("plotly_chart")) == 1 + 2


def test_page_large_acasxu_setting_fills_the_widgets(tmp_path) -> None:
    from influence_core.regions import ACASXU_LARGE

    at = _page()
    at.run()
    at.selectbox(key="rc_family").set_value("acasxu").run()
    at.text_input(key="rc_folder").set_value(str(tmp_path / "empty")).run()  # no networks: nothing trains
    at.button(key="rc_large").click().run()
    assert not at.exception, at.exception
    assert at.select_slider(key="rc_points").value == ACASXU_LARGE["n_points"]
    assert at.select_slider(key="rc_hidden").value == ACASXU_LARGE["hidden"]
    assert at.slider(key="rc_depth").value == ACASXU_LARGE["depth"]
    assert at.number_input(key="rc_epochs").value == ACASXU_LARGE["epochs"]
    assert at.select_slider(key="rc_batch").value == ACASXU_LARGE["batch_size"]
    assert at.select_slider(key="rc_lr").value == ACASXU_LARGE["lr"]
    assert any("ACASXU_run2a_" in e.value for e in at.error)  # the missing-folder message is still shown


def test_page_runs_the_mislabel_roc_study_on_request() -> None:
    at = _page()
    at.run()
    n_charts = len(at.get("plotly_chart"))
    assert at.tabs[1].label == "Mislabel ROC study"
    at.selectbox(key="mr_dataset").set_value("digits")
    at.multiselect(key="mr_arms").set_value(["MLP"])
    at.slider(key="mr_runs").set_value(1).run()
    assert len(at.get("plotly_chart")) == n_charts  # nothing trains before the button
    at.button(key="mr_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == n_charts + 1
    table = at.dataframe[-1].value
    assert list(table["arm"]) == ["MLP", "MLP"] and set(table["flipped labels"]) == {5, 1}
    assert (table["AUROC mean"] > 0.5).all()  # Cook's distance ranks the flips above chance on digits
    assert "AUROC std" not in table.columns  # one run per arm: no spread to show
    assert list(table["noise"]) == ["5 of 1,257 labels flipped (0.40%)", "1 of 1,257 labels flipped (0.08%)"], list(table["noise"])
    at.slider(key="mr_runs").set_value(2).run()  # a new setting waits for the button again
    assert len(at.get("plotly_chart")) == n_charts


def test_mislabel_roc_study_on_digits() -> None:
    from influence_core.figures.mislabel_roc import roc_figure
    from influence_core.mislabel_roc import NoiseRegime, StudyArm, flip_labels, load_study_data, run_mislabel_roc

    data = load_study_data("digits", seed=0)
    noisy = flip_labels(data, 7, seed=1)
    assert noisy.flipped.sum() == 7 and (noisy.y_train[noisy.flipped] != data.y_train[noisy.flipped]).all()
    assert (noisy.y_train[~noisy.flipped] == data.y_train[~noisy.flipped]).all()
    arms = [
        StudyArm("MLP", model="mlp", hidden=64, epochs=20, lr=5e-3, batch_size=128),
        StudyArm("MLP + L1L2 head", model="mlp", hidden=64, epochs=20, lr=5e-3, batch_size=128, head_l1=1e-3, head_l2=1e-2),
    ]
    regime = NoiseRegime("≈0.5 %", 0.005, min_flipped=5)
    study = run_mislabel_roc(data, arms, [regime], n_runs=2, use_cache=False)
    assert len(study.runs) == 4 and all(r.flipped.sum() == regime.n_flipped(len(data.y_train)) for r in study.runs)
    rows = {r["arm"]: r for r in study.summary()}
    # Cook's distance ranks the flipped labels far above chance (random AUROC = 0.5)
    assert rows["MLP"]["auroc_mean"] > 0.85, rows
    assert rows["MLP + L1L2 head"]["auroc_mean"] > 0.85, rows
    mean = study.mean_roc("MLP", regime.name)
    assert mean[0] >= 0 and mean[-1] == pytest.approx(1.0) and (np.diff(mean) >= -1e-12).all()
    fig = roc_figure(study)
    assert len(fig.data) == 4 + 2 + 1  # faint runs, mean per arm, random baseline
    with pytest.raises(InputError):
        NoiseRegime("none", 0.0, 0).n_flipped(100)


def test_mislabel_study_says_what_its_figure_hides():
    """A regime labelled "≈0.05 % flipped" flipped its floor of 5 (0.40 % of the training digits), a std came from one run,
    identical arms hid each other and a below-chance AUROC went without a word (issue 20)."""
    from influence_core.mislabel_roc import MislabelROCStudy, RunScores

    rng = np.random.default_rng(0)
    flipped = np.zeros(200, bool)
    flipped[:5] = True
    good = np.where(flipped, 5.0, 0.0) + rng.random(200)  # the flips ranked on top
    bad = np.where(flipped, 0.0, 5.0) + rng.random(200)  # the flips ranked at the bottom
    regime = "≈0.05 % flipped"
    study = MislabelROCStudy(
        runs=[RunScores(arm, regime, 0, cook, flipped, 0.9, 1.0) for arm, cook in (("A", good), ("B", good.copy()), ("C", bad))]
    )
    label = study.regime_label(regime)
    assert label == "5 of 200 labels flipped (2.50%)", label
    rows = {r["arm"]: r for r in study.summary()}
    assert rows["A"]["noise"] == label and rows["A"]["auroc_std"] is None  # one run: no spread to report
    notes = study.notes()
    assert any("the mean ROC curves of A and B coincide" in n for n in notes), notes
    assert any("C's mean AUROC is 0.000, below 0.5" in n for n in notes), notes
    assert not any("A's mean AUROC" in n or "of C" in n or "and C" in n for n in notes), notes
    two = MislabelROCStudy(runs=[RunScores("A", regime, s, good + s, flipped, 0.9, 1.0) for s in (0, 1)])
    assert two.summary()[0]["auroc_std"] == 0.0  # two runs: a measured spread (here none)


def test_a_study_past_the_defaults_size_says_its_cost_first_and_asks_past_30_s(monkeypatch) -> None:
    """A million table points ran over a minute with no estimate (a walk). A study larger than the default's is timed
    on a part of its work first, and asks past the threshold; the default's (seconds) starts at once, untimed."""
    from influence_core import regions, timing

    assert not regions.larger_than_default(regions.RegionConfig())
    big = regions.RegionConfig(n_points=60_000)
    assert regions.larger_than_default(big)
    cost = regions.estimate_region_study(big)
    assert cost.seconds > 0 and cost.what.startswith("labelling 60,000 points") and "Cook's distance" in cost.what
    monkeypatch.setattr(timing, "CONFIRM_SECONDS", 0.0)  # every estimated start asks
    at = _page()
    at.session_state["rc_points"] = 1_000_000  # past the default's work with this test's small surrogate
    at.run()
    assert not at.exception, at.exception
    assert any(b.label.startswith("Sampling, training and Cook's distance: ") for b in at.button), [b.label for b in at.button]
    assert not at.get("plotly_chart") or all("rc_plotly_preload" in c.proto.id for c in at.get("plotly_chart"))
