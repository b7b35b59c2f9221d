"""Flip sets (Algorithm 1): known answers, agreement with retraining, labels never mutated."""

from itertools import combinations

import numpy as np
import pytest

from influence_core import flipset as fs
from influence_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data.base import Dataset
from influence_core.errors import InputError
from influence_core.experiments import load_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _logreg(weight_decay: float = 1e-2) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="csv"),
        model=ModelConfig(kind="logreg"),
        train=TrainConfig(optimizer="lbfgs", epochs=20, weight_decay=weight_decay, n_checkpoints=3),
        seed=0,
    )


def test_algorithm1_on_hand_made_effects():
    # predicted class 1 at m = 1: the points pushing down are 1 (0.5), 3 (0.4), 0 (0.2) → crossing after 3
    s = fs.find_flip_sets(np.array([[-0.2, -0.5, 0.3, -0.4]]), np.array([1.0]), 0.0)
    assert s.found[0] and s.k[0] == 3
    assert list(s.order[0, :3]) == [1, 3, 0]
    assert s.predicted_after[0] == pytest.approx(1.0 - 1.1)
    # the same effects cannot overturn m = 5; a negative prediction needs the positive effects
    s = fs.find_flip_sets(np.array([[-0.2, -0.5, 0.3, -0.4], [0.1, 0.6, -0.1, 0.2]]), np.array([5.0, -0.7]), 0.0)
    assert not s.found[0] and s.k[0] == 0
    assert s.found[1] and s.k[1] == 2 and set(s.order[1, :2]) == {1, 3}
    # a probability threshold other than 0.5 (paper: τ = 0.25 on hate speech)
    s = fs.find_flip_sets(np.array([[-0.1, -0.1, -0.1]]), np.array([0.4]), 0.25)
    assert s.k[0] == 2
    assert fs.find_flip_sets(np.array([[-0.1, -0.1, -0.1]]), np.array([0.4]), 0.25, max_k=1).k[0] == 0


def _one_d_problem() -> Dataset:
    x = np.array([-2.0, -1.6, -1.2, -0.9, -0.5, -0.2, 0.1, 0.4, 0.8, 1.1, 1.5, 2.0])[:, None]
    y = (x[:, 0] > 0).astype(np.int64)
    xt = np.array([[0.25], [-1.0], [1.8]])
    return Dataset("one_d", x, y, xt, (xt[:, 0] > 0).astype(np.int64), ["neg", "pos"], np.arange(12), np.arange(3))


def _smallest_flip_by_enumeration(r: fs.FlipSetResult, t: int) -> int:
    """Retrain on every subset (smallest first) until one relabeling flips test point t."""
    for k in range(1, len(r.dataset.y_train) + 1):
        for subset in combinations(range(len(r.dataset.y_train)), k):
            m = fs.retrained_margins(r, np.array(subset), "relabel", r.dataset.x_test[t][None])[0]
            if (m > 0) != (r.margins[t] > 0):
                return k
    raise AssertionError("no subset flips the prediction")


def test_one_dimensional_flip_set_matches_enumeration():
    """12 training points on a line: enumerate every subset for the true smallest relabel set."""
    ds = _one_d_problem()
    y_before = ds.y_train.copy()
    r = fs.compute_flip_sets(_logreg(0.1), ds, use_cache=False)
    assert r.predicted.tolist() == [1, 0, 1]
    smallest = [_smallest_flip_by_enumeration(r, t) for t in range(3)]
    assert smallest == [1, 2, 3]
    # the two less confident points: Algorithm 1 finds a set of exactly the minimal size, and retraining flips them
    for t in (0, 1):
        assert r.relabel.found[t] and r.relabel.k[t] == smallest[t]
        m = fs.retrained_margins(r, r.flip_set(t), "relabel", ds.x_test[t][None])[0]
        assert (m > 0) != (r.margins[t] > 0)
    # p = 0.97: the first-order probability change of all 12 relabelings cannot reach 0.5, so "not found"
    assert not r.relabel.found[2] and len(r.flip_set(2)) == 0
    # summing margins instead is optimistic: it proposes 2 points where 3 are needed, and retraining refutes it
    rm = fs.compute_flip_sets(_logreg(0.1), ds, use_cache=False, output="margin")
    assert rm.relabel.k[2] < smallest[2]
    m = fs.retrained_margins(rm, rm.flip_set(2), "relabel", ds.x_test[2][None])[0]
    assert (m > 0) == (rm.margins[2] > 0)
    assert np.array_equal(ds.y_train, y_before) and np.array_equal(r.dataset.y_train, y_before)
    # the set as rows to review: Algorithm 1's order, each row's edit, and the running prediction that
    # crosses τ = 0.5 at the last row and not before
    for t in (0, 1):
        rows = r.flip_set_table(t)
        assert rows["train row"].tolist() == r.flip_set(t).tolist() and (rows["id"] == ds.ids_train[r.flip_set(t)]).all()
        assert (rows["edit"] != rows["label"]).all()
        after = rows["probability after"].to_numpy()
        assert np.isclose(after[-1], r.relabel.predicted_after[t])
        crossed = (after > 0.5) != (r.test_probs[t] > 0.5)
        assert crossed[-1] and not crossed[:-1].any()


