"""Preprocessing that matches a model trained elsewhere (issue 19): feature order, channels, mean / std."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from influence_core.cli import main
from influence_core.data.image_folder import load_image_folder
from influence_core.data.tabular import load_csv
from influence_core.errors import InputError


@pytest.fixture()
def table(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(5, 2, 60), "b": rng.normal(-3, 1, 60), "c": rng.normal(0, 9, 60), "y": np.arange(60) % 2})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return path, frame


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "imgs"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for k in range(6):
            Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(root / label / f"{k}.png")
    return root


def test_feature_columns_set_the_models_order_and_a_given_mean_std_replaces_the_standardisation(table):
    path, frame = table
    ds = load_csv(path, "y", test_fraction=0.0, feature_columns=["c", "a"], mean=[1.0, 5.0], std=[2.0, 4.0])
    assert ds.feature_names == ["c", "a"]
    by_id = frame.set_index(frame.index)
    rows = by_id.loc[np.asarray(ds.ids_train, dtype=int)]
    np.testing.assert_allclose(ds.x_train[:, 0], (rows["c"] - 1.0) / 2.0)
    np.testing.assert_allclose(ds.x_train[:, 1], (rows["a"] - 5.0) / 4.0)
    raw = load_csv(path, "y", test_fraction=0.0, mean=[0.0], std=[1.0])  # one number for every feature: the raw values
    np.testing.assert_allclose(raw.x_train, frame.loc[np.asarray(raw.ids_train, dtype=int), ["a", "b", "c"]].to_numpy())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"feature_columns": ["a", "zz"]}, "'zz' not in t.csv"),
        ({"feature_columns": ["a", "y"]}, "label or id column"),
        ({"feature_columns": ["a", "a"]}, "named more than once"),
        ({"mean": [0.0, 1.0], "std": [1.0, 1.0]}, "the mean has 2 numbers; this data has 3 feature columns"),
        ({"mean": [0.0]}, "both a mean and a std"),
        ({"mean": [0.0], "std": [0.0]}, "above 0"),
    ],
)
def test_preprocessing_that_makes_no_sense_is_refused_with_what_to_fix(table, kwargs, message):
    with pytest.raises(InputError, match=message):
        load_csv(table[0], "y", **kwargs)


def test_images_keep_three_channels_and_are_normalised_per_channel(images):
    plain = load_image_folder(images, image_size=8, grayscale=False, test_fraction=0.0)
    assert plain.x_train.shape[1:] == (3, 8, 8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    normed = load_image_folder(images, image_size=8, grayscale=False, test_fraction=0.0, mean=mean, std=std)
    for c in range(3):
        np.testing.assert_allclose(normed.x_train[:, c], (plain.x_train[:, c] - mean[c]) / std[c], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="the mean has 2 numbers; this data has 3 channels"):
        load_image_folder(images, image_size=8, grayscale=False, mean=(0.5, 0.5), std=(1.0,))


def test_the_cli_takes_the_models_preprocessing_and_refuses_a_channel_mismatch_before_any_work(images, tmp_path, capsys):
    from influence_core.models import SmallCNN

    rgb = SmallCNN(3, 2, 8)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pt")
    common = [
        "scores",
        "--data",
        str(images),
        "--image-size",
        "8",
        "--model-file",
        str(tmp_path / "rgb.pt"),
        "--arch",
        "cnn",
        "--curvature",
        "last_layer",
        "--quiet",
    ]
    out = tmp_path / "s.csv"
    assert main([*common, "--channels", "3", "--mean", "0.5", "--std", "0.25", "--out", str(out), "--test-fraction", "0"]) == 0
    assert len(pd.read_csv(out)) == 12
    assert main([*common, "--out", str(tmp_path / "gray.csv")]) != 0  # 1 channel by default: the RGB model does not fit
    said = capsys.readouterr().err
    assert "does not fit this architecture" in said or "does not take this data's input" in said, said
    assert not (tmp_path / "gray.csv").exists()
