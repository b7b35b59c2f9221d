"""Your own trained model: loaded in the two safe forms with the same scores as in memory, refused clearly when
it does not fit, and never unpickling code."""

import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from influence_core.cli import main
from influence_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.errors import InputError
from influence_core.experiments import compute_influence, load_data, train


@pytest.fixture()
def own_csv(tmp_path):
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sample(150, random_state=0).reset_index(drop=True)
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


def _config(csv, model: ModelConfig) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="csv", path=str(csv), label_column="target", test_fraction=0.2, n_train=0, n_test=0),
        model=model,
        train=TrainConfig(optimizer="adam", lr=0.01, epochs=40, batch_size=64, weight_decay=1e-3),
        method="influence",
    )


def test_a_model_saved_in_both_forms_loads_back_with_the_scores_of_the_model_in_memory(own_csv, tmp_path):
    from safetensors.torch import save_file

    in_memory = _config(own_csv, ModelConfig(kind="mlp", hidden=8, depth=1)).replace(curvature__kind="exact")
    reference = compute_influence(in_memory, use_cache=False)
    trained = train(in_memory, use_cache=False)
    torch.save(trained.model.state_dict(), tmp_path / "model.pt")
    save_file({k: v.contiguous() for k, v in trained.model.state_dict().items()}, tmp_path / "model.safetensors")
    ds = load_data(in_memory)
    batch = ({0: torch.export.Dim("batch", min=1)},)
    program = torch.export.export(trained.model.cpu().eval(), (torch.from_numpy(ds.x_train[:2]),), dynamic_shapes=batch)
    torch.export.save(program, tmp_path / "model.pt2")
    for file, arch in ((tmp_path / "model.pt", "mlp"), (tmp_path / "model.safetensors", "mlp"), (tmp_path / "model.pt2", None)):
        own = in_memory.replace(model=ModelConfig(kind="file", file=str(file), arch=arch, hidden=8, depth=1))
        got = compute_influence(own, use_cache=False)
        np.testing.assert_allclose(got.self_scores, reference.self_scores, rtol=1e-4, atol=1e-7, err_msg=str(file))
        np.testing.assert_allclose(got.pairwise, reference.pairwise, rtol=1e-4, atol=1e-7, err_msg=str(file))
        assert got.metrics["own_model"]["parameters"] == sum(p.numel() for p in trained.model.parameters())


def test_weights_that_do_not_fit_the_architecture_name_the_first_mismatched_tensor(own_csv, tmp_path):
    from influence_core.models import MLP

    torch.save(MLP(30, 2, hidden=16, depth=1).state_dict(), tmp_path / "wide.pt")
    own = _config(own_csv, ModelConfig(kind="file", file=str(tmp_path / "wide.pt"), arch="mlp", hidden=8, depth=1))
    with pytest.raises(InputError, match=r"'body.0.weight' is \(16, 30\) in the file, \(8, 30\) in the model"):
        compute_influence(own, use_cache=False)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/influence_lab_pickle_ran",))


def test_a_pickle_that_carries_code_is_refused_without_running_it(own_csv, tmp_path):
    marker = "/tmp/influence_lab_pickle_ran"
    if os.path.exists(marker):
        os.remove(marker)
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"body.0.weight": _Payload()}, f)
    own = _config(own_csv, ModelConfig(kind="file", file=str(tmp_path / "evil.pt"), arch="mlp", hidden=8, depth=1))
    with pytest.raises(InputError, match="evil.pt: it is not a weights file that torch.save wrote .*never loaded: it could run code"):
        compute_influence(own, use_cache=False)
    assert not os.path.exists(marker)


def test_a_model_whose_input_does_not_fit_the_data_is_refused_before_any_work(own_csv, tmp_path, monkeypatch):
    from influence_core import methods
    from influence_core.models import MLP

    model = MLP(12, 2, hidden=8, depth=1).eval()
    batch = ({0: torch.export.Dim("batch", min=1)},)
    torch.export.save(torch.export.export(model, (torch.zeros(2, 12),), dynamic_shapes=batch), tmp_path / "twelve.pt2")
    monkeypatch.setattr(methods, "fit_attributor", lambda *a, **k: pytest.fail("scored a model that does not fit"))
    own = _config(own_csv, ModelConfig(kind="file", file=str(tmp_path / "twelve.pt2")))
    with pytest.raises(InputError, match=r"does not take this data's input of shape \(30,\)"):
        compute_influence(own, use_cache=False)


