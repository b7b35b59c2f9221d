"""Label-noise detectors (issue 32): hand-computed values on tiny runs, the default against the loss where the loss is
misled, and registration reaching the CLI with no other edit."""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
import torch

from influence_core import detectors
from influence_core.cli import main
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data import noise
from influence_core.data.registry import load_dataset
from influence_core.detectors.base import DetectionContext, Detector
from influence_core.detectors.dynamics import area_under_margin, forgetting_events
from influence_core.detectors.explain import explain_row
from influence_core.experiments import train
from influence_core.metrics import auroc
from influence_core.models import build_model
from influence_core.training import batch_orders, train_model


def test_forgetting_events_and_aum_by_hand():
    # epochs × rows; correct ⇔ margin > 0
    margins = np.array([[1.0, -1.0, 2.0], [-1.0, -1.0, 1.0], [1.0, -2.0, -1.0], [-1.0, -1.0, 1.0]])
    events, never = forgetting_events(margins)
    # row 0: ✓✗✓✗ → two events; row 1: never ✓; row 2: ✓✓✗✓ → one
    assert events.tolist() == [2, 0, 1] and never.tolist() == [False, True, False]
    np.testing.assert_allclose(area_under_margin(margins), [0.0, -1.25, 0.75])


@pytest.mark.parametrize("batch_size", [0, 2])
def test_training_records_the_margins_and_losses_of_its_own_steps(batch_size):
    """The recorded dynamics are the logits each step trained on (before it), checked against a replay written out by
    hand: the same initial weights and batches, plain SGD, margins and losses computed row by row."""
    torch.manual_seed(0)
    x = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = TrainConfig(optimizer="sgd", lr=0.5, epochs=3, batch_size=batch_size, weight_decay=0.0, n_checkpoints=1)
    model = build_model(ModelConfig(kind="logreg"), (4,), 3, seed=0)
    replica = copy.deepcopy(model)
    recorded = train_model(model, x, y, cfg, seed=7).dynamics

    margins, losses = np.zeros((3, 6)), np.zeros((3, 6))
    batch = batch_size if 0 < batch_size < 6 else 6
    for epoch, batches in enumerate(batch_orders(6, batch, 3, 7)):
        for rows in batches:
            rows = torch.arange(6) if rows is None else rows
            logits = replica(x[rows])
            for j, i in enumerate(rows.tolist()):
                row = logits[j].detach().tolist()
                others = [v for c, v in enumerate(row) if c != int(y[i])]
                margins[epoch, i] = row[int(y[i])] - max(others)
                losses[epoch, i] = np.log(np.sum(np.exp(row))) - row[int(y[i])]
            replica.zero_grad()
            torch.nn.functional.cross_entropy(logits, y[rows]).backward()
            with torch.no_grad():
                for p in replica.parameters():
                    p -= 0.5 * p.grad
    np.testing.assert_allclose(recorded.margins, margins, atol=1e-5)
    np.testing.assert_allclose(recorded.losses, losses, atol=1e-5)
    for a, b in zip(model.parameters(), replica.parameters()):  # recording did not change the training
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def _memorised_digits(seed: int = 0):
    config = RunConfig(
        data=DataConfig(name="digits", n_train=300, n_test=100),
        model=ModelConfig(kind="mlp", hidden=128, depth=1),
        train=TrainConfig(optimizer="adam", lr=0.01, epochs=150, batch_size=64, weight_decay=0.0, n_checkpoints=5),
        curvature=CurvatureConfig(kind="auto", damping=0.01),
        seed=seed,
    )
    ds = load_dataset(config.data, seed)
    return config, noise.with_noise(ds, noise.uniform_noise(ds.y_train, 0.1, ds.n_classes, seed))


@pytest.fixture(scope="module")
def memorised(one_torch_thread, tmp_path_factory):
    config, ds = _memorised_digits()
    trained = train(config, dataset=ds, use_cache=False)
    context = DetectionContext(trained, use_cache=False)
    return trained, context, detectors.detect(trained, ["loss", "aum", "oof_loss"], context=context)


