"""The Glitch signals pipeline: the run config, glitches injected, a clean validation split, training, signals,
baselines and detectors (:func:`detect_glitches`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

import numpy as np
import torch

from influence_core import cache, detectors, methods
from influence_core.baselines import cleanlab_flags, isolation_forest_scores, out_of_fold_probabilities
from influence_core.config import CurvatureConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data.base import Dataset
from influence_core.data.glitches import ANOMALY_KINDS, GLITCH_KINDS, MISLABEL_KINDS, GlitchTruth, inject_glitches
from influence_core.errors import InputError
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.signals.compute import SIGNALS, SignalResult, compute_signals, compute_signals_by_method, uses_head_closed_form
from influence_core.signals.scoring import score_methods
from influence_core.sources import Source

# the label-noise detectors shown beside the signals: all but the training loss and cleanlab, which are here already
GLITCH_DETECTORS = tuple(n for n in detectors.detector_names() if n not in ("loss", "cleanlab"))
# ------------------------------------------------------------------------------------------
# the pipeline behind the page and the benchmark


@dataclass(frozen=True)
class GlitchConfig:
    """Which glitch to inject and how the signals are computed (the run's data/model/training live in RunConfig)."""

    kind: str = "singular_class"
    ratio: float = 0.1
    source_class: Optional[int] = None  # singular_class: the corrupted class (None = drawn with the seed)
    val_fraction: float = 0.5  # share of the dataset's test split used as the clean validation set
    include_bias: bool = True  # TracIn over head.weight and head.bias (False: head.weight only)
    cleanlab_folds: int = 3  # K-fold out-of-sample probabilities for cleanlab (0 = skip cleanlab)
    isolation_forest: bool = True

    def validate(self) -> None:
        if self.kind not in GLITCH_KINDS:
            raise InputError(f"glitch kind must be one of {', '.join(GLITCH_KINDS)}; got {self.kind!r}")
        if self.kind != "none" and not 0.0 < self.ratio <= 0.5:
            raise InputError(f"glitch ratio must be in (0, 0.5], got {self.ratio}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        if self.cleanlab_folds == 1 or self.cleanlab_folds < 0:
            raise InputError(f"cleanlab folds must be 0 (skip) or ≥ 2, got {self.cleanlab_folds}")


def default_signal(kind: str) -> str:
    """The signal the paper proposes for a glitch kind."""
    if kind in MISLABEL_KINDS:
        return "CNCI"
    if kind in ANOMALY_KINDS:
        return "PCID"
    return "CFRank"


def signal_run_config(
    dataset: str = "digits",
    model: str = "mlp",
    n_train: int = 0,
    n_test: int = 0,
    seed: int = 0,
    epochs: Optional[int] = None,
    path: Optional[str] = None,
    label_column: Optional[str] = None,
    id_column: Optional[str] = None,
    image_size: Optional[int] = None,
    method: str = "tracin",
    glitch: Optional[GlitchConfig] = None,
    own_model: Optional[ModelConfig] = None,
    inputs: Optional[dict] = None,
) -> RunConfig:
    """A run config that trains with plain SGD (no momentum) and 10 checkpoints, as TracIn assumes; influence is taken
    over the last layer (the paper's setting) by ``method`` (TracIn by default: its closed form).

    Learning rates and epochs are set per model so each reaches good accuracy on digits / MNIST.
    ``dataset`` "csv" / "image_folder" reads the user's data at ``path`` (CSV: ``label_column``,
    optional ``id_column``; images resized to ``image_size``, the loader's default when None). ``glitch``:
    what to inject, kept in the config's hashed ``study`` (the paper's singular-class flip by default).

    ``own_model`` (:func:`model_files.own_model_config`) ranks the user's data under a model the user trained on it,
    as it is: nothing is trained here, so nothing can be injected and cleanlab (which retrains per fold) is not run.
    ``inputs`` (:func:`data.preprocessing.input_settings`) feeds it the inputs as it was trained on them.
    TracIn needs the model's earlier weight files as checkpoints (``own_model.checkpoint_files``, learning rate 1 each).
    """
    glitch = glitch or GlitchConfig()
    source = Source(dataset, path, label_column, id_column, image_size, inputs, own_model)  # image_size None: the loader's
    retrains = glitch.kind != "none" or glitch.cleanlab_folds >= 2
    source.check_model_file(
        "injected glitches and cleanlab's out-of-fold probabilities both need a model to train" if retrains else "",
        "choose the glitch 'none' and skip cleanlab",
    )
    if model == "cnn":
        train_cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=epochs or 15, batch_size=64, weight_decay=1e-4, n_checkpoints=10)
        model_cfg = ModelConfig(kind="cnn")
    elif model == "logreg":
        train_cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=epochs or 30, batch_size=64, weight_decay=1e-4, n_checkpoints=10)
        model_cfg = ModelConfig(kind="logreg")
    else:
        train_cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=epochs or 30, batch_size=64, weight_decay=1e-4, n_checkpoints=10)
        model_cfg = ModelConfig(kind="mlp", hidden=128, depth=1)
    return RunConfig(
        data=source.data(n_train=n_train, n_test=n_test),
        model=source.model(model_cfg),
        train=train_cfg,
        curvature=CurvatureConfig(kind="auto", params="last_layer"),
        method=method,
        seed=seed,
    ).with_study(glitch)


