"""Progress boxes for a page's long work: the share done and the time left, how long it took, and a Stop button."""

from __future__ import annotations

import contextvars
import functools
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import streamlit as st

from influence_core.progress import beating
from influence_core.timing import Cost, duration_text
from pages._costs import forget_confirmed_starts


def compute_seconds_text(seconds: float) -> str:
    """A measured compute time for a metric: '0.4 s', '12 s'; under 0.05 s '< 0.1 s' (a loaded model's scores take
    milliseconds, and '0.0 s' reads as nothing done); a minute or more '1 min 05 s'."""
    if seconds < 0.05:
        return "< 0.1 s"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 59.5 else duration_text(seconds)


def progress_text(
    fraction: float, elapsed: float, message: str = "", estimate: Optional[float] = None, moved_at: Optional[float] = None
) -> str:
    """'42 % done, about 6 s left: message'. The time left extrapolates the pace so far (elapsed × (1 − f) / f); below
    2 % done, or in the first half second, there is no pace to go on yet: the estimate measured before the start
    (``estimate`` seconds in all) says it, where there is one, and keeps saying it below 10 % (a first, cheap stage's
    pace put Trust's 9-minute measurement at "5 % done, about 22 s left"). The work's fractions should follow its
    estimated costs (as the long pipelines' do). ``moved_at``: when the share last moved, where a report only repeats
    it (a solver's beat): the pace is the one measured then, counted down since (it climbed, 8 → 19 s, at "50 %")."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    paced = elapsed if moved_at is None else moved_at
    if fraction >= 1.0:
        left = "finishing"
    elif fraction < 0.02 or elapsed < 0.5 or (estimate and fraction < 0.1):
        left = f"about {duration_text(estimate * (1 - fraction))} left (estimated)" if estimate else "estimating the time left"
    else:
        seconds = paced * (1 - fraction) / fraction - (elapsed - paced)
        # past what the pace said, with the share unmoved: no figure would be true
        left = (
            f"about {duration_text(max(seconds, 1.0))} left" if seconds >= 1.0 or elapsed == paced else "taking longer than its pace said"
        )
    return f"{fraction:.0%} done, {left}" + (f": {message}" if message else "")


# the box over an estimate's own work: where a run trains first to be timed (Label bias on MNIST, Trust's digits MLP)
# it takes the better part of a minute, with its progress and a Stop like the work's
TIMING = "Timing this choice on this machine (a short run trains first, as the work itself would)"

_IN_FRAGMENT: contextvars.ContextVar[bool] = contextvars.ContextVar("in_page_fragment", default=False)
_STOP_ASKED = "_progress_stop_asked"  # set by a Stop button's callback: {label: "at 42% after 12 s"}
_STOPPED_THIS_RUN = "_progress_stopped_this_run"  # the stop that the current run answers (taken by page_header)
_REACHED = "_progress_reached"  # each running box's last "at 42% after 12 s", for the Stop button's message


def page_fragment(func: Optional[Callable] = None, **kwargs: Any) -> Any:
    """``st.fragment`` for a page's interactive part, marking its runs: Streamlit queues a fragment's rerun behind
    the run in progress instead of interrupting it, so a Stop button drawn inside a fragment could not stop its work;
    progress boxes there leave stopping to the toolbar's Stop."""

    def decorate(body: Callable) -> Any:
        @functools.wraps(body)
        def marked(*args: Any, **kw: Any) -> Any:
            token = _IN_FRAGMENT.set(True)
            try:
                return body(*args, **kw)
            finally:
                _IN_FRAGMENT.reset(token)

        return st.fragment(marked, **kwargs)

    return decorate(func) if func is not None else decorate


def take_stop_request() -> None:
    """At the top of every page run (page_header, under the title): the Stop pressed in the run before is said here,
    where work started by a button (Trust's Measure LDS) would otherwise leave no word of it, and is answered by this
    run only, so a later Compute starts its work again."""
    asked = st.session_state[_STOPPED_THIS_RUN] = st.session_state.pop(_STOP_ASKED, None)
    if asked:
        label, reached = next(iter(asked.items()))
        st.info(f"**{label}**: stopped, {reached}, as you asked. Nothing from it was kept.", icon=":material/stop_circle:")