def test_the_default_beats_the_loss_where_the_model_memorised_its_flips(memorised):
    trained, _, found = memorised
    ds = trained.dataset
    assert trained.metrics["train"]["accuracy"] == 1.0  # every flip fitted: the final loss cannot see them
    mask = ds.flipped
    default, loss = auroc(found.suspicion, mask), auroc(found.scores["loss"], mask)
    assert found.default == detectors.DEFAULT_DETECTOR
    assert default > loss + 0.02, (default, loss)
    # the explanation columns: each detector's rank and agreement are there for every row
    assert found.ranks().shape == (len(mask), len(found.scores))
    assert found.agreement().loc["oof_loss", "oof_loss"] == pytest.approx(1.0)


def test_a_flagged_row_is_explained_from_what_the_run_holds(memorised):
    trained, context, found = memorised
    ds = trained.dataset
    row = int(np.argmax(found.suspicion))
    rng = np.random.default_rng(0)
    influence = rng.normal(size=(len(ds.y_test), len(ds.y_train)))
    influence[[7, 3], row] = [50.0, 40.0]  # the two held-out rows it harms most, by construction
    started = time.perf_counter()
    why = explain_row(found, context, row, k=int(ds.flipped.sum()), influence_rows=influence)
    assert time.perf_counter() - started < 1.0  # on screen within a second of selecting it
    assert list(why.verdicts["detector"]) == list(found.scores) and why.verdicts.loc[0, "rank"] == 1
    assert why.harms["held-out row"].tolist()[:2] == [7, 3] and (why.harms["influence"] > 0).all()
    # the default's suggestion: its first component with a view of the label, a model that never saw the row
    assert why.suggested == int(context.computed("logistic_oof")[row].argmax())
    assert set(why.evidence["model"]) == {"final model", "out-of-fold model"}  # the out-of-fold loss ran in this run
    assert (ds.y_train[why.nearest_given] == why.given).all() and row not in why.nearest_given
    if why.suggested != why.given:
        assert (ds.y_train[why.nearest_suggested] == why.suggested).all() and len(why.nearest_suggested) == 5
    assert why.summary(ds.class_names, "r7").startswith("Row r7: ") and "detectors flag it" in why.summary(ds.class_names, "r7")


def test_the_default_gates_on_whether_the_model_fits_its_labels():
    """Memorised (≥ FITS_ITS_LABELS of the labels fitted): the mean rank of the memorised set; otherwise AUM alone;
    where the gate's set cannot run (no dynamics), the other set's detectors that can."""
    from influence_core.detectors.combined import FITS_ITS_LABELS, MEMORISED_COMPONENTS, UNFITTED_COMPONENTS, combine, components_for

    everything = ["loss", "aum", "loss_trajectory", "cleanlab_logreg", "oof_loss"]
    assert components_for(1.0, everything) == MEMORISED_COMPONENTS
    assert components_for(FITS_ITS_LABELS - 0.01, everything) == UNFITTED_COMPONENTS == ("aum",)
    assert components_for(0.8, ["cleanlab_logreg"]) == ("cleanlab_logreg",)  # a loaded model: no AUM to read
    rng = np.random.default_rng(0)
    scores = {name: rng.normal(size=50) for name in everything}
    assert np.array_equal(np.argsort(combine(scores, 0.8)), np.argsort(scores["aum"]))


def test_on_a_model_that_leaves_its_flips_unfitted_the_default_is_aum_and_says_why(one_torch_thread):
    """Strong weight decay keeps the MLP from fitting its flips: the default ranks by AUM, the detection says the
    model's training accuracy and why, and it still beats the final loss."""
    config, ds = _memorised_digits()
    config = config.replace(train=dataclasses.replace(config.train, weight_decay=0.05, epochs=30))
    trained = train(config, dataset=ds, use_cache=False)
    found = detectors.detect(trained, ["loss", "aum"], context=DetectionContext(trained, use_cache=False))
    assert trained.metrics["train"]["accuracy"] < 0.95
    assert found.components == ("aum",) and np.array_equal(found.suspicion.argsort(), found.scores["aum"].argsort())
    assert f"fits {trained.metrics['train']['accuracy']:.1%} of its training labels (< 95%)" in found.basis, found.basis
    assert auroc(found.suspicion, ds.flipped) > auroc(found.scores["loss"], ds.flipped)


