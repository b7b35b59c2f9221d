"""Stop (issue 34): a progress box's own Stop button ends the work at its next progress report and the page says
where it stopped; work that starts on its own does not start again in the run the click causes; inside a fragment,
where Streamlit would queue the click behind the running work, the box leaves stopping to the toolbar's Stop.

AppTest runs a script to its end, so these tests press Stop between runs; the browser test
(tests/test_browser.py) presses it while the work runs."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _page():
    """A page whose work starts on its own (as the landing view's training does), counting the work's runs."""
    import streamlit as st

    from pages._progress import page_fragment, progress_status, take_stop_request

    take_stop_request()
    st.session_state.setdefault("work_runs", 0)
    with progress_status("Training the model") as report:
        st.session_state["work_runs"] += 1
        for step in range(3):
            report(step / 3, f"step {step}")
        if st.session_state.get("halt_in") == "page":
            st.stop()  # the run ends mid-work, as at a Stop: the box is left as it was
    st.write("trained")

    @page_fragment(key="inner")
    def inner() -> None:
        with progress_status("Checking one point") as report:
            report(0.5, "half")
            if st.session_state.get("halt_in") == "fragment":
                st.stop()

    inner()


def _stop_buttons(at: AppTest) -> list:
    return [b for b in at.button if b.key and b.key.startswith("stop::")]


def test_a_box_has_a_stop_while_its_work_runs_and_none_once_it_ended_or_inside_a_fragment():
    at = AppTest.from_function(_page)
    at.session_state["halt_in"] = "page"
    at.run()
    assert [b.key for b in _stop_buttons(at)] == ["stop::Training the model"]
    at.session_state["halt_in"] = "fragment"
    at.run()
    # the page's box has ended (its Stop removed: one beside finished work would stop nothing); the fragment's box is
    # running but has none, as a click there would wait for the work to end
    assert [b.key for b in _stop_buttons(at)] == []
    assert [m.value for m in at.markdown if m.value == "trained"]


def test_the_run_after_stop_says_where_it_stopped_and_start_again_starts_it():
    at = AppTest.from_function(_page)
    at.run()
    # press Stop as the browser would while the work ran: its callback, then the rerun the click starts
    from pages import _progress

    at.session_state[_progress._REACHED] = {"Training the model": "at 42 % after 12 s"}
    _progress_stop = _progress._STOP_ASKED
    at.session_state[_progress_stop] = {"Training the model": "at 42 % after 12 s"}
    at.run()
    assert not at.exception
    assert at.session_state["work_runs"] == 1, "the work started again in the run the Stop caused"
    said = " ".join(i.value for i in at.info)
    assert "Training the model" in said and "stopped, at 42 % after 12 s" in said
    assert not [m for m in at.markdown if m.value == "trained"]
    # Start again: a new run, which starts the work
    next(b for b in at.button if b.key == "progress_start_again").click().run()
    assert at.session_state["work_runs"] == 2 and not at.info
    # and any later run starts it too: a Stop is answered by the run right after it only
    at.run()
    assert at.session_state["work_runs"] == 3


def test_the_stop_callback_records_how_far_the_work_got(monkeypatch):
    from pages import _progress

    toasts = []
    state: dict = {_progress._REACHED: {"Training the model": "at 42 % after 12 s"}, "_confirmed_starts": {"trust:lds"}}
    monkeypatch.setattr(_progress.st, "session_state", state)
    monkeypatch.setattr(_progress.st, "toast", lambda text, **_: toasts.append(text))
    _progress._ask_to_stop("Training the model")
    assert state[_progress._STOP_ASKED] == {"Training the model": "at 42 % after 12 s"}
    assert toasts and "at 42 % after 12 s" in toasts[0] and "Nothing from it was kept" in toasts[0]
    # a long start confirmed before is asked about again: a view came back to minutes of stopped work and restarted it
    assert state["_confirmed_starts"] == set()


def _button_page():
    """Work started by a button (Trust's Measure LDS): the run after a Stop enters no progress box."""
    import streamlit as st

    from pages._progress import progress_status, take_stop_request

    take_stop_request()
    if st.button("Measure", key="go"):
        with progress_status("Scoring with 3 methods") as report:
            report(0.5, "half")


def test_work_started_by_a_button_says_where_it_stopped_too():
    """Trust and What-if went back to their idle hint after Stop, with only a toast that fades (a walk)."""
    from pages import _progress

    at = AppTest.from_function(_button_page)
    at.run()
    at.session_state[_progress._STOP_ASKED] = {"Scoring with 3 methods": "at 5% after 2 s"}
    at.run()
    assert not at.exception
    assert [i.value for i in at.info] == ["**Scoring with 3 methods**: stopped, at 5% after 2 s, as you asked. Nothing from it was kept."]
    at.run()  # said once: the next run is a new one
    assert not at.info


def test_every_fragment_of_the_pages_is_a_page_fragment():
    """A box inside a plain ``st.fragment`` would draw a Stop button that Streamlit queues behind the work it should
    stop: the pages mark their fragments with ``page_fragment`` (which leaves such boxes to the toolbar's Stop)."""
    from pathlib import Path

    pages = Path(__file__).resolve().parents[1] / "pages"
    plain = [
        f"{p.name}:{i}"
        for p in pages.glob("*.py")
        if p.name != "_progress.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "st.fragment" in line
    ]
    assert not plain, plain


def test_the_time_left_counts_down_while_a_solver_beats_and_the_estimate_speaks_early():
    """A LiSSA block beats at an unmoved share: the time left climbed (8 → 19 s at "50 %"); a first, cheap stage's
    pace put Trust's 9-minute measurement at "5 % done, about 22 s left" (a walk)."""
    from pages._progress import progress_text

    assert progress_text(0.5, 12.0, moved_at=8.0) == "50% done, about 4 s left"  # counted down from the pace at 8 s
    assert progress_text(0.5, 30.0, moved_at=8.0, message="340 products") == "50% done, taking longer than its pace said: 340 products"
    assert progress_text(0.05, 2.0, estimate=540.0) == "5% done, about 8 min 33 s left (estimated)"
    assert progress_text(0.25, 3.0, "training") == "25% done, about 9 s left: training"  # no estimate: the pace from 2 %


def _transient_page():
    import streamlit as st

    from pages._progress import progress_status

    with progress_status("Timing this choice", transient=True) as report:
        report(0.5, "half")
    with progress_status("Training") as report:
        report(1.0, "done")
    st.write("page")


def test_a_transient_box_goes_when_its_work_is_done():
    """The estimate's timing box (its result is the estimate beside the choice) does not stay on the page."""
    at = AppTest.from_function(_transient_page).run()
    labels = [s.label for s in at.status]
    assert len(labels) == 1 and labels[0].startswith("Training: done in"), labels
