"""How right are the scores? The linear datamodeling score (LDS; Park et al. 2023, as dattri and kronfluence report it).

Retrain on ``n_subsets`` random subsets S_k holding ``fraction`` of the training set. A method's scores τ (n_test,
n_train; + = harmful, i.e. including the sample raises the measured quantity) predict the quantity of test point j
after training on S_k as the linear datamodel Σ_{i ∈ S_k} τ_ji. LDS_j is the Spearman correlation over the subsets
between that prediction and the retrained value; LDS is the mean over test points, with a bootstrap 95 % interval
over test points. Every method is scored against the same retrained subsets; a retrain is cached by the run's
config and the subset's content, so other methods, other runs and a rerun reuse it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from influence_core.config import RunConfig, TrainConfig
from influence_core.data.base import Dataset
from influence_core.errors import CurvatureError, InputError
from influence_core.measurements import PerSampleLoss
from influence_core.methods import get as get_method
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.tasks import CORRECT_CLASS_MARGIN, CROSS_ENTROPY
from influence_core.timing import Cost, seconds_text

MEASURES = ("loss", "margin")
# what "retrained without these rows" means: the same run with their weights zeroed (same initial weights, same
# batches: the single-model question exact attribution answers), or a new run on the subset (today's LDS, whose
# training noise no method can predict; the seed-noise ceiling measures it)
RANDOMNESS = ("resampled", "fixed")


@dataclass
class LDSResult:
    """Per method: the mean LDS, its interval, the per-test-point correlations and the attribution's seconds."""

    methods: list[str]
    lds: dict[str, float]
    interval: dict[str, tuple[float, float]]
    per_test: dict[str, np.ndarray]  # (n_test,) Spearman per test point (nan where a point never moves)
    seconds: dict[str, float]
    subsets: np.ndarray  # (n_subsets, n_train) bool
    actual: np.ndarray  # (n_subsets, n_test) the measured quantity after retraining on each subset
    scores: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    retrain_seconds: float = 0.0
    retrains_from_cache: int = 0
    notes: dict[str, str] = field(default_factory=dict)
    randomness: str = "resampled"
    # the LDS of an independently seeded retrain of each subset used as the predictor: the most any method can reach
    # under resampled randomness (None where not measured; 1 by construction under fixed randomness)
    ceiling: Optional[float] = None
    ceiling_interval: Optional[tuple[float, float]] = None
    skipped: dict[str, str] = field(default_factory=dict)  # methods that could not be fitted here, and why

    def equal_groups(self) -> list[list[str]]:
        """Methods whose per-point LDS are the same to 1e-9: they order every subset alike (e.g. TracIn with one
        checkpoint is IP scaled), so a page names them equal instead of showing two bars as two findings."""
        groups: list[list[str]] = []
        for m in self.methods:
            for g in groups:
                a, b = self.per_test[g[0]], self.per_test[m]
                if np.allclose(np.nan_to_num(a, nan=9.0), np.nan_to_num(b, nan=9.0), rtol=0, atol=1e-9):
                    g.append(m)
                    break
            else:
                groups.append([m])
        return [g for g in groups if len(g) > 1]

    def table(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "method": self.methods,
                "lds": [self.lds[m] for m in self.methods],
                "lds_low": [self.interval[m][0] for m in self.methods],
                "lds_high": [self.interval[m][1] for m in self.methods],
                "seconds": [self.seconds[m] for m in self.methods],
            }
        )


