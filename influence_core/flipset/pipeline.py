"""A binary model fitted and its margin kernel by the config's method: every test point's flip sets (:func:`compute_flip_sets`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from influence_core import cache
from influence_core.config import RunConfig
from influence_core.data.base import Dataset
from influence_core.errors import InputError
from influence_core.flipset.search import MODES, OUTPUTS, FlipSearch, check_binary, effects_from_kernel, find_flip_sets, logit_margin
from influence_core.measurements import margin_measurement
from influence_core.methods import fit_attributor
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.tasks import MARGIN
from influence_core.training import TrainingRecipe

# ------------------------------------------------------------------------------ pipeline


def is_linear(config: RunConfig) -> bool:
    return config.model.kind == "logreg"


@dataclass
class FittedBinary:
    """A trained binary model ready for flip sets (float64 and at the optimum for logistic regression)."""

    config: RunConfig
    dataset: Dataset
    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    metrics: dict[str, Any]
    checkpoints: list = field(default_factory=list)  # the training run's (TracIn)
    training: Optional[TrainingRecipe] = None  # how it was trained (exact attribution replays it); None for a model file


def fit_binary(config: RunConfig, dataset: Optional[Dataset] = None, progress: ProgressFn = silent, use_cache: bool = True) -> FittedBinary:
    """Train the configured model (engine cache); polish logistic regression to its optimum in float64."""
    from influence_core.experiments import load_data, tensors, train, training_recipe
    from influence_core.training import evaluate, polished_convex

    ds = dataset if dataset is not None else load_data(config)
    check_binary(ds)
    trained = train(config, scaled(progress, 0.0, 0.8), use_cache, dataset)
    model = trained.model
    x, y, xt, yt = tensors(trained.dataset, next(model.parameters()).device)
    if is_linear(config):
        x, xt = x.double(), xt.double()
        model = polished_convex(model, x, y, config.train.weight_decay)
    metrics = {"train": evaluate(model, x, y), "test": evaluate(model, xt, yt), "device": str(x.device)}
    progress(1.0, "model ready")
    return FittedBinary(config, trained.dataset, model, x, y, xt, metrics, trained.checkpoints, training_recipe(config, trained))


def margin_kernel(fitted: FittedBinary, progress: ProgressFn = silent) -> tuple[np.ndarray, str]:
    """K[t, i] = ∇m(x_t)ᵀ H⁻¹ ∇m(x_i), (n_test, n_train), by the config's method (H = I for the Hessian-free ones),
    and what the method chose. Logistic regression takes the exact Hessian over all parameters (intercept included),
    undamped where weight decay already makes it positive definite."""
    from influence_core.experiments import method_context

    cfg = fitted.config
    if is_linear(cfg):  # the model polished to its optimum: its exact Hessian, over the intercept too
        damping = 0.0 if cfg.train.weight_decay > 0 else cfg.curvature.damping
        cfg = cfg.replace(curvature__kind="exact", curvature__params="all", curvature__damping=damping)
    # the view's knob settings reach the method, and the training recipe exact attribution replays (an L-BFGS run,
    # polished here, takes its implicit form at this optimum)
    context = method_context(
        cfg, fitted.model, fitted.x_train, fitted.y_train, fitted.checkpoints, fitted.training, **dict(cfg.method_options)
    )
    method = fit_attributor(cfg.method, context, scaled(progress, 0.0, 0.2))
    # scores are −∇fᵀH⁻¹∇ℓ: with the margin on both sides that is −K
    kernel = -method.scores(margin_measurement(fitted.x_test), train_task=MARGIN, progress=scaled(progress, 0.2, 1.0))
    return kernel.astype(np.float64), method.note


@dataclass
class FlipSetResult:
    """Flip sets of every test point. Effects are predicted changes of the logit margin m(x_t)."""

    config: RunConfig
    dataset: Dataset
    model: nn.Module
    threshold: float  # on the margin (0 ⇔ p = 0.5)
    margins: np.ndarray  # (n_test,) m(x_t)
    test_probs: np.ndarray  # (n_test,) p(class 1 | x_t)
    train_probs: np.ndarray  # (n_train,) p(class 1 | x_i)
    kernel: np.ndarray  # (n_test, n_train) ∇m_tᵀ H⁻¹ ∇m_i
    relabel: FlipSearch
    remove: FlipSearch
    metrics: dict[str, Any] = field(default_factory=dict)
    output: str = "probability"  # what Algorithm 1 accumulates: "probability" (paper) or "margin"

    @property
    def predicted(self) -> np.ndarray:
        return (self.margins > self.threshold).astype(np.int64)

    def search(self, mode: str = "relabel") -> FlipSearch:
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
        return self.relabel if mode == "relabel" else self.remove

    def effects(self, mode: str = "relabel") -> np.ndarray:
        """Predicted change of f(x_t) (probability or margin, see ``output``) per training point: (n_test, n_train)."""
        p_label = np.where(self.dataset.y_train == 1, self.train_probs, 1.0 - self.train_probs)
        eff = effects_from_kernel(self.kernel, self.dataset.y_train, p_label, mode)
        if self.output == "probability":
            eff = eff * (self.test_probs * (1.0 - self.test_probs))[:, None]
        return eff

    def flip_set(self, test_index: int, mode: str = "relabel") -> np.ndarray:
        """Training row indices of the flip set of test point ``test_index`` (empty when not found)."""
        s = self.search(mode)
        if not 0 <= test_index < len(self.margins):
            raise InputError(f"test point {test_index} does not exist; choose 0..{len(self.margins) - 1}")
        return s.order[test_index, : s.k[test_index]].copy()

    def flip_set_table(self, test_index: int, mode: str = "relabel") -> "pandas.DataFrame":  # noqa: F821 (imported where used)
        """The flip set of ``test_index`` as rows to review, in Algorithm 1's order: the training id, its label,
        what the edit makes of it, the predicted change of f(x_t) and f(x_t) after the edits so far."""
        import pandas as pd

        rows = self.flip_set(test_index, mode)
        ds, names = self.dataset, np.asarray(self.dataset.class_names)
        effect = self.effects(mode)[test_index, rows]
        start = self.test_probs[test_index] if self.output == "probability" else self.margins[test_index]
        return pd.DataFrame(
            {
                "train row": rows,
                "id": ds.ids_train[rows],
                "label": names[ds.y_train[rows]],
                "edit": names[1 - ds.y_train[rows]] if mode == "relabel" else "removed",
                f"Δ {self.output}": effect,
                f"{self.output} after": start + np.cumsum(effect),
            }
        )

    def confidence_distance(self) -> np.ndarray:
        """|p(class 1 | x_t) − τ|: distance of the predicted probability from the threshold."""
        tau = 1.0 / (1.0 + np.exp(-self.threshold))
        return np.abs(self.test_probs - tau)


def compute_flip_sets(
    config: RunConfig,
    dataset: Optional[Dataset] = None,
    probability_threshold: float = 0.5,
    max_k: Optional[int] = None,
    progress: ProgressFn = silent,
    use_cache: bool = True,
    output: str = "probability",
) -> FlipSetResult:
    """Train (or load) the model and run Algorithm 1 (relabel and remove) for every test point.

    ``output``: accumulate predicted changes of the probability (paper, default) or of the logit margin.
    """
    from influence_core.experiments import dataset_fingerprint

    if output not in OUTPUTS:
        raise InputError(f"output must be one of {OUTPUTS}, got {output!r}")
    if not 0 < probability_threshold < 1:
        raise InputError(f"the probability threshold must be in (0, 1), got {probability_threshold}")
    threshold = float(np.log(probability_threshold / (1 - probability_threshold)))
    fitted = fit_binary(config, dataset, scaled(progress, 0.0, 0.4), use_cache)

    def compute() -> cache.CacheEntry:
        start = time.perf_counter()
        kernel, note = margin_kernel(fitted, scaled(progress, 0.4, 0.95))
        return cache.CacheEntry({"kernel": kernel}, {"flipset_seconds": time.perf_counter() - start, "method_note": note}, {})

    payload = {"config": config.to_dict(), "dataset": dataset_fingerprint(fitted.dataset)}
    entry, was_cached = cache.cached("flipset_kernel", payload, compute, use_cache)
    kernel = entry.arrays["kernel"]
    margins = logit_margin(fitted.model, fitted.x_test)
    train_margins = logit_margin(fitted.model, fitted.x_train)
    test_probs, train_probs = 1 / (1 + np.exp(-margins)), 1 / (1 + np.exp(-train_margins))
    ds = fitted.dataset
    metrics = dict(fitted.metrics, flipset_seconds=entry.meta["flipset_seconds"], from_cache=was_cached)
    result = FlipSetResult(config, ds, fitted.model, threshold, margins, test_probs, train_probs, kernel, None, None, metrics, output)  # type: ignore[arg-type]
    values, cut = (test_probs, probability_threshold) if output == "probability" else (margins, threshold)
    result.relabel = find_flip_sets(result.effects("relabel"), values, cut, max_k)
    result.remove = find_flip_sets(result.effects("remove"), values, cut, max_k)
    progress(1.0, "flip sets found")
    return result
