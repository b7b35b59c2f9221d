"""A torchvision classifier's own weights load by its name (issue 34, item 8): ``--arch resnet18`` means the zoo's
wrapped ResNet18 only where the file's tensors fit it (``body.conv1.weight``, ``head.weight``) and torchvision's
resnet18 (``conv1.weight``, ``fc.weight``) otherwise; ``zoo:`` / ``torchvision:`` pin one; a file that fits neither
is refused naming the architecture it does hold. Small images (3 × 32 × 32), CPU only."""

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from influence_core.cli import main
from influence_core.errors import InputError
from influence_core.model_files import load_user_model, own_model_config
from influence_core.models import head_module
from influence_core.models import resnet18 as zoo_resnet18

SHAPE = (3, 32, 32)


@pytest.fixture()
def rgb_folder(tmp_path):
    """Three classes of four 32 × 32 RGB images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["ant", "bee", "cat"]):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(4):
            pixels = (rng.random((32, 32, 3)) * 100 + 60 * k).astype(np.uint8)
            Image.fromarray(pixels, mode="RGB").save(tmp_path / "images" / name / f"{i}.png")
    return tmp_path / "images"


def _torchvision_resnet18(path, classes: int = 3) -> torch.nn.Module:
    """``torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)``: what a user brings."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=classes).eval()
    torch.save(net.state_dict(), path)
    return net


def _zoo_resnet18(path) -> torch.nn.Module:
    torch.manual_seed(0)
    net = zoo_resnet18(3, 3).eval()
    torch.save(net.state_dict(), path)
    return net


def test_the_cli_scores_torchvision_resnet18_weights_named_resnet18(rgb_folder, tmp_path, capsys):
    _torchvision_resnet18(tmp_path / "r18.pt")
    common = ["scores", "--data", str(rgb_folder), "--channels", "3", "--image-size", "32", "--model-file", str(tmp_path / "r18.pt")]
    common += ["--curvature", "last_layer", "--test-fraction", "0", "--quiet"]
    assert main([*common, "--arch", "resnet18", "--out", str(tmp_path / "s.csv")]) == 0, capsys.readouterr().err
    said = capsys.readouterr().err
    assert "architecture torchvision:resnet18" in said and "last layer fc.weight, fc.bias" in said, said
    scores = pd.read_csv(tmp_path / "s.csv")
    assert len(scores) == 12 and np.isfinite(scores["suspicion"]).all()
    # pinned to the zoo, the same file is refused before any work, with the fix
    assert main([*common, "--arch", "zoo:resnet18", "--out", str(tmp_path / "zoo.csv")]) == 2
    said = capsys.readouterr().err
    assert "this file holds torchvision's resnet18 weights: use --arch torchvision:resnet18" in said, said
    assert not (tmp_path / "zoo.csv").exists()


@pytest.mark.parametrize("arch", ["resnet18", "torchvision:resnet18"])
def test_torchvision_resnet18_weights_load_as_torchvision_resnet18(tmp_path, arch):
    net = _torchvision_resnet18(tmp_path / "r18.pt")
    own = load_user_model(str(tmp_path / "r18.pt"), arch, SHAPE, 3)
    assert isinstance(own.model, torchvision.models.ResNet)
    assert own.description["architecture"] == "torchvision:resnet18"
    assert head_module(own.model)[0] == "fc"  # last-layer influence is taken over torchvision's classifier
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(own.model(x), net(x))


@pytest.mark.parametrize("arch", ["resnet18", "zoo:resnet18"])
def test_the_zoo_resnet18_file_still_loads_as_the_zoo(tmp_path, arch):
    net = _zoo_resnet18(tmp_path / "zoo.pt")
    own = load_user_model(str(tmp_path / "zoo.pt"), arch, SHAPE, 3)
    assert own.description["architecture"] == "zoo:resnet18"
    assert head_module(own.model)[0] == "head"
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(own.model(x), net(x))