def _ask_to_stop(label: str) -> None:
    # a button's callback runs before the rerun that its click starts; the click itself interrupts the running work at
    # its next progress report (Streamlit's rerun request), where the toolbar's Stop leaves the box spinning
    reached = st.session_state.get(_REACHED, {}).get(label, "before it started")
    st.session_state[_STOP_ASKED] = {label: reached}
    # a start confirmed before is asked about again: coming back to the view (or pressing its button) restarted
    # minutes of stopped work with no question
    forget_confirmed_starts()
    st.toast(f"Stopped: {label}, {reached}. Nothing from it was kept.", icon=":material/stop_circle:")


def _stopped_here() -> None:
    """In the run right after a Stop, at its first progress box outside a fragment: stop the page here instead of
    starting work again (work that starts by itself, like the landing view's training, would restart at once; a later
    stage of the same page would start in its place), with a button that starts it. What stopped is said above."""
    if _IN_FRAGMENT.get():
        return
    if not st.session_state.pop(_STOPPED_THIS_RUN, None):
        return
    st.caption("Stopped here, as you asked (see above).")
    st.button("Start again", key="progress_start_again", type="primary")  # its click is a new run, which starts it
    st.stop()


@contextmanager
def progress_status(
    label: str, estimate: Optional[Cost] = None, stoppable: bool = True, transient: bool = False
) -> Iterator[Callable[[float, str], None]]:
    """An st.status box with a progress bar and a Stop button; yields a ProgressFn for influence_core. The box's label
    (seen while collapsed) and the bar say the share done and the time left (from ``estimate`` until there is a pace);
    when done, the label says how long it took. Stop ends the work at its next progress report and the page says
    where it stopped (inside a :func:`page_fragment`, the toolbar's Stop does it). ``stoppable=False`` for work that
    the page cannot go on without and that cannot end early (imports); ``transient``: the box goes when the work is done
    (an estimate's timing: its result is the estimate shown beside the choice)."""
    _stopped_here()
    start = time.perf_counter()
    reached = st.session_state.setdefault(_REACHED, {})
    reached[label] = "before it started"
    slot = st.empty()
    with slot.container():
        with _box(label, estimate, stoppable, start, reached) as report:
            yield report
    if transient:
        slot.empty()


@contextmanager
def _box(label: str, estimate: Optional[Cost], stoppable: bool, start: float, reached: dict) -> Iterator[Callable[[float, str], None]]:
    shown = [0.0]  # when the box was last redrawn: at most ~10 redraws a second, every one is a message to the browser
    expected = estimate.seconds if estimate is not None else None
    box, button = st.columns([8, 1], vertical_alignment="top")
    with button:
        stop = st.empty()  # emptied when the work ends: a Stop beside a finished box would stop nothing
        if stoppable and not _IN_FRAGMENT.get():
            stop.button("Stop", key=f"stop::{label}", on_click=_ask_to_stop, args=(label,), icon=":material/stop:")
    with (
        box,
        st.status(label + (f": starting, {estimate.text()} estimated" if estimate is not None else ": starting"), expanded=False) as status,
    ):
        bar = st.progress(0.0)

        last = [0.0, 0.0]  # the share last reported and when it moved: a beat (progress.beat) repeats the share

        def report(fraction: float, message: str) -> None:
            now = time.perf_counter()
            if fraction != last[0]:
                last[:] = [fraction, now - start]
            if now - shown[0] < 0.1 and fraction < 1.0:
                return
            shown[0] = now
            text = progress_text(fraction, now - start, message, expected, moved_at=last[1])
            # kept after the work ends: the Stop button's callback runs after the stopped run has unwound
            share = min(max(float(fraction), 0.0), 1.0)
            reached[label] = f"{'as it was finishing' if share >= 1 else f'at {share:.0%}'} after {duration_text(now - start)}"
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=text)
            status.update(label=f"{label}: {text.split(': ')[0]}")

        try:
            with beating(lambda message: report(last[0], message)):
                yield report
        except Exception:  # a refusal (shown below by run_or_explain) must not leave the box reading "starting"
            stop.empty()
            status.update(label=f"{label}: stopped (see the message below)", state="error")
            raise
        stop.empty()
        status.update(label=f"{label}: done in {duration_text(time.perf_counter() - start)}", state="complete")
