"""The method seam: one registered attributor class per method (fit once, then score measurements).

An attributor is fitted on a trained model (its curvature, its checkpoints, its dropout copies) and then
scores any :class:`~influence_core.measurements.Measurement` against every training sample: a (k, n_train) array,
**positive = harmful** (removing the sample would lower the measured quantity), and itself (self-scores,
higher = more suspicious). Defining a subclass with a ``name`` registers it, so the config, the CLI, every
page's picker and the contract test see it with no other edit.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from influence_core.knobs import Knob
from influence_core.measurements import Measurement
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.tasks import CROSS_ENTROPY, Task
from influence_core.training import Checkpoint, TrainingRecipe

REGISTRY: dict[str, type["Attributor"]] = {}

# bytes one streamed chunk may hold; None: from the memory budget (chunk_budget). A fixed value is for tests.
CHUNK_BYTES: Optional[int] = None


def chunk_budget(device: Union[str, torch.device, None] = None) -> int:
    """Bytes one streamed chunk of gradient rows may hold: an eighth of the memory budget (half the free RAM, or of
    the GPU's free memory; ``INFLUENCE_LAB_MEMORY_GB``), so the curvature, the queries and the machine's other work
    keep the rest; within 64 MiB..1 GiB on a CPU (larger chunks stop paying there) and up to 4 GiB on a GPU."""
    from influence_core.resources import memory_budget

    device = torch.device(device or "cpu")
    high = 4 * 2**30 if device.type == "cuda" else 2**30
    return int(min(high, max(64 * 2**20, memory_budget(device) // 8)))


def chunk_rows(
    n_params: int,
    n_queries: int = 0,
    budget: Optional[int] = None,
    activations: int = 0,
    device: Union[str, torch.device, None] = None,
) -> int:
    """Training rows per chunk: as many as fit ``budget`` (default :func:`chunk_budget`) - per row its p gradient
    floats and their k scores, twice (the chunk and its product), plus the forward and backward activations the
    per-sample gradients hold (``activations`` elements per sample); within 32..4096 (16,384 on a GPU)."""
    budget = budget if budget is not None else CHUNK_BYTES if CHUNK_BYTES is not None else chunk_budget(device)
    per_row = 4 * (n_params + n_queries) * 2 + 4 * 3 * activations
    most = 16384 if device is not None and torch.device(device).type == "cuda" else 4096
    return int(min(most, max(32, budget // max(per_row, 1))))


def _profile(model: nn.Module, names: Sequence[str], sample_shape: tuple[int, ...]):
    from influence_core.resources import ModelProfile

    return ModelProfile.of(model, tuple(sample_shape), list(names))


def model_chunk_rows(model: nn.Module, names: Sequence[str], sample_shape: tuple[int, ...], n_queries: int = 0) -> int:
    """:func:`chunk_rows` for ``model``'s selected parameters on its own device, its activations measured once."""
    profile = _profile(model, names, sample_shape)
    device = next(model.parameters()).device
    return chunk_rows(profile.n_selected, n_queries, activations=profile.activations_per_sample, device=device)


@dataclass
class AttributionContext:
    """What a method is fitted on: the trained model, its training data and the run's settings."""

    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    param_names: Sequence[str]
    weight_decay: float
    curvature: str = "auto"
    damping: float = 0.0
    checkpoints: Sequence[Checkpoint] = ()
    task: Task = CROSS_ENTROPY
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # method knobs (ensemble size, dropout rate, ...)
    backend: str = "auto"
    curvature_options: dict[str, Any] = field(default_factory=dict)  # the curvature's knobs (CG iterations, Arnoldi rank, ...)
    training: Optional[TrainingRecipe] = None  # how the model was trained (initial weights, settings, seed): for replays


def preconditioned_queries(curvature, measurement: Measurement, model: nn.Module, names: Sequence[str]):
    """H⁻¹ ∇f for the measurement's queries: kept as outer products where the measurement and the curvature allow it
    (:mod:`influence_core.factored`; scored by :func:`stream_scores` without forming any Linear layer's rows), else
    the formed (k, p) rows."""
    factors = measurement.query_factors(model, names)
    if factors is None:
        return curvature.inverse_hvp(measurement.query_gradients(model, names))
    pre = curvature.precondition_factors(factors)
    return pre if pre is not None else curvature.inverse_hvp(factors.dense())  # formed from the same pass


def stream_scores(
    model: nn.Module,
    names: Sequence[str],
    x: torch.Tensor,
    y: torch.Tensor,
    preconditioned,
    train_task: Task = CROSS_ENTROPY,
    self_curvature=None,
    backend: str = "auto",
    progress: ProgressFn = silent,
) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """One streaming pass over per-sample training gradients g_i: (−Q g_i for every query row of
    Q = H⁻¹ G_query, and gᵢᵀ H⁻¹ gᵢ under ``self_curvature``); either may be skipped (None). Q is a (k, p) tensor or
    :class:`~influence_core.factored.FactoredRows` (then the training rows are taken factored too)."""
    from influence_core import distributed
    from influence_core.factored import FactoredRows, pairwise_scores
    from influence_core.gradients import iter_factored_grads, iter_per_sample_grads

    n = len(x)
    k = 0 if preconditioned is None else len(preconditioned)
    factored = isinstance(preconditioned, FactoredRows)
    if factored and self_curvature is not None:  # the self-scores need the formed rows anyway
        preconditioned, factored = preconditioned.dense(), False
    if factored:
        profile = _profile(model, names, tuple(x.shape[1:]))
        device = next(model.parameters()).device
        chunk = chunk_rows(preconditioned.train_row_floats(), k, activations=profile.activations_per_sample, device=device)
    else:
        chunk = model_chunk_rows(model, names, tuple(x.shape[1:]), k)
    if distributed.client() is not None:  # score blocks over chunks of the rows on the workers (model and queries sent once)
        rows = distributed.task_rows(n, chunk)
        kwargs = dict(model=model, names=names, preconditioned=preconditioned, train_task=train_task, self_curvature=self_curvature)
        return distributed.over_rows(stream_scores, x, y, (1, 0), progress, rows, "score blocks", backend=backend, **kwargs)
    p0 = next(model.parameters())
    dtype = preconditioned.dtype if preconditioned is not None else p0.dtype
    scores = torch.empty(k, n, dtype=dtype, device=x.device) if preconditioned is not None else None
    self_scores = torch.empty(n, dtype=p0.dtype, device=x.device) if self_curvature is not None else None
    if factored:
        for start, rows in iter_factored_grads(model, x, y, names, chunk, backend, progress, train_task):
            scores[:, start : start + len(rows)] = -pairwise_scores(preconditioned, rows)
        return scores, None
    for start, g in iter_per_sample_grads(model, x, y, names, chunk, backend, progress, train_task):
        if scores is not None:
            scores[:, start : start + len(g)] = -(preconditioned @ g.to(dtype).T)
        if self_scores is not None:
            self_scores[start : start + len(g)] = self_curvature.quadratic_form(g)
    return scores, self_scores


class Attributor(ABC):
    """Fit once on a trained model; then :meth:`scores` for measurements and :meth:`self_scores`."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    short_label: ClassVar[str] = ""  # what a select box shows (about 20 characters fit a quarter of a 1280-px page)
    # What the method is, read by every caller instead of its name (a new method declares these and nothing else
    # needs an edit):
    uses_curvature: ClassVar[bool] = False  # whether the run's curvature setting matters to it (and narrows its scope)
    needs_checkpoints: ClassVar[bool] = False
    predicts_loss_change: ClassVar[bool] = False  # −score / N predicts the measured change when the row is removed
    assumes_sgd: ClassVar[bool] = False  # its derivation assumes plain SGD steps (no momentum) between checkpoints
    trim_by_default: ClassVar[bool] = True  # offered by default in the Hessian-free trim-and-retrain study
    self_scores_nonnegative: ClassVar[bool] = True  # its self-score is a quadratic form gᵀMg with M ⪰ 0
    exact_for_the_run: ClassVar[bool] = False  # its scores are the recorded run's own derivatives (no approximation)
    replays_training: ClassVar[bool] = False  # it runs back through the recorded run: training keeps the states it starts from
    head_closed_form: ClassVar[bool] = False  # over the head alone, the glitch signals have its closed form (TracIn)
    knobs: ClassVar[dict[str, Knob]] = {}  # option name → its typed setting (RunConfig.method_options, the CLI's --method-option)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls

    def __init__(self, context: AttributionContext):
        self.context = context
        self.note = ""  # what the fit chose (the curvature auto picked), shown beside results

    @classmethod
    def unavailable_reason(cls, context: AttributionContext) -> Optional[str]:
        if cls.needs_checkpoints and not context.checkpoints:
            return (
                f"{cls.label} needs checkpoints saved during training: train with checkpoints kept (n_checkpoints ≥ 1), "
                "or, for your own model, give its earlier weight files (TracIn checkpoints in the app, --checkpoint-file "
                "on the command line); methods that need none: influence, IP, TRAK"
            )
        return None

    def fit(self, progress: ProgressFn = silent) -> "Attributor":
        return self

    @property
    def param_names(self) -> list[str]:
        return list(self.context.param_names)

    def at_final_model(self) -> "Attributor":
        """The method at the trained weights only (methods that sum over training checkpoints keep the last one)."""
        return self

    def on_training_rows(self, x: torch.Tensor, y: torch.Tensor) -> "Attributor":
        """The same fitted method (curvature, checkpoints, dropout copies kept) scoring other training rows, e.g. the
        counterfactual of a row relabelled (the glitch signals' CNCI / PCID)."""
        clone = copy.copy(self)
        clone.context = dataclasses.replace(self.context, x_train=x, y_train=y)
        return clone

    def estimate_seconds(self, n_queries: int, repeats: int = 3, steps: Optional[int] = None) -> Optional[float]:
        """Seconds :meth:`scores` will take for ``n_queries`` measurements, timed here on the fitted method; None where
        the method has no estimate of its own (an influence function's is the curvature's: ``costs.estimate_influence``)."""
        return None

    @abstractmethod
    def scores(self, measurement: Measurement, train_task: Optional[Task] = None, progress: ProgressFn = silent) -> np.ndarray:
        """(k, n_train) scores of every training sample on each of the measurement's k queries; + = harmful.
        ``train_task`` is the training side's per-sample quantity (the task's loss unless said otherwise)."""

    @abstractmethod
    def self_scores(self, progress: ProgressFn = silent) -> np.ndarray:
        """(n_train,) each sample's score on itself (≥ 0; higher = more suspicious)."""

    def scores_and_self(self, measurement: Measurement, progress: ProgressFn = silent) -> tuple[np.ndarray, np.ndarray]:
        """Both at once (methods that can share one pass over the training gradients override it)."""
        return self.scores(measurement, progress=scaled(progress, 0.0, 0.5)), self.self_scores(scaled(progress, 0.5, 1.0))
