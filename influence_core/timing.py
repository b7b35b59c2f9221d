"""Timing units of the engine: a computation's cost as a count times the time of one unit, timed here.

A unit is timed after a warm-up call (the one-time set-up a run pays once) and read as the median of its repeats (a
stall of a shared machine in one repeat is not its cost). The curvature backends count their work in these units
(:meth:`influence_core.curvatures.base.Curvature.estimate_cost`); :mod:`influence_core.costs` adds a run's training
and scoring passes on top. A ``request`` below is a curvature request, read by its fields (``model``, ``x``, ``y``,
``param_names``, ``task``, ``batch_size``, ``n_train``, ``profile``), so this module stays below the curvatures.
Nothing here imports torch at module level (the app's pages import :func:`duration_text`
before torch loads), and nothing here knows of configs, pipelines or methods.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from influence_core.progress import silent

if TYPE_CHECKING:  # pragma: no cover
    import torch


# a start estimated past this asks the app's user to confirm (a button that states the estimate)
CONFIRM_SECONDS = float(os.environ.get("INFLUENCE_LAB_CONFIRM_SECONDS", "30"))
# the wall time one probe may spend repeating its unit (after a warm-up call) for a steadier median
PROBE_SECONDS = 0.1  # 0.25 made the cold Label bias view spend 2 s timing units of milliseconds


# cleared while a process's start-up imports run in a background thread (serve.py's warm-up): a unit timed beside them
# shares the GIL with the imports and reads slow (the likeliest cause of a Label bias start asking to confirm 6 min for 2 s)
_WARM_UP_OVER = threading.Event()
_WARM_UP_OVER.set()  # nothing to wait for unless a warm-up runs
WARM_UP_WAIT_SECONDS = 30.0  # the longest a timing waits for them (they take seconds)


@contextmanager
def warming_up():
    """Mark the block as start-up imports running beside the app's work (:func:`time_call` waits for its end)."""
    _WARM_UP_OVER.clear()
    try:
        yield
    finally:
        _WARM_UP_OVER.set()


def wait_for_warm_up(timeout: float = WARM_UP_WAIT_SECONDS) -> None:
    want_heavy_imports()  # a warm-up holding its heavy imports back would otherwise keep this waiting
    _WARM_UP_OVER.wait(timeout)


# set once a page needs torch (or times work): until then a warm-up imports only what a page's first figure needs,
# leaving the CPU to the browser, which compiles plotly.js (about 1 s) for that figure meanwhile
_HEAVY_IMPORTS_WANTED = threading.Event()


def want_heavy_imports() -> None:
    """A page is about to import torch itself: a held-back warm-up goes on with it now."""
    _HEAVY_IMPORTS_WANTED.set()


def heavy_imports_wanted(timeout: float) -> bool:
    """Wait until a page wants the heavy imports, at most ``timeout`` seconds; whether one did."""
    return _HEAVY_IMPORTS_WANTED.wait(timeout)


