"""Command line: ``python -m influence_core scores --data PATH --label-column COL ... --out OUT.csv``.

Bad input exits with status 2 and one line saying what to fix. The config built here is the same
object the app builds, so the same settings give the same numbers (and share the result cache).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from influence_core.config import CURVATURES, CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig, default_training
from influence_core.errors import CurvatureError, InputError

CLI_METHODS = {  # CLI name → (RunConfig.method, curvature kind or None)
    "self-influence": ("influence", None),
    "ip": ("ip", None),
    "tracin": ("tracin", None),
}


def build_config(args: argparse.Namespace) -> RunConfig:
    path = Path(args.data)
    if not path.exists():
        raise InputError(f"{path} does not exist: give a CSV file or an image folder with one subfolder per class")
    if path.is_dir():
        data = DataConfig(name="image_folder", path=str(path), image_size=args.image_size, test_fraction=args.test_fraction,
                          n_train=0, n_test=0)
    else:
        if args.label_column is None:
            raise InputError("a CSV needs --label-column naming the column that holds the labels")
        data = DataConfig(name="csv", path=str(path), label_column=args.label_column, id_column=args.id_column,
                          test_fraction=args.test_fraction, n_train=0, n_test=0)
    method, _ = CLI_METHODS[args.method]
    from influence_core.data.registry import peek_own_data

    train = default_training(args.model, peek_own_data(data).n_train(data))
    if args.epochs is not None:
        train = TrainConfig(**{**train.__dict__, "epochs": args.epochs})
    return RunConfig(
        data=data,
        model=ModelConfig(kind=args.model, hidden=args.hidden, depth=args.depth),
        train=train,
        curvature=CurvatureConfig(kind=args.curvature, damping=args.damping, params=args.params),
        method=method,
        seed=args.seed,
    )


def scores_table(result) -> pd.DataFrame:
    """One row per training sample: id, label, suspicion (higher = more suspicious) and extras."""
    ds = result.dataset
    probs = result.train_probs
    label_prob = probs[np.arange(len(ds.y_train)), ds.y_train]
    table = pd.DataFrame({
        "id": ds.ids_train,
        "label": [ds.class_names[c] for c in ds.y_train],
        "suspicion": result.self_scores,
        "rank": pd.Series(result.self_scores).rank(ascending=False, method="first").astype(int).to_numpy(),
        "predicted": [ds.class_names[c] for c in probs.argmax(1)],
        "prob_of_label": label_prob,
        "loss": -np.log(np.clip(label_prob, 1e-12, None)),
    })
    if result.pairwise is not None and len(ds.y_test):
        # mean influence on the held-out set: positive = harmful to test loss on average
        table["mean_test_influence"] = result.pairwise.mean(0)
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m influence_core", description="Influence Lab command line")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scores", help="score every training sample of a CSV or image folder; write a CSV")
    s.add_argument("--data", required=True, help="CSV file (numeric features + a label column) or image folder (one subfolder per class)")
    s.add_argument("--label-column", help="CSV column with the labels")
    s.add_argument("--id-column", help="CSV column with row ids (default: the row number)")
    s.add_argument("--model", default="logreg", choices=["logreg", "mlp", "cnn", "resnet18"])
    s.add_argument("--method", default="self-influence", choices=list(CLI_METHODS))
    s.add_argument("--curvature", default="exact", choices=list(CURVATURES), help="H⁻¹ backend for self-influence")
    s.add_argument("--params", default="all", choices=["all", "last_layer"], help="parameters influence is taken over")
    s.add_argument("--damping", type=float, default=0.01)
    s.add_argument("--hidden", type=int, default=32)
    s.add_argument("--depth", type=int, default=2)
    s.add_argument("--epochs", type=int)
    s.add_argument("--image-size", type=int, default=28)
    s.add_argument("--test-fraction", type=float, default=0.0, help="held-out share (default 0: every row is scored)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output CSV path")
    s.add_argument("--no-cache", action="store_true", help="recompute even if a cached result exists")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        from influence_core.experiments import compute_influence
        from influence_core.progress import silent, tqdm_progress

        config = build_config(args)
        progress = silent if args.quiet else tqdm_progress("influence")
        try:
            result = compute_influence(config, progress=progress, use_cache=not args.no_cache)
        finally:
            getattr(progress, "close", lambda: None)()
        table = scores_table(result)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
    except (InputError, CurvatureError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    print(f"wrote {len(table)} rows to {out} (config {config.key()})", file=sys.stderr)
    return 0
