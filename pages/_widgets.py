"""Widgets that show what the page computes with: values settled before drawing, select boxes with descriptions."""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Sequence

import streamlit as st


def settle_widget(
    key: str,
    default: Any,
    options: Optional[Sequence[Any]] = None,
    bounds: Optional[tuple[Any, Any]] = None,
    basis: Any = None,
) -> Any:
    """The value a keyed widget is to show and the page to compute with, put in ``st.session_state[key]`` before the
    widget is drawn (issue 34): the value kept under ``key`` while it is still one of ``options`` (or within
    ``bounds``, both ends included), else ``default`` (itself brought into the options or bounds). With ``basis``
    (what the kept value was chosen for, e.g. the range of the data's scores), a new basis takes the default, as a
    widget keyed by it would. Call it on every run, right before drawing the widget with ``key=key`` and no
    ``index=`` / ``value=`` (the session state sets it).

    Why every run: a widget whose options or range follow the data or model came back showing one choice while the
    page computed with another (Label bias's Score box read "heldout" over a chart of "paper"; What-if's test-point box
    0 beside "Test #3"). When the data changes under a widget, or the page stops for a run and the widget comes back,
    the server may keep a value the browser does not show, or reset one the browser still shows. A value written here
    is sent to the browser with the widget, so the two agree whatever happened in between. A value the run cannot use
    (a disabled slider whose setting is ignored) is given as the only option: the widget then shows what is used."""
    if options is not None:
        options = list(options)
        if not options:
            st.session_state.pop(key, None)
            return None
        if not any(_same(default, option) for option in options):
            default = options[0]
    if bounds is not None:
        lo, hi = bounds
        default = min(max(default, lo), hi)
    value = st.session_state.get(key, default)
    if basis is not None:
        kept_for = st.session_state.get(f"_basis_of_{key}")
        if kept_for is not None and kept_for != basis:
            value = default
        st.session_state[f"_basis_of_{key}"] = basis
    if options is not None:
        # the option itself: a value stored from an earlier run may be a copy of another type (numpy's int64 for an int)
        value = next((option for option in options if _same(value, option)), default)
    if bounds is not None and not _within(value, lo, hi):
        value = default
    st.session_state[key] = value
    return value


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays and the like compare element by element
        return False


def _within(value: Any, lo: Any, hi: Any) -> bool:
    try:
        return bool(lo <= value <= hi)
    except TypeError:  # None, or a value of another kind
        return False


def short_name(description: str) -> str:
    """An option's name without its explanation: the text before the first " (", ", " or ": "."""
    return re.split(r" \(|, |: ", description, maxsplit=1)[0]


def described_select(
    container: Any,
    label: str,
    options: Sequence[Any],
    describe: Callable[[Any], str],
    short: Optional[Callable[[Any], str]] = None,
    **kwargs: Any,
) -> Any:
    """A select box showing each option's short name, with the chosen option's whole description in a caption under
    it and every option's in its help: a quarter of a 1280-px page holds about 20 characters, and the descriptions
    were cut off in the box (issue 20)."""
    short = short or (lambda option: short_name(describe(option)))
    if kwargs.get("help") is None:
        kwargs["help"] = "\n".join(f"- **{short(option)}**: {describe(option)}" for option in options)
    value = container.selectbox(label, options, format_func=short, **kwargs)
    if value is not None and describe(value) != short(value):
        container.caption(describe(value))
    return value