def method_run(config: RunConfig, spec: str) -> tuple[RunConfig, str]:
    """A method spec → (the run config for it, the method's name): ``influence@cg`` takes the cg curvature, ``trak:ensemble=10``
    sets a knob (``name[@curvature][:knob=value,…]``); a plain name keeps the config's curvature and no knobs."""
    head, _, knobs = spec.partition(":")
    name, _, curvature = head.partition("@")
    get_method(name)
    if curvature:
        if not get_method(name).uses_curvature:
            raise InputError(f"{name} takes no curvature: write {name!r}, not {spec!r}")
        config = config.replace(curvature__kind=curvature, curvature__options=())
    options = []
    for pair in filter(None, knobs.split(",")):
        key, sep, value = pair.partition("=")
        try:
            options.append((key.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"a method's knob is written name=number (e.g. trak:ensemble=10), got {pair!r} in {spec!r}")
    return config.replace(method=name, method_options=tuple(sorted(options))), name


def random_subsets(n_train: int, n_subsets: int, fraction: float, seed: int) -> np.ndarray:
    """(n_subsets, n_train) masks of exactly round(fraction · n) samples each (seeded)."""
    rng = np.random.default_rng(seed)
    size = int(round(fraction * n_train))
    masks = np.zeros((n_subsets, n_train), dtype=bool)
    for k in range(n_subsets):
        masks[k, rng.choice(n_train, size=size, replace=False)] = True
    return masks


def check_settings(dataset: Dataset, n_subsets: int, fraction: float, subsets: np.ndarray) -> None:
    """What makes no sense, said before any retraining."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"the subset fraction must be between 0 and 1 (exclusive), got {fraction}")
    if n_subsets < 2:
        raise InputError(f"a rank correlation over subsets needs at least 2 subsets, got {n_subsets}")
    if len(dataset.y_test) == 0:
        raise InputError("LDS measures held-out points: give the run a test split (a test fraction above 0)")
    for k, mask in enumerate(subsets):
        if len(np.unique(dataset.y_train[mask])) < 2:
            raise InputError(f"subset {k} holds one class only ({mask.sum()} rows): use a larger fraction or more training data")


def spearman_per_row(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Spearman correlation of each column pair over the rows: (n_subsets, n_test) × 2 → (n_test,)."""
    from scipy.stats import rankdata

    rp, ra = rankdata(predicted, axis=0), rankdata(actual, axis=0)
    rp, ra = rp - rp.mean(0), ra - ra.mean(0)
    denominator = np.sqrt((rp**2).sum(0) * (ra**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rp * ra).sum(0) / denominator, np.nan)


def lds_from_scores(scores: np.ndarray, subsets: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-test-point LDS of one method: Spearman over subsets of Σ_{i ∈ S_k} τ_ji against the retrained value."""
    predicted = subsets.astype(np.float64) @ np.asarray(scores, dtype=np.float64).T  # (n_subsets, n_test)
    return spearman_per_row(predicted, actual)


def bootstrap_interval(values: np.ndarray, seed: int, draws: int = 2000) -> tuple[float, float]:
    """95 % percentile interval of the mean over test points (points with no defined correlation left out)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(draws, len(values)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def measured(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, measure: str) -> np.ndarray:
    """The quantity LDS is taken on, per test point: its loss or its correct-class margin."""
    task = CROSS_ENTROPY if measure == "loss" else CORRECT_CLASS_MARGIN
    model.eval()
    with torch.no_grad():
        out = torch.cat([task.sample_loss(model(x[i : i + 4096]), y[i : i + 4096]) for i in range(0, len(x), 4096)])
    return out.double().cpu().numpy()


def retraining_config(config: RunConfig, train: Optional[TrainConfig] = None) -> RunConfig:
    """The run the subsets retrain: ``config`` itself, or for a model the user brings (which is never retrained
    unasked) its architecture from the zoo, trained from scratch by ``train`` (the zoo's default for it when None).
    LDS then asks how well the scores of the user's weights predict what that training does without each row."""
    from influence_core.config import MODEL_KINDS, ModelConfig, default_training
    from influence_core.model_files import retrainable_zoo_kind

    m = config.model
    if m.kind != "file":
        return config
    kind, why_not = retrainable_zoo_kind(m)
    if kind is None:
        raise InputError(f"retraining your model needs an architecture this project can train ({', '.join(MODEL_KINDS)}): {why_not}")
    model = ModelConfig(kind=kind, hidden=m.hidden, depth=m.depth, activation=m.activation)
    return config.replace(model=model, train=train or default_training(kind))


def _retrain_subset(
    mask: np.ndarray, config: RunConfig, dataset: Dataset, measure: str, use_cache: bool, randomness: str = "resampled"
) -> tuple[np.ndarray, bool]:
    """The measured held-out quantity after retraining on one subset, and whether that retrain came from the cache:
    a new run on the subset (``resampled``), or the same run with the other rows' weights zeroed (``fixed``)."""
    from influence_core import experiments

    if randomness == "fixed":
        trained = experiments.train(config, silent, use_cache, dataset, sample_weights=np.asarray(mask, dtype=np.float64))
    else:
        trained = experiments.train(config, silent, use_cache, dataset.subset_train(mask))
    _, _, xt, yt = experiments.tensors(dataset, next(trained.model.parameters()).device)
    return measured(trained.model, xt, yt, measure), bool(trained.metrics["from_cache"])


def _measurement(
    config: RunConfig,
    methods: Sequence[str],
    n_subsets: int,
    fraction: float,
    seed: int,
    dataset: Optional[Dataset],
    max_test: Optional[int] = None,
) -> tuple[dict[str, tuple[RunConfig, str]], Dataset, np.ndarray]:
    """What an LDS measurement and its estimate both start from: each method's run (unknown names refused before
    anything runs), the data (the first ``max_test`` held-out points where given) and the checked subsets."""
    from influence_core import experiments

    runs = {spec: method_run(config, spec) for spec in methods}
    ds = dataset if dataset is not None else experiments.load_data(config)
    if max_test is not None:
        ds = ds.subset_test(np.arange(min(max_test, len(ds.y_test))))
    subsets = random_subsets(len(ds.y_train), n_subsets, fraction, seed) if 0 < fraction < 1 and n_subsets >= 1 else np.zeros((0, 0), bool)
    check_settings(ds, n_subsets, fraction, subsets)
    return runs, ds, subsets


def estimate_lds(
    config: RunConfig,
    methods: Sequence[str],
    n_subsets: int = 100,
    fraction: float = 0.5,
    seed: int = 0,
    dataset: Optional[Dataset] = None,
    retrain: Optional[RunConfig] = None,
    randomness: str = "resampled",
    ceiling: bool = False,
    progress: ProgressFn = silent,
) -> Cost:
    """What :func:`linear_datamodeling_score` with these settings will cost, before it starts, timed on this machine:
    each method's scoring of every held-out point (an influence function's curvature and gradient passes, a method's
    own estimate where it has one, e.g. exact attribution's reverse passes) on the full run, and the retrains (one
    training of a subset each, twice with the seed-noise ceiling; retrains found in the cache cost less). The full run
    is trained here when its training is estimated under ``costs.TRAIN_FIRST_SECONDS`` (the measurement trains it first
    anyway); else its training is an estimate too, and the scoring is not timed before it."""
    from influence_core import costs, experiments
    from influence_core.methods import method_short_label

    retrain = retrain or config
    runs, ds, subsets = _measurement(config, methods, n_subsets, fraction, seed, dataset)
    parts: list[Cost] = []
    full = None
    training = None if costs.training_is_cached(config, ds) else costs.training_cost(config, ds)
    if training is not None and training.seconds > costs.TRAIN_FIRST_SECONDS:
        parts.append(training)
    else:
        # the estimate's longest part where it trains (47 s for Trust's digits MLP on a loaded machine): its progress
        full = experiments.train(config, scaled(progress, 0.0, 0.7), True, ds)
    unestimated = []
    if full is not None:
        n_test = len(ds.y_test)
        with experiments.threads_for_run(full):
            for i, (spec, (run, name)) in enumerate(runs.items()):
                progress(0.7 + 0.3 * i / len(runs), f"timing {spec}")
                if get_method(name).uses_curvature:
                    scoring = costs.estimate_influence(run, full, n_test, self_scores=False)
                    parts.append(Cost(scoring.seconds, f"{spec}: {scoring.what}"))
                    continue
                try:
                    seconds = experiments.fit_method(run, full, method=name).estimate_seconds(n_test, repeats=1)
                except (CurvatureError, InputError):
                    seconds = None  # refused: the measurement says why, and leaves it out
                if seconds is None:
                    unestimated.append(method_short_label(name))
                else:
                    parts.append(Cost(seconds, f"{spec}: {n_test} held-out points"))
    if len(subsets):
        rows = ds if randomness == "fixed" else ds.subset_train(subsets[0])  # a fixed-randomness retrain takes every step
        retraining = costs.training_cost(retrain, rows)
        count = len(subsets) * (2 if ceiling and randomness == "resampled" else 1)
        parts.append(Cost.of(count, retraining.seconds, f"{count} retrains × {seconds_text(retraining.seconds)}, unless cached"))
    total = Cost.total(parts)
    if unestimated:
        total = Cost(total.seconds, total.what + f"; {', '.join(unestimated)} not timed ahead")
    return total


def linear_datamodeling_score(
    config: RunConfig,
    methods: Sequence[str],
    n_subsets: int = 100,
    fraction: float = 0.5,
    seed: int = 0,
    measure: str = "loss",
    dataset: Optional[Dataset] = None,
    max_test: Optional[int] = None,
    progress: ProgressFn = silent,
    use_cache: bool = True,
    retrain: Optional[RunConfig] = None,
    randomness: str = "resampled",
    ceiling: bool = False,
    scored: Optional[LDSResult] = None,
) -> LDSResult:
    """LDS of every method in ``methods`` for the run ``config`` (its curvature, damping and knobs), over one shared
    set of retrained subsets. ``max_test`` scores the first that many held-out points only. A model the user brings
    (``config.model.kind == "file"``) is scored as it is, and the subsets retrain ``retrain``
    (:func:`retraining_config`), which the user must allow: without it such a run is refused. ``scored``: an earlier
    result of the same run and held-out points whose methods' scores (and their seconds and notes) are taken as they
    are instead of scored again, e.g. one scoring for several subset fractions (exact attribution's reverse passes
    cost minutes where the retrains cost seconds)."""
    from influence_core import experiments

    if measure not in MEASURES:
        raise InputError(f"measure must be one of {MEASURES}, got {measure!r}")
    if randomness not in RANDOMNESS:
        raise InputError(f"randomness must be one of {RANDOMNESS}, got {randomness!r}")
    if randomness == "fixed" and config.model.kind == "file":
        raise InputError(
            "fixed randomness replays the run that trained the model: a model file brings no run to replay; use --randomness resampled"
        )
    if not methods:
        raise InputError("name at least one method")
    if config.model.kind == "file" and retrain is None:
        raise InputError(
            f"LDS retrains on random subsets, and {experiments.RETRAIN_OWN_MODEL}; or allow retraining your "
            "architecture from scratch on each subset (--retrain)"
        )
    retrain = retrain or config
    runs, ds, subsets = _measurement(config, methods, n_subsets, fraction, seed, dataset, max_test)

    full = experiments.train(config, scaled(progress, 0.0, 0.05), use_cache, ds)
    device = next(full.model.parameters()).device
    _, _, xt, yt = experiments.tensors(ds, device)
    task = CROSS_ENTROPY if measure == "loss" else CORRECT_CLASS_MARGIN

    scores, seconds, notes, skipped = {}, {}, {}, {}
    for j, name in enumerate(methods):
        if scored is not None and name in scored.scores:
            if scored.scores[name].shape != (len(ds.y_test), len(ds.y_train)):
                raise InputError(f"the earlier scores of {name} are for another run's held-out or training points")
            scores[name], seconds[name], notes[name] = scored.scores[name], scored.seconds[name], scored.notes.get(name, "")
            continue
        step = scaled(progress, 0.05 + 0.25 * j / len(methods), 0.05 + 0.25 * (j + 1) / len(methods))
        step(0.0, f"scoring with {name}")
        start = time.perf_counter()
        run, method_name = runs[name]
        try:
            method = experiments.fit_method(run, full, scaled(step, 0.0, 0.5), method=method_name)
        except CurvatureError as err:  # one method's curvature that cannot serve this model does not stop the others
            skipped[name] = str(err)
            continue
        scores[name] = method.scores(PerSampleLoss(xt, yt, task), progress=scaled(step, 0.5, 1.0))
        seconds[name], notes[name] = time.perf_counter() - start, method.note
    methods = [m for m in methods if m not in skipped]
    if not methods:
        raise InputError("no chosen method could be fitted here: " + "; ".join(f"{m}: {why}" for m, why in skipped.items()))

    from influence_core import distributed

    start = time.perf_counter()
    shared = {"config": retrain, "dataset": ds, "measure": measure, "use_cache": use_cache, "randomness": randomness}
    measure_ceiling = ceiling and randomness == "resampled" and len(subsets) > 0
    # one task per subset: on the Dask cluster when there is one (each retrain is cached, so a lost worker costs one)
    retrained = distributed.map_items(
        _retrain_subset,
        list(subsets),
        shared,
        progress=scaled(progress, 0.3, 0.65 if measure_ceiling else 1.0),
        message="retrained subset",
    )
    actual = np.stack([values for values, _ in retrained]) if retrained else np.empty((0, len(ds.y_test)))
    from_cache = sum(hit for _, hit in retrained)
    per_test = {name: lds_from_scores(scores[name], subsets, actual) for name in methods}
    lds = {name: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for name, v in per_test.items()}
    interval = {name: bootstrap_interval(v, seed) for name, v in per_test.items()}
    ceiling_value, ceiling_interval = (1.0, (1.0, 1.0)) if randomness == "fixed" else (None, None)
    if measure_ceiling:  # the same subsets, retrained under another seed: how far training noise alone moves the values
        other = {**shared, "config": retrain.replace(seed=retrain.seed + 1)}
        again = distributed.map_items(
            _retrain_subset, list(subsets), other, progress=scaled(progress, 0.65, 1.0), message="reseeded subset"
        )
        noise = spearman_per_row(np.stack([values for values, _ in again]), actual)
        ceiling_value = float(np.nanmean(noise)) if np.isfinite(noise).any() else float("nan")
        ceiling_interval = bootstrap_interval(noise, seed)
    progress(1.0, "LDS done")
    return LDSResult(
        list(methods),
        lds,
        interval,
        per_test,
        seconds,
        subsets,
        actual,
        scores,
        time.perf_counter() - start,
        from_cache,
        notes,
        randomness,
        ceiling_value,
        ceiling_interval,
        skipped,
    )


TRUST_DATASETS = {"moons": "moons (toy, 300 points)", "blobs": "blobs (toy, 300 points)", "digits": "sklearn digits (1,797 images)"}
TRUST_MODELS = {"logreg": "logistic regression (L-BFGS to the optimum)", "mlp": "MLP 1 × 32, tanh (Adam)"}


def trust_config(dataset: str = "moons", model: str = "logreg", seed: int = 0, smooth: bool = False) -> RunConfig:
    """The Trust view's run: a set the retrains take seconds on, a convex model or a small tanh MLP; ``smooth`` anneals
    the MLP's learning rate to 0 and raises its weight decay (``config.smooth_training``), where exact attribution
    follows retraining (moons, 5 % dropped, fixed randomness: LDS 0.67 → 0.98)."""
    from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, TrainConfig, smooth_training

    if dataset not in TRUST_DATASETS or model not in TRUST_MODELS:
        raise InputError(f"choose a dataset of {list(TRUST_DATASETS)} and a model of {list(TRUST_MODELS)}")
    data = DataConfig(name=dataset, n_train=0, n_test=0) if dataset == "digits" else DataConfig(name=dataset, n_train=300, n_test=100)
    if model == "logreg":
        train = TrainConfig(optimizer="lbfgs", epochs=20, weight_decay=1e-3, n_checkpoints=10)
        curvature = CurvatureConfig(kind="exact", damping=0.0)
    else:
        train = TrainConfig(optimizer="adam", lr=0.01, epochs=150, batch_size=0, weight_decay=1e-3, n_checkpoints=10)
        train = smooth_training(train) if smooth else train
        curvature = CurvatureConfig(kind="auto", damping=1e-2)
    return RunConfig(
        data=data, model=ModelConfig(kind=model, hidden=32, depth=1, activation="tanh"), train=train, curvature=curvature, seed=seed
    )


def method_specs() -> list[str]:
    """Every registered method, the curvature-using ones once per registered curvature: what a Trust run can compare."""
    from influence_core import curvatures, methods

    specs = []
    for name in methods.method_names():
        if methods.get(name).uses_curvature:
            specs += [f"{name}@{c}" for c in curvatures.curvature_names(include_auto=False)]
        else:
            specs.append(name)
    return specs


# what the Trust view measures before the user picks: exact attribution first, then one influence function per
# curvature family that fits a small model, TRAK, and the Hessian-free pair (defaults, read by name from the registries)
TRUST_DEFAULT_SPECS = ("influence@exact", "influence@ekfac", "influence@last_layer", "trak", "tracin", "ip")


def default_specs() -> list[str]:
    """The Trust view's preselected methods: every method exact for its run, then TRUST_DEFAULT_SPECS, those registered."""
    from influence_core.methods import names_where

    specs = method_specs()
    return [s for s in dict.fromkeys((*names_where("exact_for_the_run"), *TRUST_DEFAULT_SPECS)) if s in specs]


def leave_one_out_check(
    config: RunConfig, result: LDSResult, method: str, test_index: int, removals: int = 10, progress: ProgressFn = silent
):
    """The leave-one-out side of one held-out point, for a method of an LDS run: retrain without each of the method's
    ``removals`` strongest training points for that point, one at a time, and compare the retrained loss change with the
    one the scores predict (:func:`influence_core.retraining_check.check_by_retraining`, the explorer's check)."""
    from types import SimpleNamespace

    from influence_core import experiments, retraining_check

    if method not in result.scores:
        raise InputError(f"{method} is not among the measured methods {result.methods}")
    scores = np.asarray(result.scores[method])
    if not 0 <= test_index < scores.shape[0]:
        raise InputError(f"held-out point {test_index} does not exist: pick one of 0–{scores.shape[0] - 1}")
    trained = experiments.train(config, scaled(progress, 0.0, 0.1))
    run, _ = method_run(config, method)
    scored = SimpleNamespace(pairwise=scores, model=trained.model, dataset=trained.dataset, config=run)
    strongest = retraining_check.strongest_for_test_point(scores, test_index, removals)
    return retraining_check.check_by_retraining(scored, strongest, [test_index], scaled(progress, 0.1, 1.0), seed=config.seed)


def subset_scatter(result: LDSResult, method: str, test_index: int) -> tuple[np.ndarray, np.ndarray]:
    """For one test point: the datamodel's prediction and the retrained value on every subset (what LDS correlates)."""
    predicted = result.subsets.astype(np.float64) @ np.asarray(result.scores[method][test_index], dtype=np.float64)
    return predicted, result.actual[:, test_index]