def test_relabel_effect_sign_and_size_agree_with_retraining():
    ds = fs.breast_cancer_dataset(seed=0)
    r = fs.compute_flip_sets(_logreg(0.1), ds, use_cache=False, output="margin")
    t = 0
    eff = r.effects("relabel")[t]
    rows = np.argsort(-np.abs(eff))[[0, 1, 2, 10, 40, 120, 300]]  # strong to weak
    actual = np.array([fs.retrained_margins(r, np.array([i]), "relabel", ds.x_test[t][None])[0] - r.margins[t] for i in rows])
    assert np.all(np.sign(actual) == np.sign(eff[rows]))
    assert np.corrcoef(actual, eff[rows])[0, 1] > 0.9
    # the removal effect is the relabel effect times 1 − p(y_i | x_i), so smaller in size and of the same sign
    rm = r.effects("remove")[t]
    assert np.all(np.abs(rm) <= np.abs(eff) + 1e-12) and np.all(np.sign(rm[rows]) == np.sign(eff[rows]))


def test_verification_on_digits_confirms_most_flips_and_never_mutates_labels():
    ds = load_data(RunConfig(data=DataConfig(name="digits", classes=(3, 8))))
    y_before, y_clean_before = ds.y_train.copy(), ds.y_train_clean.copy()
    r = fs.compute_flip_sets(_logreg(), ds, use_cache=False)
    assert r.relabel.found.mean() >= 0.6
    pick = np.flatnonzero(r.relabel.found)[:8]
    v = fs.verify_flip_sets(r, pick, use_cache=False)
    assert len(v.flipped) == len(pick) and v.success_rate >= 0.75
    v_rm = fs.verify_flip_sets(r, np.flatnonzero(r.remove.found)[:4], "remove", use_cache=False)
    assert len(v_rm.flipped) == min(4, int(r.remove.found.sum()))
    for arr, before in ((ds.y_train, y_before), (r.dataset.y_train, y_before), (ds.y_train_clean, y_clean_before)):
        assert np.array_equal(arr, before)
    # summaries
    summary = fs.k_summary(r)
    assert summary["found_share"] == pytest.approx(r.relabel.found.mean()) and summary["mean_k"] >= 1


def test_edited_labels_is_a_copy_and_refinement_reaches_a_flip():
    y = np.array([0, 1, 1, 0])
    out = fs.edited_labels(y, np.array([0, 2]))
    assert out.tolist() == [1, 1, 0, 0] and y.tolist() == [0, 1, 1, 0]
    ds = fs.breast_cancer_dataset(seed=0)
    y_before = ds.y_train.copy()
    r = fs.compute_flip_sets(_logreg(), ds, use_cache=False)
    v = fs.verify_flip_sets(r, np.flatnonzero(r.relabel.found)[:12], use_cache=False)
    fails = v.test_indices[~v.flipped]
    if len(fails):
        refined = fs.refine_flip_set(r, int(fails[0]))
        assert refined.flipped and len(refined.indices) >= refined.one_shot_k
        m = fs.retrained_margins(r, refined.indices, "relabel", ds.x_test[int(fails[0])][None])[0]
        assert (m > r.threshold) != (r.margins[int(fails[0])] > r.threshold)
    assert np.array_equal(ds.y_train, y_before) and np.array_equal(r.dataset.y_train, y_before)


def test_bias_injection_copies_and_bad_input_is_explained():
    ds = fs.breast_cancer_dataset(seed=0)
    y_before = ds.y_train.copy()
    b = fs.inject_group_bias(ds, 0.4, 0.9, seed=0)
    assert np.array_equal(ds.y_train, y_before)
    group_pos = (b.dataset.groups_train == 1) & (ds.y_train == 1)
    assert b.biased.sum() == round(0.9 * group_pos.sum()) and np.all(b.dataset.y_train[b.biased] == 0)
    three = load_data(RunConfig(data=DataConfig(name="digits", classes=(1, 2, 3))))
    with pytest.raises(InputError, match="binary"):
        fs.compute_flip_sets(_logreg(), three, use_cache=False)
    with pytest.raises(InputError, match="threshold"):
        fs.compute_flip_sets(_logreg(), ds, probability_threshold=1.5, use_cache=False)


