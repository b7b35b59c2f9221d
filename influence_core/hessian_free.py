"""Hessian-free influence: IP, IP Ensemble, TracIn, with utility, fairness and robustness impacts.

"Revisit, extend and enhance Hessian-free influence functions": replace H⁻¹ by the identity.
For an impact function f(θ) measured on a validation set (its loss, its demographic-parity gap,
or its loss under a white-box attack), the score of training point z_i is

    IF_i = −∇f(θ̂)ᵀ H⁻¹ ∇ℓ(z_i; θ̂)        IP_i = −∇f(θ̂)ᵀ ∇ℓ(z_i; θ̂)

in the house sign convention: **positive = harmful** (removing z_i would lower f, i.e. the
validation loss, the fairness gap or the adversarial loss), negative = helpful. To first order
removing z_i changes f by −IF_i / N. IP Ensemble averages IP over models made by dropout on the
parameters (no retraining); TracIn sums η_k-weighted IP over the saved checkpoints.
Trim-and-retrain removes the most harmful share of the training set and retrains several seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from influence_core.config import RunConfig
from influence_core.data.base import Dataset, split_indices
from influence_core.errors import CurvatureError, InputError
from influence_core.measurements import ScalarObjective
from influence_core.methods import fit_attributor, method_label, method_names, names_where
from influence_core.methods import get as get_method
from influence_core.progress import ProgressFn, scaled, silent, track
from influence_core.training import Checkpoint, TrainingRecipe

if TYPE_CHECKING:
    from influence_core.timing import Cost

IMPACTS = ("utility", "fairness", "robustness")
METHODS = method_names()  # the registry's, in its order


def method_title(key: str) -> str:
    """A method's name for tables and plots (also the trim study's baseline and leave-one-out)."""
    return {"none": "untrimmed", "loo": "leave-one-out"}.get(key) or method_label(key)


TRIM_BALANCE = ("none", "class", "auto")
TRIM_METHODS = names_where("trim_by_default")


def comparison_pair(methods: Sequence[str]) -> Optional[tuple[str, str]]:
    """The paper's comparison among ``methods``: the first that inverts a curvature against the first that uses none
    (the influence function against IP with the registry as it ships), or None where one side is missing."""
    with_h = [m for m in methods if get_method(m).uses_curvature]
    without = [m for m in methods if not get_method(m).uses_curvature]
    return (with_h[0], without[0]) if with_h and without else None


@dataclass(frozen=True)
class ImpactStudy:
    """Every setting of a Hessian-free study, kept in the run config's hashed ``study`` (:func:`impact_study`).

    What is scored: the ``impact`` f on the validation set, by ``methods`` (IP Ensemble: ``ensemble_size``
    dropout models at ``dropout_rate``; robustness: the attack's step ``gamma``). What the trim study does:
    removes the ``trim_fraction`` most harmful rows picked by ``trim_balance`` (see :func:`trim_selection`) for
    each of ``trim_methods``, retrained once per seed in ``trim_seeds``."""

    impact: str = "utility"
    methods: tuple[str, ...] = tuple(METHODS)
    ensemble_size: int = 20
    dropout_rate: float = 0.05
    gamma: float = 1.5
    trim_methods: tuple[str, ...] = TRIM_METHODS
    trim_fraction: float = 0.05
    trim_seeds: tuple[int, ...] = (0, 1, 2)
    trim_balance: str = "none"

    def validate(self) -> None:
        unknown = [m for m in (*self.methods, *self.trim_methods) if m not in METHODS]
        checks = [
            (self.impact in IMPACTS, f"impact must be one of {IMPACTS}, got {self.impact!r}"),
            (not unknown, f"unknown methods {unknown}; choose from {METHODS}"),
            (len(self.methods) > 0 and len(self.trim_methods) > 0, "choose at least one method"),
            (self.ensemble_size >= 1, f"the IP ensemble needs at least one model, got {self.ensemble_size}"),
            (0.0 <= self.dropout_rate < 1.0, f"the dropout rate must be in [0, 1), got {self.dropout_rate}"),
            (self.gamma > 0, f"the attack step γ must be > 0, got {self.gamma}"),
            (0 < self.trim_fraction < 0.5, f"the trim fraction must be in (0, 0.5), got {self.trim_fraction}"),
            (len(self.trim_seeds) > 0, "give at least one seed"),
            (self.trim_balance in TRIM_BALANCE, f"balance must be one of {TRIM_BALANCE}, got {self.trim_balance!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


def impact_study(config: RunConfig, **settings: Any) -> RunConfig:
    """``config`` with these :class:`ImpactStudy` settings in its hashed ``study`` (the rest at their defaults);
    sequences become tuples so the config stays hashable."""
    settings = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in settings.items()}
    if "trim_seeds" in settings:
        settings["trim_seeds"] = tuple(int(s) for s in settings["trim_seeds"])
    return config.with_study(ImpactStudy(**settings))


def study_of(config: RunConfig) -> ImpactStudy:
    """The Hessian-free settings a config holds (the defaults when it holds none)."""
    return config.study_settings(ImpactStudy) if config.study else ImpactStudy()


# ------------------------------------------------------------------------------ impact functions


def adversarial_inputs(model: nn.Module, x: torch.Tensor, gamma: float = 1.5) -> torch.Tensor:
    """White-box attack on a linear binary model: x' = x − γ (wᵀx + b) / ‖w‖² · w.

    w, b are the decision function's coefficients (m(x) = wᵀx + b = z₁ − z₀ for the 2-class
    softmax). γ = 1 moves x onto the boundary, γ > 1 across it.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear) or sum(1 for _ in model.parameters()) != 2 or head.out_features != 2:
        raise InputError("the robustness impact uses the white-box attack for linear models: choose logistic regression on a binary task")
    with torch.no_grad():
        w = (head.weight[1] - head.weight[0]).to(x.dtype)
        b = (head.bias[1] - head.bias[0]).to(x.dtype)
        flat = x.flatten(1)
        m = flat @ w + b
        return (flat - gamma * (m / (w @ w).clamp_min(1e-12))[:, None] * w[None, :]).reshape(x.shape)


