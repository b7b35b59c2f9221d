"""Past one process: the independent work of a run handed to Dask workers (``dask.distributed``).

One setting (:class:`ComputeSetting`) says where the work runs: one process as always (the default), a
``LocalCluster`` of N worker processes started here (``--workers N``; it helps on one machine too), or an
existing cluster joined by address (``--scheduler tcp://HOST:PORT``). :func:`configure` makes it the
process's setting; the engine then asks :func:`client` and, where there is one, sends its independent
pieces of work to the workers through one of two calls:

- :func:`map_items` — ``fn(item, **shared)`` for every item (an LDS retrain per subset, a chunk of rows),
  the ``shared`` objects (the model, the preconditioned query gradients, the training set) scattered to
  every worker once, each item a task that Dask retries when its worker dies;
- :func:`over_rows` — a function of training rows ``fn(x=, y=, **kwargs)`` (per-sample gradients and the
  score blocks on them, self-influence, TRAK's features) run on chunks of the training set and put back
  together in order; without a cluster it is the one call it always was.

Inside a worker there is no client, so the same functions run there as in one process: a result with
workers is the one-process result (the chunks are the same rows; only float rounding of other batch sizes
differs). Nothing here imports Streamlit; the CLI's ``--workers`` / ``--scheduler`` and the app's sidebar
call :func:`configure`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from influence_core.errors import InputError
from influence_core.progress import ProgressFn, silent

# how long joining a cluster may take before the address is called unreachable
CONNECT_TIMEOUT_S = 5.0
# times a task is retried after an error of its own (a dead worker's tasks are rescheduled by Dask anyway)
TASK_RETRIES = 2
# tasks per worker a chunked pass is cut into (enough to balance the load and to lose little to a dead worker)
TASKS_PER_WORKER = 4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComputeSetting:
    """Where the work runs: ``workers`` > 0 starts a LocalCluster of that many processes; ``scheduler`` joins a
    running cluster; neither is one process, as without Dask."""

    workers: int = 0
    scheduler: Optional[str] = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise InputError(f"--workers must be ≥ 0 (0 = one process), got {self.workers}")
        if self.workers and self.scheduler:
            raise InputError("give --workers (start a local cluster) or --scheduler (join one), not both")
        if self.scheduler is not None and "://" not in self.scheduler:
            raise InputError(f"a scheduler address looks like tcp://HOST:PORT, got {self.scheduler!r}")

    @property
    def local(self) -> bool:
        return not self.workers and not self.scheduler

    def describe(self) -> str:
        if self.scheduler:
            return f"the Dask cluster at {self.scheduler}"
        if self.workers:
            return f"a local Dask cluster of {self.workers} worker process{'es' * (self.workers > 1)}"
        return "one process"


_lock = threading.RLock()
_state: dict[str, Any] = {"setting": ComputeSetting(), "client": None, "cluster": None}


def _start(setting: ComputeSetting):
    from distributed import Client, LocalCluster

    # Dask's own INFO lines (scheduler, nanny, connections) are not the user's business: warnings and errors only
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if setting.workers:
        # one thread per worker process (Dask's nanny sets OMP_NUM_THREADS=1): N processes share the cores without spinning
        cluster = LocalCluster(
            n_workers=setting.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",  # a local cluster listens on this machine only
            scheduler_kwargs={"dashboard": False},  # no web dashboard on a port nobody asked for
            silence_logs=logging.ERROR,
        )
        return Client(cluster, set_as_default=False), cluster
    try:
        return Client(setting.scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"could not reach the Dask scheduler at {setting.scheduler} within {CONNECT_TIMEOUT_S:.0f} s ({type(exc).__name__}): "
            "start one there with `dask scheduler` and `dask worker ADDRESS` on each machine, check the address and the "
            "firewall, or leave the scheduler out to run in one process. Nothing was computed."
        ) from exc


def configure(setting: ComputeSetting) -> ComputeSetting:
    """Make ``setting`` this process's; starts or joins its cluster now (an unreachable one is refused at once, before
    any work) and closes the one before. The same setting again keeps the running cluster."""
    with _lock:
        if setting == _state["setting"] and (setting.local or _state["client"] is not None):
            return setting
        client, cluster = (None, None) if setting.local else _start(setting)
        shutdown()
        _state.update(setting=setting, client=client, cluster=cluster)
        return setting


def shutdown() -> None:
    """Back to one process: close the client and any cluster started here."""
    with _lock:
        client, cluster = _state["client"], _state["cluster"]
        _state.update(setting=ComputeSetting(), client=None, cluster=None)
        quiet = logging.getLogger("distributed")
        level, quiet.level = quiet.level, logging.CRITICAL  # a connection closing under a late message is no news at shutdown
        try:
            for thing in (client, cluster):
                if thing is not None:
                    try:
                        thing.close()
                    except Exception as exc:  # noqa: BLE001 — a cluster already gone is closed enough
                        log.debug("closing %s: %s", thing, exc)
        finally:
            quiet.level = level


@contextmanager
def using(setting: ComputeSetting) -> Iterator[ComputeSetting]:
    """``configure`` for a block (the CLI's command), then back to one process."""
    configure(setting)
    try:
        yield setting
    finally:
        shutdown()


def current() -> ComputeSetting:
    return _state["setting"]


def client():
    """The active Dask client, or None: one process, or this code is itself running inside a worker."""
    found = _state["client"]
    if found is None:
        return None
    try:
        from distributed import get_worker

        get_worker()
        return None  # inside a task: run locally, never submit from a worker
    except ValueError:
        return found


def n_workers() -> int:
    c = client()
    return 1 if c is None else max(1, len(c.scheduler_info(n_workers=-1).get("workers", {})))


def _eta(done: int, total: int, started: float) -> str:
    if done == 0:
        return ""
    left = (time.perf_counter() - started) / done * (total - done)
    return f", ~{left:.0f} s left" if left >= 1 else ", under a second left"


class _Boxed:
    """A shared object sent as one plain pickle (Dask's own torch serializer rebuilds a module without its hook dicts)."""

    def __init__(self, value: Any):
        self.value = value


def _call(fn: Callable, item: Any, shared: dict) -> Any:
    return fn(item, **{name: boxed.value for name, boxed in shared.items()})


def map_items(
    fn: Callable,
    items: Sequence[Any],
    shared: Optional[dict] = None,
    on_result: Optional[Callable[[int, Any], None]] = None,
    progress: ProgressFn = silent,
    message: str = "task",
) -> list:
    """``fn(item, **shared)`` for every item: on the cluster when there is one (``shared`` scattered to every worker
    once; results taken as they finish), else here in order. ``on_result(index, result)`` hears each result as it
    comes (and then the list holds None: a caller writing results out never holds them all); the progress says the
    share done and the time left."""
    shared = dict(shared or {})
    results: list = [None] * len(items)
    started = time.perf_counter()

    def take(i: int, value: Any, done: int) -> None:
        if on_result is not None:
            on_result(i, value)
        else:
            results[i] = value
        progress(done / max(len(items), 1), f"{message} {done}/{len(items)}{_eta(done, len(items), started)}")

    dask = client()
    if dask is None:
        for i, item in enumerate(items):
            take(i, fn(item, **shared), i + 1)
        return results
    from distributed import as_completed

    # a list, not a dict: a dict's names would become the data's keys on the cluster, shared by every later call
    names = list(shared)
    scattered = dict(zip(names, dask.scatter([_Boxed(shared[k]) for k in names], broadcast=True, hash=False))) if names else {}
    run = uuid.uuid4().hex[:10]
    futures = {
        dask.submit(_call, fn, item, scattered, key=f"{message.replace(' ', '-')}-{run}-{i}", retries=TASK_RETRIES, pure=False): i
        for i, item in enumerate(items)
    }
    try:
        with dask.as_current():  # as_completed looks for the current client
            for done, future in enumerate(as_completed(futures), start=1):
                take(futures[future], future.result(), done)
                future.release()
    finally:
        for future in futures:
            future.cancel()
        for future in scattered.values():
            future.release()
    return results


def row_bounds(n: int, rows: Optional[int] = None) -> list[tuple[int, int]]:
    """(start, stop) of the chunks ``n`` training rows are cut into: ``rows`` each, or enough for every worker to get
    :data:`TASKS_PER_WORKER` of them."""
    if rows is None:
        rows = max(1, -(-n // (TASKS_PER_WORKER * n_workers())))
    return [(a, min(a + rows, n)) for a in range(0, n, max(rows, 1))]


def task_rows(n: int, unit: int) -> int:
    """Rows per task: a multiple of ``unit`` (the chunk one process would take, so the workers do the same sums)
    that gives every worker about :data:`TASKS_PER_WORKER` tasks."""
    per = -(-n // (TASKS_PER_WORKER * n_workers()))
    return max(unit, -(-per // unit) * unit)


def _rows_call(bounds: tuple[int, int], fn: Callable, x, y, axes, kwargs: dict):
    a, b = bounds
    return fn(x=x[a:b], y=y[a:b], progress=silent, **kwargs)  # a worker's progress is the client's count of finished chunks


def _cat(parts: list, axis: Optional[int]):
    import numpy as np
    import torch

    if axis is None or parts[0] is None:
        return None
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=axis)
    return np.concatenate(parts, axis=axis)


def over_rows(fn: Callable, x, y, axes, progress: ProgressFn = silent, rows: Optional[int] = None, message: str = "rows", **kwargs):
    """``fn(x=x, y=y, progress=progress, **kwargs)`` — a function of training rows — with its result put together over
    chunks of the rows when there is a cluster. ``axes`` is the rows' axis in the result (a tensor or array) or, for a
    tuple of results, one axis per element (None: that element is None). Without a cluster it is the plain call."""
    if client() is None:
        return fn(x=x, y=y, progress=progress, **kwargs)
    bounds = row_bounds(len(x), rows)
    parts = map_items(_rows_call, bounds, {"fn": fn, "x": x, "y": y, "axes": axes, "kwargs": kwargs}, progress=progress, message=message)
    if isinstance(axes, tuple):
        return tuple(_cat([p[j] for p in parts], axis) for j, axis in enumerate(axes))
    return _cat(parts, axes)


def sum_over_rows(fn: Callable, x, y, progress: ProgressFn = silent, message: str = "rows", **kwargs):
    """``fn(x=x, y=y, progress=progress, **kwargs)`` for a function that is a sum over training rows (a curvature's
    Σᵢ GGNᵢ): on the cluster, the sum of its values over chunks of the rows; without one, the plain call."""
    if client() is None:
        return fn(x=x, y=y, progress=progress, **kwargs)
    parts = map_items(
        _rows_call, row_bounds(len(x)), {"fn": fn, "x": x, "y": y, "axes": None, "kwargs": kwargs}, progress=progress, message=message
    )
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def worker_pids() -> dict[str, int]:
    """Each worker's process id (to watch a cluster, and for the test that kills one)."""
    c = client()
    return {} if c is None else c.run(os.getpid)
