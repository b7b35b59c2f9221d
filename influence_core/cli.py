"""Command line: ``python -m influence_core scores --data PATH --label-column COL ... --out OUT.csv``
scores every training row; ``python -m influence_core check --data PATH ...`` measures, on your own
data, whether the influence predicts retraining (removes the strongest rows for one held-out row,
one at a time, and retrains); ``python -m influence_core lds --data PATH --methods a,b ...`` gives each
method's linear datamodeling score over retrained random subsets.

Bad input exits with status 2 and one line saying what to fix. The config built here is the same
object the app builds, so the same settings give the same numbers (and share the result cache).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from influence_core.config import (
    MODEL_KINDS,
    SMOOTH_ACTIVATION,
    CurvatureConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    default_damping,
    smooth_training,
)
from influence_core.data.preprocessing import check_channels, parse_numbers
from influence_core.errors import CurvatureError, InputError
from influence_core.sources import Source, own_data_training
from influence_core.timing import duration_text, estimate_text

# the name the README has always used for the Hessian-based method; every other name is the method registry's
METHOD_ALIASES = {"self-influence": "influence"}


def build_config(args: argparse.Namespace) -> RunConfig:
    path = Path(args.data)
    if not path.exists():
        raise InputError(f"{path} does not exist: give a CSV file or an image folder with one subfolder per class")
    if path.is_dir():
        if args.feature_columns:
            raise InputError("--feature-columns is for a CSV; an image folder's input is set by --image-size and --channels")
        source = Source("image_folder", str(path), image_size=args.image_size, inputs={"channels": check_channels(args.channels)})
    else:
        if args.label_column is None:
            raise InputError("a CSV needs --label-column naming the column that holds the labels")
        columns = tuple(c.strip() for c in args.feature_columns.split(",")) if args.feature_columns else None
        source = Source("csv", str(path), args.label_column, args.id_column, inputs={"feature_columns": columns})
    data = source.data(test_fraction=args.test_fraction, n_train=0, n_test=0, **_normalisation(args))
    train = own_data_training(args.model, data)
    if args.model_file:  # checked once the data is read, as it always was
        from influence_core.model_files import own_model_config

        own = own_model_config(args.model_file, args.arch, args.hidden, args.depth, args.checkpoint_file, args.activation)
        source = replace(source, own_model=own)
    if args.epochs is not None:
        train = TrainConfig(**{**train.__dict__, "epochs": args.epochs})
    activation = args.activation
    if getattr(args, "smooth", False) and not args.model_file:
        train, activation = smooth_training(train), SMOOTH_ACTIVATION
    return RunConfig(
        data=data,
        model=source.model(ModelConfig(kind=args.model, hidden=args.hidden, depth=args.depth, activation=activation)),
        train=train,
        curvature=CurvatureConfig(
            kind=args.curvature,
            # your model's damping follows its architecture (--model's default, logreg, has none: wrong for an MLP)
            damping=default_damping((args.arch or "file") if args.model_file else args.model) if args.damping is None else args.damping,
            params=args.params,
            options=_options(args.curvature_option, "--curvature-option"),
        ),
        method=METHOD_ALIASES.get(args.method, args.method),
        method_options=_method_options(args),
        seed=args.seed,
    )


def _normalisation(args: argparse.Namespace) -> dict:
    return {"mean": parse_numbers(args.mean, "--mean"), "std": parse_numbers(args.std, "--std")}


def _method_options(args: argparse.Namespace) -> tuple[tuple[str, float], ...]:
    pairs = list(args.method_option)
    pairs += [f"projection_dim={args.projection_dim}"] * (args.projection_dim is not None)
    pairs += [f"ensemble={args.ensemble}"] * (args.ensemble is not None)
    return _options(pairs, "--method-option")


def _options(pairs: Sequence[str], flag: str) -> tuple[tuple[str, float], ...]:
    """``["rank=20", "tolerance=1e-8"]`` → ``(("rank", 20.0), ("tolerance", 1e-08))``; each backend casts its own."""
    out = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out.append((name.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InputError(f"{flag} takes NAME=NUMBER (e.g. rank=20), got {pair!r}")
    return tuple(sorted(dict(out).items()))


def scores_table(result, detection=None) -> pd.DataFrame:
    """One row per training sample: id, label, suspicion (higher = more suspicious) and the evidence beside it.

    With a :class:`~influence_core.detectors.Detection`, ``suspicion`` is its default ranking (``suspicion_by`` names
    it), ``suggested`` the label it would give, ``flagged_by`` the detectors that rank the row among their top k
    (k = the rows the default suggests another label for), and every detector's score has its own column; without
    one, ``suspicion`` is the method's self-influence as before. ``self_influence`` is always the method's score."""
    ds = result.dataset
    probs = result.train_probs
    label_prob = probs[np.arange(len(ds.y_train)), ds.y_train]
    suspicion = result.self_scores if detection is None else detection.suspicion
    table = pd.DataFrame(
        {
            "id": ds.ids_train,
            "label": [ds.class_names[c] for c in ds.y_train],
            "suspicion": suspicion,
            "rank": pd.Series(suspicion).rank(ascending=False, method="first").astype(int).to_numpy(),
            "predicted": [ds.class_names[c] for c in probs.argmax(1)],
            "prob_of_label": label_prob,
            "loss": -np.log(np.clip(label_prob, 1e-12, None)),
            "self_influence": result.self_scores,
        }
    )
    if detection is not None:
        table.insert(4, "suspicion_by", detection.default)
        suggested = detection.suggested.get(detection.default, probs.argmax(1))
        table.insert(5, "suggested", [ds.class_names[c] for c in suggested])
        k = max(1, int(np.sum(suggested != ds.y_train)))
        flags = detection.flagged_by(k)
        table["flagged_by"] = [";".join(n for n in flags.columns if row[n]) for _, row in flags.iterrows()]
        for name, scores in detection.scores.items():
            table[f"score_{name}"] = scores
    if result.pairwise is not None and len(ds.y_test):
        # mean influence on the held-out set: positive = harmful to test loss on average
        table["mean_test_influence"] = result.pairwise.mean(0)
    return table


def _detection(result, args: argparse.Namespace, progress):
    """The detectors asked for on the scored run, their cost said before they start (stderr)."""
    from influence_core import detectors

    if args.detectors in ("all", "untrained"):  # untrained: every detector that does not train the model again
        names = [
            n
            for n in detectors.detector_names(on_request=args.detectors == "all")
            if args.detectors == "all" or not detectors.get(n).out_of_fold
        ]
    else:
        names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    for name in names:
        detectors.get(name)
    context = detectors.DetectionContext(result, use_cache=not args.no_cache)
    for name in [args.detector, *names]:
        reason = detectors.get(name).unavailable_reason(context)
        if reason:
            print(f"detector {name} left out: {reason}", file=sys.stderr)
    trainings = detectors.extra_trainings(context, [args.detector, *names])
    if trainings:
        estimate = detectors.estimate_seconds(context, [args.detector, *names])
        about = f", {estimate_text(estimate)} from this run's training time" if estimate else ""
        print(f"detectors: the out-of-fold ones train the model {trainings} more times{about}", file=sys.stderr)
    detection = detectors.detect(result, names, args.detector, progress, context=context)
    if detection.basis:
        print(f"suspicion: {detectors.label(detection.default)}, because {detection.basis}", file=sys.stderr)
    return detection


# estimates under this are not worth a line of their own
SAY_COSTS_FROM = 1.0


def _say(line: str) -> None:
    """A line on stderr that a progress bar drawn there does not overwrite."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _cost_announcer(config: RunConfig, args: argparse.Namespace):
    """Before the scores start (the model trained): their cost estimated on this machine, on stderr; past the limit
    (--max-seconds, else the time auto allows a curvature) the curvatures that would fit in it; past --max-seconds, a
    refusal before anything is spent."""
    from influence_core import costs
    from influence_core.curvatures import AUTO_SECONDS

    def announce(trained, n_queries: int) -> None:
        cost = costs.estimate_influence(config, trained, n_queries, check=True)  # a refusal found cheaply comes first
        if cost.seconds < SAY_COSTS_FROM:
            return
        _say(cost.line(f"influence ({config.curvature.kind} curvature): estimated"))
        limit = args.max_seconds if args.max_seconds is not None else AUTO_SECONDS
        if cost.seconds <= limit:
            return
        cheaper = costs.suggest_cheaper(config, trained, limit, n_queries)[:3]
        offer = ", ".join(f"--curvature {name} ({c.text()})" for name, c in cheaper) or "none estimated within it"
        if args.max_seconds is not None:
            raise InputError(f"the scores are estimated at {cost.text()}, past --max-seconds {args.max_seconds:g}; within it: {offer}")
        _say(f"that is past {duration_text(limit)} (set a limit with --max-seconds); cheaper: {offer}")

    return announce


