"""Curvature backends, one file each, registered by name (see :mod:`influence_core.curvatures.base`).

``auto`` is not a backend: :func:`fit_curvature` resolves it to the most accurate registered backend that
supports the model, fits the memory budget and the time budget, and fits (an indefinite exact Hessian moves
it on), and says what it chose and why. An explicit backend that cannot fit is refused before anything is
allocated, with the size it would need and the backends that would fit.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from torch import nn

from influence_core.config import add_registry_check
from influence_core.curvatures.base import REGISTRY, Curvature, CurvatureRequest
from influence_core.errors import CurvatureError, InputError
from influence_core.knobs import check_knobs
from influence_core.models import head_names
from influence_core.progress import ProgressFn, silent
from influence_core.resources import format_bytes
from influence_core.tasks import CROSS_ENTROPY, Task
from influence_core.timing import Cost, estimate_text

if TYPE_CHECKING:  # pragma: no cover
    from influence_core.config import RunConfig

# every module of this package registers its backends on import: a new file is all a new curvature needs
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

AUTO = "auto"
# auto skips backends estimated to take longer than this on the device (seconds)
AUTO_SECONDS = float(os.environ.get("INFLUENCE_LAB_AUTO_SECONDS", "300"))


def curvature_names(include_auto: bool = True) -> tuple[str, ...]:
    """Registered backends in auto's order of preference (``auto`` first)."""
    ordered = sorted(REGISTRY, key=lambda n: (REGISTRY[n].auto_rank if REGISTRY[n].auto_rank is not None else 1_000, n))
    return ((AUTO,) if include_auto else ()) + tuple(ordered)


def curvature_label(name: str) -> str:
    if name == AUTO:
        return "auto (the most accurate that fits)"
    return REGISTRY[name].label


def curvature_short_label(name: str) -> str:
    return "auto" if name == AUTO else REGISTRY[name].short_label or REGISTRY[name].label


def cheaper_curvatures_text(names: Sequence[str] = (AUTO, "kron", "diag", "last_layer")) -> str:
    """Curvatures to name in a refusal, as the app's curvature box shows them, with the CLI's name where it differs:
    'auto, KFAC (kron), diagonal GGN (diag) or last-layer GGN (last_layer)'."""
    shown = [(curvature_short_label(n), n) for n in names if n == AUTO or n in REGISTRY]
    words = [label if label == name else f"{label} ({name})" for label, name in shown]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)


def get(name: str) -> type[Curvature]:
    if name not in REGISTRY:
        raise InputError(f"unknown curvature {name!r}; choose one of {curvature_names()}")
    return REGISTRY[name]


def why_not(cls: type[Curvature], request: CurvatureRequest) -> Optional[str]:
    """Why a backend cannot serve a request: its declared tasks first, then its own model checks."""
    return cls.task_reason(request) or cls.unsupported_reason(request)


def _request_for(cls: type[Curvature], request: CurvatureRequest) -> CurvatureRequest:
    if cls.last_layer_only and list(request.param_names) != head_names(request.model):
        return dataclasses.replace(request, param_names=head_names(request.model))
    return request


def assess(name: str, request: CurvatureRequest) -> tuple[Optional[str], int, float]:
    """(why not, or None; estimated bytes; estimated seconds) for one backend on this request."""
    cls = get(name)
    req = _request_for(cls, request)
    reason = why_not(cls, req)
    if reason is not None:
        return reason, 0, 0.0
    return None, cls.estimate_bytes(req), cls.estimate_seconds(req)


def _fits_now(request: CurvatureRequest) -> list[str]:
    """The backends that can serve the request within its memory budget (nothing is timed for this list)."""
    out = []
    for name in curvature_names(include_auto=False):
        cls = get(name)
        req = _request_for(cls, request)
        if why_not(cls, req) is None and cls.estimate_bytes(req) <= req.budget:
            out.append(name)
    return out


def check_options(kind: str, options: dict) -> None:
    """Refuse knobs the backend does not have (naming those it has) and values of the wrong type or range."""
    check_knobs(f"{kind} curvature", {} if kind == AUTO else get(kind).knobs, options)


def check_config(config: "RunConfig") -> None:
    """A run's curvature is registered (or ``auto``) and has the knobs it is given (run in every config's validation)."""
    if config.curvature.kind not in curvature_names():
        raise InputError(f"curvature must be one of {curvature_names()}, got {config.curvature.kind!r}")
    check_options(config.curvature.kind, dict(config.curvature.options))


add_registry_check(check_config)


