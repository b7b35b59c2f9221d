"""Your own trained model in the views (issue 19): Label bias and Glitch signals score a model the user brings, with the
scores of the same model trained here, refuse what would need retraining it, and show what was loaded."""

from pathlib import Path

import numpy as np
import pytest
import torch

from influence_core import experiments
from influence_core import label_bias as lb
from influence_core.errors import InputError
from influence_core.model_files import own_model_config
from influence_core.signals import GlitchConfig, detect_glitches, signal_run_config

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _saved(model: torch.nn.Module, path: Path) -> str:
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return str(path)


def _label_bias_config(csv: Path, **kwargs):
    return lb.preset_config("csv", path=str(csv), label_column="animal", id_column="name", curvature="diag", **kwargs)


def test_label_bias_scores_your_model_as_it_scores_the_same_model_trained_here(animals, tmp_path):
    csv, _ = animals
    trained_here = lb.run_label_bias(_label_bias_config(csv, model="mlp"), use_cache=False)
    weights = _saved(trained_here.model, tmp_path / "mine.pt")
    yours = lb.run_label_bias(_label_bias_config(csv, own_model=own_model_config(weights, "mlp", 32, 2)), use_cache=False)
    assert yours.config.model.kind == "file" and yours.metrics["train_seconds"] == 0.0
    for name in ("paper", "self", "heldout", "train_loss"):
        np.testing.assert_allclose(yours.scores[name], trained_here.scores[name], rtol=1e-4, atol=1e-8, err_msg=name)
    assert yours.metrics["own_model"]["parameters"] == sum(p.numel() for p in trained_here.model.parameters())
    # what would retrain it is refused, saying why: the fix, and cleanlab's folds
    with pytest.raises(InputError, match="not retrained here"):
        lb.retrain_after_fix(yours, yours.scores["self"] >= np.quantile(yours.scores["self"], 0.95), "remove")


def test_glitch_signals_rank_your_data_under_your_model_as_under_the_same_model_trained_here(animals, tmp_path):
    csv, wrong_ids = animals
    settings = dict(path=str(csv), label_column="animal", id_column="name", method="ip")
    as_is = GlitchConfig(kind="none", cleanlab_folds=0)
    here = signal_run_config("csv", "mlp", glitch=as_is, **settings)
    trained_here = detect_glitches(here, use_cache=False)
    weights = _saved(experiments.train(here).model, tmp_path / "mine.pt")
    yours = detect_glitches(
        signal_run_config("csv", glitch=as_is, own_model=own_model_config(weights, "mlp", 128, 1), **settings), use_cache=False
    )
    for name, scores in trained_here.signals.scores.items():
        np.testing.assert_allclose(yours.signals.scores[name], scores, rtol=1e-4, atol=1e-7, err_msg=name)
    ranked = yours.dataset.ids_train[np.argsort(-yours.signals.scores["CFRank"], kind="stable")[:20]]
    assert len(set(ranked) & wrong_ids) >= 8


def test_what_needs_retraining_or_cannot_be_loaded_is_refused_before_any_work(animals, tmp_path):
    csv, _ = animals
    weights = str(tmp_path / "mine.safetensors")
    with pytest.raises(InputError, match="no file at .*mine.safetensors: check the path"):
        own_model_config(weights, "mlp")
    for name in ("mine.safetensors", "mine.onnx", "mine.pt2"):  # refused for their form, not for being missing
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match="no file at .*old.pt"):
        own_model_config(weights, "mlp", checkpoint_files=[str(tmp_path / "old.pt")])
    with pytest.raises(InputError, match="name their architecture"):
        own_model_config(weights)
    with pytest.raises(InputError, match=r"\.pt2"):
        own_model_config(str(tmp_path / "mine.onnx"), "mlp")
    with pytest.raises(InputError, match="not a .pt2 program"):
        own_model_config(str(tmp_path / "mine.pt2"), checkpoint_files=[weights])
    mine = own_model_config(weights, "mlp")
    with pytest.raises(InputError, match="flipped share to 0"):
        _label_bias_config(csv, own_model=mine, noise_fraction=0.2)
    with pytest.raises(InputError, match="your model goes with your data"):
        lb.preset_config("digits", own_model=mine)
    settings = dict(path=str(csv), label_column="animal", own_model=mine)
    with pytest.raises(InputError, match="injected glitches"):
        signal_run_config("csv", glitch=GlitchConfig(kind="mislabel", cleanlab_folds=0), **settings)
    with pytest.raises(InputError, match="cleanlab"):
        signal_run_config("csv", glitch=GlitchConfig(kind="none", cleanlab_folds=2), **settings)


