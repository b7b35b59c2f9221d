"""Data-glitch signals (KDD'25): known answers on hand-made matrices and a planted 2D set,
closed-form TracIn against autograd, glitch injection ground truth, the pipeline and the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from influence_core import detectors
from influence_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data.base import Dataset
from influence_core.data.glitches import FASHION_ROOT, inject_glitches
from influence_core.errors import InputError
from influence_core.experiments import train
from influence_core.signals import (
    SIGNALS,
    GlitchConfig,
    SignalResult,
    cfrank,
    compute_signals,
    detect_glitches,
    flagged_frame,
    pcid_from_denominator,
    retrain_with_repairs,
    score_methods,
    signal_run_config,
    signals_from_rows,
    suggested_repairs,
    train_val_influence,
)
from influence_core.training import Checkpoint

APP = str(Path(__file__).resolve().parents[1] / "app.py")


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ------------------------------------------------------------------ hand-made influence matrix


def test_signals_from_a_hand_made_matrix():
    """Two training rows, four validation samples of classes 0, 0, 1, 2 (harmful-positive IM)."""
    im = torch.tensor(
        [
            [0.0, -1.0, 3.0, 1.0],  # harms class 1 most → ncf = 1
            [-2.0, -1.0, 0.5, 0.0],
        ],
        dtype=torch.float64,
    )
    y_rows = torch.tensor([0, 2])
    y_val = torch.tensor([0, 0, 1, 2])
    counterfactual_im = torch.tensor([[4.0, 1.0, -1.0, 0.0], [1.0, 0.0, 0.0, 2.0]], dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def counterfactual(labels: torch.Tensor) -> torch.Tensor:
        seen.append(labels.clone())
        return counterfactual_im

    out = signals_from_rows(im, y_rows, y_val, 4, counterfactual)  # class 3 has no validation rows
    assert out["MI"].tolist() == [3.0, -2.5]
    assert out["AAI"].tolist() == [5.0 / 4, 3.5 / 4]
    assert out["GD-class"].tolist() == [3.0, 0.5]
    assert out["ncf"].tolist() == [1, 1]
    # CNCI: harm of the relabelled row on its *observed* class, negated: row 0 → class 0: 4 + 1; row 1 → class 2: 2
    assert out["CNCI"].tolist() == [-5.0, -2.0]
    # PCID: help per class u = [[1, 0, 0, 0], [3, 0, 0, 0]]; pcf = best other class (ties → lowest index)
    assert out["pcf"].tolist() == [1, 0]
    # u' from the counterfactual: row 0 → [0, 1, 0, 0]; row 1 → [0, 0, 0, 0]; w = [1, 3]
    assert out["pcid_denominator"].tolist() == [1.0 * 1.0, 3.0 * 3.0]
    assert [s.tolist() for s in seen] == [[1, 1], [1, 0]]


def test_pcid_never_divides_by_zero_and_cfrank_types():
    pcid = pcid_from_denominator(np.array([0.0, 2.0, 4.0]))
    assert np.all(np.isfinite(pcid)) and pcid[0] > pcid[1] > pcid[2]
    assert pcid[1] == pytest.approx(0.5)
    rank, kind = cfrank(np.array([-9.0, -0.1, -5.0]), np.array([1.0, 2.0, 30.0]))
    assert rank.tolist() == [1.0, 3.0, 3.0]
    assert kind.tolist() == ["mislabeled", "mislabeled", "anomaly"]


# ------------------------------------------------------------------ closed form vs autograd


def test_closed_form_tracin_matches_autograd_on_the_head():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Linear(3, 5), nn.Tanh()))
    model.add_module("head", nn.Linear(5, 4))
    x_tr, y_tr = torch.randn(7, 3), torch.randint(0, 4, (7,))
    x_val, y_val = torch.randn(6, 3), torch.randint(0, 4, (6,))
    states = []
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    checkpoints = [Checkpoint(i + 1, lr, s) for i, (lr, s) in enumerate(zip([0.5, 0.2, 0.1], states))]

    def head_grads(x: torch.Tensor, y: torch.Tensor, bias: bool) -> torch.Tensor:
        rows = []
        for xi, yi in zip(x, y):
            loss = nn.functional.cross_entropy(model(xi[None]), yi[None])
            params = [model.head.weight, model.head.bias] if bias else [model.head.weight]
            rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
        return torch.stack(rows).double()

    for bias in (True, False):
        expected = torch.zeros(7, 6, dtype=torch.float64)
        for ckpt in checkpoints:
            model.load_state_dict(ckpt.state)
            expected -= ckpt.lr * head_grads(x_tr, y_tr, bias) @ head_grads(x_val, y_val, bias).T
        got = train_val_influence(model, checkpoints, x_tr, y_tr, x_val, y_val, include_bias=bias)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ planted 2D case

CENTRES = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 3.5]])
MISLABELED = np.arange(6)  # rows 0..5: true classes 0,1,2,0,1,2, labelled (true + 1) mod 3
N_BLOB, N_FAR = 300, 10


@pytest.fixture(scope="module")
def planted_2d():
    """Three Gaussian blobs; six planted mislabels; a tight far cluster (beyond class 2) labelled 2."""
    rng = np.random.default_rng(0)
    y_true = np.arange(N_BLOB) % 3
    x_tr = CENTRES[y_true] + 0.6 * rng.normal(size=(N_BLOB, 2))
    y_te = np.arange(150) % 3
    x_te = CENTRES[y_te] + 0.6 * rng.normal(size=(150, 2))
    y_obs = y_true.copy()
    y_obs[MISLABELED] = (y_true[MISLABELED] + 1) % 3
    far = np.array([2.0, 14.0]) + 0.3 * rng.normal(size=(N_FAR, 2))
    ds = Dataset(
        "planted2d",
        np.concatenate([x_tr, far]),
        np.concatenate([y_obs, np.full(N_FAR, 2)]),
        x_te,
        y_te,
        ["a", "b", "c"],
        np.arange(N_BLOB + N_FAR),
        np.arange(150),
        y_train_clean=np.concatenate([y_true, np.full(N_FAR, 2)]),
    )
    run = RunConfig(
        data=DataConfig(name="planted2d"),
        model=ModelConfig(kind="mlp", hidden=16, depth=1),
        train=TrainConfig(optimizer="sgd", lr=0.1, epochs=30, batch_size=32, weight_decay=1e-4, n_checkpoints=10),
        method="tracin",
    )
    trained = train(run, dataset=ds, use_cache=False)
    result = compute_signals(
        trained.model,
        trained.checkpoints,
        torch.from_numpy(ds.x_train),
        torch.from_numpy(ds.y_train),
        torch.from_numpy(ds.x_test),
        torch.from_numpy(ds.y_test),
    )
    return ds, y_true, result


def _top(scores: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def test_cnci_finds_planted_mislabels_and_repairs_them(planted_2d):
    ds, y_true, result = planted_2d
    assert _top(result.scores["CNCI"], len(MISLABELED)) == set(MISLABELED.tolist())
    assert result.ncf[MISLABELED].tolist() == y_true[MISLABELED].tolist()  # the repair label is the true class
    assert np.all(result.scores["CNCI"] <= 0)


def test_pcid_finds_the_far_cluster_that_si_misses(planted_2d):
    far = set(range(N_BLOB, N_BLOB + N_FAR))
    _, _, result = planted_2d
    assert _top(result.scores["PCID"], N_FAR) == far
    assert not _top(result.scores["SI"], N_FAR) & far
    assert not _top(result.scores["CNCI"], N_FAR + len(MISLABELED)) & far


def test_cfrank_ranks_both_glitches_and_types_them(planted_2d):
    _, _, result = planted_2d
    glitched = set(MISLABELED.tolist()) | set(range(N_BLOB, N_BLOB + N_FAR))
    top = _top(result.scores["CFRank"], 2 * len(glitched))
    assert glitched <= top
    assert set(result.cfrank_type[MISLABELED]) == {"mislabeled"}
    assert set(result.cfrank_type[N_BLOB:]) == {"anomaly"}


# ------------------------------------------------------------------ glitch injection


def _toy(n: int = 400, k: int = 4, image: bool = False) -> Dataset:
    rng = np.random.default_rng(1)
    y = np.arange(n) % k
    x = rng.normal(size=(n, 1, 8, 8) if image else (n, 5)).astype(np.float32)
    if image:
        x = (x - x.min()) / (x.max() - x.min())
    return Dataset("toy", x, y, x[:40], y[:40], [str(c) for c in range(k)], np.arange(n), np.arange(40))


def test_singular_class_relabels_a_share_of_one_class_only():
    ds, truth = inject_glitches(_toy(), "singular_class", 0.2, seed=3, source_class=2)
    assert truth.mislabeled.sum() == round(0.2 * 100)
    assert np.all(ds.y_train_clean[truth.mislabeled] == 2)
    assert np.all(ds.y_train[truth.mislabeled] != 2)
    assert np.array_equal(truth.mislabeled, ds.y_train != ds.y_train_clean)
    assert not truth.anomalous.any()
    again, truth2 = inject_glitches(_toy(), "singular_class", 0.2, seed=3, source_class=2)
    assert np.array_equal(again.y_train, ds.y_train)  # seeded


def test_uniform_and_class_dependent_noise():
    ds, truth = inject_glitches(_toy(), "uniform", 0.1, seed=0)
    assert truth.mislabeled.sum() == 40 and np.all(ds.y_train[truth.mislabeled] != ds.y_train_clean[truth.mislabeled])
    ds, truth = inject_glitches(_toy(), "class_dependent", 0.1, seed=0)
    targets = truth.details["targets"]
    for c in range(4):
        rows = truth.mislabeled & (ds.y_train_clean == c)
        assert rows.sum() == 10 and set(ds.y_train[rows]) == {targets[c]} and targets[c] != c


def test_far_cluster_brightness_stripe_and_mixture():
    base = _toy()
    ds, truth = inject_glitches(base, "far_clustered", 0.2, seed=0)
    assert truth.anomalous.sum() == 100 and truth.anomalous[400:].all() and len(ds.y_train) == 500
    assert len(set(ds.y_train[400:])) == 1  # one random label for the whole cluster
    far = np.linalg.norm(ds.x_train[400:].mean(0) - base.x_train.mean(0))
    assert far > 3 * np.linalg.norm(base.x_train.std(0))

    img = _toy(image=True)
    ds, truth = inject_glitches(img, "brightness", 0.1, seed=0)
    changed = np.any(ds.x_train != img.x_train, axis=(1, 2, 3))
    assert np.array_equal(changed, truth.anomalous) and truth.anomalous.sum() == 40
    assert ds.x_train[truth.anomalous].mean() > img.x_train[truth.anomalous].mean() + 0.2
    ds, truth = inject_glitches(img, "stripe", 0.1, seed=0)
    rows = truth.anomalous
    np.testing.assert_allclose(ds.x_train[rows][..., :2], 1 - img.x_train[rows][..., :2], atol=1e-6)
    np.testing.assert_array_equal(ds.x_train[rows][..., 2:6], img.x_train[rows][..., 2:6])
    with pytest.raises(InputError, match="image"):
        inject_glitches(base, "stripe", 0.1, seed=0)

    ds, truth = inject_glitches(base, "mixture", 0.1, seed=0)
    assert truth.mislabeled.sum() == 40 and truth.anomalous.sum() == 44 and not (truth.mislabeled & truth.anomalous).any()
    assert set(truth.types) == {"clean", "mislabeled", "anomaly"}


@pytest.mark.skipif(not Path(FASHION_ROOT).exists(), reason="Fashion-MNIST IDX files not installed (dataset-fashion-mnist)")
def test_fashion_images_go_into_image_sets_with_their_ids():
    img = _toy(image=True)  # 8×8: the Fashion-MNIST images are resized to the set's size
    ds, truth = inject_glitches(img, "far_clustered", 0.1, seed=0)
    added = ds.x_train[truth.anomalous]
    assert added.shape[1:] == (1, 8, 8) and truth.details["anomaly_source"] == "fashion_mnist"
    assert all(str(i).startswith("fashion_mnist:") for i in ds.ids_train[truth.anomalous])
    assert not np.allclose(added, img.x_train[: len(added)])


def test_no_glitch_leaves_the_data_and_scores_nothing():
    ds = _toy()
    same, truth = inject_glitches(ds, "none", 0.0, seed=0)
    assert same is ds and not truth.glitched.any()
    GlitchConfig(kind="none", ratio=0.0).validate()  # the ratio does not apply
    scores = np.random.default_rng(0).normal(size=len(ds.y_train))
    result = SignalResult(
        scores={name: scores for name in SIGNALS},
        ncf=ds.y_train,
        pcf=ds.y_train,
        cfrank_type=np.full(len(ds.y_train), "mislabeled", dtype=object),
        seconds=0.0,
    )
    assert score_methods(result, truth, ds.y_train, {}) == []


def test_bad_glitch_settings_raise_input_errors():
    with pytest.raises(InputError, match="glitch kind"):
        inject_glitches(_toy(), "nonsense", 0.1, seed=0)
    with pytest.raises(InputError, match="ratio"):
        inject_glitches(_toy(), "uniform", 0.9, seed=0)
    with pytest.raises(InputError, match="sgd"):
        detect_glitches(signal_run_config("digits").replace(train__optimizer="adam"), GlitchConfig())


# ------------------------------------------------------------------ the pipeline on sklearn digits


def test_digits_pipeline_scores_signals_and_repairs():
    run = signal_run_config("digits", "mlp", seed=0, epochs=10)
    report = detect_glitches(run, GlitchConfig(kind="uniform", ratio=0.1, cleanlab_folds=2))
    table = {row["method"]: row for row in report.table}
    assert report.metrics["n_mislabeled"] == round(0.1 * report.metrics["n_train"])
    assert report.metrics["test"]["accuracy"] > 0.85
    assert table["CNCI"]["AUROC"] > 0.95 and table["CNCI"]["F1"] > 0.7
    assert table["CNCI"]["repair accuracy (all)"] > 0.8
    assert table["CNCI"]["F1"] > table["MI"]["F1"]
    assert {"cleanlab", "cleanlab (own threshold)", "IsolationForest"} <= set(table)
    frame = flagged_frame(report, "CNCI")
    assert frame["CNCI"].is_monotonic_decreasing and len(frame) == report.metrics["n_train"]
    relabel, remove = suggested_repairs(report, "CNCI", 60)
    assert relabel and not remove
    outcome = retrain_with_repairs(report, relabel, remove)
    assert outcome.n_relabelled == len(relabel) and outcome.n_relabelled_correctly > 0.8 * len(relabel)
    # what the count of right relabels hid: the clean rows the repair made wrong, counted from the truth directly
    truth, clean = report.dataset.y_train_clean, ~report.truth.glitched
    made_wrong = sum(1 for r, c in relabel.items() if clean[r] and c != truth[r])
    assert outcome.n_clean_made_wrong == made_wrong
    assert outcome.n_relabelled_correctly + outcome.n_clean_made_wrong <= outcome.n_relabelled
    assert outcome.test_accuracy_after >= outcome.test_accuracy_before - 0.02


# ------------------------------------------------------------------ the page


def test_glitch_page_runs_compares_and_repairs():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/glitch_signals.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    frames = [d.value for d in at.dataframe]
    comparison = next(f for f in frames if "method" in f.columns)
    assert {"CNCI", "SI", "PCID", "cleanlab", "IsolationForest"} <= set(comparison["method"])
    # a measure that does not apply reads "—" (Streamlit would draw a missing number as "None")
    by_method = comparison.set_index("method")
    assert by_method.loc["SI", "repair accuracy (all)"] == "—" and by_method.loc["CNCI", "repair accuracy (all)"] != "—"
    flagged = next(f for f in frames if "suggested label" in f.columns)
    assert len(flagged) > 0
    at.button(key="glitch_repair").click().run()
    assert not at.exception, at.exception
    labels = [m.label for m in at.metric]
    assert any("after repair" in label for label in labels), labels
    # the count of right relabels comes with the clean rows the repair made wrong (issue 34: "7 / 12" hid 5 of them)
    relabelled = next(m for m in at.metric if m.label == "Relabelled to the true class")
    assert "made wrong" in relabelled.proto.delta, relabelled.proto


def test_glitch_page_on_own_csv_ranks_the_wrong_labels_it_was_not_told_about(animals):
    """A user's CSV with labels that are wrong in the file itself: with nothing injected the page claims no
    scores against a ground truth, yet the default signal ranks the file's wrong labels first and repairs them."""
    from streamlit.testing.v1 import AppTest

    path, wrong_ids = animals

    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/glitch_signals.py").run()
    at.selectbox(key="glitch_dataset").set_value("csv").run()
    at.text_input(key="glitch_csv_path").set_value(str(path)).run()
    assert at.selectbox(key="glitch_label_column").value == "animal" and at.selectbox(key="glitch_id_column").value == "name"
    assert at.selectbox(key="glitch_kind_own").value == "none"
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert "Mislabeled rows" not in metrics and int(metrics["cleanlab flags"]) >= 1
    frames = [d.value for d in at.dataframe]
    assert not any("method" in f.columns for f in frames)  # no F1 / AUROC table without a ground truth
    flagged = next(f for f in frames if "suggested label" in f.columns)
    # your data as it is: ranked by the measured default detector (issue 32), not the paper's per-kind pick
    assert "true type" not in flagged.columns and flagged.columns[5] == detectors.DEFAULT_DETECTOR
    top = set(flagged["id"].head(20))
    assert len(top & wrong_ids) >= 8, (sorted(top & wrong_ids), len(wrong_ids))
    # cleanlab's second opinion is shown beside the ranking, and it agrees on the top of it
    assert flagged["cleanlab flags"].head(10).sum() >= 5, flagged.head(10)
    at.button(key="glitch_repair").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Relabelled"]) >= 1 and "Relabelled to the true class" not in metrics