def test_the_cli_scores_your_model_and_refuses_to_retrain_it(own_csv, tmp_path, capsys):
    config = _config(own_csv, ModelConfig(kind="mlp", hidden=32, depth=2))
    mine = train(config, use_cache=False).model
    torch.save(mine.state_dict(), tmp_path / "mine.pt")
    assert (
        main(
            [
                "scores",
                "--data",
                str(own_csv),
                "--label-column",
                "target",
                "--model-file",
                str(tmp_path / "mine.pt"),
                "--arch",
                "mlp",
                "--out",
                str(tmp_path / "s.csv"),
                "--quiet",
                "--test-fraction",
                "0.2",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(tmp_path / "s.csv")) == 120
    said = capsys.readouterr().err
    assert f"your model: parameters {sum(p.numel() for p in mine.parameters())}, input shape (30,), classes 2" in said, said
    assert (
        main(
            [
                "scores",
                "--data",
                str(own_csv),
                "--label-column",
                "target",
                "--model-file",
                str(tmp_path / "mine.pt"),
                "--out",
                str(tmp_path / "mine.pt"),
                "--quiet",
            ]
        )
        == 2
    )  # never over an input
    assert (
        main(
            [
                "lds",
                "--data",
                str(own_csv),
                "--label-column",
                "target",
                "--model-file",
                str(tmp_path / "mine.pt"),
                "--arch",
                "mlp",
                "--subsets",
                "3",
                "--out",
                str(tmp_path / "l.csv"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "not retrained here" in capsys.readouterr().err


def test_lds_of_your_model_with_retraining_allowed_equals_the_same_model_trained_here(own_csv, tmp_path, capsys):
    """`lds --model-file --retrain`: your weights are scored as they are and the subsets retrain the architecture
    with the training `--model mlp` gets; a model trained by that very recipe then has exactly that LDS."""
    common = ["--data", str(own_csv), "--label-column", "target", "--methods", "influence,ip", "--subsets", "4", "--quiet"]
    common += ["--test-fraction", "0.2", "--curvature", "exact", "--hidden", "8", "--depth", "1", "--no-cache"]
    assert main(["lds", *common, "--model", "mlp", "--out", str(tmp_path / "zoo.csv")]) == 0
    from influence_core.cli import _parser, build_config

    zoo_config = build_config(_parser().parse_args(["lds", *common, "--model", "mlp", "--out", "x.csv"]))
    torch.save(train(zoo_config, use_cache=False).model.state_dict(), tmp_path / "mine.pt")  # trained as the CLI trains
    capsys.readouterr()
    mine = ["--model-file", str(tmp_path / "mine.pt"), "--arch", "mlp", "--retrain", "--out", str(tmp_path / "mine.csv")]
    assert main(["lds", *common, *mine]) == 0
    assert "the subsets retrain mlp from scratch" in capsys.readouterr().out
    zoo, yours = pd.read_csv(tmp_path / "zoo.csv"), pd.read_csv(tmp_path / "mine.csv")
    np.testing.assert_allclose(yours["lds"], zoo["lds"], rtol=1e-6, atol=1e-9)
    assert zoo["lds"].notna().all()
    # a program has no architecture to retrain: refused, saying so
    with pytest.raises(InputError, match="a .pt2 program has no architecture to retrain"):
        from influence_core.lds import retraining_config

        retraining_config(zoo_config.replace(model=ModelConfig(kind="file", file="m.pt2")))


def test_weights_that_fit_no_classifier_are_refused_at_once_after_the_first_time(monkeypatch):
    """Telling which architecture a file holds compares it with every torchvision classifier, each built on the meta
    device: a junk file's refusal took 18 s, every time (issue 34). The shapes are kept per torchvision version, in
    the process and in the results cache, so the next refusal (and the next process's) builds nothing."""
    from influence_core import model_files as mf

    junk = {"a.weight": torch.zeros(3, 4), "b.bias": torch.zeros(3)}
    builds = []
    build = mf._build_skeleton
    monkeypatch.setattr(mf, "_build_skeleton", lambda arch: builds.append(arch.name) or build(arch))
    monkeypatch.setattr(mf, "_SKELETONS", {})
    assert mf.identify(junk) is None
    built = len(builds)
    assert built >= 40 and mf._skeleton_file().exists()
    assert mf.identify(junk) is None and len(builds) == built
    monkeypatch.setattr(mf, "_SKELETONS", {})  # a new process: the shapes come from the cache folder
    assert mf.identify(junk) is None and len(builds) == built
    # and they still tell a real file's architecture, with the class count it was saved with
    import torchvision

    assert mf.identify(torchvision.models.resnet18(num_classes=3).state_dict()).name == "resnet18" and len(builds) == built