@pytest.mark.parametrize(
    "arch, holds, fix",
    [
        ("zoo:resnet18", "torchvision", "this file holds torchvision's resnet18 weights: use --arch torchvision:resnet18"),
        ("torchvision:resnet18", "zoo", "this file holds the zoo's resnet18 weights: use --arch zoo:resnet18"),
        ("resnet34", "torchvision", "this file holds torchvision's resnet18 weights: use --arch torchvision:resnet18"),
    ],
)
def test_a_file_of_another_architecture_is_refused_naming_the_fix(tmp_path, arch, holds, fix):
    (_torchvision_resnet18 if holds == "torchvision" else _zoo_resnet18)(tmp_path / "w.pt")
    with pytest.raises(InputError, match="does not fit this architecture") as refused:
        load_user_model(str(tmp_path / "w.pt"), arch, SHAPE, 3)
    assert fix in str(refused.value)


def test_any_torchvision_classifier_is_reachable_and_built_for_the_files_class_count(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "mobile.pt")
    own = load_user_model(str(tmp_path / "mobile.pt"), "mobilenet_v3_small", SHAPE, 3)
    assert own.description["architecture"] == "torchvision:mobilenet_v3_small"
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(own.model(x), net(x))
    # a 10-class file on 3-class data: built for its 10 classes (no tensor mismatch), then refused for the data's 3
    _torchvision_resnet18(tmp_path / "ten.pt", classes=10)
    with pytest.raises(InputError, match=r"torchvision's resnet18 with ten.pt gives outputs of shape \(10,\) per sample; this data has 3"):
        load_user_model(str(tmp_path / "ten.pt"), "resnet18", SHAPE, 3)


def test_architecture_names_are_checked_when_the_model_is_named(tmp_path):
    weights = str(tmp_path / "w.pt")
    (tmp_path / "w.pt").write_bytes(b"")  # named, not loaded: the names are checked before the weights
    assert own_model_config(weights, "zoo:mlp").arch == "mlp"  # one model, one cache key
    assert own_model_config(weights, "torchvision:resnet18").arch == "torchvision:resnet18"
    assert own_model_config(weights, "resnet18").arch == "resnet18"
    with pytest.raises(InputError, match="the zoo has no architecture 'vgg11': torchvision has, use torchvision:vgg11"):
        own_model_config(weights, "zoo:vgg11")
    with pytest.raises(InputError, match="the prefix is zoo: or torchvision:"):
        own_model_config(weights, "tv:resnet18")
    with pytest.raises(InputError, match="unknown architecture 'fasterrcnn_resnet50_fpn'"):  # a detector: not a classifier
        own_model_config(weights, "fasterrcnn_resnet50_fpn")


@pytest.mark.parametrize(
    "holds, arch, retrains",
    [
        ("zoo", "resnet18", "resnet18"),
        ("zoo", "zoo:resnet18", "resnet18"),
        ("torchvision", "resnet18", None),
        ("torchvision", "torchvision:resnet18", None),
    ],
)
def test_lds_retrains_the_zoo_architecture_the_weights_are_and_refuses_torchvision_ones(tmp_path, holds, arch, retrains):
    """`lds --retrain` on your ResNet18: the zoo's layout (named bare or zoo:) retrains the zoo's ResNet18 (it was
    refused as 'a torchvision name'); torchvision's own weights are refused, saying why."""
    from influence_core.config import DataConfig, RunConfig
    from influence_core.lds import retraining_config
    from influence_core.model_files import own_model_config

    (_torchvision_resnet18 if holds == "torchvision" else _zoo_resnet18)(tmp_path / "w.pt")
    config = RunConfig(data=DataConfig(name="digits"), model=own_model_config(str(tmp_path / "w.pt"), arch))
    if retrains is None:
        with pytest.raises(InputError, match="is a torchvision architecture"):
            retraining_config(config)
    else:
        assert retraining_config(config).model.kind == retrains
