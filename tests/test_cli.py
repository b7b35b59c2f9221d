"""`python -m influence_core scores`: outputs, agreement with the app's pipeline, clear errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from influence_core.cli import _parser, build_config, main
from influence_core.experiments import compute_influence

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def noisy_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 3))
    label = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    flipped = rng.choice(160, 8, replace=False)
    label[flipped] = np.where(label[flipped] == "yes", "no", "yes")
    df = pd.DataFrame({"sample": [f"s{i:03d}" for i in range(160)], "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "target": label})
    path = tmp_path / "table.csv"
    df.to_csv(path, index=False)
    return path, {f"s{i:03d}" for i in flipped}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "influence_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_scores_csv_has_every_row_and_ranks_flipped_labels_first(noisy_csv, tmp_path):
    path, flipped = noisy_csv
    out = tmp_path / "scores.csv"
    proc = _run(
        "scores",
        "--data",
        str(path),
        "--label-column",
        "target",
        "--id-column",
        "sample",
        "--model",
        "logreg",
        "--method",
        "self-influence",
        "--curvature",
        "exact",
        "--seed",
        "0",
        "--out",
        str(out),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert {"id", "label", "suspicion"} <= set(table.columns) and len(table) == 160
    assert set(table["id"]) == {f"s{i:03d}" for i in range(160)}
    top = set(table.nlargest(12, "suspicion")["id"])
    assert len(top & flipped) >= 6, (top, flipped)


@pytest.mark.parametrize(
    "method,curvature",
    [("self-influence", "diag"), ("self-influence", "kron"), ("self-influence", "last_layer"), ("ip", "exact"), ("tracin", "exact")],
)
def test_every_method_writes_scores(noisy_csv, tmp_path, method, curvature):
    path, _ = noisy_csv
    out = tmp_path / f"{method}-{curvature}.csv"
    code = main(
        [
            "scores",
            "--data",
            str(path),
            "--label-column",
            "target",
            "--id-column",
            "sample",
            "--model",
            "mlp",
            "--method",
            method,
            "--curvature",
            curvature,
            "--epochs",
            "20",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) == 160 and np.isfinite(table["suspicion"]).all() and (table["suspicion"] >= 0).all()


def test_cli_numbers_equal_the_pipeline_the_app_calls(noisy_csv, tmp_path):
    path, _ = noisy_csv
    argv = [
        "scores",
        "--data",
        str(path),
        "--label-column",
        "target",
        "--id-column",
        "sample",
        "--model",
        "logreg",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "o.csv"),
        "--quiet",
        "--no-cache",
    ]
    assert main(argv) == 0
    config = build_config(_parser().parse_args(argv))
    direct = compute_influence(config, use_cache=False)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "o.csv")["self_influence"], direct.self_scores, rtol=1e-5)


def test_editing_the_csv_invalidates_the_cached_scores(noisy_csv, tmp_path):
    """The workflow the tool is for: find a wrong label, fix it in the file, score again. The run's
    config names only the path, so a cache keyed on the config alone would bring back the old scores."""
    path, flipped = noisy_csv
    argv = ["scores", "--data", str(path), "--label-column", "target", "--id-column", "sample", "--model", "logreg", "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "before.csv")]) == 0
    before = pd.read_csv(tmp_path / "before.csv").set_index("id")
    fixed = pd.read_csv(path)
    worst = before["self_influence"].idxmax()
    row = fixed["sample"] == worst
    fixed.loc[row, "target"] = np.where(fixed.loc[row, "target"] == "yes", "no", "yes")
    fixed.to_csv(path, index=False)
    assert main(argv + ["--out", str(tmp_path / "after.csv")]) == 0
    after = pd.read_csv(tmp_path / "after.csv").set_index("id")
    assert after.loc[worst, "label"] != before.loc[worst, "label"]
    assert after.loc[worst, "self_influence"] < before.loc[worst, "self_influence"] / 2


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--data", "/no/such/file.csv", "--label-column", "y"], "does not exist"),
        (["--label-column", "nope"], "target"),  # names the columns it found
        (["--label-column", "target", "--id-column", "sample", "--test-fraction", "1.5"], "test fraction"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(noisy_csv, tmp_path, capsys, args, needle):
    path, _ = noisy_csv
    full = ["scores", "--out", str(tmp_path / "x.csv"), "--quiet"] + (args if "--data" in args else ["--data", str(path), *args])
    assert main(full) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_bad_input_through_python_dash_m_has_no_traceback(tmp_path):
    proc = _run("scores", "--data", str(tmp_path / "missing.csv"), "--label-column", "y", "--out", str(tmp_path / "o.csv"))
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_bad_csv_contents_are_explained(tmp_path, capsys):
    cases = {
        "text feature": pd.DataFrame({"a": ["x", "y", "z", "w"] * 5, "target": [0, 1] * 10}),
        "NaN": pd.DataFrame({"a": [1.0, np.nan] * 10, "target": [0, 1] * 10}),
        "one class": pd.DataFrame({"a": np.arange(20.0), "target": [1] * 20}),
    }
    for name, df in cases.items():
        path = tmp_path / f"{name}.csv"
        df.to_csv(path, index=False)
        code = main(["scores", "--data", str(path), "--label-column", "target", "--out", str(tmp_path / "o.csv"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, (name, err)


def test_check_measures_the_influence_against_retraining_on_your_csv(noisy_csv, tmp_path, capsys):
    path, _ = noisy_csv
    out = tmp_path / "check.csv"
    code = main(
        [
            "check",
            "--data",
            str(path),
            "--label-column",
            "target",
            "--id-column",
            "sample",
            "--model",
            "logreg",
            "--removals",
            "15",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    pearson = float(printed.split("Pearson")[1].split()[0])
    assert pearson >= 0.95, printed  # L2 logistic regression, exact Hessian: leave-one-out
    assert "settled" in printed and "NOT settled" not in printed
    table = pd.read_csv(out)
    assert len(table) == 15 and table["retrained_loss_change"].notna().all()
    train_ids = set(
        compute_influence(
            build_config(_parser().parse_args(["check", "--data", str(path), "--label-column", "target", "--id-column", "sample"]))
        ).dataset.ids_train
    )
    assert set(table["id"]) <= train_ids  # training rows are removed, never the held-out row
    assert table["score"].abs().is_monotonic_decreasing  # the strongest first
    held_out = int(printed.split("held-out row ")[1].split()[0])
    code = main(
        [
            "check",
            "--data",
            str(path),
            "--label-column",
            "target",
            "--id-column",
            "sample",
            "--test-row",
            str(held_out),
            "--removals",
            "15",
            "--quiet",
        ]
    )
    assert code == 0 and float(capsys.readouterr().out.split("Pearson")[1].split()[0]) == pearson  # the default row, named


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--test-fraction", "0"], "--test-fraction"),
        (["--test-row", "999"], "--test-row must be between 0 and"),
        (["--removals", "0"], "--removals"),
    ],
)
def test_check_bad_input_says_what_to_fix(noisy_csv, capsys, args, needle):
    path, _ = noisy_csv
    assert main(["check", "--data", str(path), "--label-column", "target", "--id-column", "sample", "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("command", ["scores", "check", "lds"])
def test_every_command_prints_its_help_with_the_knobs_the_registries_declare(command, capsys):
    """The help is built from the registries (a new backend's knobs appear with no other edit; diag's `sampled` was
    missing from the hand-written list), and it prints: a '%' in a registered description once broke argparse's help."""
    from influence_core import curvatures, methods

    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    said = " ".join(capsys.readouterr().out.split())
    for registry, names in ((methods, methods.method_names()), (curvatures, curvatures.curvature_names(include_auto=False))):
        for name in names:
            for knob in registry.get(name).knobs:
                assert knob in said, (name, knob)