def _knobs_help(names, get) -> str:
    """'trak projection_dim / ensemble, cg max_iter / tolerance, ...': every registered backend's knobs, from the
    registry (a new method's or curvature's knobs appear here with no other edit)."""
    return ", ".join(f"{n} {' / '.join(get(n).knobs)}" for n in names if get(n).knobs) or "none"


def _add_run_arguments(p: argparse.ArgumentParser, test_fraction: float, test_help: str) -> None:
    """The data, model and influence settings both commands share (the app's config fields)."""
    from influence_core.curvatures import curvature_names
    from influence_core.curvatures import get as get_curvature
    from influence_core.methods import get as get_method
    from influence_core.methods import method_names

    p.add_argument("--data", required=True, help="CSV file (numeric features + a label column) or image folder (one subfolder per class)")
    p.add_argument("--label-column", help="CSV column with the labels")
    p.add_argument("--id-column", help="CSV column with row ids (default: the row number)")
    p.add_argument("--model", default="logreg", choices=list(MODEL_KINDS))
    p.add_argument(
        "--model-file",
        help="your trained model: a state_dict (.pt/.pth/.bin) or .safetensors with --arch, or a "
        "torch.export program (.pt2); influence is computed on it as it is, without training",
    )
    p.add_argument(
        "--arch",
        help="the architecture of --model-file's weights: a zoo kind (logreg, mlp, cnn, resnet18) or a "
        "torchvision classifier name (e.g. resnet18, mobilenet_v3_small); a name both have means the one the weights "
        "fit, zoo:NAME or torchvision:NAME pins it",
    )
    p.add_argument(
        "--checkpoint-file",
        action="append",
        default=[],
        help="another weight file of the same model, for TracIn (repeatable, in training order)",
    )
    p.add_argument(
        "--method",
        default="self-influence",
        choices=[*METHOD_ALIASES, *method_names()],
        help="attribution method (self-influence = influence: H⁻¹ under --curvature)",
    )
    p.add_argument(
        "--curvature",
        default="auto",
        choices=list(curvature_names()),
        help="H⁻¹ backend for the influence method (auto: the most accurate that fits this model in memory and time)",
    )
    p.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a knob of the method, repeatable: " + _knobs_help(method_names(), get_method),
    )
    p.add_argument("--projection-dim", type=int, help="TRAK: the projected dimension k (same as --method-option projection_dim=K)")
    p.add_argument("--ensemble", type=int, help="TRAK: models averaged, the run's last checkpoints (--method-option ensemble=M)")
    p.add_argument(
        "--curvature-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a knob of the curvature, repeatable: " + _knobs_help(curvature_names(include_auto=False), get_curvature),
    )
    p.add_argument("--params", default="all", choices=["all", "last_layer"], help="parameters influence is taken over")
    p.add_argument(
        "--damping",
        type=float,
        default=None,
        help="added to H's diagonal (default: 0 for logreg, whose H weight decay keeps positive definite; 0.01 otherwise)",
    )
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--activation", choices=("relu", "tanh", "sigmoid"), default="relu", help="the MLP's (trained here or yours)")
    p.add_argument("--epochs", type=int)
    p.add_argument(
        "--smooth",
        action="store_true",
        help="train smoothly in the rows' weights (tanh, learning rate annealed to 0, weight decay ≥ 1e-2): where exact "
        "attribution (--method metagradient) predicts retraining; the default training is chaotic in them",
    )
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument(
        "--channels", type=int, choices=(1, 3), default=None, help="image channels the model takes: 1 grayscale (default), 3 RGB"
    )
    p.add_argument(
        "--mean",
        default=None,
        help="normalise inputs as your model was trained: mean per image channel or CSV feature (comma-separated; one number for all). "
        "Default: images in [0, 1], CSV features standardised on the training split",
    )
    p.add_argument("--std", default=None, help="the std beside --mean (comma-separated; one number for all)")
    p.add_argument(
        "--feature-columns",
        default=None,
        help="a CSV's feature columns in your model's order (comma-separated; default: all but label / id, in file order)",
    )
    p.add_argument("--test-fraction", type=float, default=test_fraction, help=test_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="recompute even if a cached result exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="start a local Dask cluster of N worker processes for the scoring and the retrains (default 0: one process)",
    )
    p.add_argument("--scheduler", help="join a running Dask cluster at tcp://HOST:PORT instead (see README: past one machine)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m influence_core", description="Influence Lab command line")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scores", help="score every training sample of a CSV or image folder; write a CSV")
    _add_run_arguments(s, 0.0, "held-out share (default 0: every row is scored)")
    s.add_argument("--out", required=True, help="output CSV path")
    from influence_core import detectors

    s.add_argument(
        "--detector",
        default=detectors.DEFAULT_DETECTOR,
        choices=list(detectors.detector_names(on_request=True)),
        help=f"the ranking in the suspicion column (default {detectors.DEFAULT_DETECTOR}: "
        f"{detectors.get(detectors.DEFAULT_DETECTOR).description})".replace("%", "%%"),  # argparse formats help with %
    )
    s.add_argument(
        "--detectors",
        default="untrained",
        help="detectors whose scores get a column each, comma-separated; 'untrained' (default): every one that does not "
        "train the model again and is not costly; 'all' adds the out-of-fold ones (the model trained 5 more times) and the "
        "costly ones ("
        + ", ".join(n for n in detectors.detector_names(on_request=True) if detectors.get(n).on_request)
        + "). The detectors: "
        + ", ".join(f"{n} ({detectors.label(n)})" for n in detectors.detector_names(on_request=True)),
    )
    c = sub.add_parser("check", help="does the influence predict retraining on your data? (leave-one-out for the strongest rows)")
    _add_run_arguments(c, 0.2, "held-out share the test rows come from (default 0.2)")
    for command in (s, c):
        command.add_argument(
            "--max-seconds",
            type=float,
            help="refuse, before the scores start, a run estimated (on this machine) to take longer, and name the "
            "curvatures estimated within it; without it the estimate is printed and the run goes on",
        )
    c.add_argument("--test-row", type=int, help="held-out row number (0-based; default: the one with the largest loss)")
    c.add_argument("--removals", type=int, default=20, help="strongest training rows to remove, one at a time (default 20)")
    c.add_argument("--out", help="optional CSV: one line per removed row with its predicted and retrained loss change")
    lds = sub.add_parser("lds", help="how right are the scores? the linear datamodeling score of several methods on your data")
    _add_run_arguments(lds, 0.2, "held-out share LDS is measured on (default 0.2)")
    lds.add_argument(
        "--methods",
        default="influence,ip,tracin",
        help="comma list of methods; method@curvature picks a curvature (e.g. influence@exact,influence@cg,trak)",
    )
    lds.add_argument("--subsets", type=int, default=100, help="random training subsets retrained (default 100)")
    lds.add_argument("--fraction", type=float, default=0.5, help="share of the training set in each subset (default 0.5)")
    lds.add_argument("--measure", default="loss", choices=["loss", "margin"], help="the held-out quantity (default: its loss)")
    lds.add_argument("--max-test", type=int, help="score only the first N held-out rows")
    lds.add_argument("--per-test", help="optional CSV of each held-out row's correlation per method")
    lds.add_argument("--out", required=True, help="output CSV: method, lds, lds_low, lds_high, seconds")
    lds.add_argument(
        "--retrain",
        action="store_true",
        help="with --model-file: allow retraining its architecture (a zoo kind) from scratch on each subset, with the "
        "zoo's default training for it (--epochs sets the epochs); your model itself is scored as it is",
    )
    lds.add_argument(
        "--randomness",
        default="resampled",
        choices=["resampled", "fixed"],
        help="what retraining without rows means: 'resampled' (default) a new run on each subset; 'fixed' the same run "
        "(same initial weights and batches) with the dropped rows' weights zeroed, the single-model question",
    )
    lds.add_argument(
        "--ceiling",
        action="store_true",
        help="with resampled randomness: retrain every subset under a second seed and print the LDS that training noise "
        "leaves to any method (doubles the retrains)",
    )
    return parser