def _page(name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page(f"pages/{name}.py").run()
    return at


def test_the_label_bias_page_flags_your_data_under_your_model(animals, tmp_path):
    csv, wrong_ids = animals
    here = _label_bias_config(csv, model="mlp")
    weights = _saved(experiments.train(here).model, tmp_path / "mine.pt")
    at = _page("label_bias")
    at.selectbox(key="label_bias_dataset").set_value("csv").run()
    at.text_input(key="label_bias_csv_path").set_value(str(csv)).run()
    at.selectbox(key="label_bias_model_csv").set_value("file").run()
    assert not at.exception and any("Name your trained model" in i.value for i in at.info)
    at.text_input(key="label_bias_model_file").set_value(weights).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.slider(key="label_bias_own_fraction").disabled
    assert any(e.label.startswith("Your model, as loaded") for e in at.expander)
    assert at.button(key="label_bias_cleanlab").disabled
    assert any("not retrained here" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == "label_bias_retrain"]
    flagged = next(d.value for d in at.dataframe if "suggested label" in d.value.columns)
    assert len(flagged) >= 1 and set(flagged["id"].head(10)) & wrong_ids
    # the same weights named as another width: the first mismatched tensor is named, nothing is computed
    at.number_input(key="label_bias_model_hidden").set_value(16).run()
    assert not at.exception and at.error and "does not fit this architecture" in at.error[0].value


def test_the_glitch_page_ranks_your_data_under_your_model(animals, tmp_path):
    csv, wrong_ids = animals
    here = signal_run_config(
        "csv", "mlp", path=str(csv), label_column="animal", id_column="name", glitch=GlitchConfig(kind="none", cleanlab_folds=0)
    )
    weights = _saved(experiments.train(here).model, tmp_path / "mine.pt")
    at = _page("glitch_signals")
    at.selectbox(key="glitch_dataset").set_value("csv").run()
    at.text_input(key="glitch_csv_path").set_value(str(csv)).run()
    at.selectbox(key="glitch_model_True_own").set_value("file").run()
    at.text_input(key="glitch_model_file").set_value(weights).run()
    at.number_input(key="glitch_model_hidden").set_value(128).run()
    at.number_input(key="glitch_model_depth").set_value(1).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    kind = at.selectbox(key="glitch_kind_own_yours")
    assert kind.value == "none" and len(kind.options) == 1
    assert at.selectbox(key="glitch_folds_yours").value == 0
    assert at.selectbox(key="glitch_method_yours").value == "ip"  # TracIn's product at the one set of weights given
    assert any(e.label.startswith("Your model, as loaded") for e in at.expander)
    flagged = next(d.value for d in at.dataframe if "suggested label" in d.value.columns)
    assert len(set(flagged["id"].head(20)) & wrong_ids) >= 8
    assert any("not retrained here" in i.value for i in at.info) and not [b for b in at.button if b.key == "glitch_repair"]
    # TracIn needs checkpoints, which a single weights file does not give: said, not a traceback
    at.selectbox(key="glitch_method_yours").set_value("tracin").run()
    assert not at.exception and at.error and "checkpoints" in at.error[0].value


def test_the_explorer_scores_your_model_of_its_toy_data_as_the_same_model_trained_here(tmp_path):
    from influence_core.config import explorer_config
    from influence_core.experiments import compute_influence
    from influence_core.metrics import detection_summary

    here = explorer_config()  # the landing view's: a tanh MLP of width 16 on single_flip
    trained_here = compute_influence(here)
    weights = _saved(trained_here.model, tmp_path / "toy.pt")
    at = _page("explorer")
    at.selectbox(key="explorer_model").set_value("file").run()
    assert not at.exception and any("Name your trained model" in i.value for i in at.info)
    # a mistyped path: a message that says what to fix, no traceback (the result cache used to read the file first)
    at.text_input(key="explorer_model_file").set_value(str(tmp_path / "tyop.pt")).run()
    assert not at.exception, at.exception
    assert any("no file at" in e.value and "tyop.pt" in e.value for e in at.error), [e.value for e in at.error]
    at.text_input(key="explorer_model_file").set_value(weights).run()
    at.number_input(key="explorer_model_hidden").set_value(16).run()
    at.number_input(key="explorer_model_depth").set_value(1).run()
    at.selectbox(key="explorer_model_activation").set_value("tanh").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    auroc = detection_summary(trained_here.self_scores, trained_here.dataset.flipped)["auroc"]
    assert metrics["Flip AUROC"] == f"{auroc:.3f}"
    assert metrics["Test accuracy"] == f"{trained_here.metrics['test']['accuracy']:.1%}"
    assert any(e.label.startswith("Your model, as loaded") for e in at.expander)
    assert any("without its training checkpoints" in i.value for i in at.info)
    # the exported table carries the coordinates, so a model of your own can be trained on exactly these points
    table = next(d.value for d in at.dataframe if "label used" in d.value.columns)
    assert {"x1", "x2"} <= set(table.columns)
    # a ReLU forward over tanh weights would score another model: the activation is part of what is loaded
    at.selectbox(key="explorer_model_activation").set_value("relu").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Test accuracy"] != metrics["Test accuracy"] or (
        {m.label: m.value for m in at.metric}["Flip AUROC"] != metrics["Flip AUROC"]
    )