def demographic_parity(probs_positive: np.ndarray, groups: np.ndarray) -> float:
    """DP gap |E[p(1|x) | s = 1] − E[p(1|x) | s = 0]| (0 = parity)."""
    groups = np.asarray(groups)
    if len(np.unique(groups)) != 2:
        raise InputError("demographic parity needs a binary sensitive attribute with both groups present")
    a, b = np.unique(groups)
    return float(abs(probs_positive[groups == b].mean() - probs_positive[groups == a].mean()))


def impact_value(
    model: nn.Module, impact: str, x_val: torch.Tensor, y_val: torch.Tensor, groups_val: Optional[torch.Tensor] = None, gamma: float = 1.5
) -> torch.Tensor:
    """f(θ): mean validation loss (utility), DP gap (fairness) or mean loss on attacked inputs (robustness)."""
    if impact == "utility":
        return nn.functional.cross_entropy(model(x_val), y_val)
    if impact == "robustness":
        return nn.functional.cross_entropy(model(adversarial_inputs(model, x_val, gamma)), y_val)
    if impact == "fairness":
        if groups_val is None:
            raise InputError("the fairness impact needs a binary sensitive attribute (groups) on the validation set")
        values = torch.unique(groups_val)
        if len(values) != 2:
            raise InputError("the fairness impact needs a binary sensitive attribute with both groups in the validation set")
        p = torch.softmax(model(x_val), 1)[:, 1]
        gap = p[groups_val == values[1]].mean() - p[groups_val == values[0]].mean()
        return gap.abs()
    raise InputError(f"impact must be one of {IMPACTS}, got {impact!r}")