def _lds(config: RunConfig, args: argparse.Namespace, progress) -> tuple[str, pd.DataFrame]:
    from influence_core.lds import linear_datamodeling_score, retraining_config

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    retrain = None
    if args.retrain:
        if config.model.kind != "file":
            raise InputError("--retrain is for --model-file: a model trained here is retrained anyway")
        # the training `--model ARCH` would get on this data (epochs for its size; --epochs when given)
        zoo = build_config(argparse.Namespace(**{**vars(args), "model_file": None, "model": config.model.arch or "file"}))
        retrain = retraining_config(config, zoo.train)
    result = linear_datamodeling_score(
        config,
        methods,
        args.subsets,
        args.fraction,
        args.seed,
        args.measure,
        max_test=args.max_test,
        progress=progress,
        use_cache=not args.no_cache,
        retrain=retrain,
        randomness=args.randomness,
        ceiling=args.ceiling,
    )
    if args.per_test:
        pd.DataFrame(result.per_test).to_csv(args.per_test, index_label="test_row")
    lines = [
        f"LDS over {args.subsets} retrained subsets of {args.fraction:.0%} ({result.retrains_from_cache} from the cache), "
        f"{result.actual.shape[1]} held-out rows, measure: {args.measure}, randomness: {result.randomness}"
        + (" (the same run with the dropped rows' weights zeroed)" if result.randomness == "fixed" else "")
    ]
    lines += [f"  {m:<22} left out: {why}" for m, why in result.skipped.items()]
    if result.ceiling is not None and result.randomness == "resampled":
        low, high = result.ceiling_interval
        lines.append(
            f"  {'seed-noise ceiling':<22} {result.ceiling:+.3f}  [{low:+.3f}, {high:+.3f}]  (a second seed's retrains as the predictor)"
        )
    if retrain is not None:
        lines.append(
            f"  scores of your model as it is; the subsets retrain {retrain.model.kind} from scratch ({retrain.train.optimizer}, "
            f"{retrain.train.epochs} epochs): a recipe far from yours lowers every method's LDS alike"
        )
    lines += [
        f"  {m:<22} {result.lds[m]:+.3f}  [{result.interval[m][0]:+.3f}, {result.interval[m][1]:+.3f}]  {result.seconds[m]:.1f} s"
        + (f"  ({result.notes[m]})" if result.notes[m] else "")
        for m in methods
    ]
    return "\n".join(lines), result.table()