def duration_text(seconds: float) -> str:
    """'4 s', '1 min 05 s', '2 h 03 min': rounded up, so a short wait never reads '0 s'."""
    seconds = max(int(-(-seconds // 1)), 1)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def estimate_text(seconds: float) -> str:
    """An estimated wait in words: 'under a second', 'about 27 s', 'about 1 min 05 s' (never 'about 0 s')."""
    return "under a second" if seconds < 1.0 else f"about {duration_text(seconds)}"


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
        return estimate_text(self.seconds)

    def line(self, subject: str = "estimated") -> str:
        """One line for a terminal or a caption: 'estimated about 4 min 03 s (200 CG iterations × ...)'."""
        return f"{subject} {self.text()}" + (f" ({self.what})" if self.what else "")


def seconds_text(seconds: float) -> str:
    """A measured time: '0.12 ms', '243 ms', '3.96 s', '27 s', '7 min 45 s' (never '2.73e+1 s' or '465 s')."""
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 10:
        return f"{seconds:.3g} s"
    return f"{seconds:.0f} s" if seconds < 59.5 else duration_text(seconds)


# ------------------------------------------------------------------------------------------------ timing


def _synchronise(device: Any) -> None:
    import torch

    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


def _timed(fn: Callable[[], Any], device: Any) -> float:
    """Seconds of one ``fn()``, its device work finished."""
    start = time.perf_counter()
    fn()
    _synchronise(device)
    return time.perf_counter() - start


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
    wait_for_warm_up()
    _synchronise(device)
    (warm or fn)()
    _synchronise(device)
    times: list[float] = []
    while True:
        times.append(_timed(fn, device))
        if len(times) >= max_repeats or sum(times) >= budget:
            return statistics.median(times)  # a stall of the shared machine in one repeat is not the unit's cost


def time_difference(
    short: Callable[[], Any],
    long: Callable[[], Any],
    device: Any = None,
    budget: float = 2 * PROBE_SECONDS,
    max_pairs: int = 20,
) -> tuple[float, float]:
    """(median seconds of ``short()``, median of ``long()`` less ``short()``): the work ``long`` adds, its shared set-up
    apart. The two run in turns after one warm-up of ``short`` and each pair's difference is kept, so a stall of the
    shared machine lands in a pair or two, not in all of one side (timing each side on its own put Label bias's CNN
    training estimate at 0.39x in a loaded CI run)."""
    wait_for_warm_up()
    _synchronise(device)
    short()
    shorts: list[float] = []
    differences: list[float] = []
    spent = 0.0
    while len(differences) < max_pairs and (spent < budget or len(differences) < 3):
        seconds = [_timed(short, device), _timed(long, device)]
        shorts.append(seconds[0])
        differences.append(seconds[1] - seconds[0])
        spent += sum(seconds)
    return statistics.median(shorts), statistics.median(differences)


def time_growing(fn: Callable[[int], Any], limit: int, device: Any = None, start: int = 16, enough: float = 0.1) -> tuple[int, float]:
    """(m, seconds of ``fn(m)``) for the largest m, doubling from ``start`` up to ``limit``, whose call still takes under
    ``enough`` seconds (or ``limit`` itself): work whose cost per row grows with the rows at once (memory-bound
    blocks) is timed as close to the size the run uses as a short probe allows."""
    m = max(1, min(start, limit))
    seconds = time_call(lambda: fn(m), device)
    while m < limit and seconds < enough:
        # straight to the size that should take ``enough`` (at least double): doubling from 32 rows up to a small
        # set's all took four probes, each with its warm-up, 0.5 s of Label bias's 2 s estimate
        m = min(limit, max(2 * m, int(m * enough / max(seconds, 1e-6))))
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


def on_rows(request: Any, m: int) -> Any:
    import dataclasses

    return dataclasses.replace(request, x=request.x[:m], y=request.y[:m], progress=silent)


def _device(request: Any) -> Any:
    return request.x.device


# ------------------------------------------------------------------------------------------------ curvature units


def product_model(request: Any, operator_factory: Callable[[Any], Any], widest: int) -> Callable[[float], float]:
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


def product_seconds(request: Any, operator_factory: Callable[[Any], Any], columns: int) -> float:
    """:func:`product_model` at ``columns`` right-hand sides (timed at that width, up to 256)."""
    return product_model(request, operator_factory, min(int(columns), 256))(columns)


def column_blocks(rows: int, block: int = 256) -> list[int]:
    """The widths the iterative inverses solve ``rows`` right-hand sides in (``apply_in_chunks``' blocks)."""
    full, rest = divmod(max(int(rows), 0), block)
    return [block] * full + ([rest] if rest else [])


def gradient_rows(request: Any, k: int = 4) -> "torch.Tensor":
    """(k, p) per-sample gradients of the first training rows: real right-hand sides for a solver's probe."""
    from influence_core.gradients import per_sample_grads

    def compute():
        m = min(k, request.n_train)
        return per_sample_grads(request.model, request.x[:m], request.y[:m], list(request.param_names), task=request.task).detach()

    return remember(request, ("gradient_rows", k), compute)


def dense_seconds(request: Any, kind: str, p: int, columns: int = 0) -> float:
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