def impact_measurement(
    impact: str, x_val: torch.Tensor, y_val: torch.Tensor, groups_val: Optional[torch.Tensor] = None, gamma: float = 1.5
) -> ScalarObjective:
    """The impact f(θ) as the engine's measurement (one query row)."""
    if impact not in IMPACTS:
        raise InputError(f"impact must be one of {IMPACTS}, got {impact!r}")
    return ScalarObjective(lambda model: impact_value(model, impact, x_val, y_val, groups_val, gamma))


def impact_gradient(
    model: nn.Module,
    impact: str,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    param_names: Sequence[str],
    groups_val: Optional[torch.Tensor] = None,
    gamma: float = 1.5,
) -> torch.Tensor:
    """∇_θ f(θ) flattened in ``param_names`` order (the order of the engine's per-sample gradient rows)."""
    return impact_measurement(impact, x_val, y_val, groups_val, gamma).query_gradients(model, param_names)[0]


def impact_scores(
    method: str,
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    impact: str = "utility",
    groups_val: Optional[torch.Tensor] = None,
    checkpoints: Sequence[Checkpoint] = (),
    weight_decay: float = 0.0,
    damping: float = 0.0,
    curvature: str = "exact",
    seed: int = 0,
    gamma: float = 1.5,
    progress: ProgressFn = silent,
    training: Optional[TrainingRecipe] = None,
    **options: Any,
) -> np.ndarray:
    """Any registered method's scores of every training point on the impact f (positive = harmful): IP, IP Ensemble
    (``ensemble_size``, ``dropout_rate``), TracIn over ``checkpoints``, influence under ``curvature``.
    An influence function whose curvature cannot be inverted falls back to ``auto`` (which says what it chose)."""
    from influence_core.config import CurvatureConfig, TrainConfig

    # the settings as a run config holds them, so the method is fitted the one way a run's is
    run = RunConfig(
        train=TrainConfig(weight_decay=weight_decay), curvature=CurvatureConfig(kind=curvature, damping=damping), method=method, seed=seed
    )
    measurement = impact_measurement(impact, x_val, y_val, groups_val, gamma)
    return _method_scores(run, method, model, x_train, y_train, measurement, checkpoints, training, progress, **options)


def _method_scores(
    run: RunConfig,
    method: str,
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    measurement: ScalarObjective,
    checkpoints: Sequence[Checkpoint],
    training: Optional[TrainingRecipe],
    progress: ProgressFn,
    **options: Any,
) -> np.ndarray:
    """``method`` fitted through :func:`experiments.method_context` under ``run``'s settings, over all weights whatever
    the run's scope (the study compares its methods on one), and its scores on the impact ``measurement``."""
    from influence_core.experiments import method_context
    from influence_core.models import parameter_names

    context = method_context(run, model, x_train, y_train, checkpoints, training, parameter_names(model, "all"), **options)
    try:
        attributor = fit_attributor(method, context, scaled(progress, 0.0, 0.5))
    except CurvatureError:
        if run.curvature.kind == "auto":
            raise
        context.curvature = "auto"
        attributor = fit_attributor(method, context, scaled(progress, 0.0, 0.5))
    return attributor.scores(measurement, progress=scaled(progress, 0.5, 1.0))[0].astype(np.float64)


# ------------------------------------------------------------------------------ pipeline


