"""Mislabel ROC study (ACAS Xu paper, §III-B): Cook's-distance ranking of a few flipped labels.

For each *arm* (an architecture with a head regularisation and a training schedule) and each
small-noise *regime*, train a set of models (one per seed: its own noise draw and init), rank the
training points by Cook's distance over the last layer (``∇ℓ(z)ᵀ H⁻¹ ∇ℓ(z)``, by default the full head
GGN from laplace-torch: the arm's method's self-score, through :mod:`influence_core.experiments` like every
run) and score that ranking against the flipped mask with a ROC curve. The figure
draws each run's curve faintly, the mean ROC on top and the random baseline (the diagonal).

Head regularisation is the paper's layer-wise elastic net (L1L2) on the classification head:
``loss = CE + (λ_wd/2)‖θ‖² + λ₁‖W_head‖₁ + (λ₂/2)‖W_head‖²``. The L1 term has no curvature
(almost everywhere), so the head Hessian carries ``λ_wd + λ₂`` on its diagonal.

Noise regimes are the paper's ≈0.05 % and ≈0.01 % of labels, scaled to the subset used:
``n_flipped = max(min_flipped, round(fraction × n_train))`` (a floor keeps the ROC defined on a
few thousand images: 5 and 1 flips on 4 000 images, 30 and 6 on the full 60 000).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from influence_core import cache
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data.base import Dataset
from influence_core.errors import InputError
from influence_core.experiments import config_payload, dataset_fingerprint, fit_method, influence_params, tensors, train
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.text import plural
from influence_core.timing import Cost, seconds_text

FPR_GRID = np.linspace(0.0, 1.0, 201)


@dataclass(frozen=True)
class NoiseRegime:
    """A small label-noise regime: ``fraction`` of training labels flipped, at least ``min_flipped``."""

    name: str
    fraction: float
    min_flipped: int = 1

    def n_flipped(self, n_train: int) -> int:
        n = max(self.min_flipped, int(round(self.fraction * n_train)))
        if not 0 < n < n_train:
            raise InputError(f"noise regime {self.name!r} flips {n} of {n_train} labels: use more training data or a smaller fraction")
        return n


@dataclass(frozen=True)
class StudyArm:
    """One set of models: architecture, head L1L2 regularisation and training schedule.

    ``schedule``: ``cosine`` decays the learning rate to 0 over the epochs, ``constant`` keeps it.
    """

    name: str
    model: str = "cnn"  # mlp | cnn | resnet18
    hidden: int = 128
    depth: int = 2
    head_l1: float = 0.0
    head_l2: float = 0.0
    epochs: int = 15
    lr: float = 2e-3
    batch_size: int = 128
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    method: str = "influence"  # any registered method: Cook's distance is its self-score over the last layer
    curvature: str = "last_layer"  # the paper's: the full GGN of the last layer (laplace-torch)

    def validate(self) -> None:
        if self.model not in ("mlp", "cnn", "resnet18"):
            raise InputError(f"arm {self.name!r}: model must be mlp, cnn or resnet18, got {self.model!r}")
        if self.schedule not in ("cosine", "constant"):
            raise InputError(f"arm {self.name!r}: schedule must be cosine or constant, got {self.schedule!r}")
        if min(self.head_l1, self.head_l2, self.weight_decay) < 0 or self.lr <= 0 or self.epochs < 1:
            raise InputError(f"arm {self.name!r}: penalties must be ≥ 0, learning rate > 0 and epochs ≥ 1")

    def model_config(self) -> ModelConfig:
        return ModelConfig(kind=self.model, hidden=self.hidden, depth=self.depth)

    def train_config(self) -> TrainConfig:
        """The arm's training as the engine's one trainer runs it: Adam in seeded mini-batches, the cosine stepped per batch."""
        return TrainConfig(
            optimizer="adam",
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            n_checkpoints=1,
            lr_schedule="cosine_per_step" if self.schedule == "cosine" else "constant",
            head_l1=self.head_l1,
            head_l2=self.head_l2,
        )

    def run_config(self, dataset: Dataset, seed: int, damping: float) -> RunConfig:
        """One run of the arm as the engine's config: its model and training, the method's self-scores over the last
        layer under the arm's curvature, on ``dataset`` (the noisy data, handed to the engine as it is: the config's
        data names it only, the engine keys it by content)."""
        return RunConfig(
            data=DataConfig(name=dataset.name, n_train=len(dataset.y_train), n_test=len(dataset.y_test)),
            model=self.model_config(),
            train=self.train_config(),
            curvature=CurvatureConfig(kind=self.curvature, damping=damping, params="last_layer"),
            method=self.method,
            seed=seed,
        ).with_study(self)

    def longer_slower(self, factor: int = 3) -> "StudyArm":
        """The same arm trained ``factor``× longer with a ``factor``× smaller learning rate."""
        return StudyArm(
            **{**asdict(self), "name": f"{self.name}, {factor}× longer/slower", "epochs": self.epochs * factor, "lr": self.lr / factor}
        )


DEFAULT_REGIMES = (NoiseRegime("≈0.05 % flipped", 0.0005, min_flipped=5), NoiseRegime("≈0.01 % flipped", 0.0001, min_flipped=1))


def default_arms(quick: bool = False) -> list[StudyArm]:
    """MLP, small CNN (with and without L1L2 head, and longer/slower), ResNet18 unless ``quick``."""
    cnn = StudyArm("CNN", model="cnn", lr=5e-3, epochs=20, batch_size=64)
    arms = [
        StudyArm("MLP", model="mlp"),
        cnn,
        StudyArm("CNN + L1L2 head", model="cnn", lr=5e-3, epochs=20, batch_size=64, head_l1=1e-4, head_l2=1e-2),
        cnn.longer_slower(),
    ]
    if not quick:
        arms.append(StudyArm("ResNet18", model="resnet18", epochs=10, lr=1e-3))
    return arms


@dataclass
class RunScores:
    arm: str
    regime: str
    seed: int
    cook: np.ndarray
    flipped: np.ndarray
    test_accuracy: float
    seconds: float

    @property
    def auroc(self) -> float:
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(self.flipped, self.cook))

    def roc(self) -> tuple[np.ndarray, np.ndarray]:
        """(fpr, tpr) of ranking by Cook's distance (higher = flagged first)."""
        from sklearn.metrics import roc_curve

        fpr, tpr, _ = roc_curve(self.flipped, self.cook)
        return fpr, tpr