def split_validation(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, np.ndarray, np.ndarray, np.ndarray]:
    """Carve a stratified, seeded ``fraction`` of the test split as the clean validation set.

    Returns ``(dataset whose test split is the rest, x_val, y_val, ids_val)``.
    """
    from sklearn.model_selection import train_test_split

    n = len(ds.y_test)
    if n < 4:
        raise InputError(f"the test split has {n} rows; the validation set is carved from it: use a larger test split")
    idx = np.arange(n)
    try:
        val, rest = train_test_split(idx, train_size=fraction, random_state=seed, stratify=ds.y_test)
    except ValueError:
        val, rest = train_test_split(idx, train_size=fraction, random_state=seed)
    val, rest = np.sort(val), np.sort(rest)
    if len(np.unique(ds.y_test[val])) < 2:
        raise InputError("the validation set holds one class only: use a larger test split or validation fraction")
    kept = replace(
        ds,
        x_test=ds.x_test[rest],
        y_test=ds.y_test[rest],
        ids_test=ds.ids_test[rest],
        groups_test=None if ds.groups_test is None else ds.groups_test[rest],
    )
    return kept, ds.x_test[val], ds.y_test[val], ds.ids_test[val]


@dataclass
class GlitchReport:
    """Everything the page shows: the glitched data, signals, baselines, the comparison table."""

    run: RunConfig
    glitch: GlitchConfig
    dataset: Dataset  # glitched training rows; test = the test split minus the validation rows
    x_val: np.ndarray
    y_val: np.ndarray
    truth: GlitchTruth
    signals: SignalResult
    baselines: dict[str, Any]
    table: list[dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    detection: Optional["detectors.Detection"] = None  # the label-noise detectors side by side
    detection_context: Optional["detectors.DetectionContext"] = field(default=None, repr=False)

    @property
    def ratio(self) -> float:
        return float(self.truth.glitched.mean())

    @property
    def has_ground_truth(self) -> bool:
        """Whether glitches were injected, so that the signals can be scored (data as it is has none)."""
        return bool(self.truth.glitched.any())


def _prepare(run: RunConfig, glitch: GlitchConfig) -> tuple[Dataset, np.ndarray, np.ndarray, np.ndarray, GlitchTruth]:
    from influence_core.experiments import load_data

    glitch.validate()
    if run.data.noise != "none" and run.data.noise_fraction > 0:
        raise InputError("set the dataset's label noise to 'none': the glitch settings inject the corruption")
    method = methods.get(run.method)
    if method.assumes_sgd and run.train.optimizer != "sgd":
        raise InputError(
            f"{method.short_label or method.label} signals assume plain SGD (no momentum); set the optimizer to 'sgd' (got {run.train.optimizer!r})"
        )
    ds = load_data(run)
    ds, x_val, y_val, ids_val = split_validation(ds, glitch.val_fraction, run.seed)
    ds, truth = inject_glitches(ds, glitch.kind, glitch.ratio, run.seed, glitch.source_class)
    return ds, x_val, y_val, ids_val, truth


def detect_glitches(
    run: RunConfig,
    glitch: Optional[GlitchConfig] = None,
    progress: ProgressFn = silent,
    use_cache: bool = True,
) -> GlitchReport:
    """Inject glitches, train (SGD + checkpoints), compute every signal and baseline, score them. Cached.

    The glitch settings live in the run's hashed ``study`` (``run.with_study(GlitchConfig(...))``, as
    :func:`signal_run_config` does); ``glitch``, when given, is put there first."""
    from influence_core.experiments import _training_payload, dataset_fingerprint, fit_method, threads_for_run, train

    if glitch is not None:
        run = run.with_study(glitch)
    glitch = run.study_settings(GlitchConfig)
    progress(0.0, "loading data and injecting glitches")
    ds, x_val, y_val, ids_val, truth = _prepare(run, glitch)
    trained = train(run, scaled(progress, 0.02, 0.45), use_cache, ds)
    device = next(trained.model.parameters()).device
    x_tr_t, y_tr_t = torch.from_numpy(ds.x_train).to(device), torch.from_numpy(ds.y_train).to(device)
    x_val_t, y_val_t = torch.from_numpy(x_val).to(device), torch.from_numpy(y_val).to(device)

    payload = {
        "training": _training_payload(run, ds),
        "study": list(run.study),
        "method": run.method,
        "curvature": asdict(run.curvature),
        "validation": dataset_fingerprint(replace(ds, x_test=x_val, y_test=y_val, ids_test=ids_val, groups_test=None)),
    }

    def compute_signals_entry() -> cache.CacheEntry:
        if uses_head_closed_form(run):
            result = compute_signals(
                trained.model,
                trained.checkpoints,
                x_tr_t,
                y_tr_t,
                x_val_t,
                y_val_t,
                glitch.include_bias,
                progress=scaled(progress, 0.45, 0.6),
            )
        else:
            method = fit_method(run, trained, scaled(progress, 0.45, 0.5))
            result = compute_signals_by_method(method, x_val_t, y_val_t, ds.n_classes, scaled(progress, 0.5, 0.6))
        arrays = {f"score:{k}": v for k, v in result.scores.items()}
        arrays.update(ncf=result.ncf, pcf=result.pcf, cfrank_type=(result.cfrank_type == "mislabeled"))
        return cache.CacheEntry(arrays, {"seconds": result.seconds}, {})

    with threads_for_run(trained):
        entry, signals_cached = cache.cached("glitch_signals", payload, compute_signals_entry, use_cache)
    a = entry.arrays
    signals = SignalResult(
        scores={k: a[f"score:{k}"] for k in SIGNALS},
        ncf=a["ncf"],
        pcf=a["pcf"],
        cfrank_type=np.where(a["cfrank_type"], "mislabeled", "anomaly").astype(object),
        seconds=float(entry.meta["seconds"]),
    )

    baselines: dict[str, Any] = {}
    start = time.perf_counter()
    if glitch.cleanlab_folds >= 2:
        progress(0.6, f"cleanlab: {glitch.cleanlab_folds}-fold out-of-sample probabilities")
        probs = out_of_fold_probabilities(run, ds, glitch.cleanlab_folds, scaled(progress, 0.6, 0.95), use_cache)
        baselines["cleanlab"] = cleanlab_flags(ds.y_train, probs)
    if glitch.isolation_forest:
        progress(0.95, "IsolationForest")
        baselines["isolation_forest"] = isolation_forest_scores(ds.x_train, run.seed)
    # the label-noise detectors (issue 32) beside the signals; the out-of-fold ones share cleanlab's folds (the same
    # model, training, seed and fold count: the same probabilities), and wait when cleanlab is switched off
    context = detectors.DetectionContext(trained, max(glitch.cleanlab_folds, 2), use_cache, allow_out_of_fold=glitch.cleanlab_folds >= 2)
    if "cleanlab" in baselines:
        context.memo("oof_probs", lambda: probs)
    progress(0.97, "label-noise detectors")
    with threads_for_run(trained):
        detection = detectors.detect(trained, GLITCH_DETECTORS, context=context)
    baseline_seconds = time.perf_counter() - start

    table = score_methods(signals, truth, ds.y_train_clean, baselines, detection)
    metrics = dict(trained.metrics)
    metrics.update(
        signal_seconds=signals.seconds,
        signals_from_cache=signals_cached,
        baseline_seconds=baseline_seconds,
        n_train=len(ds.y_train),
        n_val=len(y_val),
        n_test=len(ds.y_test),
        n_mislabeled=int(truth.mislabeled.sum()),
        n_anomalous=int(truth.anomalous.sum()),
    )
    progress(1.0, "done")
    return GlitchReport(run, glitch, ds, x_val, y_val, truth, signals, baselines, table, metrics, detection, context)