@dataclass
class HessianFreeResult:
    """Scores per training point for each method (positive = harmful for the chosen impact)."""

    config: RunConfig
    dataset: Dataset  # the training set scored; ``x_test`` here is the validation set the impact is measured on
    model: nn.Module
    impact: str
    scores: dict[str, np.ndarray]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def compared(self) -> Optional[tuple[str, str]]:
        """The two scored methods the IF-vs-IP comparison shows (:func:`comparison_pair`), or None."""
        return comparison_pair(list(self.scores))

    def correlation(self, a: Optional[str] = None, b: Optional[str] = None) -> dict[str, float]:
        """Pearson and Spearman correlation between two methods' scores (by default :attr:`compared`; NaN without it)."""
        from scipy.stats import pearsonr, spearmanr

        if a is None or b is None:
            if self.compared is None:
                return {"pearson": float("nan"), "spearman": float("nan")}
            a, b = self.compared
        return {
            "pearson": float(pearsonr(self.scores[a], self.scores[b])[0]),
            "spearman": float(spearmanr(self.scores[a], self.scores[b])[0]),
        }

    def flip_detection(self) -> "Any":
        """A pandas table: each method's AUROC for the flipped labels (empty where no label is known to be flipped)."""
        import pandas as pd

        from influence_core.metrics import auroc

        if not self.dataset.flipped.any():
            return pd.DataFrame()
        return pd.DataFrame(
            {
                "method": [method_title(m) for m in self.scores],
                "AUROC for flipped labels": [auroc(s, self.dataset.flipped) for s in self.scores.values()],
            }
        )

    def strongest(self, n: int = 20) -> tuple[str, np.ndarray]:
        """(the method ranking them, the ``n`` training rows its scores are largest for in size): what the
        leave-one-out check retrains without; the first of the compared pair, else the first method scored."""
        ranked_by = self.compared[0] if self.compared is not None else next(iter(self.scores))
        return ranked_by, np.argsort(-np.abs(self.scores[ranked_by]))[:n]


def _val_tensors(model: nn.Module, ds: Dataset) -> tuple[torch.Tensor, ...]:
    p = next(model.parameters())
    xv = torch.from_numpy(ds.x_test).to(device=p.device, dtype=p.dtype)
    yv = torch.from_numpy(ds.y_test).to(p.device)
    gv = torch.from_numpy(np.asarray(ds.groups_test)).to(p.device) if ds.groups_test is not None else None
    x = torch.from_numpy(ds.x_train).to(device=p.device, dtype=p.dtype)
    y = torch.from_numpy(ds.y_train).to(p.device)
    return x, y, xv, yv, gv


def hessian_free_scores(
    config: RunConfig, dataset: Optional[Dataset] = None, progress: ProgressFn = silent, use_cache: bool = True
) -> HessianFreeResult:
    """Train (engine cache) and score every training point by the study's methods on its impact (the config's
    :class:`ImpactStudy`, see :func:`impact_study`); the dataset's test split is the validation set.

    Logistic regression is polished to its optimum in float64 (influence assumes one).
    """
    from influence_core.experiments import load_data, train, training_recipe
    from influence_core.training import evaluate, polished_convex

    study = study_of(config)  # validated: bad settings stop here, before any training
    impact, methods = study.impact, study.methods
    ds = dataset if dataset is not None else load_data(config)
    if len(ds.y_test) == 0:
        raise InputError("the validation (test) split is empty: set a test fraction above 0")
    trained = train(config, scaled(progress, 0.0, 0.3), use_cache, ds)
    model = trained.model
    if config.model.kind == "logreg":
        x, y, _, _, _ = _val_tensors(model, ds)
        model = polished_convex(model, x, y, config.train.weight_decay)
    x, y, xv, yv, gv = _val_tensors(model, ds)
    scores: dict[str, np.ndarray] = {}
    n = len(methods)
    # weight decay alone keeps logistic regression's Hessian positive definite: no damping there
    run = config.replace(curvature__damping=0.0) if (config.model.kind == "logreg" and config.train.weight_decay > 0) else config
    measurement, recipe = impact_measurement(impact, xv, yv, gv, study.gamma), training_recipe(config, trained)
    for j, method in enumerate(methods):
        step = scaled(progress, 0.3 + 0.7 * j / n, 0.3 + 0.7 * (j + 1) / n)
        step(0.0, f"scoring: {method_title(method)}")
        knobs = {"ensemble_size": study.ensemble_size, "dropout_rate": study.dropout_rate}
        scores[method] = _method_scores(run, method, model, x, y, measurement, trained.checkpoints, recipe, step, **knobs)
    metrics = {"train": evaluate(model, x, y), "validation": evaluate(model, xv, yv)}
    progress(1.0, "scores ready")
    return HessianFreeResult(config, ds, model, impact, scores, metrics)