def test_what_if_page_shows_a_flip_set_and_verifies_it(tmp_path):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/what_if.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Labels flipped here"] == "10"  # blobs with its 10 flipped labels
    assert float(metrics["Flip set found"].rstrip("%")) >= 60
    assert at.get("plotly_chart")
    # the picked point's set, listed row by row for review
    review = next(d.value for d in at.dataframe if "probability after" in d.value.columns)
    points = next(d.value for d in at.dataframe if "k (relabel)" in d.value.columns)
    assert len(review) == points["k (relabel)"].iloc[at.number_input(key="whatif_test_id").value] > 0
    at.number_input(key="whatif_test_id").set_value(3).run()
    # the probability names its class as the labels beside it do (it read "p(class 1)" beside digit names)
    second = fs.what_if_dataset("blobs", seed=0).class_names[1]
    assert any(m.value.startswith("Test #3: true ") and f", p({second}) = **" in m.value for m in at.markdown)
    at.button(key="whatif_verify").click().run()
    assert not at.exception, at.exception
    texts = " ".join(m.value for m in at.success) + " ".join(m.value for m in at.warning)
    assert "Retrained with the set relabelled" in texts
    at.button(key="whatif_refine").click().run()
    assert not at.exception, at.exception
    assert any("Iterative refinement" in m.value for m in at.markdown)
    # the paper's "flip successful" share on a sample of this data's sets
    at.number_input(key="whatif_n_check").set_value(20).run()
    at.button(key="whatif_verify_all").click().run()
    assert not at.exception, at.exception
    confirmed = [m.value for m in at.metric if m.label == "Confirmed by retraining"]
    assert confirmed and confirmed[0].endswith("of 20 sets")
    same = fs.compute_flip_sets(fs.what_if_config("logreg", 1e-2, 0), fs.what_if_dataset("blobs", seed=0), 0.5)
    sample = np.random.default_rng(0).permutation(np.flatnonzero(same.relabel.found))[:20]
    assert confirmed[0] == f"{fs.verify_flip_sets(same, sample).success_rate:.0%} of 20 sets"
    # the Hessian-free comparison: IF vs IP on blobs correlates strongly
    at.button(key="whatif_scores_go").click().run()
    assert not at.exception, at.exception
    # the retraining results of this test point stay on screen through other actions
    assert any("Retrained with the set relabelled" in m.value for m in [*at.success, *at.warning])
    assert any("Iterative refinement" in m.value for m in at.markdown)
    charts = [c for c in at.get("plotly_chart") if "Pearson" in c.proto.spec]
    assert charts
    pearson = float(charts[0].proto.spec.split("Pearson ")[1][:5])
    assert pearson > 0.95
    # exact attribution and the influence function on L2 logistic regression at its optimum: the same scores, named as
    # one result (a walk saw "Pearson 1.000" and one series hidden under the other with no word), with y = x
    assert pearson == 1.0  # blobs, L2 logistic regression by L-BFGS: exact attribution is the influence function
    assert any("one result, not two" in i.value for i in at.info), [i.value for i in at.info]
    assert "y = x" in charts[0].proto.spec
    at.button(key="whatif_loo").click().run()
    assert not at.exception, at.exception
    loo_plot = lambda: [c for c in at.get("plotly_chart") if "Predicted vs retrained" in c.proto.spec]  # noqa: E731
    assert loo_plot()
    # every leave-one-out scatter carries its correlation and the y = x line (issue 34)
    assert "y = x" in loo_plot()[0].proto.spec and "Pearson" in loo_plot()[0].proto.spec
    # trim and retrain: a table with the untrimmed baseline and every method
    at.button(key="whatif_trim_go").click().run()
    assert not at.exception, at.exception
    assert loo_plot(), "the leave-one-out plot went away when another button was pressed"
    trim = [d.value for d in at.dataframe if "Method" in d.value.columns]
    assert trim and trim[0]["Method"].tolist()[0] == "untrimmed" and len(trim[0]) == 5, trim
    # ... and go when another test point is picked
    at.number_input(key="whatif_test_id").set_value(4).run()
    assert not any("Retrained with the set" in m.value for m in [*at.success, *at.warning])
    # the user's CSV: asked for, then a wrong path and a three-class table each get a message, not a traceback
    at.selectbox(key="whatif_dataset").set_value("csv").run()
    assert not at.exception and not at.error and at.info and "Name your CSV" in at.info[0].value
    at.text_input(key="whatif_csv_path").set_value(str(tmp_path / "missing.csv")).run()
    assert not at.exception and at.error and "does not exist" in at.error[0].value
    three = tmp_path / "three.csv"
    three.write_text("a,b,kind\n" + "".join(f"{i},{i % 5},{'xyz'[i % 3]}\n" for i in range(30)))
    at.text_input(key="whatif_csv_path").set_value(str(three)).run()
    assert at.selectbox(key="whatif_label_column").value == "kind"
    message = at.error[0].value if at.error else ""
    # what to do with the file (there is no class picker for a CSV), not "pick two classes (e.g. classes 4 and 9)"
    assert not at.exception and "column 'kind' of three.csv has 3 (x, y, z)" in message and "rows of two of them" in message, message