@dataclass
class MislabelROCStudy:
    runs: list[RunScores] = field(default_factory=list)

    def select(self, arm: str, regime: str) -> list[RunScores]:
        return [r for r in self.runs if r.arm == arm and r.regime == regime]

    def mean_roc(self, arm: str, regime: str) -> np.ndarray:
        """Mean TPR over the runs at :data:`FPR_GRID` (each run's step curve interpolated)."""
        curves = [np.interp(FPR_GRID, *r.roc()) for r in self.select(arm, regime)]
        return np.mean(curves, axis=0) if curves else np.full_like(FPR_GRID, np.nan)

    def regime_label(self, regime: str) -> str:
        """What a regime flipped, counted: "≈0.05 % flipped" read as a share, but its floor of 5 flips is 0.40 % of
        the 1,257 training digits."""
        runs = [r for r in self.runs if r.regime == regime]
        if not runs:
            return regime
        k, n = int(runs[0].flipped.sum()), len(runs[0].flipped)
        return f"{k} of {n:,} labels flipped ({k / n:.2%})"

    def notes(self) -> list[str]:
        """What the figure alone would hide: arms whose mean ROCs coincide (one curve covers the other), and mean
        AUROCs below 0.5 (a ranking worse than a random order)."""
        out = []
        for regime in dict.fromkeys(r.regime for r in self.runs):
            label = self.regime_label(regime)
            arms = [arm for arm in dict.fromkeys(r.arm for r in self.runs) if self.select(arm, regime)]
            curves = {arm: self.mean_roc(arm, regime) for arm in arms}
            grouped: set[str] = set()
            for i, first in enumerate(arms):
                if first in grouped:
                    continue
                same = [other for other in arms[i + 1 :] if np.allclose(curves[first], curves[other], atol=1e-9)]
                grouped.update(same)
                if same:  # with one flipped label, any two arms that rank it equally high have the same curve
                    out.append(f"{label}: the mean ROC curves of {first} and {' and '.join(same)} coincide (one hides the other).")
            for arm in arms:
                auc = float(np.mean([r.auroc for r in self.select(arm, regime)]))
                if auc < 0.5:
                    out.append(
                        f"{label}: {arm}'s mean AUROC is {auc:.3f}, below 0.5: Cook's distance ranked the flipped labels "
                        "below the clean ones, worse than a random order (the model may have fitted them)."
                    )
        return out

    def summary(self) -> list[dict[str, object]]:
        """One row per (arm, regime): mean ± std AUROC (std over ≥ 2 runs, else None), share of flips in the top 5 %
        by Cook's distance."""
        rows = []
        for regime in dict.fromkeys(r.regime for r in self.runs):
            for arm in dict.fromkeys(r.arm for r in self.runs):
                runs = self.select(arm, regime)
                if not runs:
                    continue
                aucs = [r.auroc for r in runs]
                top5 = [float(r.flipped[np.argsort(-r.cook)[: max(1, int(0.05 * len(r.cook)))]].sum() / r.flipped.sum()) for r in runs]
                rows.append(
                    {
                        "regime": regime,
                        "noise": self.regime_label(regime),
                        "arm": arm,
                        "runs": len(runs),
                        "flipped": int(runs[0].flipped.sum()),
                        "auroc_mean": float(np.mean(aucs)),
                        "auroc_std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else None,  # one run has no spread
                        "found_in_top5pct": float(np.mean(top5)),
                        "test_accuracy": float(np.mean([r.test_accuracy for r in runs])),
                        "seconds_per_run": float(np.mean([r.seconds for r in runs])),
                    }
                )
        return rows


