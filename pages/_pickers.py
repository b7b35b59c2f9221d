"""Method and curvature pickers that read the engine's registries: a new method or curvature appears in every view."""

from __future__ import annotations

from typing import Any

import streamlit as st

from influence_core import curvatures, methods
from pages._widgets import described_select, settle_widget


def method_picker(container: Any, key: str, default: str = "influence", label: str = "Method", **kwargs: Any) -> str:
    names = list(methods.method_names())
    settle_widget(key, default, names)
    return described_select(
        container, label, names, methods.method_label, methods.method_short_label, key=key, persist_state="session", **kwargs
    )


def method_has(method: str, capability: str) -> bool:
    """Whether the chosen method declares a capability (e.g. ``head_closed_form``): what a page greys out by."""
    return bool(getattr(methods.get(method), capability))


def curvature_picker(
    container: Any, key: str, default: str = "auto", method: str = "influence", label: str = "Curvature", **kwargs: Any
) -> str:
    """Disabled (and ignored) for methods that take no curvature."""
    names = list(curvatures.curvature_names())
    settle_widget(key, default, names)  # keyed by model on some pages: it comes back when the model does (issue 34)
    return described_select(
        container,
        label,
        names,
        curvatures.curvature_label,
        curvatures.curvature_short_label,
        key=key,
        persist_state="session",
        disabled=not methods.get(method).uses_curvature,
        **kwargs,
    )


def knob_inputs(container: Any, owner: Any, key: str) -> tuple[tuple[str, Any], ...]:
    """The chosen method's or curvature's knobs (its registry's typed ``knobs``) in an expander, one input each; returns
    those moved away from their defaults, as (name, value) pairs for ``RunConfig.with_knobs`` (an untouched knob leaves
    the config and its cache key as they are). Nothing is shown for a backend with no knobs."""
    if not owner.knobs:
        return ()
    moved = []
    with container.expander(f"Settings of {owner.label}"):
        for name, knob in owner.knobs.items():
            widget_key = f"{key}_{owner.name}_{name}"
            if knob.kind is bool:
                value = int(st.checkbox(name, value=bool(knob.default), key=widget_key, persist_state="session", help=str(knob)))
            else:
                cast = int if knob.kind is int else float
                bounds = {k: cast(v) for k, v in (("min_value", knob.low), ("max_value", knob.high)) if v is not None}
                value = st.number_input(
                    name,
                    value=None if knob.default is None else cast(knob.default),
                    step=1 if knob.kind is int else None,
                    format=None if knob.kind is int else "%g",
                    placeholder="at run time",
                    key=widget_key,
                    persist_state="session",
                    help=str(knob),
                    **bounds,
                )
            if value is not None and value != knob.default:
                moved.append((name, knob.parse(name, value)))
    return tuple(moved)


def method_and_curvature_knobs(container: Any, method: str, curvature: str, key: str) -> tuple[tuple, tuple]:
    """The knobs of the chosen method and, where it uses one, of its chosen curvature (``auto`` has none)."""
    owner = methods.get(method)
    method_knobs = knob_inputs(container, owner, f"{key}_method")
    uses = owner.uses_curvature and curvature != curvatures.AUTO
    return method_knobs, knob_inputs(container, curvatures.get(curvature), f"{key}_curvature") if uses else ()
