"""Is the influence right here? Remove training points one at a time, retrain, and compare.

The first-order prediction of removing training point i is Δ L(z_test) ≈ -score / N (the sign
convention of ``influence_core``). This module measures the real change: it retrains without i
and reads the loss again (Koh & Liang 2017, Fig. 2).

Protocol, the same for every model:

- The model is copied in float64 and *polished* by full-batch L-BFGS on all training data (the
  regularised objective it was trained on). This is the baseline.
- Each removal starts from that baseline and runs the same L-BFGS on the data without the point.
  For logistic regression the objective is strictly convex, so this is exact leave-one-out. For a
  neural network it is Koh & Liang's warm-started retraining: the optimum nearest the trained
  weights, without the point. Both runs share the optimiser, so its drift cancels in the difference.
- Whether the optimiser *settled* is measured, not assumed: the objective's gradient norm where
  each run stopped, against the push of one removal (‖∇ℓ_i‖ / N, the gradient the removal adds).
  A ReLU network's kinks can stop L-BFGS short (a gradient of the size of that push): its
  retrained changes are then partly where the optimiser stopped, and ``settled`` is False.

The *noise floor*: what the protocol reads when nothing is removed. The baseline is displaced in a random
direction by as much as a removal moved the weights (the median ‖θ₋ᵢ − θ‖), then L-BFGS runs on the full data
again, ``NULL_RUNS`` times; the largest |Δ test loss| these null runs leave is the floor. A retrained change at
or below it cannot be told from where the optimiser stops, nor can a predicted change that small be checked, so
such a removal says nothing about the influence;
the statistics are read over the removals above it, and with fewer than ``MIN_ABOVE_NOISE`` of those the check
cannot tell (``can_tell``). A fitted point's removal (a predicted change of ~1e-8) lands there.

Only some methods' scores predict a loss change (those that declare ``predicts_loss_change``: the influence
function, TRAK, exact attribution); IP and TracIn scores have no H⁻¹, so for them only the ranking (Spearman)
and the signs mean something; ``on_loss_scale`` says which.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

from influence_core import methods
from influence_core.errors import InputError
from influence_core.gradients import per_sample_grads
from influence_core.metrics import pearson
from influence_core.progress import ProgressFn, scaled, silent, track

MAX_ITER, TOLERANCE = 1000, 1e-10
# the runs count as settled when the gradient left where they stopped is at most this share of one removal's push
SETTLED_SHARE = 0.1
NULL_RUNS = 3  # retrainings without a removal, from a displaced start: the noise floor
MIN_ABOVE_NOISE = 3  # removals above the floor needed for a correlation to mean anything

if TYPE_CHECKING:
    from influence_core.timing import Cost


@dataclass
class RetrainingCheck:
    """Predicted vs retrained changes of per-test-point losses; rows = removed training points."""

    train_indices: np.ndarray  # (n_removed,) one retraining each
    test_indices: np.ndarray  # (n_measured,) where the loss is read
    predicted: np.ndarray  # (n_removed, n_measured) -score / N
    actual: np.ndarray  # (n_removed, n_measured) retrained loss − baseline loss
    on_loss_scale: bool  # the scores are Hessian-based influence (a prediction of the loss change)
    seconds: float
    leftover_gradient: float = 0.0  # largest ‖∇ objective‖ where the baseline or a retraining stopped
    removal_push: float = float("inf")  # median ‖∇ℓ_i‖ / N of the removed points
    noise_floor: float = 0.0  # largest |Δ test loss| of the null retrainings (nothing removed)

    @property
    def below_noise(self) -> np.ndarray:
        """(n_removed, n_measured) True where the retrained or the predicted change is within the noise floor (or the
        retraining is missing): retraining cannot resolve a change that small, so the pair says nothing either way."""
        finite = np.isfinite(self.actual)
        actual = np.abs(np.where(finite, self.actual, 0.0))
        return ~finite | (actual <= self.noise_floor) | (np.abs(self.predicted) <= self.noise_floor)

    @property
    def n_above_noise(self) -> int:
        return int((~self.below_noise).sum())

    @property
    def can_tell(self) -> bool:
        """Enough removals move the test loss by more than retraining noise for the statistics to mean something."""
        return self.n_above_noise >= MIN_ABOVE_NOISE

    @property
    def settled(self) -> bool:
        """The optimiser stopped close enough to an optimum for the retrained changes to be the removals' own."""
        return self.leftover_gradient <= SETTLED_SHARE * self.removal_push

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The removals above the noise floor (all finite ones while the floor is 0)."""
        ok = ~self.below_noise
        return self.predicted[ok], self.actual[ok]

    @property
    def pearson(self) -> float:
        return pearson(*self._pairs())

    @property
    def spearman(self) -> float:
        from scipy.stats import spearmanr

        p, a = self._pairs()
        return float(spearmanr(p, a)[0]) if len(p) > 2 and p.std() > 0 and a.std() > 0 else float("nan")

    @property
    def sign_agreement(self) -> float:
        """Share of removals whose predicted and retrained changes have the same sign."""
        p, a = self._pairs()
        return float(np.mean(np.sign(p) == np.sign(a))) if len(p) else float("nan")

    @property
    def signs_beyond_chance(self) -> bool:
        """Whether the sign agreement is further from a coin's 50 % than two binomial standard errors of its pairs."""
        p, _ = self._pairs()
        return bool(len(p)) and abs(self.sign_agreement - 0.5) > 2 * np.sqrt(0.25 / len(p))

    @property
    def slope(self) -> float:
        """Least-squares slope of retrained on predicted through the origin (1 = right size)."""
        p, a = self._pairs()
        return float(p @ a / (p @ p)) if len(p) and p @ p > 0 else float("nan")