NEEDS_HELD_OUT = "the check needs held-out rows to measure the loss on: give --test-fraction between 0 and 1 (e.g. 0.2)"


def _check(result, args: argparse.Namespace) -> tuple[str, pd.DataFrame]:
    """Run the retraining check for one held-out row; a summary for the terminal and one row per removal."""
    from influence_core.progress import silent, tqdm_progress
    from influence_core.retraining_check import check_by_retraining, strongest_for_test_point

    ds = result.dataset
    if len(ds.y_test) == 0:
        raise InputError(NEEDS_HELD_OUT)
    if result.pairwise is None:
        raise InputError(
            f"{len(ds.y_test):,} held-out × {len(ds.y_train):,} training rows is too large a matrix: give a smaller --test-fraction"
        )
    row = int(result.hardest_test_points(1)[0]) if args.test_row is None else args.test_row
    if not 0 <= row < len(ds.y_test):
        raise InputError(f"--test-row must be between 0 and {len(ds.y_test) - 1} (the held-out rows), got {row}")
    removed = strongest_for_test_point(result.pairwise, row, args.removals)
    from influence_core.retraining_check import retraining_check_cost

    retraining = retraining_check_cost(result, len(removed))
    if retraining.seconds >= SAY_COSTS_FROM:
        _say(retraining.line("retraining: estimated"))
    progress = silent if args.quiet else tqdm_progress("retraining")
    try:
        check = check_by_retraining(result, removed, [row], progress=progress)
    finally:
        getattr(progress, "close", lambda: None)()
    table = pd.DataFrame(
        {
            "id": ds.ids_train[removed],
            "label": [ds.class_names[c] for c in ds.y_train[removed]],
            "score": result.pairwise[row, removed],
            "predicted_loss_change": check.predicted[:, 0],
            "retrained_loss_change": check.actual[:, 0],
        }
    )
    label_prob = result.test_probs[row, ds.y_test[row]]
    lines = [
        f"held-out row {row} (id {ds.ids_test[row]}, label {ds.class_names[ds.y_test[row]]}, loss {-np.log(max(label_prob, 1e-12)):.3f}): "
        f"{len(removed)} strongest training rows removed one at a time, retrained in {check.seconds:.1f} s",
        f"  Pearson {check.pearson:.3f}   Spearman {check.spearman:.3f}   same sign {check.sign_agreement:.0%}"
        + (
            f"   slope of retrained on predicted {check.slope:.2f}"
            if check.on_loss_scale
            else "   (not on the loss scale: read the ranking and signs)"
        ),
        f"  L-BFGS left a gradient of {check.leftover_gradient:.1e}; one removal pushes {check.removal_push:.1e}: "
        + (
            "settled"
            if check.settled
            else "NOT settled, so the retrained changes are partly where the optimiser stopped (ReLU kinks do this: try --model logreg)"
        ),
    ]
    return "\n".join(lines), table


