"""The curvature seam: a registered class per H⁻¹ backend, with its limits and a memory estimate.

H is the Hessian (or GGN) of the *training objective*, mean task loss + (λ/2)‖θ‖², over the chosen
parameters, plus ``damping·I``. Each backend is a subclass of :class:`Curvature` with a ``name``; defining
the class registers it (``REGISTRY``), so the config, the CLI and every page's picker see it with no other
edit. A backend says what it cannot do (:meth:`unsupported_reason`), what it would allocate
(:meth:`estimate_bytes`) and how long it takes (:meth:`estimate_cost`: its own count of units, each timed on this
machine, :mod:`influence_core.timing`) before anything is fitted; ``auto`` (:func:`influence_core.curvatures.fit_curvature`)
reads those to pick the most accurate one that fits, and the app and the CLI say the cost before a fit starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Optional, Sequence

import torch
from torch import nn

from influence_core.knobs import Knob
from influence_core.progress import ProgressFn, silent
from influence_core.resources import ModelProfile, memory_budget
from influence_core.tasks import CROSS_ENTROPY, Task
from influence_core.timing import Cost, seconds_text


@dataclass
class CurvatureRequest:
    """What a curvature is fitted on: the model at its trained weights, the training data, the parameters."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    param_names: Sequence[str]
    weight_decay: float
    damping: float
    task: Task = CROSS_ENTROPY
    batch_size: int = 512
    progress: ProgressFn = silent
    memory_budget: Optional[int] = None  # bytes; None = :func:`memory_budget` for the model's device
    options: dict = field(default_factory=dict)  # the backend's knobs (``Curvature.knobs``), e.g. {"rank": 20}
    # gradient rows the fitted inverse will be applied to (its cost for an iterative backend); None: every training row,
    # as the self-influence of every row is
    rows: Optional[int] = None

    @property
    def n_train(self) -> int:
        return len(self.x)

    @cached_property
    def profile(self) -> "ModelProfile":
        return ModelProfile.of(self.model, tuple(self.x.shape[1:]), list(self.param_names))

    @property
    def rows_to_solve(self) -> int:
        return self.n_train if self.rows is None else int(self.rows)

    @property
    def budget(self) -> int:
        return self.memory_budget if self.memory_budget is not None else memory_budget(self.x.device)


REGISTRY: dict[str, type["Curvature"]] = {}