def predicted_loss_change_on_removal(scores: np.ndarray, n_train: int) -> np.ndarray:
    """First-order change of the test loss when a training point is removed: −score / n."""
    return -scores / n_train


def strongest_for_test_point(pairwise: np.ndarray, test_index: int, n: int) -> np.ndarray:
    """The ``n`` training points with the largest |influence| on one test point (harmful and helpful)."""
    return np.argsort(-np.abs(pairwise[test_index]), kind="stable")[:n]


def _polished(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float) -> tuple[nn.Module, float]:
    """L-BFGS to the nearest optimum; returns the model and the objective's gradient norm where it stopped."""
    from influence_core.training import fit_lbfgs, objective

    fit_lbfgs(model, x, y, weight_decay, max_iter=MAX_ITER, tol=TOLERANCE)
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(objective(model, x, y, weight_decay), params)
    return model, float(torch.sqrt(sum((g * g).sum() for g in grads)))


def retrained_without(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float, row: int, tolerance: float = TOLERANCE
) -> tuple[nn.Module, float]:
    """Leave-one-out on a convex model, the project's one way to do it: a copy warm-started at ``model`` and taken
    by L-BFGS to the optimum of the objective without training row ``row`` (the model is not changed). Returns the
    retrained copy and the objective's gradient norm where it stopped."""
    keep = torch.ones(len(y), dtype=torch.bool, device=x.device)
    keep[int(row)] = False
    from influence_core.training import fit_lbfgs, objective

    retrained = copy.deepcopy(model)
    fit_lbfgs(retrained, x[keep], y[keep], weight_decay, max_iter=MAX_ITER, tol=tolerance)
    retrained.eval()
    params = [p for p in retrained.parameters() if p.requires_grad]
    grads = torch.autograd.grad(objective(retrained, x[keep], y[keep], weight_decay), params)
    return retrained, float(torch.sqrt(sum((g * g).sum() for g in grads)))


@torch.no_grad()
def _losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return nn.functional.cross_entropy(model(x), y, reduction="none").cpu().numpy()