class _Fake:
    """A run whose model the user brought: no dynamics, not retrainable."""

    def __init__(self, trained):
        self.config = trained.config.replace(model=ModelConfig(kind="file", file="m.pt", arch="mlp"))
        self.dataset, self.model, self.checkpoints = trained.dataset, trained.model, trained.checkpoints
        self.metrics, self.dynamics = {}, None


def test_a_loaded_model_gets_the_detectors_that_can_run_and_reasons_for_the_rest(one_torch_thread):
    config, ds = _memorised_digits()
    trained = train(config.replace(train=TrainConfig(optimizer="sgd", lr=0.1, epochs=3, batch_size=64)), dataset=ds, use_cache=False)
    context = DetectionContext(_Fake(trained))
    assert "trained elsewhere" in detectors.get("aum").unavailable_reason(context)
    assert "not retrained" in detectors.get("oof_loss").unavailable_reason(context)
    found = detectors.detect(context.trained, ["aum", "loss"], context=context)
    assert set(found.skipped) == {"aum"} and found.default == detectors.DEFAULT_DETECTOR
    assert "aum" not in found.components and "oof_loss" not in found.components and found.components
    assert detectors.estimate_seconds(context, ["combined"]) == 0.0  # nothing retrained
    # the gate wants AUM (3 epochs leave labels unfitted), which reads a training run this model never had: the basis
    # names what the ranking rests on instead of claiming the margins over training
    assert trained.metrics["train"]["accuracy"] < 0.95 and found.components == ("cleanlab_logreg",)
    assert "cannot run on this model" in found.basis and "margins over training rank best" not in found.basis, found.basis