class Curvature(ABC):
    """A fitted, damped inverse curvature: applies (H + damping·I)⁻¹ to rows of gradients."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # what the UI shows
    short_label: ClassVar[str] = ""  # what a select box shows (about 20 characters fit a quarter of a 1280-px page)
    auto_rank: ClassVar[Optional[int]] = None  # order ``auto`` tries (lower = more accurate); None = never chosen by auto
    last_layer_only: ClassVar[bool] = False  # always works over the ``head`` parameters, whatever scope is asked
    # the per-sample losses it is a curvature of: a request with another task is refused before fitting, where auto and
    # the "ones that fit" list see it (a GGN of the cross-entropy means nothing for a margin)
    tasks: ClassVar[tuple[type[Task], ...]] = (Task,)
    applies_damping: ClassVar[bool] = True  # (H + λI)⁻¹ with the request's λ (the identity is H⁻¹ = I, undamped)

    knobs: ClassVar[dict[str, Knob]] = {}  # option name → its typed setting (the CLI's --curvature-option, the config's options)

    param_names: list[str]
    note: str = ""  # why ``auto`` chose it, shown beside the result
    report: str = ""  # how well an iterative backend converged, in words

    @classmethod
    def option(cls, request: CurvatureRequest, name: str, default=None):
        """The request's value of knob ``name`` (parsed to its type), else its declared default."""
        knob = cls.knobs[name]
        value = request.options.get(name)
        return knob.parse(name, value) if value is not None else (knob.default if default is None else default)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls

    # ---- before fitting

    @classmethod
    def task_reason(cls, request: CurvatureRequest) -> Optional[str]:
        """Why this backend cannot serve the request's task (its declared ``tasks``), or None."""
        if isinstance(request.task, cls.tasks):
            return None
        served = ", ".join(t.name if isinstance(t.name, str) and t.name != "task" else t.__name__ for t in cls.tasks)
        return f"it is a curvature of the {served} loss, and this task is {request.task.name}"

    @classmethod
    def unsupported_reason(cls, request: CurvatureRequest) -> Optional[str]:
        """Why this backend cannot serve the request (a model it does not handle), or None."""
        return None

    @classmethod
    def check_before_fit(cls, request: CurvatureRequest) -> None:
        """Raise the fit's own refusal where a check much cheaper than the fit finds it (on the trained model), so that
        a person is not asked to confirm minutes of work that would then stop in a second. By default: none."""
        return None

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        """Peak memory the fit and the inverse need, beyond the model and the data: at least the (k, p) rows it is
        applied to and one p-vector of its own, unless a backend says better (the identity stores nothing)."""
        return 4 * 2 * request.profile.n_selected

    @classmethod
    def estimate_cost(cls, request: CurvatureRequest) -> Cost:
        """Wall time of fitting on the request and applying the inverse to its ``rows_to_solve`` gradient rows, measured
        here (:mod:`influence_core.timing`). By default: the fit itself timed on one and on four mini-batches of the rows,
        extrapolated to all of them (a pass over the data, plus what does not grow with it: factor decompositions,
        a library's set-up), as the one- and two-pass backends take; a backend whose cost lies elsewhere (an iterative
        inverse, p tangents per sample) counts its own units."""
        seconds = subset_fit_seconds(cls, request)
        return Cost(seconds, f"{cls.short_label or cls.name}: the fit timed on part of the data, {seconds_text(seconds)} for all")

    @classmethod
    def estimate_seconds(cls, request: CurvatureRequest) -> float:
        return cls.estimate_cost(request).seconds

    @classmethod
    @abstractmethod
    def fit(cls, request: CurvatureRequest) -> "Curvature":
        """Fit on the training data at the model's current weights."""

    # ---- after fitting

    @abstractmethod
    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        """(k, p) gradients → (k, p) rows of (H + damping·I)⁻¹ g."""

    def precondition_factors(self, rows):
        """(H + damping·I)⁻¹ of :class:`~influence_core.factored.FactoredRows`, kept factored where the curvature's form
        allows it (identity, the Kronecker eigenbases), or None: the caller forms the rows and uses :meth:`inverse_hvp`."""
        return None

    def quadratic_form(self, grads: torch.Tensor) -> torch.Tensor:
        """(k,) values gᵀ (H + damping·I)⁻¹ g, one per row."""
        return (grads * self.inverse_hvp(grads).to(grads.dtype)).sum(1)

    def self_influence(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        chunk_size: int = 2048,
        backend: str = "auto",
        progress: ProgressFn = silent,
        task: Task = CROSS_ENTROPY,
    ) -> torch.Tensor:
        """∇ℓ(z)ᵀ H⁻¹ ∇ℓ(z) for every sample, streamed over gradient chunks (backends with a fused form override it)."""
        from influence_core.gradients import iter_per_sample_grads

        out = torch.empty(len(x), device=x.device)
        for start, grads in iter_per_sample_grads(model, x, y, self.param_names, chunk_size, backend, progress, task):
            out[start : start + len(grads)] = self.quadratic_form(grads)
        return out


def subset_fit_seconds(cls: type["Curvature"], request: CurvatureRequest) -> float:
    """``cls.fit`` timed on the first mini-batch of rows and on the first four, extrapolated (affine) to every row."""
    from influence_core.timing import affine, on_rows, remember, time_call

    n = request.n_train
    batch = max(1, min(request.batch_size, n))
    small, large = batch, min(n, 4 * batch)

    def measure() -> tuple[float, float]:
        t_small = time_call(lambda: cls.fit(on_rows(request, small)), request.x.device)
        t_large = time_call(lambda: cls.fit(on_rows(request, large)), request.x.device, warm=lambda: None) if large > small else t_small
        return t_small, t_large

    t_small, t_large = remember(request, ("fit", cls.name), measure)
    return affine(small, t_small, large, t_large)(n)