def test_the_2d_view_names_its_axes():
    blobs = fs.what_if_dataset("blobs")
    x, xt, axes = fs.project_2d(blobs)
    assert axes == ("x1", "x2") and np.array_equal(x, blobs.x_train)
    cancer = fs.breast_cancer_dataset(seed=0)
    x, xt, axes = fs.project_2d(cancer)
    assert x.shape == (len(cancer.y_train), 2) and xt.shape == (len(cancer.y_test), 2)
    first, second = (float(a.split("(")[1].split("%")[0]) for a in axes)
    assert axes[0].startswith("PC 1") and 0 < second <= first < 100  # PCA keeps most of the variance in its first component


def test_exact_attribution_gives_flip_sets_whose_kernel_is_the_replayed_runs_derivative():
    """What-if with exact attribution (it was refused: flip sets never passed the training run to the method). On
    L-BFGS logistic regression it is the implicit-function derivative, the exact-Hessian kernel. On an MLP its kernel is
    −N ∂m_t/∂εᵢ of the run replayed with εᵢ·m(xᵢ) added to row i's loss, which at εᵢ = 2yᵢ − 1 is relabelling row i
    exactly: finite differences of that replay agree, and the predicted relabels move the retrained margin the same way."""
    import copy

    import torch

    from influence_core import replay
    from influence_core.flipset.search import logit_margin
    from influence_core.tasks import MARGIN

    ds = fs.breast_cancer_dataset(seed=0)
    influence = fs.compute_flip_sets(_logreg(0.1), ds, use_cache=False, output="margin")
    exact = fs.compute_flip_sets(_logreg(0.1).replace(method="metagradient"), ds, use_cache=False, output="margin")
    assert np.allclose(exact.kernel, influence.kernel, rtol=1e-6, atol=1e-9 * np.abs(influence.kernel).max())

    small = ds.subset_train(np.arange(len(ds.y_train)) < 120)
    config = fs.what_if_config("mlp", 1e-2, 0, "metagradient").replace(
        model__activation="tanh", train__epochs=150, train__optimizer="sgd", train__lr=0.5, train__lr_schedule="cosine"
    )
    r = fs.compute_flip_sets(config, small, use_cache=False, output="margin")
    t = int(np.argmin(np.abs(r.margins)))  # the least certain test point: relabels move it most
    rows = np.argsort(-np.abs(r.kernel[t]))[:3]
    fitted = fs.fit_binary(config, small, use_cache=False)
    run = replay.Replay(copy.deepcopy(fitted.model).double(), fitted.training, fitted.x_train.double(), fitted.y_train)
    x_t = fitted.x_test[t : t + 1].double()
    m_t = logit_margin(run.final_model(run.run()[0]), x_t)[0]
    for i in rows:
        weights = torch.ones(len(small.y_train), dtype=torch.float64)
        weights[i] += 1e-3
        moved = logit_margin(run.final_model(run.run(weights, perturbation=MARGIN)[0]), x_t)[0]
        assert -len(small.y_train) * (moved - m_t) / 1e-3 == pytest.approx(r.kernel[t, i], rel=2e-2)
    eff = r.effects("relabel")[t, rows]
    actual = np.array([fs.retrained_margins(r, np.array([i]), "relabel", small.x_test[t][None])[0] - r.margins[t] for i in rows])
    assert np.all(np.sign(actual) == np.sign(eff)), (actual, eff)