def test_a_registered_detector_reaches_the_cli_with_no_other_edit(tmp_path, monkeypatch):
    class RowNumber(Detector):
        name = "row_number"
        label = "row number"
        description = "the row's position (a stand-in registered by the test)"

        def scores(self, progress=None):
            return np.arange(len(self.context.labels), dtype=float)

    monkeypatch.setitem(detectors.REGISTRY, RowNumber.name, RowNumber)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": (x[:, 0] > 0).astype(int)}).to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "s.csv"
    argv = ["scores", "--data", str(tmp_path / "t.csv"), "--label-column", "y", "--model", "logreg", "--quiet"]
    assert main([*argv, "--detector", "row_number", "--detectors", "row_number,loss", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert (table["suspicion_by"] == "row_number").all()
    np.testing.assert_array_equal(table["suspicion"], np.arange(60))
    assert {"score_row_number", "score_loss", "flagged_by", "suggested", "self_influence"} <= set(table.columns)


def test_label_bias_shows_the_detectors_side_by_side_and_explains_a_flagged_row(tmp_path, monkeypatch):
    """The detection view: every detector's line with its AUROC against the planted flips, the default marked, and a
    flagged row's explanation that follows the row picked."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INFLUENCE_LAB_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=240)
    at.run()
    at.switch_page("pages/label_bias.py")
    at.run()
    assert not at.exception, at.exception
    # the panel's expander computes its content only when open: closed, a slider move does not pay for it
    assert not any("detector" in d.value.columns for d in at.dataframe)
    at.session_state["label_bias_detectors_open"] = True
    at.run()
    side = next(d.value for d in at.dataframe if "detector" in d.value.columns)
    assert any(name.endswith("(default)") for name in side["detector"]) and "AUROC" in side.columns
    # the flags come from the page's score, not from the panel's ranking: the panel says so, and counts the planted
    # flips each holds (it read "Ranked by combined of AUM, ..." above flags its influence score had set)
    import re

    score = at.selectbox(key="label_bias_score").value
    assert any(m.value.startswith(f"The flags above come from the **{score}** score.") for m in at.markdown)
    planted = int(next(m.value for m in at.metric if m.label == "Flipped training labels").split(" / ")[0])
    flagged = int(next(m.value for m in at.metric if m.label == "Flagged samples"))
    counts = next(
        re.match(r"Of the (\d+) planted flips, the \w+ flags hold \*\*(\d+)\*\*; the top (\d+) of .* hold \*\*(\d+)\*\*", m.value)
        for m in at.markdown
        if m.value.startswith("Of the ")
    )
    n, by_score, k, by_detectors = map(int, counts.groups())
    assert n == planted and k == max(flagged, 1) and 0 <= by_score <= min(n, flagged) and 0 <= by_detectors <= min(n, k)
    assert side["AUROC"].notna().all() and len(side) >= 5
    picker = at.selectbox(key="label_bias_detectors_row")
    assert len(picker.options) >= 2

    def explained() -> str:
        return next(m.value for m in at.markdown if "detectors flag it" in m.value)

    assert explained().startswith(f"Row {picker.options[0].split(' ')[1]}:")
    picker.select_index(1).run()
    assert not at.exception, at.exception
    assert explained().startswith(f"Row {at.selectbox(key='label_bias_detectors_row').options[1].split(' ')[1]}:")
    # checked by retraining on request: the row removed (and relabelled where the evidence suggests another label)
    at.button(key="label_bias_detectors_check").click().run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "edit" in d.value.columns)
    assert table["edit"].iloc[0] == "remove" and "→" in table["held-out loss"].iloc[0]
    assert table["predicted Δ loss (kept rows)"].iloc[0] != "—"  # Label bias's influence is on the loss scale


def test_a_flagged_row_is_checked_by_retraining_the_same_run_without_it(memorised):
    """Remove the row (weight zeroed: the same initial weights and batches) and relabel it: the predicted change is
    −influence / n over the kept held-out rows, set beside the retrained change of the same rows; an unedited replay
    gives back the run's own model, so a change is the edit's, not training noise."""
    from influence_core.detectors.explain import check_row_edits, edit_checks_table, held_out_losses

    trained, context, found = memorised
    ds = trained.dataset
    row = int(np.argmax(found.suspicion))
    replay = train(trained.config, dataset=ds, use_cache=False, sample_weights=np.ones(len(ds.y_train)))
    np.testing.assert_array_equal(held_out_losses(replay.model, ds)[0], held_out_losses(trained.model, ds)[0])
    influence = np.random.default_rng(1).normal(size=(4, len(ds.y_train)))
    other = (int(ds.y_train[row]) + 1) % ds.n_classes
    checks = check_row_edits(context, row, other, influence, test_ids=np.array([0, 2, 4, 6]), on_loss_scale=True)
    assert [c.edit for c in checks] == ["remove", f"relabel to {other}"]
    removed = checks[0]
    assert removed.predicted_change == pytest.approx(np.mean(-influence[:, row] / len(ds.y_train)))
    without = train(trained.config, dataset=ds, use_cache=False, sample_weights=np.where(np.arange(len(ds.y_train)) == row, 0.0, 1.0))
    after, before = held_out_losses(without.model, ds)[0], held_out_losses(trained.model, ds)[0]
    assert removed.retrained_change == pytest.approx(np.mean(after[[0, 2, 4, 6]] - before[[0, 2, 4, 6]]))
    assert removed.loss_after == pytest.approx(after.mean()) and removed.loss_change != 0.0
    assert checks[1].predicted_change is None  # a relabel's effect is not predicted from the kept influence
    table = edit_checks_table(checks, ds.class_names)
    assert table["edit"].tolist() == ["remove", f"relabel to {ds.class_names[other]}"]
    not_on_scale = check_row_edits(context, row, None, influence, on_loss_scale=False)
    assert len(not_on_scale) == 1 and not_on_scale[0].predicted_change is None


def test_the_exact_self_influence_runs_only_where_named_and_refuses_what_it_cannot_afford(memorised, monkeypatch):
    """The metagradient's self-scores are a detector on request: absent from the default set and from 'untrained',
    run where named; past its row limit it is left out with the reason instead of failing the detection."""
    from influence_core.methods import exact_attribution

    trained, context, _ = memorised
    assert "metagradient_self" not in detectors.detector_names() and "metagradient_self" in detectors.detector_names(on_request=True)
    assert "metagradient_self" not in detectors.detect(trained, context=context).scores
    found = detectors.detect(trained, ["metagradient_self", "tracin"], context=context)
    exact = found.scores["metagradient_self"]
    assert np.isfinite(exact).all() and exact.std() > 0
    assert auroc(exact, trained.dataset.flipped) > 0.6, auroc(exact, trained.dataset.flipped)
    monkeypatch.setattr(exact_attribution, "MAX_SELF_ROWS", 100)
    skipped = detectors.detect(trained, ["metagradient_self"], context=DetectionContext(trained, use_cache=False))
    assert "metagradient_self" not in skipped.scores and "more than 100" in skipped.skipped["metagradient_self"]
