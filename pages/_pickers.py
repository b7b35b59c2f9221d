"""Method and curvature pickers that read the engine's registries: a new method or curvature appears in every view."""

from __future__ import annotations

from typing import Any

from influence_core import curvatures, methods
from pages._ui import described_select, settle_widget


def method_picker(container: Any, key: str, default: str = "influence", label: str = "Method", **kwargs: Any) -> str:
    names = list(methods.method_names())
    settle_widget(key, default, names)
    return described_select(container, label, names, methods.method_label, methods.method_short_label, key=key, **kwargs)


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
        disabled=not methods.get(method).uses_curvature,
        **kwargs,
    )