def flip_labels(dataset: Dataset, n_flipped: int, seed: int) -> Dataset:
    """Flip exactly ``n_flipped`` training labels, each to a uniformly random other class (seeded)."""
    from influence_core.data.noise import flip_count, with_noise

    return with_noise(dataset, flip_count(dataset.y_train, n_flipped, dataset.n_classes, seed))


def _job(dataset: Dataset, arm: StudyArm, regime: NoiseRegime, seed: int, damping: float) -> tuple[Dataset, RunConfig, dict]:
    """One run's noisy data, its engine config and its cache key."""
    noisy = flip_labels(dataset, regime.n_flipped(len(dataset.y_train)), seed)
    config = arm.run_config(noisy, seed, damping)
    payload = {"config": config_payload(config), "regime": asdict(regime), "dataset": dataset_fingerprint(noisy)}
    return noisy, config, payload


# the share of a run's progress its training takes when the run was not estimated
TRAINING_SHARE = 0.8


def run_once(
    dataset: Dataset,
    arm: StudyArm,
    regime: NoiseRegime,
    seed: int,
    damping: float = 1e-3,
    progress: ProgressFn = silent,
    use_cache: bool = True,
    training_share: float = TRAINING_SHARE,
) -> RunScores:
    """Flip labels, train one model of ``arm``, return its Cook's distances (cached on disk). ``training_share``: the
    part of ``progress`` the training takes (its estimated share of the run)."""
    arm.validate()
    noisy, config, payload = _job(dataset, arm, regime, seed, damping)

    def compute() -> cache.CacheEntry:
        start = time.perf_counter()
        split = min(max(training_share, 0.0), 1.0)
        middle = split + (1.0 - split) / 2
        # the study keeps its scores, not every run's weights (ResNet18's would fill the cache)
        trained = train(config, scaled(progress, 0.0, split), use_cache=False, dataset=noisy)
        method = fit_method(config, trained, scaled(progress, split, middle))
        cook = np.asarray(method.self_scores(scaled(progress, middle, 1.0)))
        acc = float(trained.metrics["test"]["accuracy"])
        return cache.CacheEntry(
            {"cook": cook, "flipped": noisy.flipped}, {"test_accuracy": acc, "seconds": time.perf_counter() - start}, {}
        )

    entry, _ = cache.cached("mislabel_roc", payload, compute, use_cache)
    return RunScores(
        arm.name,
        regime.name,
        seed,
        entry.arrays["cook"],
        entry.arrays["flipped"].astype(bool),
        entry.meta["test_accuracy"],
        entry.meta["seconds"],
    )


