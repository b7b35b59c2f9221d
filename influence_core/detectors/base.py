"""What a label-noise detector is: a named ranking of training rows by how likely their label is wrong.

A detector reads a :class:`DetectionContext` (the trained run, and what several detectors share: the final model's
probabilities, the out-of-fold probabilities, the dynamics recorded while it trained) and returns one score per
training row, higher = more suspicious. It declares what it needs (``uses_dynamics``, ``extra_trainings``), so a
view or the CLI can say what it costs and why it cannot run before starting it. Registering a subclass
(:func:`register`) is all it takes for the CLI, the views and the benchmark to list it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import numpy as np

from influence_core.progress import ProgressFn, silent

REGISTRY: dict[str, type["Detector"]] = {}


def register(cls: type["Detector"]) -> type["Detector"]:
    REGISTRY[cls.name] = cls
    return cls


@dataclass
class DetectionContext:
    """A trained run and what its detectors share, each computed once on first use."""

    trained: Any  # experiments.Trained
    n_folds: int = 5
    use_cache: bool = True
    allow_out_of_fold: bool = True  # False: the detectors that retrain on folds wait (a view's "run them" click)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def config(self):
        return self.trained.config

    @property
    def dataset(self):
        return self.trained.dataset

    @property
    def labels(self) -> np.ndarray:
        return self.trained.dataset.y_train

    @property
    def trained_here(self) -> bool:
        """False for a model the user brought: it cannot be retrained on folds, and its training was not seen."""
        return self.config.model.kind != "file"

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def computed(self, key: str) -> Any:
        """What :meth:`memo` holds under ``key``, or None: for readers that must never start the work."""
        return self._memo.get(key)

    def train_probs(self) -> np.ndarray:
        from influence_core.experiments import predict_proba

        return self.memo("train_probs", lambda: predict_proba(self.trained.model, self.dataset.x_train))

    def oof_probs(self, progress: ProgressFn = silent) -> np.ndarray:
        """Every row's class probabilities from the same model and training on the folds without it."""
        from influence_core.baselines import out_of_fold_probabilities

        return self.memo("oof_probs", lambda: out_of_fold_probabilities(self.config, self.dataset, self.n_folds, progress, self.use_cache))


class Detector:
    """One ranking of training rows; higher = more suspicious."""

    name: ClassVar[str]
    label: ClassVar[str]  # how a page names it
    description: ClassVar[str]  # one sentence: what it measures
    uses_dynamics: ClassVar[bool] = False  # reads the margins and losses recorded while the model trained
    out_of_fold: ClassVar[bool] = False  # trains the model again once per fold (its cost: n_folds trainings)
    on_request: ClassVar[bool] = False  # costly: runs only where named (CLI --detectors NAME / all), never by default

    def __init__(self, context: DetectionContext):
        self.context = context

    @classmethod
    def unavailable_reason(cls, context: DetectionContext) -> Optional[str]:
        if cls.uses_dynamics and context.trained.dynamics is None:
            return f"{cls.label} reads the training run, and this model was trained elsewhere (it was loaded from your file)"
        if cls.out_of_fold and not context.trained_here:
            return f"{cls.label} retrains the model on folds of the data, and a model loaded from your file is not retrained here"
        if cls.out_of_fold and not context.allow_out_of_fold:
            return f"{cls.label} trains the model {context.n_folds} more times: not run yet"
        return None

    @classmethod
    def extra_trainings(cls, context: DetectionContext) -> int:
        """Trainings of the model this detector adds to the run's own (the out-of-fold ones: one per fold)."""
        return context.n_folds if cls.out_of_fold else 0

    @classmethod
    def used_components(cls, context: DetectionContext) -> tuple[str, ...]:
        """The detectors this one is made of on this run (a combined ranking's; none for a single detector)."""
        return ()

    @classmethod
    def basis(cls, context: DetectionContext) -> str:
        """Why this ranking, on this run, rests on what it does (a view prints it beside the ranking; "" = nothing
        beyond its description)."""
        return ""

    def scores(self, progress: ProgressFn = silent) -> np.ndarray:
        raise NotImplementedError

    def suggested(self) -> Optional[np.ndarray]:
        """The label this detector would give each row, where it has a view (None: it has none)."""
        return None
