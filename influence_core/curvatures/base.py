"""The curvature seam: a registered class per H⁻¹ backend, with its limits and a memory estimate.

H is the Hessian (or GGN) of the *training objective*, mean task loss + (λ/2)‖θ‖², over the chosen
parameters, plus ``damping·I``. Each backend is a subclass of :class:`Curvature` with a ``name``; defining
the class registers it (``REGISTRY``), so the config, the CLI and every page's picker see it with no other
edit. A backend says what it cannot do (:meth:`unsupported_reason`), what it would allocate
(:meth:`estimate_bytes`) and how long it takes (:meth:`estimate_cost`: its own count of units, each timed on this
machine, :mod:`influence_core.costs`) before anything is fitted; ``auto`` (:func:`influence_core.curvatures.fit_curvature`)
reads those to pick the most accurate one that fits, and the app and the CLI say the cost before a fit starts.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Optional, Sequence

import torch
from torch import nn

from influence_core.costs import Cost, seconds_text
from influence_core.progress import ProgressFn, silent
from influence_core.tasks import CROSS_ENTROPY, Task


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


@dataclass
class ModelProfile:
    """What the estimates need to know about a model: sizes, activations and forward cost per sample."""

    n_selected: int
    n_all: int
    n_head: int
    n_outputs: int
    activations_per_sample: int  # elements of every leaf module's output for one input
    forward_flops_per_sample: float
    factor_sides: list[tuple[int, int]] = field(default_factory=list)  # (input side, output side) per Linear/Conv2d with selected weights
    selected_module_types: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, model: nn.Module, sample_shape: tuple[int, ...], names: list[str]) -> "ModelProfile":
        params = dict(model.named_parameters())
        owner = {}
        for module_name, module in model.named_modules():
            for attr, _ in module.named_parameters(recurse=False):
                owner[f"{module_name}.{attr}" if module_name else attr] = module
        activations, flops, outputs = 0, 0.0, 0
        handles = []

        def hook(module, inputs, output):
            nonlocal activations, flops
            if isinstance(output, torch.Tensor):
                activations += output.numel()
                if isinstance(module, nn.Linear):
                    flops += 2.0 * output.numel() * module.in_features
                elif isinstance(module, nn.Conv2d):
                    flops += 2.0 * output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]

        for module in model.modules():
            if not list(module.children()):
                handles.append(module.register_forward_hook(hook))
        p0 = next(model.parameters())
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                out = model(torch.zeros((1, *sample_shape), dtype=p0.dtype, device=p0.device))
            outputs = int(out.shape[-1]) if out.dim() > 1 else 1
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        sides, types = [], set()
        for name in names:
            module = owner.get(name)
            if module is None:
                continue
            types.add(type(module).__name__)
            if name.endswith("weight") and isinstance(module, nn.Linear):
                sides.append((module.in_features + (module.bias is not None), module.out_features))
            elif name.endswith("weight") and isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                sides.append((module.in_channels * kh * kw + (module.bias is not None), module.out_channels))
        return cls(
            n_selected=sum(params[n].numel() for n in names),
            n_all=sum(p.numel() for p in params.values() if p.requires_grad),
            n_head=sum(params[n].numel() for n in head_names(model)),
            n_outputs=outputs,
            activations_per_sample=activations,
            forward_flops_per_sample=flops,
            factor_sides=sides,
            selected_module_types=types,
        )


def memory_budget(device: Optional[torch.device] = None) -> int:
    """Bytes a curvature may allocate: ``INFLUENCE_LAB_MEMORY_GB`` if set, else half the memory available
    now (RAM, or the free memory of the GPU), so the machine's other work keeps running."""
    override = os.environ.get("INFLUENCE_LAB_MEMORY_GB")
    if override:
        return int(float(override) * 2**30)
    if device is not None and torch.device(device).type == "cuda":
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(0.8 * free)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        import psutil  # noqa: F401  (not a dependency: only where /proc is missing)

        available = psutil.virtual_memory().available
    return int(0.5 * available)


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


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

    knobs: ClassVar[dict[str, str]] = {}  # option name → what it sets (the CLI's --curvature-option, the config's options)

    param_names: list[str]
    note: str = ""  # why ``auto`` chose it, shown beside the result
    report: str = ""  # how well an iterative backend converged, in words

    @classmethod
    def option(cls, request: CurvatureRequest, name: str, default):
        return type(default)(request.options.get(name, default))

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
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        """Peak memory the fit and the inverse need, beyond the model and the data: at least the (k, p) rows it is
        applied to and one p-vector of its own, unless a backend says better (the identity stores nothing)."""
        return 4 * 2 * request.profile.n_selected

    @classmethod
    def estimate_cost(cls, request: CurvatureRequest) -> Cost:
        """Wall time of fitting on the request and applying the inverse to its ``rows_to_solve`` gradient rows, measured
        here (:mod:`influence_core.costs`). By default: the fit itself timed on one and on four mini-batches of the rows,
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
    from influence_core.costs import affine, on_rows, remember, time_call

    n = request.n_train
    batch = max(1, min(request.batch_size, n))
    small, large = batch, min(n, 4 * batch)

    def measure() -> tuple[float, float]:
        t_small = time_call(lambda: cls.fit(on_rows(request, small)), request.x.device)
        t_large = time_call(lambda: cls.fit(on_rows(request, large)), request.x.device, warm=lambda: None) if large > small else t_small
        return t_small, t_large

    t_small, t_large = remember(request, ("fit", cls.name), measure)
    return affine(small, t_small, large, t_large)(n)


def head_names(model: nn.Module) -> list[str]:
    """The trainable parameters of the last linear layer (empty when the model has none)."""
    from influence_core.errors import InputError
    from influence_core.models import parameter_names

    try:
        return parameter_names(model, "last_layer")
    except InputError:
        return []


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]