def test_the_page_feeds_your_model_its_inputs_as_it_was_trained_on_them(animals, tmp_path):
    """A model trained on raw features in another column order: scored right once the page is told so, and
    a wrong column name is refused before any work."""
    from influence_core.data.preprocessing import input_settings

    csv, _ = animals
    raw_reordered = input_settings("csv", "d, c, b, a", None, "0", "1")
    assert raw_reordered == {"feature_columns": ("d", "c", "b", "a"), "channels": None, "mean": (0.0,), "std": (1.0,)}
    here = lb.run_label_bias(_label_bias_config(csv, model="mlp", inputs=raw_reordered), use_cache=False)
    weights = _saved(here.model, tmp_path / "raw.pt")
    at = _page("label_bias")
    at.selectbox(key="label_bias_dataset").set_value("csv").run()
    at.text_input(key="label_bias_csv_path").set_value(str(csv)).run()
    at.selectbox(key="label_bias_model_csv").set_value("file").run()
    at.text_input(key="label_bias_model_file").set_value(weights).run()
    at.selectbox(key="label_bias_curvature_file").set_value("diag").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    accuracy = "Held-out accuracy"
    as_standardised = {m.label: m.value for m in at.metric}
    at.text_input(key="label_bias_model_columns").set_value("d, c, b, a").run()
    at.text_input(key="label_bias_model_mean").set_value("0").run()
    at.text_input(key="label_bias_model_std").set_value("1").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    as_trained = {m.label: m.value for m in at.metric}
    assert as_trained[accuracy] == f"{here.metrics['noisy']['test']['accuracy']:.1%}"
    shown = [r for r, _ in at.session_state["_results"].values() if isinstance(r, lb.LabelBiasResult)]
    scored = next(r for r in shown if r.config.data.std == (1.0,) and r.config.data.feature_columns)  # once told all
    for name in ("paper", "self", "train_loss"):
        np.testing.assert_allclose(scored.scores[name], here.scores[name], rtol=1e-4, atol=1e-8, err_msg=name)
    assert as_standardised != as_trained
    at.text_input(key="label_bias_model_columns").set_value("d, c, b, e").run()
    assert not at.exception and at.error and "'e'" in at.error[0].value
