"""Progress boxes for a page's long work: the share done and the time left, and how long it took."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import streamlit as st

from influence_core.timing import Cost, duration_text


def compute_seconds_text(seconds: float) -> str:
    """A measured compute time for a metric: '0.4 s', '12 s'; under 0.05 s '< 0.1 s' (a loaded model's scores take
    milliseconds, and '0.0 s' reads as nothing done); a minute or more '1 min 05 s'."""
    if seconds < 0.05:
        return "< 0.1 s"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 59.5 else duration_text(seconds)


def progress_text(fraction: float, elapsed: float, message: str = "", estimate: Optional[float] = None) -> str:
    """'42 % done, about 6 s left: message'. The time left extrapolates the pace so far (elapsed × (1 − f) / f); below
    2 % done, or in the first half second, there is no pace to go on yet: the estimate measured before the start
    (``estimate`` seconds in all) says it, where there is one. The work's fractions should follow its estimated costs
    (as the long pipelines' do), so the pace is not that of its first, cheapest step."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    if fraction >= 1.0:
        left = "finishing"
    elif fraction < 0.02 or elapsed < 0.5:
        left = f"about {duration_text(estimate * (1 - fraction))} left (estimated)" if estimate else "estimating the time left"
    else:
        left = f"about {duration_text(elapsed * (1 - fraction) / fraction)} left"
    return f"{fraction:.0%} done, {left}" + (f": {message}" if message else "")


@contextmanager
def progress_status(label: str, estimate: Optional[Cost] = None) -> Iterator[Callable[[float, str], None]]:
    """An st.status box with a progress bar; yields a ProgressFn for influence_core. The box's label (seen while
    collapsed) and the bar say the share done and the time left (from ``estimate`` until there is a pace); when done,
    the label says how long it took."""
    start = time.perf_counter()
    shown = [0.0]  # when the box was last redrawn: at most ~10 redraws a second, every one is a message to the browser
    expected = estimate.seconds if estimate is not None else None
    with st.status(
        label + (f": starting, {estimate.text()} estimated" if estimate is not None else ": starting"), expanded=False
    ) as status:
        bar = st.progress(0.0)

        def report(fraction: float, message: str) -> None:
            now = time.perf_counter()
            if now - shown[0] < 0.1 and fraction < 1.0:
                return
            shown[0] = now
            text = progress_text(fraction, now - start, message, expected)
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=text)
            status.update(label=f"{label}: {text.split(': ')[0]}")

        try:
            yield report
        except BaseException:  # a refusal (shown below by run_or_explain) must not leave the box reading "starting"
            status.update(label=f"{label}: stopped (see the message below)", state="error")
            raise
        status.update(label=f"{label}: done in {duration_text(time.perf_counter() - start)}", state="complete")