def load_study_data(name: str = "mnist", n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> Dataset:
    """A seeded stratified subset of MNIST / Fashion-MNIST (offline) or sklearn digits, no noise."""
    from influence_core.data.registry import load_dataset

    if name not in ("mnist", "fashion_mnist", "digits"):
        raise InputError(f"the mislabel ROC study runs on mnist, fashion_mnist or digits, got {name!r}")
    return load_dataset(DataConfig(name=name, n_train=n_train, n_test=n_test), seed)


@dataclass
class StudyEstimate:
    """What each run of a study will cost, in run order: (training, Cook's distances) per run, zero for a cached one."""

    runs: list[tuple[Cost, Cost]]

    @property
    def total(self) -> Cost:
        parts = [part for run in self.runs for part in run]
        cached = sum(1 for train, score in self.runs if train.seconds == 0 and score.seconds == 0)
        fresh = len(self.runs) - cached
        seconds = sum(p.seconds for p in parts)
        what = f"{plural(fresh, 'run')} to train and score" + (f", {cached} from the cache" if cached else "")
        if fresh:
            slowest = max(self.runs, key=lambda run: run[0].seconds + run[1].seconds)
            what += f"; the longest: {slowest[0].what}; {slowest[1].what}"
        return Cost(seconds, what)

    def seconds(self) -> list[float]:
        return [train.seconds + score.seconds for train, score in self.runs]


def _jobs(arms: Sequence[StudyArm], regimes: Sequence[NoiseRegime], n_runs: int, seed: int) -> list[tuple[StudyArm, NoiseRegime, int]]:
    if n_runs < 1 or not arms or not regimes:
        raise InputError("the study needs at least one arm, one noise regime and one run each")
    return [(a, r, seed + k) for r in regimes for a in arms for k in range(n_runs)]


def estimate_study(
    dataset: Dataset,
    arms: Sequence[StudyArm],
    regimes: Sequence[NoiseRegime] = DEFAULT_REGIMES,
    n_runs: int = 6,
    seed: int = 0,
    damping: float = 1e-3,
    use_cache: bool = True,
) -> StudyEstimate:
    """Each run's cost, measured here per arm (the runs of an arm differ only in their noise and seed): its training
    from a few of its own mini-batch steps, its Cook's distances from the head's curvature and one gradient pass
    (:mod:`influence_core.costs`); nothing for a run in the disk cache."""
    from influence_core import costs
    from influence_core.device import default_device
    from influence_core.experiments import Trained
    from influence_core.models import build_model

    per_arm: dict[str, tuple[Cost, Cost]] = {}
    runs = []
    for arm, regime, run_seed in _jobs(arms, regimes, n_runs, seed):
        arm.validate()
        noisy, config, payload = _job(dataset, arm, regime, run_seed, damping)
        if use_cache and cache.load("mislabel_roc", payload) is not None:
            runs.append((Cost(0.0), Cost(0.0)))
            continue
        if arm.name not in per_arm:
            model = build_model(config.model, noisy.input_shape, noisy.n_classes, run_seed).to(default_device())
            training = costs.training_cost(config, noisy, model)
            untrained = Trained(config, noisy, model.eval(), [], {})  # the trained model's throughput, before training
            x, y, _, _ = tensors(noisy, default_device())
            gradients = costs.gradient_pass_seconds(model, influence_params(config, model), x, y)
            scoring = costs.curvature_cost(config, untrained, len(y)) + Cost(gradients, f"Cook's distances: {seconds_text(gradients)}")
            per_arm[arm.name] = (training, scoring)
        runs.append(per_arm[arm.name])
    return StudyEstimate(runs)


def run_mislabel_roc(
    dataset: Dataset,
    arms: Sequence[StudyArm],
    regimes: Sequence[NoiseRegime] = DEFAULT_REGIMES,
    n_runs: int = 6,
    seed: int = 0,
    progress: ProgressFn = silent,
    use_cache: bool = True,
    estimate: Optional[StudyEstimate] = None,
) -> MislabelROCStudy:
    """Train ``n_runs`` models per (arm, regime) and collect their Cook's-distance rankings. Each run takes the share of
    ``progress`` its estimate gives it (``estimate``, else :func:`estimate_study` measures it first), so a cached run
    takes none and a slow arm its due: the time left extrapolated from the share done is the estimate's."""
    from influence_core.costs import weights_of

    jobs = _jobs(arms, regimes, n_runs, seed)
    if estimate is None or len(estimate.runs) != len(jobs):
        progress(0.0, "timing a few training steps of each arm")
        estimate = estimate_study(dataset, arms, regimes, n_runs, seed, use_cache=use_cache)
    shares = weights_of(estimate.seconds())
    study = MislabelROCStudy()
    done = 0.0
    for (arm, regime, run_seed), share, (training, score) in zip(jobs, shares, estimate.runs):
        step = scaled(progress, done, done + share)
        done += share
        step(0.0, f"{regime.name} · {arm.name} · run {run_seed - seed + 1}/{n_runs}")
        total = training.seconds + score.seconds
        split = training.seconds / total if total > 0 else TRAINING_SHARE
        study.runs.append(run_once(dataset, arm, regime, run_seed, progress=step, use_cache=use_cache, training_share=split))
    progress(1.0, "mislabel ROC study done")
    return study
