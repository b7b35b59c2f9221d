"""Bad input, from the command line and the loaders: a clear message that says what to fix, never a
traceback, never an input overwritten, and a property test that random CSV text gives a clean
:class:`InputError` or a valid dataset and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influence_core import cache
from influence_core.cli import main
from influence_core.config import DataConfig
from influence_core.data.base import Dataset
from influence_core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _csv(path: Path, n: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "target": (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)}).to_csv(
        path, index=False
    )
    return path


def _image_folder(root: Path, per_class: int = 4, broken: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((8, 8)) * 100 + 120 * k).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / name / f"{i}.png")
    for i in range(broken):
        (root / "cat" / f"broken{i}.png").write_bytes(b"not a png")
    return root


def _no_cache_written() -> bool:
    root = cache.cache_root()
    return not root.exists() or not any(p.is_file() for p in root.rglob("*"))


# ------------------------------------------------------------------------ the output path (item 1)


@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link"])
def test_out_naming_the_input_is_refused_and_the_input_kept(tmp_path, monkeypatch, capsys, how):
    data = _csv(tmp_path / "v.csv")
    before = data.read_bytes()
    monkeypatch.chdir(tmp_path)
    out = {"same path": str(data), "relative path": "./sub/../v.csv"}.get(how)
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        (tmp_path / "link.csv").symlink_to(data)
        out = "link.csv"
    elif how == "hard link":
        os.link(data, tmp_path / "hard.csv")
        out = str(tmp_path / "hard.csv")
    code = main(["check", "--data", str(data), "--label-column", "target", "--out", out, "--quiet", "--removals", "3"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "overwrite" in err and "--out" in err, err
    assert data.read_bytes() == before, "the input CSV was overwritten"
    assert _no_cache_written(), "refused only after computing"


def test_out_inside_an_input_image_folder_is_refused(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs")
    code = main(["scores", "--data", str(folder), "--out", str(folder / "cat" / "scores.csv"), "--quiet", "--model", "logreg"])
    assert code == 2 and "inside the input folder" in capsys.readouterr().err
    assert not (folder / "cat" / "scores.csv").exists()


@pytest.mark.parametrize("case", ["folder", "under a file"])
def test_an_output_that_cannot_be_written_is_refused_before_training(tmp_path, capsys, case):
    data = _csv(tmp_path / "d.csv", n=40)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = {"folder": tmp_path, "under a file": blocker / "out" / "scores.csv"}[case]
    code = main(["scores", "--data", str(data), "--label-column", "target", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert ("is a folder" in err) if case == "folder" else ("is a file, not a folder" in err), err
    assert _no_cache_written(), "the output was checked only after training"


def test_an_output_in_a_new_folder_is_written(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", n=40)
    out = tmp_path / "new" / "deeper" / "scores.csv"
    assert main(["scores", "--data", str(data), "--label-column", "target", "--out", str(out), "--quiet", "--epochs", "5"]) == 0
    assert len(pd.read_csv(out)) == 40


# ------------------------------------------------------------------------ what the terminal shows (item 10)


def test_cli_prints_only_the_projects_messages(tmp_path):
    folder = _image_folder(tmp_path / "imgs", per_class=4, broken=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INFLUENCE_LAB_CACHE": str(tmp_path / "cache")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "influence_core",
            "scores",
            "--data",
            str(folder),
            "--model",
            "logreg",
            "--epochs",
            "3",
            "--image-size",
            "8",
            "--out",
            str(tmp_path / "o.csv"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert "FutureWarning" not in run.stderr and "jit" not in run.stderr, run.stderr
    skipped = [line for line in lines if "skipped 1 image file" in line]
    assert skipped and skipped[0].startswith("warning: "), run.stderr
    assert not any("warnings.warn" in line or line.startswith("  ") for line in lines), f"a Python source line:\n{run.stderr}"
    assert lines[-1].startswith("wrote 8 rows"), run.stderr


# ------------------------------------------------------------------------ CSV contents (items 5, 8)


def test_a_continuous_label_column_is_refused(tmp_path):
    from influence_core.data.tabular import load_csv

    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200), "price": rng.normal(size=200)}).to_csv(
        tmp_path / "r.csv", index=False
    )
    with pytest.raises(InputError, match=r"one row") as info:
        load_csv(tmp_path / "r.csv", "price")
    assert "200 classes" in str(info.value) and "price" in str(info.value)


def test_many_classes_with_enough_rows_each_are_fine(tmp_path):
    from influence_core.data.tabular import load_csv

    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=120), "label": np.repeat(np.arange(30), 4)}).to_csv(tmp_path / "k.csv", index=False)
    assert load_csv(tmp_path / "k.csv", "label").n_classes == 30


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_csv_with_another_separator_is_read_by_its_columns(tmp_path, sep):
    from influence_core.data.tabular import csv_classes, csv_columns, load_csv

    frame = pd.read_csv(_csv(tmp_path / "comma.csv", n=40))
    frame.to_csv(tmp_path / "other.csv", sep=sep, index=False)
    assert csv_columns(tmp_path / "other.csv") == ["a", "b", "c", "target"]
    assert csv_classes(tmp_path / "other.csv", "target") == (["0", "1"], 40)
    ds = load_csv(tmp_path / "other.csv", "target")
    reference = load_csv(tmp_path / "comma.csv", "target")
    np.testing.assert_array_equal(ds.x_train, reference.x_train)


def test_a_one_column_csv_names_the_separator_in_its_message(tmp_path):
    from influence_core.data.tabular import load_csv

    (tmp_path / "one.csv").write_text("a b label\n1 2 0\n3 4 1\n5 6 0\n7 8 1\n")
    with pytest.raises(InputError, match="separat"):
        load_csv(tmp_path / "one.csv", "label")


# ------------------------------------------------------------------------ image size (item 6)


@pytest.mark.parametrize("size", [0, 2, 100_000, -3])
def test_an_image_size_out_of_bounds_is_refused_with_its_bounds(tmp_path, size):
    from influence_core.data.image_folder import load_image_folder
    from influence_core.data.registry import load_dataset, peek_own_data

    folder = _image_folder(tmp_path / "imgs")
    with pytest.raises(InputError, match=r"4.*512"):
        load_image_folder(folder, image_size=size)
    cfg = DataConfig(name="image_folder", path=str(folder), image_size=size, n_train=0, n_test=0)
    with pytest.raises(InputError, match=r"4.*512"):
        load_dataset(cfg, seed=0)  # 0 must not silently become 28
    with pytest.raises(InputError, match=r"4.*512"):
        peek_own_data(cfg)  # before any training


def test_cli_refuses_a_huge_image_size_before_decoding(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs")
    code = main(["scores", "--data", str(folder), "--image-size", "100000", "--out", str(tmp_path / "o.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "image size" in err or "--image-size" in err, err
    assert "Traceback" not in err and "512" in err, err


def test_an_image_size_in_bounds_loads(tmp_path):
    from influence_core.data.registry import load_dataset

    ds = load_dataset(
        DataConfig(name="image_folder", path=str(_image_folder(tmp_path / "imgs")), image_size=4, test_fraction=0.25, n_train=0, n_test=0),
        seed=0,
    )
    assert ds.x_train.shape[1:] == (1, 4, 4) and len(ds.y_train) + len(ds.y_test) == 8


# ------------------------------------------------------------------------ random CSV text (item 11)


HEADER_WORDS = st.sampled_from(["a", "b", "c", "label", "id", "x 1", "", "Unnamed: 0", "ü", "1", "label "])
NUMBERS = st.one_of(st.integers(-3, 3).map(str), st.floats(-1e6, 1e6, allow_nan=False, width=32).map(repr))
ODD_CELLS = st.sampled_from(["", "nan", "inf", "-inf", "x", "yes", '"q,uoted"', '"', "1e400", "  2 ", "NA", "1,5", ";", "True"])
CLASSES = st.sampled_from(["0", "1", "2", "cat", "dog", " cat", "1.0"])


@st.composite
def csv_texts(draw) -> tuple[bytes, str]:
    """Tables from clean (so that valid datasets occur) to messy: odd cells, ragged rows, odd headers,
    other separators and garbage bytes mixed in at a rate drawn per table."""
    columns = draw(st.lists(HEADER_WORDS, min_size=1, max_size=5, unique=draw(st.booleans())))
    label = draw(st.sampled_from(columns)) if draw(st.integers(0, 7)) else "label"
    n_rows = draw(st.one_of(st.integers(0, 5), st.integers(6, 30), st.integers(6, 30)))
    sep = draw(st.sampled_from([",", ",", ",", ";", "\t"]))
    odd, ragged = draw(st.sampled_from([0.0] * 6 + [0.02, 0.2])), draw(st.sampled_from([0.0] * 4 + [0.05]))

    def cell(is_label: bool) -> str:
        if draw(st.floats(0, 1)) < odd:
            return draw(ODD_CELLS)
        return draw(CLASSES if is_label else NUMBERS)

    rows = []
    for _ in range(n_rows):
        width = len(columns) + (draw(st.sampled_from([-1, 1])) if draw(st.floats(0, 1)) < ragged else 0)
        rows.append(sep.join(cell(c == label) for c in (columns + ["", ""])[: max(width, 0)]))
    text = "\n".join([sep.join(columns), *rows]) + draw(st.sampled_from(["", "\n", "\n\n", "\r\n"]))
    raw = text.encode()
    if draw(st.integers(0, 5)) == 0:  # sometimes garbage bytes anywhere
        noise = draw(st.binary(max_size=12))
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + noise + raw[at:]
    return raw, label


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=csv_texts(), id_choice=st.sampled_from([None, None, None, "id", "a"]))
def test_random_csv_bytes_give_an_input_error_or_a_valid_dataset(tmp_path, case, id_choice):
    from influence_core.data.tabular import csv_classes, csv_columns, load_csv

    raw, label = case
    path = tmp_path / "random.csv"
    path.write_bytes(raw)
    for read in (lambda: csv_columns(path), lambda: csv_classes(path, label)):
        try:
            read()
        except InputError as err:
            assert str(err).strip()
    try:
        ds = load_csv(path, label, id_column=id_choice, test_fraction=0.25, seed=0)
    except InputError as err:
        assert str(err).strip(), "an InputError must say what to fix"
        return
    assert isinstance(ds, Dataset)
    n = len(ds.y_train) + len(ds.y_test)
    assert n >= 4 and ds.n_classes >= 2
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()
    assert ds.x_train.shape == (len(ds.y_train), len(ds.feature_names))
    assert set(np.unique(ds.y_train)) | set(np.unique(ds.y_test)) <= set(range(ds.n_classes))
    assert len(set(map(str, ds.ids_train)) | set(map(str, ds.ids_test))) == n, "ids are unique"


# ------------------------------------------------------------------------ who may read what (item 9)


def test_typed_paths_are_free_on_localhost_and_kept_to_the_data_root_otherwise(tmp_path, monkeypatch):
    from influence_core.data_access import check_server_path

    monkeypatch.delenv("INFLUENCE_LAB_DATA_ROOT", raising=False)
    inside, outside = tmp_path / "data" / "t.csv", tmp_path / "elsewhere" / "t.csv"
    for p in (inside, outside):
        p.parent.mkdir(parents=True)
        p.write_text("a,label\n")
    assert check_server_path(str(outside), "localhost") == str(outside)
    assert check_server_path(str(outside), "127.0.0.1") == str(outside)
    for address in ("0.0.0.0", "", None, "192.168.1.4"):
        with pytest.raises(InputError, match="INFLUENCE_LAB_DATA_ROOT"):
            check_server_path(str(outside), address)
    monkeypatch.setenv("INFLUENCE_LAB_DATA_ROOT", str(tmp_path / "data"))
    assert check_server_path(str(inside), "0.0.0.0") == str(inside)
    with pytest.raises(InputError, match="outside the data folder"):
        check_server_path(str(outside), "0.0.0.0")
    with pytest.raises(InputError, match="outside the data folder"):
        check_server_path(str(tmp_path / "data" / ".." / "elsewhere" / "t.csv"), "0.0.0.0")
    (tmp_path / "data" / "sneaky.csv").symlink_to(outside)
    with pytest.raises(InputError, match="outside the data folder"):
        check_server_path(str(tmp_path / "data" / "sneaky.csv"), "0.0.0.0")
    with pytest.raises(InputError, match="outside the data folder"):  # a root set on localhost applies there too
        check_server_path(str(outside), "localhost")


def test_an_uploaded_csv_is_kept_by_content_and_readable_everywhere(tmp_path, monkeypatch):
    from influence_core.data.tabular import load_csv
    from influence_core.data_access import check_server_path, save_upload, upload_root

    raw = _csv(tmp_path / "mine.csv", n=40).read_bytes()
    path = save_upload("mine.csv", raw)
    assert Path(path).read_bytes() == raw and Path(path).name == "mine.csv"
    assert Path(path).parent.parent == upload_root() and len(Path(path).parent.name) == 64
    assert save_upload("mine.csv", raw) == path, "the same content is stored once"
    assert load_csv(path, "target").n_classes == 2
    monkeypatch.setenv("INFLUENCE_LAB_DATA_ROOT", str(tmp_path / "nowhere"))
    assert check_server_path(path, "0.0.0.0") == path, "an upload is always readable"


def _zip(path: Path, members: dict[str, bytes]) -> bytes:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path.read_bytes()


def test_an_uploaded_zip_of_an_image_folder_is_unpacked_to_a_loadable_folder(tmp_path):
    from influence_core.data.image_folder import list_image_folder
    from influence_core.data_access import save_upload

    folder = _image_folder(tmp_path / "pets")
    members = {f"pets/{p.relative_to(folder).as_posix()}": p.read_bytes() for p in folder.rglob("*.png")}
    path = save_upload("pets.zip", _zip(tmp_path / "pets.zip", members))
    names, files = list_image_folder(path)
    assert names == ["cat", "dog"] and len(files) == 8


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "ok/../../evil.png", "C:/evil.png"])
def test_an_unsafe_zip_is_refused_and_writes_nothing_outside(tmp_path, member):
    from influence_core.data_access import save_upload, upload_root

    raw = _zip(tmp_path / "bad.zip", {"cat/1.png": b"x", member: b"x"})
    with pytest.raises(InputError, match="unsafe path"):
        save_upload("bad.zip", raw)
    assert not (tmp_path / "evil.png").exists() and not Path("/abs/evil.png").exists()
    assert not upload_root().exists() or not any(p.is_file() for p in upload_root().rglob("*"))


def test_a_zip_too_large_or_not_a_zip_is_refused(tmp_path, monkeypatch):
    from influence_core import data_access

    raw = _zip(tmp_path / "big.zip", {"cat/1.png": b"\0" * 5000, "dog/1.png": b"\0" * 5000})
    monkeypatch.setattr(data_access, "MAX_UPLOAD_BYTES", 8000)
    with pytest.raises(InputError, match="at most"):
        data_access.save_upload("big.zip", raw)
    with pytest.raises(InputError, match="not a readable zip"):
        data_access.save_upload("broken.zip", b"PK not really")


def test_following_the_damping_advice_for_an_indefinite_hessian_works():
    """The advice was computed on the already damped matrix, so following it failed again (0.0058, then 0.0099, where
    about 0.016 was needed): the damping it names must make the exact Hessian positive definite."""
    import re

    import torch

    from influence_core.config import ModelConfig
    from influence_core.curvatures import build_curvature
    from influence_core.data.synthetic import make_synthetic
    from influence_core.errors import CurvatureError
    from influence_core.models import build_model, parameter_names
    from influence_core.training import train_model

    ds = make_synthetic("moons", 120, 10, seed=0)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    model = build_model(ModelConfig(kind="mlp", hidden=8, depth=1, activation="tanh"), (2,), 2, 0)
    from influence_core.config import TrainConfig

    train_model(model, x, y, TrainConfig(optimizer="adam", lr=0.05, epochs=60, weight_decay=1e-4), 0)
    model.eval()
    names = parameter_names(model, "all")
    advice = re.compile(r"raise the damping to ([0-9.e-]+)")
    with pytest.raises(CurvatureError) as err:
        build_curvature("exact", model, x, y, names, 1e-4, 0.0)
    needed = float(advice.search(str(err.value)).group(1))
    with pytest.raises(CurvatureError) as err:  # some damping already, not enough: the advice must count it
        build_curvature("exact", model, x, y, names, 1e-4, needed / 2)
    advised = float(advice.search(str(err.value)).group(1))
    assert advised > needed / 2
    build_curvature("exact", model, x, y, names, 1e-4, advised)  # no second refusal


def test_the_app_listens_on_this_machine_only_by_default():
    import tomllib

    root = Path(__file__).resolve().parents[1]  # not 'from tests.conftest': a peer library ships a package named 'tests'
    config = tomllib.loads((root / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
