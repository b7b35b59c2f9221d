"""Progress reporting that works in the CLI (tqdm), in the app (a callback) and silently in tests.

A progress callback receives ``(fraction_done in [0, 1], message)``.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, TypeVar

ProgressFn = Callable[[float, str], None]
T = TypeVar("T")


def silent(_fraction: float, _message: str) -> None:
    return None


def scaled(progress: Optional[ProgressFn], start: float, stop: float) -> ProgressFn:
    """A callback mapping [0, 1] onto [start, stop] of an outer one (for multi-stage work)."""
    outer = progress or silent

    def inner(fraction: float, message: str) -> None:
        outer(start + (stop - start) * min(max(fraction, 0.0), 1.0), message)

    return inner


def track(items: Iterable[T], total: int, message: str, progress: Optional[ProgressFn]) -> Iterator[T]:
    """Yield items, reporting the share done after each."""
    report = progress or silent
    for done, item in enumerate(items, start=1):
        yield item
        report(done / max(total, 1), message)


def tqdm_progress(description: str = "") -> ProgressFn:
    """A callback drawing a tqdm bar on stderr (for the CLI and benchmarks)."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=description, bar_format="{desc} {percentage:3.0f}%|{bar}|{postfix}")  # tqdm puts ", " before the postfix

    def report(fraction: float, message: str) -> None:
        bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
        bar.set_postfix_str(message, refresh=True)
        if fraction >= 1.0:
            bar.close()

    report.close = bar.close  # type: ignore[attr-defined]  # so a caller can end the bar's line before an error message
    return report


_BEAT: contextvars.ContextVar[Optional[Callable[[str], None]]] = contextvars.ContextVar("progress_beat", default=None)


@contextmanager
def beating(report: Callable[[str], None]) -> Iterator[None]:
    """Within it, :func:`beat` calls ``report(message)``: the app's progress box repeats its last share with the message."""
    token = _BEAT.set(report)
    try:
        yield
    finally:
        _BEAT.reset(token)


def beat(message: str) -> None:
    """A step inside work that reports no share of its own (a library's solver loop: LiSSA's series, CG's iterations,
    each a product with the curvature). The app's Stop takes effect at a progress report, and one block of a LiSSA
    solve ran half a minute without one (issue 34); the box shows the work moving meanwhile."""
    report = _BEAT.get()
    if report is not None:
        report(message)