def fit_curvature(kind: str, request: CurvatureRequest) -> Curvature:
    """Fit ``kind`` (a registered name or ``auto``) on the request, refusing before allocation what cannot fit."""
    check_options(kind, request.options)
    if kind == AUTO:
        return _fit_auto(request)
    cls, req = _explicit(kind, request)
    return cls.fit(req)


def _explicit(kind: str, request: CurvatureRequest) -> tuple[type[Curvature], CurvatureRequest]:
    """A named backend and its request, refused (before anything is allocated or timed) where it cannot serve it or
    does not fit the memory budget."""
    cls = get(kind)
    req = _request_for(cls, request)
    reason = why_not(cls, req)
    if reason is not None:
        raise InputError(f"the {kind} curvature cannot serve this model: {reason}; choose auto or one of {_fits_now(request)}")
    need = cls.estimate_bytes(req)
    if need > req.budget:
        raise InputError(
            f"the {kind} curvature needs about {format_bytes(need)} here (memory budget {format_bytes(req.budget)}: half of the "
            f"free memory unless INFLUENCE_LAB_MEMORY_GB sets it); choose auto or one that fits: {', '.join(_fits_now(request))}"
        )
    return cls, req


def _auto_candidates(request: CurvatureRequest):
    """auto's order: (name, class, its request, why not before fitting or None); the estimates it reads are measured
    once per request."""
    for name in curvature_names(include_auto=False):
        cls = REGISTRY[name]
        if cls.auto_rank is None:
            continue
        req = _request_for(cls, request)
        reason = why_not(cls, req)
        if reason is None:
            need = cls.estimate_bytes(req)
            if need > req.budget:
                reason = f"needs {format_bytes(need)} > budget {format_bytes(req.budget)}"
            else:
                seconds = cls.estimate_seconds(req)
                if seconds > AUTO_SECONDS:
                    reason = f"would take {estimate_text(seconds)}"
        yield name, cls, req, reason


def estimate_cost(kind: str, request: CurvatureRequest) -> Cost:
    """What fitting ``kind`` on the request and applying it to ``request.rows_to_solve`` rows will take, measured here
    (:meth:`Curvature.estimate_cost`); for ``auto``, the backend it would try first. Refuses what ``fit_curvature`` would."""
    check_options(kind, request.options)
    if kind == AUTO:
        for name, cls, req, reason in _auto_candidates(request):
            if reason is None:
                cost = cls.estimate_cost(req)
                return Cost(cost.seconds, f"auto: {name}; {cost.what}" if cost.what else f"auto: {name}")
        return Cost(0.0, "auto: nothing fits")
    cls, req = _explicit(kind, request)
    return cls.estimate_cost(req)


def check_before_fit(kind: str, request: CurvatureRequest) -> None:
    """The fit's refusals that a cheap check on the trained model finds (:meth:`Curvature.check_before_fit`), for an
    explicit ``kind``; ``auto`` moves past a refused backend by itself."""
    if kind != AUTO:
        cls, req = _explicit(kind, request)
        cls.check_before_fit(req)


def _fit_auto(request: CurvatureRequest) -> Curvature:
    skipped: list[str] = []
    for name, cls, req, reason in _auto_candidates(request):
        if reason is None:
            try:
                fitted = cls.fit(req)
            except CurvatureError as err:
                reason = str(err).split(";")[0]
        if reason is not None:
            skipped.append(f"{name}: {reason}")
            continue
        fitted.note = f"auto chose {name} ({cls.label})" + (f"; skipped {'; '.join(skipped)}" if skipped else "")
        return fitted
    raise CurvatureError("no curvature fits: " + "; ".join(skipped))


def build_curvature(
    kind: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Sequence[str],
    weight_decay: float,
    damping: float,
    batch_size: int = 512,
    progress: ProgressFn = silent,
    task: Task = CROSS_ENTROPY,
    memory_budget_bytes: Optional[int] = None,
    options: Optional[dict] = None,
) -> Curvature:
    """Fit the chosen curvature on the training data (x, y) at the model's current weights.

    ``param_names`` must be all trainable parameters or exactly the ``head`` parameters; ``last_layer``
    always works on the head.
    """
    request = CurvatureRequest(
        model, x, y, list(param_names), weight_decay, damping, task, batch_size, progress, memory_budget_bytes, dict(options or {})
    )
    return fit_curvature(kind, request)


__all__ = [
    "AUTO",
    "REGISTRY",
    "Cost",
    "Curvature",
    "CurvatureRequest",
    "assess",
    "build_curvature",
    "check_options",
    "curvature_label",
    "curvature_names",
    "estimate_cost",
    "fit_curvature",
    "get",
    "why_not",
]
