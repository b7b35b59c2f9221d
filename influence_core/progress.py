"""Progress reporting that works in the CLI (tqdm), in the app (a callback) and silently in tests.

A progress callback receives ``(fraction_done in [0, 1], message)``.
"""

from __future__ import annotations

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