def leave_one_out_scores(result: HessianFreeResult, indices: Sequence[int], progress: ProgressFn = silent) -> np.ndarray:
    """Actual effect of removing each training row in ``indices``: N·(f(θ̂) − f(θ̂₋ᵢ)) (positive = harmful, IF's scale).

    Logistic regression only (retrained warm-started with L-BFGS to the same convex optimum, as the explorer's check).
    """
    from influence_core.retraining_check import retrained_without

    if result.config.model.kind != "logreg":
        raise InputError("leave-one-out retraining is offered for logistic regression (one convex optimum)")
    model = result.model
    x, y, xv, yv, gv = _val_tensors(model, result.dataset)
    n = len(y)
    with torch.no_grad():
        base = impact_value(model, result.impact, xv, yv, gv).item()
    out = []
    for i in track(list(indices), len(indices), "leave-one-out retraining", progress):
        retrained, _ = retrained_without(model, x, y, result.config.train.weight_decay, int(i), tolerance=1e-12)
        with torch.no_grad():
            out.append(n * (base - impact_value(retrained, result.impact, xv, yv, gv).item()))
    return np.asarray(out)


# ------------------------------------------------------------------------------ synthetic checks (paper §4)


def synthetic_flip_dataset(name: str = "blobs", seed: int = 0) -> Dataset:
    """The paper's toy sets: blobs 150 train / 100 test with 10 flipped; moons 200 train / 100 test with 20 flipped (half per class)."""
    from influence_core.data.noise import flip_per_class, with_noise
    from influence_core.data.synthetic import make_synthetic

    if name not in ("blobs", "moons"):
        raise InputError(f"the synthetic check uses 'blobs' or 'moons', got {name!r}")
    n_train, n_flip = (150, 10) if name == "blobs" else (200, 20)
    ds = make_synthetic(name, n_train, 100, seed)
    return with_noise(ds, flip_per_class(ds.y_train, n_flip // 2, 2, seed + 1))


def synthetic_config(name: str = "blobs", seed: int = 0) -> RunConfig:
    """Logistic regression (L-BFGS) for blobs, a 2-hidden-layer ReLU MLP (Adam, full batch) for moons."""
    from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, TrainConfig

    if name == "blobs":
        return RunConfig(
            data=DataConfig(name="blobs", n_train=150, n_test=100),
            model=ModelConfig(kind="logreg"),
            train=TrainConfig(optimizer="lbfgs", epochs=20, weight_decay=1e-2, n_checkpoints=5),
            seed=seed,
        )
    return RunConfig(
        data=DataConfig(name="moons", n_train=200, n_test=100),
        model=ModelConfig(kind="mlp", hidden=32, depth=2),
        train=TrainConfig(optimizer="adam", lr=0.01, epochs=500, weight_decay=1e-3, n_checkpoints=5),
        curvature=CurvatureConfig(kind="exact", damping=0.01),
        seed=seed,
    )


@dataclass
class SyntheticCheck:
    name: str
    result: HessianFreeResult
    pearson: float
    spearman: float
    auroc: dict[str, float]  # per method: AUROC of the scores for the flipped points


def synthetic_check(
    name: str = "blobs", seed: int = 0, methods: Sequence[str] = METHODS, progress: ProgressFn = silent, use_cache: bool = True
) -> SyntheticCheck:
    """IF vs IP on the paper's toy sets: correlation, and how well each isolates the flipped points."""
    from influence_core.metrics import auroc

    ds = synthetic_flip_dataset(name, seed)
    result = hessian_free_scores(impact_study(synthetic_config(name, seed), methods=methods), ds, progress=progress, use_cache=use_cache)
    corr = result.correlation()
    aucs = {m: float(auroc(s, ds.flipped) or float("nan")) for m, s in result.scores.items()}
    return SyntheticCheck(name, result, corr["pearson"], corr["spearman"], aucs)


# ------------------------------------------------------------------------------ trim and retrain


def validation_split(dataset: Dataset, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split the test set in half: (scoring copy whose test split is the validation half, the held-out test half)."""
    from dataclasses import replace

    val, test = split_indices(len(dataset.y_test), 0.5, seed, stratify=dataset.y_test)
    pick = lambda a, i: None if a is None else np.asarray(a)[i]  # noqa: E731
    as_val = replace(
        dataset,
        x_test=dataset.x_test[val],
        y_test=dataset.y_test[val],
        ids_test=dataset.ids_test[val],
        groups_test=pick(dataset.groups_test, val),
    )
    as_test = replace(
        dataset,
        x_test=dataset.x_test[test],
        y_test=dataset.y_test[test],
        ids_test=dataset.ids_test[test],
        groups_test=pick(dataset.groups_test, test),
    )
    return as_val, as_test


@dataclass
class TrimResult:
    """Held-out test accuracy and DP gap after trimming, per method, over seeds (``none`` = untrimmed)."""

    fraction: float
    seeds: list[int]
    accuracy: dict[str, list[float]]
    fairness: dict[str, list[float]]  # DP gap on the held-out test half (nan without groups)
    removed: dict[str, np.ndarray]  # training rows removed per method (first seed's split)
    flipped_share_removed: dict[str, float]  # mean share of the removed rows that carry a flipped label
    balance: str = "none"  # how the removed rows were picked (see trim_selection)
    balance_used: dict[str, list[str]] = field(default_factory=dict)  # per method and seed: "none" or "class" (differs under "auto")

    def accuracy_change(self, method: str) -> tuple[float, float]:
        """Mean over seeds of (trimmed − untrimmed) held-out accuracy, paired by seed, and its standard error
        (nan with one seed). The seeds share most of their noise, so the pairing is what makes a small change readable."""
        diff = np.asarray(self.accuracy[method]) - np.asarray(self.accuracy["none"])
        return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")

    def raised_beyond_noise(self) -> list[str]:
        """The methods whose trim raised held-out accuracy by more than two standard errors of the paired change (with
        one seed there is no standard error, and nothing is called beyond noise)."""
        out = []
        for m in self.accuracy:
            if m == "none":
                continue
            change, se = self.accuracy_change(m)
            if np.isfinite(se) and change > 0 and change > 2 * se:
                out.append(m)
        return out

    def recommendation(self) -> tuple[bool, str]:
        """(trimming helped, what to say), computed from the paired changes the table shows."""
        raised = self.raised_beyond_noise()
        if raised:
            best = max(raised, key=lambda m: self.accuracy_change(m)[0])
            change, se = self.accuracy_change(best)
            return True, (
                f"Trimming by {method_title(best)} raised held-out accuracy by {change:+.1%} ± {se:.1%} (paired over seeds, "
                f"beyond two standard errors){'; so did ' + ', '.join(method_title(m) for m in raised if m != best) if len(raised) > 1 else ''}: "
                "this data holds rows worth removing. Review the removed rows before dropping them from the source."
            )
        seeds = len(next(iter(self.accuracy.values())))
        if seeds < 2:
            return False, "One seed gives no noise estimate: no change can be told from the split's noise. Use more seeds."
        return (
            False,
            "No method raised held-out accuracy beyond two standard errors of its paired change: this measurement does not support trimming.",
        )

    def _trimming_methods(self) -> list[str]:
        return [m for m in self.accuracy if m != "none" and m in self.removed]

    def same_removed_groups(self) -> list[list[str]]:
        """Methods that removed exactly the same rows (first seed), in groups of two or more: their retrained models
        are the same, so their rows in the table are equal by construction, not by coincidence."""
        groups: list[list[str]] = []
        for m in self._trimming_methods():
            rows = set(np.asarray(self.removed[m]).tolist())
            for group in groups:
                if set(np.asarray(self.removed[group[0]]).tolist()) == rows:
                    group.append(m)
                    break
            else:
                groups.append([m])
        return [g for g in groups if len(g) > 1]

    def removed_overlap(self) -> "Any":
        """A pandas table: the share of the row method's removed rows that the column method removed too (first seed),
        titled by method; empty with fewer than two trimming methods."""
        import pandas as pd

        methods = self._trimming_methods()
        if len(methods) < 2:
            return pd.DataFrame()
        sets = {m: set(np.asarray(self.removed[m]).tolist()) for m in methods}
        titles = [method_title(m) for m in methods]
        return pd.DataFrame(
            [[len(sets[a] & sets[b]) / max(len(sets[a]), 1) for b in methods] for a in methods], index=titles, columns=titles
        )

    def table(self) -> "Any":
        """A pandas table: method, mean ± std accuracy, paired change vs untrimmed ± its standard error, mean DP gap,
        flipped share among the removed."""
        import pandas as pd

        rows = []
        for m in self.accuracy:
            acc, fair = np.asarray(self.accuracy[m]), np.asarray(self.fairness[m])
            change, change_se = self.accuracy_change(m)
            rows.append(
                {
                    "method": method_title(m),
                    "key": m,
                    "accuracy_mean": acc.mean(),
                    "accuracy_std": acc.std(),
                    "change_vs_untrimmed": change,
                    "change_se": change_se,
                    "dp_gap_mean": np.nanmean(fair) if np.isfinite(fair).any() else np.nan,
                    "flipped_share_removed": self.flipped_share_removed.get(m, np.nan),
                    "per_class_seeds": sum(b == "class" for b in self.balance_used.get(m, [])),
                }
            )
        return pd.DataFrame(rows)


def trim_selection(scores: np.ndarray, labels: np.ndarray, n_remove: int, balance: str = "none") -> np.ndarray:
    """Training rows to remove: the ``n_remove`` highest scores (most harmful), globally (``"none"``) or per training
    label (``"class"``: each label gives up its share of ``n_remove``, largest remainders first, so the label
    proportions of the kept set stay as they were).

    Why per label: IP replaces H⁻¹ by I, so its validation gradient is dominated by the stiffest directions of the
    loss (with unstandardised inputs, the shared intensity / intercept direction that sets the decision threshold).
    Its top share can then come almost entirely from one label; removing only those flips leaves the label noise
    one-sided and moves the threshold past the optimum. Per-label trimming keeps the ranking within each label.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    if balance == "none":
        return np.argsort(-scores, kind="stable")[:n_remove]
    if balance != "class":
        raise InputError(f"balance must be 'none' or 'class' here, got {balance!r}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n_remove * counts / counts.sum()
    quota = np.floor(exact).astype(int)
    quota[np.argsort(-(exact - quota), kind="stable")[: n_remove - quota.sum()]] += 1
    picks = []
    for c, q in zip(classes, quota):
        rows = np.flatnonzero(labels == c)
        picks.append(rows[np.argsort(-scores[rows], kind="stable")[:q]])
    return np.sort(np.concatenate(picks))


def trim_cost(config: RunConfig, dataset: Dataset) -> "Cost":
    """What :func:`trim_and_retrain` will take, per seed: its scoring (the first seed's, timed here; its training goes to
    the engine cache, which the run then reads) and one training per method and one untrimmed (the configured training
    timed on a few steps), two more per method where ``balance="auto"`` compares its choices."""
    import time

    from influence_core.costs import training_cost
    from influence_core.timing import Cost, seconds_text

    study = study_of(config)
    seeds, methods = list(study.trim_seeds), study.trim_methods
    first = config.with_study(replace(study, methods=methods)).replace(seed=int(seeds[0]))  # as the run builds it
    as_val, as_test = validation_split(dataset, int(seeds[0]))
    start = time.perf_counter()
    hessian_free_scores(first, as_val)
    scoring = time.perf_counter() - start
    trainings = 1 + len(methods) * (3 if study.trim_balance == "auto" else 1)
    training = training_cost(first, as_test).seconds
    per_seed = scoring + trainings * training
    return Cost.of(
        len(seeds), per_seed, f"{len(seeds)} seeds × (scoring {seconds_text(scoring)} + {trainings} trainings × {seconds_text(training)})"
    )


def trim_and_retrain(config: RunConfig, dataset: Dataset, progress: ProgressFn = silent, use_cache: bool = True) -> TrimResult:
    """Per seed: split the test set into a validation half (scored on) and a held-out half, train with that seed,
    remove the ``fraction`` most harmful training rows per method, retrain with the same seed and measure accuracy
    and DP gap on the held-out half; the untrimmed model is the baseline. The input dataset is not modified.

    ``balance`` picks the rows to remove (see :func:`trim_selection`): ``"none"`` the global top share (the paper's
    protocol), ``"class"`` the top share within each training label, ``"auto"`` whichever of the two gives the lower
    loss on the *validation* half after retraining (the held-out half is never used to choose)."""
    from influence_core.experiments import predict_proba, train

    study = study_of(config)
    methods, impact, fraction, seeds, balance = study.trim_methods, study.impact, study.trim_fraction, study.trim_seeds, study.trim_balance
    config = config.with_study(replace(study, methods=methods))  # each seed scores exactly the trimmed methods
    variants = ["none", *methods]
    accuracy: dict[str, list[float]] = {m: [] for m in variants}
    fairness: dict[str, list[float]] = {m: [] for m in variants}
    flipped: dict[str, list[float]] = {m: [] for m in methods}
    removed: dict[str, np.ndarray] = {}
    chosen: dict[str, list[str]] = {m: [] for m in methods}
    n_remove = max(1, int(round(fraction * len(dataset.y_train))))
    for j, seed in enumerate(seeds):
        step = scaled(progress, j / len(seeds), (j + 1) / len(seeds))
        cfg = config.replace(seed=int(seed))
        as_val, as_test = validation_split(dataset, int(seed))
        scored = hessian_free_scores(cfg, as_val, progress=scaled(step, 0, 0.4), use_cache=use_cache)
        drop = {m: trim_selection(scored.scores[m], dataset.y_train, n_remove, "class" if balance == "class" else "none") for m in methods}
        for m in methods:
            chosen[m].append("class" if balance == "class" else "none")
        if balance == "auto":
            for m in methods:
                by_class = trim_selection(scored.scores[m], dataset.y_train, n_remove, "class")
                if set(by_class.tolist()) == set(drop[m].tolist()):
                    continue
                values = []
                for candidate in (drop[m], by_class):
                    keep = np.ones(len(dataset.y_train), dtype=bool)
                    keep[candidate] = False
                    fitted = train(cfg, dataset=as_val.subset_train(keep), use_cache=use_cache).model
                    _, _, xv, yv, gv = _val_tensors(fitted, as_val)
                    with torch.no_grad():
                        values.append(impact_value(fitted.eval(), impact, xv, yv, gv).item())
                if values[1] < values[0]:
                    drop[m] = by_class
                    chosen[m][-1] = "class"
        if j == 0:
            removed = drop
        for k, m in enumerate(variants):
            scaled(step, 0.4, 1.0)(k / len(variants), f"retraining ({method_title(m)}, seed {seed})")
            keep = np.ones(len(dataset.y_train), dtype=bool)
            if m != "none":
                keep[drop[m]] = False
                flipped[m].append(float(dataset.flipped[drop[m]].mean()))
            model = train(cfg, dataset=as_test.subset_train(keep), use_cache=use_cache).model
            probs = predict_proba(model, as_test.x_test)
            accuracy[m].append(float((probs.argmax(1) == as_test.y_test).mean()))
            has_groups = as_test.groups_test is not None and len(np.unique(as_test.groups_test)) == 2 and probs.shape[1] == 2
            fairness[m].append(demographic_parity(probs[:, 1], as_test.groups_test) if has_groups else float("nan"))
    progress(1.0, "trim and retrain done")
    return TrimResult(
        fraction, [int(s) for s in seeds], accuracy, fairness, removed, {m: float(np.mean(v)) for m, v in flipped.items()}, balance, chosen
    )