def check_by_retraining(
    result,  # experiments.InfluenceResult (not imported: experiments imports the engine, keep this light)
    train_indices: Sequence[int],
    test_indices: Sequence[int],
    progress: ProgressFn = silent,
    seed: int = 0,
) -> RetrainingCheck:
    """Retrain without each of ``train_indices`` (one at a time) and compare the loss change on
    ``test_indices`` with the one the scores predict. The stored data and model are not changed."""
    from influence_core.experiments import tensors

    if result.pairwise is None:
        raise InputError("this run has no pairwise scores (too large): use fewer training points to check against retraining")
    if any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)) for m in result.model.modules()):
        raise InputError(
            "the retraining check needs a model without batch norm or dropout (logreg, mlp, cnn): their "
            "statistics and masks change the objective at every retraining step, so no optimum is comparable"
        )
    removed = np.asarray(train_indices, dtype=np.int64)
    measured = np.asarray(test_indices, dtype=np.int64)
    n_train, n_test = result.pairwise.shape[1], result.pairwise.shape[0]
    if len(removed) == 0 or len(measured) == 0:
        raise InputError("name at least one training point to remove and one test point to measure")
    if removed.min() < 0 or removed.max() >= n_train or measured.min() < 0 or measured.max() >= n_test:
        raise InputError(f"indices out of range: training points are 0–{n_train - 1}, test points 0–{n_test - 1}")

    start = time.perf_counter()
    device = next(result.model.parameters()).device
    x, y, xt, yt = tensors(result.dataset, device)
    x, xt, yt = x.double(), xt[measured].double(), yt[measured]
    weight_decay = result.config.train.weight_decay
    progress(0.0, "polishing the trained model (baseline)")
    baseline, leftover = _polished(copy.deepcopy(result.model).double(), x, y, weight_decay)
    base_loss = _losses(baseline, xt, yt)
    removal_push = float(per_sample_grads(baseline, x[removed], y[removed]).norm(dim=1).median()) / len(y)

    actual = np.full((len(removed), len(measured)), np.nan)
    moved: list[float] = []  # how far each removal moved the weights
    base_vector = torch.nn.utils.parameters_to_vector(baseline.parameters()).detach()
    runs = len(removed) + NULL_RUNS
    for row, i in enumerate(track(removed, runs, "retraining without each point", progress)):
        if len(torch.unique(torch.cat([y[: int(i)], y[int(i) + 1 :]]))) < 2:
            continue  # one class left: no model to compare (NaN, left out of the statistics)
        retrained, stopped_at = retrained_without(baseline, x, y, weight_decay, int(i))
        leftover = max(leftover, stopped_at)
        actual[row] = _losses(retrained, xt, yt) - base_loss
        moved.append(float((torch.nn.utils.parameters_to_vector(retrained.parameters()).detach() - base_vector).norm()))

    # the noise floor: nothing removed, the start displaced as far as a removal moved the weights
    generator = torch.Generator().manual_seed(seed)
    step = float(np.median(moved)) if moved else 0.0
    null_changes = [np.zeros(len(measured))]
    for run in range(NULL_RUNS):
        progress((len(removed) + run) / runs, "retraining without a removal (the noise floor)")
        if step == 0.0:
            break
        direction = torch.randn(base_vector.shape, generator=generator, dtype=base_vector.dtype).to(device)
        start_model = copy.deepcopy(baseline)
        torch.nn.utils.vector_to_parameters(base_vector + step * direction / direction.norm(), start_model.parameters())
        null_model, stopped_at = _polished(start_model, x, y, weight_decay)
        leftover = max(leftover, stopped_at)
        null_changes.append(_losses(null_model, xt, yt) - base_loss)
    progress(1.0, "retrained")
    noise_floor = float(np.abs(np.stack(null_changes)).max())
    predicted = predicted_loss_change_on_removal(result.pairwise[np.ix_(measured, removed)].T, n_train)
    return RetrainingCheck(
        removed,
        measured,
        predicted,
        actual,
        methods.get(result.config.method).predicts_loss_change,
        time.perf_counter() - start,
        leftover,
        removal_push,
        noise_floor,
    )


# ------------------------------------------------------------------------------ this run, without each point


