"""Attribution methods, one file each, registered by name (see :mod:`influence_core.methods.base`)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from influence_core.config import add_registry_check
from influence_core.errors import InputError
from influence_core.knobs import check_knobs
from influence_core.methods.base import REGISTRY, AttributionContext, Attributor, stream_scores

if TYPE_CHECKING:  # pragma: no cover
    from influence_core.config import RunConfig

for _module in pkgutil.iter_modules(__path__):  # every file registers its methods: a new one needs no other edit
    importlib.import_module(f"{__name__}.{_module.name}")


def method_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def names_where(capability: str) -> tuple[str, ...]:
    """The registered methods that declare ``capability`` (a boolean class attribute of :class:`Attributor`)."""
    if not isinstance(getattr(Attributor, capability, None), bool):
        raise AttributeError(f"methods declare no capability {capability!r}")
    return tuple(name for name, cls in REGISTRY.items() if getattr(cls, capability))


def method_label(name: str) -> str:
    return REGISTRY[name].label


def method_short_label(name: str) -> str:
    return REGISTRY[name].short_label or REGISTRY[name].label


def get(name: str) -> type[Attributor]:
    if name not in REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of {method_names()}")
    return REGISTRY[name]


def check_method_options(name: str, options: dict) -> None:
    """Refuse knobs the method does not have (naming those it has) and values of the wrong type or range."""
    check_knobs(f"{name} method", get(name).knobs, options)


def check_config(config: "RunConfig") -> None:
    """A run's method is registered and has the knobs it is given (run in every config's validation)."""
    if config.method not in method_names():
        raise InputError(f"method must be one of {method_names()}, got {config.method!r}")
    check_method_options(config.method, dict(config.method_options))


add_registry_check(check_config)


def fit_attributor(name: str, context: AttributionContext, progress=None) -> Attributor:
    """The named method fitted on the context (its curvature, checkpoints or dropout copies)."""
    from influence_core.progress import silent

    cls = get(name)
    reason = cls.unavailable_reason(context)
    if reason:
        raise InputError(reason)
    return cls(context).fit(progress or silent)


__all__ = [
    "REGISTRY",
    "AttributionContext",
    "Attributor",
    "check_method_options",
    "fit_attributor",
    "get",
    "method_label",
    "method_names",
    "names_where",
    "stream_scores",
]