# ------------------------------------------------------------------ every method through the registry


def test_tracin_through_the_method_registry_equals_the_head_closed_form(planted_2d):
    """The generic path (any registered method's matrix, counterfactuals by relabelling rows) must give TracIn's
    closed form exactly when the method is TracIn over the head: the two computations share nothing but the math."""
    from influence_core.methods import AttributionContext, fit_attributor
    from influence_core.models import parameter_names
    from influence_core.signals import compute_signals_by_method

    ds, _, closed = planted_2d
    run = RunConfig(
        data=DataConfig(name="planted2d"),
        model=ModelConfig(kind="mlp", hidden=16, depth=1),
        train=TrainConfig(optimizer="sgd", lr=0.1, epochs=30, batch_size=32, weight_decay=1e-4, n_checkpoints=10),
        method="tracin",
    )
    trained = train(run, dataset=ds, use_cache=False)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    context = AttributionContext(trained.model, x, y, parameter_names(trained.model, "last_layer"), 1e-4, checkpoints=trained.checkpoints)
    generic = compute_signals_by_method(fit_attributor("tracin", context), torch.from_numpy(ds.x_test), torch.from_numpy(ds.y_test), 3)
    for name in ("SI", "MI", "AAI", "GD-class", "CNCI"):
        np.testing.assert_allclose(generic.scores[name], closed.scores[name], rtol=1e-3, atol=1e-6 * np.abs(closed.scores[name]).max())
    np.testing.assert_array_equal(generic.ncf, closed.ncf)
    assert np.corrcoef(np.log(generic.scores["PCID"]), np.log(closed.scores["PCID"]))[0, 1] > 0.999