def _run(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        from influence_core.experiments import compute_influence
        from influence_core.progress import silent, tqdm_progress

        if args.command == "check" and args.removals < 1:  # before any training
            raise InputError(f"--removals must be at least 1, got {args.removals}")
        if args.command == "check" and args.test_fraction <= 0:
            raise InputError(NEEDS_HELD_OUT)
        if getattr(args, "out", None):  # before any training: never over an input, and somewhere writable
            from influence_core.output_paths import check_output_path

            inputs = [args.data, *([args.model_file] if args.model_file else []), *args.checkpoint_file]
            check_output_path(args.out, inputs)
            if getattr(args, "per_test", None):
                check_output_path(args.per_test, [*inputs, args.out])
        config = build_config(args)
        from influence_core import distributed

        setting = distributed.ComputeSetting(workers=args.workers, scheduler=args.scheduler)
        progress = silent if args.quiet else tqdm_progress("influence" if args.command != "lds" else "LDS")
        try:
            if not setting.local:  # an unreachable scheduler is refused here, in seconds, before any work
                distributed.configure(setting)
                print(f"running on {setting.describe()}", file=sys.stderr)
            if args.command == "lds":
                summary, table = _lds(config, args, progress)
                result = None
            else:
                result = compute_influence(
                    config, progress=progress, use_cache=not args.no_cache, before_scoring=_cost_announcer(config, args)
                )
            # the detectors before the cluster goes: their out-of-fold trainings run on it
            detection = _detection(result, args, progress) if args.command == "scores" else None
        finally:
            getattr(progress, "close", lambda: None)()
            distributed.shutdown()
        if args.command == "lds":
            print(summary)
        elif args.command == "check":
            summary, table = _check(result, args)
            print(summary)
        else:
            table = scores_table(result, detection)
        out = Path(args.out) if args.out else None
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(out, index=False)
    except (InputError, CurvatureError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    if result is not None and result.metrics.get("own_model"):
        print("your model: " + ", ".join(f"{k} {v}" for k, v in result.metrics["own_model"].items()), file=sys.stderr)
    if result is not None and result.metrics.get("method_note"):
        print(result.metrics["method_note"], file=sys.stderr)
    if out is not None:
        print(f"wrote {len(table)} rows to {out} (config {config.key()})", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; the terminal shows the project's own messages only: our warnings as one
    ``warning: ...`` line each (no Python source line), torch's ``jit.script`` deprecation not at all."""
    import warnings

    from influence_core.errors import DataWarning

    with warnings.catch_warnings():  # restores the filters and showwarning when the command ends
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        from influence_core.cache import CacheWarning  # imports torch: after the filter

        others = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, (DataWarning, CacheWarning)):
                print(f"warning: {message}", file=file or sys.stderr)
            else:
                others(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        return _run(argv)