@dataclass
class FixedRandomnessCheck:
    """Each method's predicted test-loss change for removing each training point, against the change measured by
    retraining the same run (same initial weights, same batches) with that point's weight zeroed: the question exact
    attribution answers, for every method side by side."""

    train_indices: np.ndarray  # (n_removed,)
    test_indices: np.ndarray  # (n_measured,)
    actual: np.ndarray  # (n_removed, n_measured) retrained loss − trained loss
    predicted: dict[str, np.ndarray]  # method → (n_removed, n_measured) −score / N
    on_loss_scale: dict[str, bool]
    method_seconds: dict[str, float]
    retrain_seconds: float

    def pearson(self, method: str) -> float:
        return pearson(self.predicted[method], self.actual)


def check_with_fixed_randomness(
    result,  # experiments.InfluenceResult
    train_indices: Sequence[int],
    test_indices: Sequence[int],
    method_names: Sequence[str],
    progress: ProgressFn = silent,
) -> FixedRandomnessCheck:
    """Retrain the run once per removed point with its weight zeroed (cached per point) and score the same removals
    with each of ``method_names`` (the run's own settings): which approximation follows this run, and which fails where."""
    from influence_core import experiments
    from influence_core.measurements import PerSampleLoss

    if result.config.model.kind == "file":
        raise InputError("this check retrains the run that trained the model: a model file brings no run to retrain")
    removed = np.asarray(train_indices, dtype=np.int64)
    measured = np.asarray(test_indices, dtype=np.int64)
    n = len(result.dataset.y_train)
    if len(removed) == 0 or len(measured) == 0 or removed.min() < 0 or removed.max() >= n:
        raise InputError(f"name training points between 0 and {n - 1} to remove, and at least one test point")
    device = next(result.model.parameters()).device
    _, _, xt, yt = experiments.tensors(result.dataset, device)
    xt, yt = xt[measured], yt[measured]
    base = _losses(result.model, xt, yt)
    predicted, on_scale, seconds = {}, {}, {}
    for k, name in enumerate(method_names):
        step = scaled(progress, 0.5 * k / len(method_names), 0.5 * (k + 1) / len(method_names))
        step(0.0, f"scoring with {methods.method_short_label(name)}")
        start = time.perf_counter()
        fitted = experiments.fit_method(result.config, result, scaled(step, 0.0, 0.5), method=name)
        scores = fitted.scores(PerSampleLoss(xt, yt), progress=scaled(step, 0.5, 1.0))
        predicted[name] = predicted_loss_change_on_removal(scores[:, removed].T, n)
        on_scale[name], seconds[name] = type(fitted).predicts_loss_change, time.perf_counter() - start
    start = time.perf_counter()
    actual = np.zeros((len(removed), len(measured)))
    for row, i in enumerate(track(removed, len(removed), "retraining this run without each point", scaled(progress, 0.5, 1.0))):
        weights = np.ones(n)
        weights[int(i)] = 0.0
        retrained = experiments.train(result.config, silent, True, result.dataset, sample_weights=weights)
        actual[row] = _losses(retrained.model, xt, yt) - base
    return FixedRandomnessCheck(removed, measured, actual, predicted, on_scale, seconds, time.perf_counter() - start)


def retraining_check_cost(result, n_removals: int) -> "Cost":
    """The retraining check (:func:`~influence_core.retraining_check.check_by_retraining`) before it starts: polishing
    the trained model, then one warm-started L-BFGS retraining per removal and per null run; the polish and one removal
    timed here on the run's own model and data."""
    from influence_core.experiments import tensors
    from influence_core.timing import Cost, seconds_text

    x, y, _, _ = tensors(result.dataset, next(result.model.parameters()).device)
    x = x.double()
    weight_decay = result.config.train.weight_decay
    start = time.perf_counter()
    baseline, _ = _polished(copy.deepcopy(result.model).double(), x, y, weight_decay)
    polish = time.perf_counter() - start
    start = time.perf_counter()
    retrained_without(baseline, x, y, weight_decay, 0)
    one = time.perf_counter() - start
    runs = n_removals + NULL_RUNS
    return Cost(polish + runs * one, f"{runs} L-BFGS retrainings × {seconds_text(one)}, after a polish of {seconds_text(polish)}")
