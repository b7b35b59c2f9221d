"""What a long computation will cost, measured on this machine before it starts (issue 34, item 5).

An estimate is a count the algorithm knows in advance (CG iterations × blocks of right-hand sides, LiSSA's depth,
the exact Hessian's p tangents per sample, epochs × mini-batch steps) times the time of one unit of it, timed here
on the model and data at hand: one curvature-vector product over one mini-batch, one block of Hessian columns
over one chunk of samples, a few training steps, a fit on part of the data. Every unit is timed after a warm-up
call (the one-time set-up a run pays once) and read as the median of its repeats (a stall of a shared machine in
one repeat is not its cost). Each curvature backend says how it is counted
(:meth:`influence_core.curvatures.base.Curvature.estimate_cost`); the pipelines add training and the
per-sample-gradient passes (:func:`estimate_influence`, :func:`estimate_run`); the app asks before starting
anything estimated past :data:`CONFIRM_SECONDS`, and the CLI prints the estimate on stderr first.

Nothing here imports torch at module level (the app's pages import :func:`duration_text` before torch loads).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from influence_core.config import RunConfig
    from influence_core.curvatures.base import CurvatureRequest
    from influence_core.data.base import Dataset
    from influence_core.experiments import Trained

# a start estimated past this asks the app's user to confirm (a button that states the estimate)
CONFIRM_SECONDS = float(os.environ.get("INFLUENCE_LAB_CONFIRM_SECONDS", "30"))
# the wall time one probe may spend repeating its unit (after a warm-up call) for a steadier median
PROBE_SECONDS = 0.25


def duration_text(seconds: float) -> str:
    """'4 s', '1 min 05 s', '2 h 03 min': rounded up, so a short wait never reads '0 s'."""
    seconds = max(int(-(-seconds // 1)), 1)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass(frozen=True)
class Cost:
    """Estimated wall time of a computation and how it was counted, in words."""

    seconds: float
    what: str = ""

    @classmethod
    def of(cls, count: float, unit_seconds: float, what: str) -> "Cost":
        """``count`` units of ``unit_seconds`` each (timed here), described as ``what``."""
        return cls(max(count, 0.0) * max(unit_seconds, 0.0), what)

    @classmethod
    def total(cls, parts: Sequence["Cost"]) -> "Cost":
        shown = [p.what for p in parts if p.what and p.seconds > 0]
        return cls(sum(p.seconds for p in parts), "; ".join(shown))

    def __add__(self, other: "Cost") -> "Cost":
        return Cost.total([self, other])

    @property
    def needs_confirmation(self) -> bool:
        return self.seconds > CONFIRM_SECONDS

    def text(self) -> str:
        """'about 4 min 03 s' (or 'under a second')."""
        return "under a second" if self.seconds < 1.0 else f"about {duration_text(self.seconds)}"

    def line(self, subject: str = "estimated") -> str:
        """One line for a terminal or a caption: 'estimated about 4 min 03 s (200 CG iterations × ...)'."""
        return f"{subject} {self.text()}" + (f" ({self.what})" if self.what else "")


def seconds_text(seconds: float) -> str:
    """A unit's measured time: '12 ms', '1.3 s'."""
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


# ------------------------------------------------------------------------------------------------ timing


def _synchronise(device: Any) -> None:
    import torch

    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


def time_call(
    fn: Callable[[], Any],
    device: Any = None,
    budget: float = PROBE_SECONDS,
    max_repeats: int = 20,
    warm: Optional[Callable[[], Any]] = None,
) -> float:
    """Median seconds of ``fn()`` over repeats (until ``budget`` seconds or ``max_repeats``) after one warm-up call, which
    pays the one-time set-up that a long run pays once (torch.func's first transform takes seconds); ``warm``: a
    smaller call that pays it instead, where one call of ``fn`` is itself a sizeable share of the run."""
    _synchronise(device)
    (warm or fn)()
    _synchronise(device)
    times: list[float] = []
    while True:
        start = time.perf_counter()
        fn()
        _synchronise(device)
        times.append(time.perf_counter() - start)
        if len(times) >= max_repeats or sum(times) >= budget:
            return statistics.median(times)  # a stall of the shared machine in one repeat is not the unit's cost


def time_growing(fn: Callable[[int], Any], limit: int, device: Any = None, start: int = 16, enough: float = 0.1) -> tuple[int, float]:
    """(m, seconds of ``fn(m)``) for the largest m, doubling from ``start`` up to ``limit``, whose call still takes under
    ``enough`` seconds (or ``limit`` itself): work whose cost per row grows with the rows at once (memory-bound
    blocks) is timed as close to the size the run uses as a short probe allows."""
    m = max(1, min(start, limit))
    seconds = time_call(lambda: fn(m), device)
    while m < limit and seconds < enough:
        m = min(limit, 2 * m)
        seconds = time_call(lambda size=m: fn(size), device)
    return m, seconds


