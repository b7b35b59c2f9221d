"""One builder for "which data, which model, your file or the zoo" (issue 33 item 4, influence_core.sources): the
config factories build from it, and each still gives the RunConfig it gave before, field for field. The expected configs were
captured from the factories before they shared the builder (tests/fixtures/config_factories.json, the user's paths
written as <csv> / <folder> / <weights>); a factory that changes what it builds has to change that file, on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = FIXTURES / "config_factories.json"


def _cases(csv: str, folder: str, weights: str) -> dict:
    """Every factory at its defaults and with the user's CSV / image folder / model file: name → a config thunk."""
    from influence_core import flipset as fs
    from influence_core import hessian_free as hf
    from influence_core import label_bias as lb
    from influence_core import lds
    from influence_core.cli import _parser, build_config
    from influence_core.config import explorer_config
    from influence_core.model_files import own_model_config
    from influence_core.signals import GlitchConfig, signal_run_config

    mine = own_model_config(weights, "mlp", 32, 2)
    inputs = {"feature_columns": ("a", "b", "c", "d"), "channels": None, "mean": (0.5,), "std": (2.0,)}
    as_is = GlitchConfig(kind="none", cleanlab_folds=0)

    def cli(*argv: str):
        return lambda: build_config(_parser().parse_args(["scores", "--out", "scores.csv", *argv]))

    return {
        "explorer default": lambda: explorer_config(),
        "explorer logreg noisy": lambda: explorer_config("moons", 300, "uniform", 0.2, model="logreg", curvature="exact"),
        "explorer own model": lambda: explorer_config(own_model=mine),
        "what_if default": lambda: fs.what_if_config(),
        "what_if mlp digits": lambda: fs.what_if_config("mlp", 0.1, 3, "ip", fs.what_if_data("digits", (4, 9), 0.1)),
        "what_if csv": lambda: fs.what_if_config(data=fs.what_if_data("csv", csv_path=csv, label_column="animal", id_column="name")),
        "signals default": lambda: signal_run_config(),
        "signals cnn mnist": lambda: signal_run_config("mnist", "cnn", 1000, 200, 1, 5, method="influence"),
        "signals csv": lambda: signal_run_config("csv", "mlp", path=csv, label_column="animal", id_column="name", glitch=as_is),
        "signals folder": lambda: signal_run_config("image_folder", "cnn", path=folder, image_size=16),
        "signals own model": lambda: signal_run_config(
            "csv", path=csv, label_column="animal", id_column="name", glitch=as_is, own_model=mine, inputs=inputs
        ),
        "trust default": lambda: lds.trust_config(),
        "trust mlp smooth": lambda: lds.trust_config("digits", "mlp", 2, smooth=True),
        "hessian_free blobs": lambda: hf.synthetic_config(),
        "hessian_free moons": lambda: hf.synthetic_config("moons", 1),
        "label_bias default": lambda: lb.preset_config(),
        "label_bias mnist": lambda: lb.preset_config("mnist", n_train=2000, epochs=3, method="ip"),
        "label_bias chexpert": lambda: lb.preset_config("chexpert", path=folder),
        "label_bias csv": lambda: lb.preset_config("csv", path=csv, label_column="animal", id_column="name"),
        "label_bias csv flipped": lambda: lb.preset_config("csv", 0.1, path=csv, label_column="animal", flip=(0, 1), model="mlp", epochs=7),
        "label_bias folder": lambda: lb.preset_config("image_folder", path=folder, image_size=16),
        "label_bias own model": lambda: lb.preset_config(
            "csv", path=csv, label_column="animal", id_column="name", own_model=mine, inputs=inputs
        ),
        "cli csv": cli("--data", csv, "--label-column", "animal", "--id-column", "name"),
        "cli csv mlp": cli("--data", csv, "--label-column", "animal", "--model", "mlp", "--epochs", "9", "--smooth"),
        "cli folder": cli("--data", folder, "--model", "cnn", "--image-size", "16", "--channels", "3", "--mean", "0.5"),
        "cli own model": cli(
            "--data", csv, "--label-column", "animal", "--model-file", weights, "--arch", "mlp", "--feature-columns", "a,b"
        ),
    }


def _as_json(config, csv: str, folder: str, weights: str) -> dict:
    text = config.to_json().replace(csv, "<csv>").replace(folder, "<folder>").replace(weights, "<weights>")
    return json.loads(text)


@pytest.fixture()
def sources(animals, tmp_path):
    csv, _ = animals
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"")  # named, not read: a missing file is refused before any config is built
    return str(csv), str(FIXTURES / "xray_folder"), str(weights)


def test_every_factory_builds_the_config_it_built_before(sources):
    expected = json.loads(EXPECTED.read_text())
    got = {name: _as_json(make(), *sources) for name, make in _cases(*sources).items()}
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name