def test_glitch_signals_under_an_influence_function_find_the_planted_mislabels():
    run = signal_run_config("digits", "mlp", seed=0, epochs=10, method="influence")
    report = detect_glitches(run, GlitchConfig(kind="uniform", ratio=0.1, cleanlab_folds=0, isolation_forest=False))
    table = {row["method"]: row for row in report.table}
    assert table["CNCI"]["AUROC"] > 0.9, table["CNCI"]


def test_the_repair_count_and_the_doubted_relabels_are_decided_in_the_core():
    """Glitch signals' page once worked these out itself: the default number of rows to repair (the injected share;
    else cleanlab's flags; else the rows the model gets wrong) and the relabels the out-of-fold models do not favour."""
    from types import SimpleNamespace

    from influence_core.signals import default_repair_count, doubted_relabels

    ds = SimpleNamespace(y_train=np.array([0, 1, 1, 0, 2]), ids_train=np.array(["a", "b", "c", "d", "e"]), class_names=["x", "y", "z"])
    cleanlab = {"issues": np.array([True, False, True, False, False]), "suggested": np.array([1, 1, 2, 0, 2])}
    report = SimpleNamespace(dataset=ds, ratio=0.4, baselines={"cleanlab": cleanlab}, metrics={"train": {"accuracy": 0.6}})
    assert default_repair_count(report, truth=True) == 2 and default_repair_count(report, truth=False) == 2
    assert default_repair_count(SimpleNamespace(**{**vars(report), "baselines": {}}), truth=False) == 2  # 40 % wrong of 5
    table, flagged = doubted_relabels(report, {0: 1, 2: 0, 3: 2})
    assert table["id"].tolist() == ["c", "d"] and table["the model favours"].tolist() == ["z", "x"] and flagged == 1
    assert doubted_relabels(SimpleNamespace(**{**vars(report), "baselines": {}}), {0: 1})[0].empty