def affine(small: float, t_small: float, large: float, t_large: float) -> Callable[[float], float]:
    """t(n) = fixed + n × slope through two timed sizes (both ≥ 0): a call's overhead and its per-unit work."""
    if large <= small:
        return lambda n: t_large * max(n, 0.0) / max(large, 1.0)
    slope = max((t_large - t_small) / (large - small), 0.0)
    fixed = max(t_large - slope * large, 0.0)
    return lambda n: fixed + slope * n


def remember(request: Any, key: tuple, compute: Callable[[], Any]) -> Any:
    """Measurements kept on the request they were taken for (auto, the fit and the page ask the same things)."""
    store = request.__dict__.setdefault("_measured", {})
    if key not in store:
        store[key] = compute()
    return store[key]


def on_rows(request: "CurvatureRequest", m: int) -> "CurvatureRequest":
    import dataclasses

    return dataclasses.replace(request, x=request.x[:m], y=request.y[:m], progress=_quiet)


def _quiet(_fraction: float, _message: str) -> None:
    return None


def _device(request: "CurvatureRequest") -> Any:
    return request.x.device


# ------------------------------------------------------------------------------------------------ curvature units


def product_model(
    request: "CurvatureRequest", operator_factory: Callable[["CurvatureRequest"], Any], widest: int
) -> Callable[[float], float]:
    """Seconds of one product ``A @ V`` of a data-summed curvature operator (curvlinops: one pass over every mini-batch)
    as a function of V's columns, over all the request's rows: one mini-batch's operator timed at 1 and at ``widest``
    columns (affine in the columns between and beyond), times the number of mini-batches."""
    import torch

    n, batch = request.n_train, max(1, min(request.batch_size, request.n_train))
    name = getattr(operator_factory, "__qualname__", repr(operator_factory))
    widest = max(1, int(widest))
    op = remember(request, ("operator", name), lambda: operator_factory(on_rows(request, batch)))

    def timed(columns: int) -> float:
        def measure() -> float:
            v = torch.randn(request.profile.n_selected, columns, generator=torch.Generator().manual_seed(0))
            v = v.to(op.device, op.dtype)
            return time_call(lambda: op @ v, _device(request))

        return remember(request, ("product", name, columns), measure)

    t_one = timed(1)
    t_widest = timed(widest) if widest > 1 else t_one
    per_batch = affine(1, t_one, widest, t_widest)
    return lambda columns: per_batch(columns) * n / batch


def product_seconds(request: "CurvatureRequest", operator_factory: Callable[["CurvatureRequest"], Any], columns: int) -> float:
    """:func:`product_model` at ``columns`` right-hand sides (timed at that width, up to 256)."""
    return product_model(request, operator_factory, min(int(columns), 256))(columns)


def column_blocks(rows: int, block: int = 256) -> list[int]:
    """The widths the iterative inverses solve ``rows`` right-hand sides in (``apply_in_chunks``' blocks)."""
    full, rest = divmod(max(int(rows), 0), block)
    return [block] * full + ([rest] if rest else [])


def gradient_rows(request: "CurvatureRequest", k: int = 4) -> "torch.Tensor":
    """(k, p) per-sample gradients of the first training rows: real right-hand sides for a solver's probe."""
    from influence_core.gradients import per_sample_grads

    def compute():
        m = min(k, request.n_train)
        return per_sample_grads(request.model, request.x[:m], request.y[:m], list(request.param_names), task=request.task).detach()

    return remember(request, ("gradient_rows", k), compute)


def dense_seconds(request: "CurvatureRequest", kind: str, p: int, columns: int = 0) -> float:
    """A dense p × p step timed at a smaller size and scaled by its flops: ``cholesky`` (p³/3, float64), ``eigh``
    (≈ 9p³) or ``solve`` (``cholesky_solve`` of ``columns`` right-hand sides, 2p² each)."""
    import torch

    if p <= 0:
        return 0.0
    m = min(p, 1536)
    device = _device(request)

    def measure() -> float:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(m, m, generator=g, dtype=torch.float64)
        spd = (a @ a.T / m + torch.eye(m, dtype=torch.float64)).to(device)
        if kind == "cholesky":
            return time_call(lambda: torch.linalg.cholesky(spd), device)
        if kind == "eigh":
            return time_call(lambda: torch.linalg.eigh(spd), device)
        chol = torch.linalg.cholesky(spd)
        rhs = torch.randn(m, 64, generator=g, dtype=torch.float64).to(device)
        return time_call(lambda: torch.cholesky_solve(rhs, chol), device)

    t = remember(request, ("dense", kind, m), measure)
    if kind == "solve":
        return t * (p / m) ** 2 * columns / 64
    return t * (p / m) ** 3


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


