"""What a long computation will cost, measured on this machine before it starts (issue 34, item 5).

An estimate is a count the algorithm knows in advance (CG iterations × blocks of right-hand sides, LiSSA's depth,
the exact Hessian's p tangents per sample, epochs × mini-batch steps) times the time of one unit of it, timed here
on the model and data at hand (:mod:`influence_core.timing`: one curvature-vector product over one mini-batch, one
block of Hessian columns over one chunk of samples, a few training steps, a fit on part of the data). Each curvature
backend says how it is counted
(:meth:`influence_core.curvatures.base.Curvature.estimate_cost`); the pipelines add training and the
per-sample-gradient passes (:func:`estimate_influence`, :func:`estimate_run`); the app asks before starting
anything estimated past :data:`influence_core.timing.CONFIRM_SECONDS`, and the CLI prints the estimate on stderr first.

Nothing here imports torch at module level (the app's pages import :func:`duration_text` before torch loads).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from influence_core.progress import silent
from influence_core.text import plural
from influence_core.timing import Cost, seconds_text, time_call, time_difference, time_growing

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from influence_core.config import RunConfig
    from influence_core.data.base import Dataset
    from influence_core.experiments import Trained


def gradient_pass_seconds(model: Any, names: Sequence[str], x: "torch.Tensor", y: "torch.Tensor", task: Any = None) -> float:
    """Seconds of the per-sample gradients of every row (the streamed scoring pass): the engine's chunks timed on as
    many rows as a short probe allows (the whole chunk where it is quick), scaled by the rows."""
    from influence_core.gradients import iter_per_sample_grads
    from influence_core.methods.base import model_chunk_rows
    from influence_core.tasks import CROSS_ENTROPY

    n = len(x)
    if n == 0:
        return 0.0
    chunk = model_chunk_rows(model, names, tuple(x.shape[1:]))

    def run(m: int) -> None:
        for _ in iter_per_sample_grads(model, x[:m], y[:m], list(names), chunk, task=task or CROSS_ENTROPY):
            pass

    m, seconds = time_growing(run, min(n, chunk), x.device, start=32)
    return seconds * n / m


# ------------------------------------------------------------------------------------------------ training


def training_cost(config: "RunConfig", dataset: "Dataset", model: Any = None) -> Cost:
    """The configured training on ``dataset`` (:func:`steps_cost` on the run's own model and rows)."""
    import torch

    from influence_core.device import default_device
    from influence_core.models import build_model

    device = default_device()
    base = model if model is not None else build_model(config.model, dataset.input_shape, dataset.n_classes, config.seed)
    x, y = torch.from_numpy(dataset.x_train).to(device), torch.from_numpy(dataset.y_train).to(device)
    return steps_cost(base.to(device), x, y, config.train, config.seed)


# steps_cost's measurements in this process, by what the time depends on (the model's shapes, the rows' shape, the
# training settings, the device): a clean-label model, a retrain or a rerun of the view is the same work, timed once
_STEP_COSTS: dict[tuple, Cost] = {}


def steps_cost(model: Any, x: "torch.Tensor", y: "torch.Tensor", cfg: Any, seed: int = 0) -> Cost:
    key = (
        type(model).__name__,
        tuple((name, tuple(p.shape)) for name, p in model.named_parameters()),
        tuple(x.shape),
        str(x.device),
        cfg,
    )
    if key not in _STEP_COSTS:
        _STEP_COSTS[key] = _measured_steps_cost(model, x, y, cfg, seed)
    return _STEP_COSTS[key]


def training_steps(rows: int, cfg: Any) -> int:
    """The optimiser steps of training ``rows`` rows under ``cfg`` (a TrainConfig): mini-batches per epoch × epochs."""
    batch = cfg.batch_size if 0 < cfg.batch_size < rows else rows
    return -(-rows // max(batch, 1)) * cfg.epochs


def _measured_steps_cost(model: Any, x: "torch.Tensor", y: "torch.Tensor", cfg: Any, seed: int) -> Cost:
    """Training ``model`` (a copy) on (x, y) under ``cfg`` (a TrainConfig), from a few of its own steps timed here: the
    engine's trainer (as the run calls it) on up to 4 mini-batches for one and for two epochs, the difference (an epoch's
    work, its set-up apart) per step times the run's steps (full-batch L-BFGS: 1 and 2 epochs on up to 512 rows, per
    epoch, scaled by the rows)."""
    import copy
    import dataclasses

    from influence_core.training import lbfgs_ready, train_model

    n = len(x)

    def run(rows: int, epochs: int) -> None:
        train_model(copy.deepcopy(model), x[:rows], y[:rows], dataclasses.replace(cfg, epochs=epochs, n_checkpoints=1), seed)

    device = x.device
    if cfg.optimizer == "lbfgs":  # full batch: an epoch is up to 20 L-BFGS iterations over every row
        # the whole training on up to 512 rows, scaled by the rows: an epoch past convergence stops at once, and when
        # that comes no epoch or two can tell (timing two epochs put logistic regressions at 1-4x their training)
        rows = min(n, 512)
        lbfgs_ready()
        seconds = time_call(lambda: run(rows, cfg.epochs), device) * n / rows
        scaled_note = f" on {rows:,} of the {n:,} rows, scaled" if rows < n else ""
        return Cost(seconds, f"training: {cfg.epochs} L-BFGS epochs timed{scaled_note}")
    batch = cfg.batch_size if 0 < cfg.batch_size < n else n
    steps_per_epoch = training_steps(n, cfg) // cfg.epochs
    few = min(4, steps_per_epoch)
    rows = min(n, few * batch)
    # an epoch's work, its set-up apart: one and three epochs on (up to) four of its mini-batches, the difference over
    # the two epochs between (one and two epochs' difference, half the steps, put a loaded machine's estimates of Label
    # bias's CNN at 0.3-2.3x its training)
    one_epoch, two_more = time_difference(lambda: run(rows, 1), lambda: run(rows, 3), device)
    per_step = (max(two_more, 0.0) / 2 or one_epoch) / few
    steps = steps_per_epoch * cfg.epochs
    return Cost.of(steps, per_step, f"training: {cfg.epochs} epochs × {steps_per_epoch} steps × {seconds_text(per_step)}")


def training_is_cached(config: "RunConfig", dataset: Optional["Dataset"] = None) -> bool:
    """Whether the run's training comes from the disk cache (then it costs nothing to speak of)."""
    from influence_core import cache, experiments

    if config.model.kind == "file":
        return True  # the user's model is loaded, not trained
    return cache.load("train", experiments._training_payload(config, dataset)) is not None


def influence_is_cached(config: "RunConfig", dataset: Optional["Dataset"] = None, pairwise: Optional[bool] = None) -> bool:
    """Whether :func:`~influence_core.experiments.compute_influence` finds the run's scores in the disk cache."""
    from influence_core import cache, experiments

    if not training_is_cached(config, dataset):
        return False
    data = dataset if dataset is not None else experiments.load_data(config)
    plan = experiments.pairwise_plan(len(data.y_test), len(data.y_train), pairwise)
    return cache.load("influence", experiments.influence_payload(config, plan, dataset)) is not None


# ------------------------------------------------------------------------------------------------ pipelines


def curvature_cost(config: "RunConfig", trained: "Trained", rows: int, check: bool = False) -> Cost:
    """The run's curvature (``auto`` resolved as it would choose) fitted on the trained model and applied to ``rows``
    gradient rows; nothing for a method that uses none. ``check`` (the model is the trained one): first raise what the
    fit would refuse where a cheap check finds it (:func:`curvatures.check_before_fit`)."""
    from influence_core import curvatures, methods
    from influence_core.experiments import curvature_weight_decay, influence_params, tensors

    if not methods.get(config.method).uses_curvature:
        return Cost(0.0)
    model = trained.model
    x, y, _, _ = tensors(trained.dataset, next(model.parameters()).device)
    names = influence_params(config, model)
    request = curvatures.CurvatureRequest(
        model,
        x,
        y,
        names,
        curvature_weight_decay(config, model, names),
        config.curvature.damping,
        options=dict(config.curvature.options),
        rows=rows,
    )
    if check:
        curvatures.check_before_fit(config.curvature.kind, request)
    return curvatures.estimate_cost(config.curvature.kind, request)


def estimate_influence(
    config: "RunConfig", trained: "Trained", n_queries: Optional[int] = None, self_scores: bool = True, check: bool = False
) -> Cost:
    """Scoring a trained run with a method that inverts a curvature: the curvature fitted and applied to the
    self-influence rows and the ``n_queries`` held-out queries (default: every held-out row), and the passes of
    per-sample training gradients that stream the scores. (A method that uses no curvature is not estimated here.)"""
    from influence_core import methods
    from influence_core.experiments import influence_params, tensors

    if not methods.get(config.method).uses_curvature:
        return Cost(0.0)
    ds = trained.dataset
    n_queries = len(ds.y_test) if n_queries is None else n_queries
    rows = (len(ds.y_train) if self_scores else 0) + n_queries
    parts = [curvature_cost(config, trained, rows, check)]
    model = trained.model
    x, y, _, _ = tensors(ds, next(model.parameters()).device)
    passes = (1 if self_scores else 0) + (1 if n_queries else 0)
    per_pass = gradient_pass_seconds(model, influence_params(config, model), x, y)
    parts.append(Cost.of(passes, per_pass, f"{plural(passes, 'pass', 'passes')} of per-sample gradients × {seconds_text(per_pass)}"))
    return Cost.total(parts)


# training estimated under this is done before the rest is estimated (on the trained model: an iterative solver's
# iteration count depends on it); the run would train first anyway, and finds it cached
TRAIN_FIRST_SECONDS = 15.0  # half the app's 30 s confirmation threshold


def estimate_run(
    config: "RunConfig",
    dataset: Optional["Dataset"] = None,
    n_queries: Union[int, Callable[["Dataset"], int], None] = None,
    trainings: Sequence["RunConfig"] = (),
    progress: Optional[Callable[[float, str], None]] = None,
) -> Cost:
    """A whole run before it starts (through the disk cache): training, unless cached, and each of ``trainings`` (e.g.
    a clean-label model), and scoring. A training estimated under ``TRAIN_FIRST_SECONDS`` is done now, so that the
    scoring is measured on the trained model; a longer one is estimated, and the scoring measured on the untrained
    model of the same architecture (the same throughput; an iterative solver's iteration count may differ).
    ``n_queries``: the held-out queries scored (default: every held-out row), or a function of the data giving it."""
    from influence_core import experiments
    from influence_core.device import default_device
    from influence_core.models import build_model

    data = dataset if dataset is not None else experiments.load_data(config)
    if config.model.kind == "file":  # the user's model: loaded by the run (not trained), its scoring timed on its threads
        return _estimate_run(config, data, dataset, None, n_queries, trainings, progress)
    # every timing on the threads the run will use, set once: a small model's training and scoring run on one
    # (experiments.threads_for_model), and switching the count around each timed call made those timings noisy
    model = build_model(config.model, data.input_shape, data.n_classes, config.seed).to(default_device()).eval()
    with experiments.threads_for_model(model, data, config.train):
        return _estimate_run(config, data, dataset, model, n_queries, trainings, progress)


def _estimate_run(config, data, dataset, model, n_queries, trainings, progress) -> Cost:
    from influence_core import experiments
    from influence_core.experiments import Trained

    parts = [training_cost(cfg, data) for cfg in trainings if not training_is_cached(cfg, dataset)]
    trained = None
    if not training_is_cached(config, dataset):
        cost = training_cost(config, data, model)
        if cost.seconds > TRAIN_FIRST_SECONDS:
            parts.append(cost)
            trained = Trained(config, data, model, [], {})
    check = trained is None  # the trained model, not its untrained stand-in: what the fit will refuse shows now
    if trained is None:
        trained = experiments.train(config, progress or silent, True, dataset)
    queries = n_queries(trained.dataset) if callable(n_queries) else n_queries
    with experiments.threads_for_run(trained):
        parts.append(estimate_influence(config, trained, queries, check=check))
    return Cost.total(parts)


def suggest_cheaper(config: "RunConfig", trained: "Trained", limit: float, n_queries: Optional[int] = None) -> list[tuple[str, Cost]]:
    """Other curvatures for the same run estimated within ``limit`` seconds, cheapest first (what to try instead)."""
    import dataclasses

    from influence_core import curvatures
    from influence_core.errors import InputError

    out = []
    for name in curvatures.curvature_names(include_auto=False):
        if name == config.curvature.kind:
            continue
        other = dataclasses.replace(config, curvature=dataclasses.replace(config.curvature, kind=name, options=()))
        try:
            cost = estimate_influence(other, trained, n_queries)
        except (InputError, ValueError, RuntimeError):
            continue
        if cost.seconds <= limit:
            out.append((name, cost))
    return sorted(out, key=lambda item: item[1].seconds)


def weights_of(costs: Sequence[float]) -> list[float]:
    """Shares of a sequence of jobs by their estimated seconds (equal shares where nothing is estimated)."""
    total = sum(max(c, 0.0) for c in costs)
    if not costs:
        return []
    if total <= 0 or not math.isfinite(total):
        return [1.0 / len(costs)] * len(costs)
    return [max(c, 0.0) / total for c in costs]