def steps_cost(model: Any, x: "torch.Tensor", y: "torch.Tensor", cfg: Any, seed: int = 0) -> Cost:
    """Training ``model`` (a copy) on (x, y) under ``cfg`` (a TrainConfig), from a few of its own steps timed here: the
    engine's trainer (as the run calls it) on up to 4 mini-batches for one and for two epochs, the difference (an epoch's
    work, its set-up apart) per step times the run's steps (full-batch L-BFGS: 1 and 2 epochs on up to 512 rows, per
    epoch, scaled by the rows)."""
    import copy
    import dataclasses

    from influence_core.training import train_model

    n = len(x)

    def run(rows: int, epochs: int) -> None:
        train_model(copy.deepcopy(model), x[:rows], y[:rows], dataclasses.replace(cfg, epochs=epochs, n_checkpoints=1), seed)

    device = x.device
    if cfg.optimizer == "lbfgs":  # full batch: an epoch is up to 20 L-BFGS iterations over every row
        rows = min(n, 512)
        one = time_call(lambda: run(rows, 1), device)
        two = time_call(lambda: run(rows, 2), device, warm=lambda: None)
        per_epoch = max(two - one, one / 2) * n / rows
        return Cost.of(cfg.epochs, per_epoch, f"training: {cfg.epochs} L-BFGS epochs × {seconds_text(per_epoch)}")
    batch = cfg.batch_size if 0 < cfg.batch_size < n else n
    steps_per_epoch = -(-n // batch)
    few = min(4, steps_per_epoch)
    rows = min(n, few * batch)
    # an epoch's work, its set-up apart: one and two epochs on (up to) four of its mini-batches, the difference
    one_epoch = time_call(lambda: run(rows, 1), device)
    two_epochs = time_call(lambda: run(rows, 2), device, warm=lambda: None)
    per_step = (max(two_epochs - one_epoch, 0.0) or one_epoch) / few
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


def curvature_cost(config: "RunConfig", trained: "Trained", rows: int) -> Cost:
    """The run's curvature (``auto`` resolved as it would choose) fitted on the trained model and applied to ``rows``
    gradient rows; nothing for a method that uses none."""
    from influence_core import curvatures, methods
    from influence_core.experiments import influence_params, tensors

    if not methods.get(config.method).uses_curvature:
        return Cost(0.0)
    model = trained.model
    x, y, _, _ = tensors(trained.dataset, next(model.parameters()).device)
    request = curvatures.CurvatureRequest(
        model,
        x,
        y,
        influence_params(config, model),
        config.train.weight_decay,
        config.curvature.damping,
        options=dict(config.curvature.options),
        rows=rows,
    )
    return curvatures.estimate_cost(config.curvature.kind, request)


def estimate_influence(config: "RunConfig", trained: "Trained", n_queries: Optional[int] = None, self_scores: bool = True) -> Cost:
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
    parts = [curvature_cost(config, trained, rows)]
    model = trained.model
    x, y, _, _ = tensors(ds, next(model.parameters()).device)
    passes = (1 if self_scores else 0) + (1 if n_queries else 0)
    per_pass = gradient_pass_seconds(model, influence_params(config, model), x, y)
    parts.append(Cost.of(passes, per_pass, f"{passes} pass(es) of per-sample gradients × {seconds_text(per_pass)}"))
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
    from influence_core.experiments import Trained

    data = dataset if dataset is not None else experiments.load_data(config)
    parts = [training_cost(cfg, data) for cfg in trainings if not training_is_cached(cfg, dataset)]
    trained = None
    if not training_is_cached(config, dataset):
        cost = training_cost(config, data)
        if cost.seconds > TRAIN_FIRST_SECONDS:
            parts.append(cost)
            from influence_core.device import default_device
            from influence_core.models import build_model

            model = build_model(config.model, data.input_shape, data.n_classes, config.seed).to(default_device()).eval()
            trained = Trained(config, data, model, [], {})
    if trained is None:
        trained = experiments.train(config, progress or _quiet, True, dataset)
    queries = n_queries(trained.dataset) if callable(n_queries) else n_queries
    parts.append(estimate_influence(config, trained, queries))
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
