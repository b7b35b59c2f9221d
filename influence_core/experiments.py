"""Named pipelines: a config in, results out, cached on disk by the config's hash.

Pages and the CLI call these functions and render what comes back, so the same config gives the
same numbers everywhere.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from influence_core import cache
from influence_core.config import RunConfig, TrainConfig
from influence_core.data.base import Dataset
from influence_core.device import default_device
from influence_core.errors import InputError
from influence_core.gradients import n_params
from influence_core.measurements import PerSampleLoss
from influence_core.methods import REGISTRY, AttributionContext, Attributor, fit_attributor
from influence_core.models import build_model, parameter_names
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.training import (
    Checkpoint,
    SegmentStates,
    TrainingDynamics,
    TrainingRecipe,
    TrainResult,
    evaluate,
    model_at,
    train_model,
)

# datasets decoded from the user's files at load time (the others load in a moment)
FILE_DATASETS = ("image_folder", "chexpert")

# a pairwise matrix up to this many entries is held in memory; a larger one is written out of core (a zarr store in
# the cache, read lazily), by default up to MAX_OUT_OF_CORE_ENTRIES (4 GB on disk), and beyond that only when asked
MAX_PAIRWISE_ENTRIES = 50_000_000
MAX_OUT_OF_CORE_ENTRIES = 1_000_000_000


def load_data(config: RunConfig, progress: Optional[ProgressFn] = None) -> Dataset:
    """The dataset a config names, with its label corruption applied (deterministic in the seed).
    ``progress`` hears from loaders that decode files (image folders, CheXpert)."""
    from influence_core.data.registry import load_dataset

    return load_dataset(config.data, config.seed, progress)


def tensors(dataset: Dataset, device: Optional[torch.device] = None) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test) on the device, with the labels used in training."""
    device = device or default_device()
    return (
        torch.from_numpy(dataset.x_train).to(device),
        torch.from_numpy(dataset.y_train).to(device),
        torch.from_numpy(dataset.x_test).to(device),
        torch.from_numpy(dataset.y_test).to(device),
    )


@dataclass
class Trained:
    config: RunConfig
    dataset: Dataset
    model: nn.Module
    checkpoints: list[Checkpoint]
    metrics: dict[str, Any]
    dynamics: Optional[TrainingDynamics] = None  # per-row margins and losses while it trained (None: not trained here)
    kept_states: Optional[SegmentStates] = None  # the run's states every ⌈√T⌉ steps, kept for a method that replays it


def dataset_fingerprint(dataset: Dataset) -> str:
    """Content hash of what training sees, for datasets edited after loading (relabel, remove)."""
    h = hashlib.sha256()
    for arr in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:24]


def config_payload(config: RunConfig) -> dict[str, Any]:
    """The config as a cache key; for a user's csv / image folder also what the file holds now,
    so that editing it (fixing labels) invalidates the cached results instead of bringing them back."""
    from influence_core import methods
    from influence_core.data.registry import source_fingerprint

    d = config.to_dict()
    if config.method in methods.REGISTRY and not methods.get(config.method).uses_curvature:
        d["curvature"] = {"params": d["curvature"]["params"]}  # settings the method ignores do not split the cache
    source = source_fingerprint(config.data)
    if source is not None:
        d["source"] = source
    if config.model.kind == "file":  # the user's model: what its files hold, not only their names
        from influence_core.model_files import file_fingerprint

        d["model_files"] = [file_fingerprint(f) for f in (config.model.file, *config.model.checkpoint_files)]
    return d


def _training_payload(config: RunConfig, dataset: Optional[Dataset]) -> dict[str, Any]:
    # training depends on data, model, training and seed; not on curvature or method
    d = config_payload(config)
    payload = {"data": d["data"], "model": d["model"], "train": d["train"], "seed": d["seed"]}
    if "source" in d:
        payload["source"] = d["source"]
    if dataset is not None:  # an edited dataset: key on its content, not only on the config
        payload["dataset"] = dataset_fingerprint(dataset)
    payload["records"] = "dynamics"  # entries from before training recorded its dynamics are not brought back
    return payload


def train(
    config: RunConfig,
    progress: ProgressFn = silent,
    use_cache: bool = True,
    dataset: Optional[Dataset] = None,
    sample_weights: Optional[np.ndarray] = None,
) -> Trained:
    """Load the data and train the configured model (cached: weights and checkpoints). ``sample_weights`` (one per
    training row) replays the same run with rows weighted, zero for a row left out: the same initial weights and
    batches (the fixed-randomness counterfactual of exact attribution and ``lds --randomness fixed``)."""
    payload = _training_payload(config, dataset)
    if sample_weights is not None:
        import hashlib

        weights = np.ascontiguousarray(sample_weights, dtype=np.float64)
        payload["sample_weights"] = hashlib.sha256(weights.tobytes()).hexdigest()
    if dataset is None:  # decoding a folder of images can take longer than training on it
        dataset = load_data(config, scaled(progress, 0.0, 0.2) if config.data.name in FILE_DATASETS else None)
        progress = scaled(progress, 0.2, 1.0) if config.data.name in FILE_DATASETS else progress
    if len(np.unique(dataset.y_train)) < 2:
        raise InputError("the training labels contain one class only: influence needs at least two classes")
    if config.model.kind == "file":
        return _own_model(config, dataset, payload)
    device = default_device()
    model = build_model(config.model, dataset.input_shape, dataset.n_classes, config.seed).to(device)
    x, y, xt, yt = tensors(dataset, device)
    keep_states = sample_weights is None and _replays_training(config, model)
    if keep_states:  # its own entry: one trained for another method has no states, and stays as it was
        payload["kept"] = "segment states"

    def compute() -> cache.CacheEntry:
        start = time.perf_counter()
        weights = None if sample_weights is None else torch.as_tensor(sample_weights, dtype=x.dtype, device=device)
        if weights is not None and len(weights) != len(y):
            raise InputError(f"{len(weights)} sample weights for {len(y)} training rows")
        result: TrainResult = train_model(
            model, x, y, config.train, config.seed, progress, sample_weights=weights, keep_segment_states=keep_states
        )
        meta = {
            "train_seconds": time.perf_counter() - start,
            "history": result.history,
            "checkpoint_epochs": [c.epoch for c in result.checkpoints],
            "checkpoint_lrs": [c.lr for c in result.checkpoints],
        }
        tensors_out = {"final": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
        tensors_out.update({f"ckpt{i}": c.state for i, c in enumerate(result.checkpoints)})
        arrays = {"dynamics_margins": result.dynamics.margins, "dynamics_losses": result.dynamics.losses}
        if result.kept_states is not None:
            kept = result.kept_states
            meta["segment_state_every"] = kept.every
            tensors_out["segment_states"] = {
                k: v.cpu() for k, v in (("params", kept.params), ("first", kept.first), ("second", kept.second)) if v is not None
            }
        return cache.CacheEntry(arrays, meta, tensors_out)

    entry, was_cached = cache.cached("train", payload, compute, use_cache)
    model.load_state_dict(entry.tensors["final"])
    model.eval()
    checkpoints = [
        Checkpoint(epoch, lr, entry.tensors[f"ckpt{i}"])
        for i, (epoch, lr) in enumerate(zip(entry.meta["checkpoint_epochs"], entry.meta["checkpoint_lrs"]))
    ]
    metrics = {
        "train": evaluate(model, x, y),
        "test": evaluate(model, xt, yt),
        "train_seconds": entry.meta["train_seconds"],
        "history": entry.meta["history"],
        "from_cache": was_cached,
        "n_params": n_params(model),
        "device": str(device),
    }
    progress(1.0, "trained")
    dynamics = TrainingDynamics(entry.arrays["dynamics_margins"], entry.arrays["dynamics_losses"])
    kept = None
    if "segment_states" in entry.tensors:
        kept = SegmentStates(entry.meta["segment_state_every"], **entry.tensors["segment_states"]).to(device)
    return Trained(config, dataset, model, checkpoints, metrics, dynamics, kept)


def _replays_training(config: RunConfig, model: nn.Module) -> bool:
    """Whether the config's method runs back through this training (exact attribution) and the run can be replayed:
    then training keeps the states its reverse pass starts from (:class:`SegmentStates`)."""
    from influence_core import replay

    method = REGISTRY.get(config.method)
    if method is None or not method.replays_training:
        return False
    return replay.unsupported_reason(model, TrainingRecipe({}, config.train, config.seed)) is None


RETRAIN_OWN_MODEL = (
    "your own model was trained on your data as it is, and it is not retrained here: a subset, an edit or "
    "injected glitches need a model to train — choose an architecture (e.g. --model mlp) instead of a model file"
)


def _own_model(config: RunConfig, dataset: Dataset, payload: dict[str, Any]) -> Trained:
    """The user's trained model (no training), on the data it was trained on."""
    from influence_core.model_files import load_user_model

    if "dataset" in payload:  # a dataset handed in: only the one the model was trained on
        loaded = load_data(config)
        if not (np.array_equal(loaded.x_train, dataset.x_train) and np.array_equal(loaded.y_train, dataset.y_train)):
            raise InputError(RETRAIN_OWN_MODEL)
    m = config.model
    own = load_user_model(m.file, m.arch, dataset.input_shape, dataset.n_classes, m.hidden, m.depth, m.checkpoint_files, m.activation)
    device = default_device()
    model = own.model.to(device)
    x, y, xt, yt = tensors(dataset, device)
    metrics = {
        "train": evaluate(model, x, y),
        "test": evaluate(model, xt, yt),
        "train_seconds": 0.0,
        "history": [],
        "from_cache": False,
        "n_params": n_params(model),
        "device": str(device),
        "own_model": own.description,
    }
    return Trained(config, dataset, model, own.checkpoints, metrics)


@dataclass
class InfluenceResult:
    """Scores of one run. ``self_scores`` (n_train,): higher = more suspicious.
    ``pairwise`` (n_test, n_train): positive = harmful, negative = helpful (None when too large)."""

    config: RunConfig
    dataset: Dataset
    model: nn.Module
    checkpoints: list[Checkpoint]
    self_scores: np.ndarray
    pairwise: Optional[Any]  # an ndarray, or a ScoreMatrix read lazily from disk when it is larger than memory
    test_probs: np.ndarray
    train_probs: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)
    dynamics: Optional[TrainingDynamics] = None  # what training recorded per row (the detectors read it)

    @property
    def misclassified_test(self) -> np.ndarray:
        return np.flatnonzero(self.test_probs.argmax(1) != self.dataset.y_test)

    def hardest_test_points(self, n: int = 1) -> np.ndarray:
        """The ``n`` test points with the largest loss −log p(y | x), largest first: the ones whose
        influences are large enough to see (a point fitted with ~zero loss gradient is moved by nothing)."""
        p_label = self.test_probs[np.arange(len(self.dataset.y_test)), self.dataset.y_test]
        return np.argsort(p_label, kind="stable")[:n]


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    device = next(model.parameters()).device
    model.eval()
    out = [torch.softmax(model(torch.from_numpy(x[i : i + batch_size]).to(device)), 1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def influence_params(config: RunConfig, model: nn.Module) -> list[str]:
    """The parameters influence is taken over, decided here once: the config's scope, or the head where the method
    inverts a curvature that works there only. A method that uses no curvature (IP, TracIn) is never narrowed by the
    curvature box it ignores (the explorer's greyed-out last-layer default once narrowed IP to the head)."""
    from influence_core import curvatures, methods

    kind = config.curvature.kind
    uses = methods.get(config.method).uses_curvature
    last_only = uses and kind != curvatures.AUTO and curvatures.get(kind).last_layer_only
    return parameter_names(model, "last_layer" if last_only else config.curvature.params)


def curvature_weight_decay(config: RunConfig, model: nn.Module, params: Sequence[str]) -> float:
    """The L2 coefficient the training objective's Hessian carries over ``params``: the weight decay, plus the head's own
    L2 (the mislabel ROC study's elastic net) where influence is over the head alone. A curvature takes one coefficient,
    so the head's bias gets it too; over every weight it is left out (it would regularise the body as well)."""
    from influence_core.models import head_names

    head_only = bool(config.train.head_l2) and list(params) == head_names(model)
    return config.train.weight_decay + (config.train.head_l2 if head_only else 0.0)


def method_context(
    config: RunConfig,
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    checkpoints: Sequence[Checkpoint] = (),
    training: Optional[TrainingRecipe] = None,
    params: Optional[Sequence[str]] = None,
    **options: Any,
) -> AttributionContext:
    """What a method is fitted on: ``model`` and its training rows under the config's settings (weight decay, curvature
    and its knobs, seed), ``options`` being the method's knobs. Every context is built here; the parameters are
    :func:`influence_params`' unless a pipeline fixes them (``params``: the Hessian-free study takes every method over
    all weights, so that its IF and IP compare on one scope)."""
    names = list(params) if params is not None else influence_params(config, model)
    return AttributionContext(
        model,
        x_train,
        y_train,
        names,
        curvature_weight_decay(config, model, names),
        config.curvature.kind,
        config.curvature.damping,
        list(checkpoints),
        seed=config.seed,
        options=options,
        curvature_options=dict(config.curvature.options),
        training=training,
    )


def attribution_context(config: RunConfig, trained: "Trained", **options: Any) -> AttributionContext:
    """What the run's method is fitted on: the trained model and data, and the config's curvature settings."""
    model = trained.model
    x, y, _, _ = tensors(trained.dataset, next(model.parameters()).device)
    return method_context(config, model, x, y, trained.checkpoints, training_recipe(config, trained), **options)


def training_recipe(config: RunConfig, trained: "Trained") -> Optional[TrainingRecipe]:
    """How the run's model was trained (its seeded initial weights, settings and seed), for methods that replay it;
    None for a model the user brought (its training is not known here)."""
    if config.model.kind == "file":
        return None
    initial = build_model(config.model, trained.dataset.input_shape, trained.dataset.n_classes, config.seed)
    kept = getattr(trained, "kept_states", None)  # an InfluenceResult stands in for a Trained too, without them
    return TrainingRecipe({k: v.detach().clone() for k, v in initial.state_dict().items()}, config.train, config.seed, kept)


def fit_method(
    config: RunConfig, trained: "Trained", progress: ProgressFn = silent, method: Optional[str] = None, **options: Any
) -> Attributor:
    """The config's method (or ``method``) fitted on a trained run, through the method registry; its knobs are the
    config's ``method_options`` (for the config's own method) and ``options``."""
    own = dict(config.method_options) if method in (None, config.method) else {}
    if method not in (None, config.method):  # the scope is the fitted method's: IP asked of an influence run is not narrowed
        config = config.replace(method=method, method_options=())
    return fit_attributor(config.method, attribution_context(config, trained, **{**own, **options}), progress)


def pairwise_plan(n_test: int, n_train: int, pairwise: Optional[bool]) -> str:
    """Where the (test × train) matrix goes: "memory", "disk" (out of core) or "none". ``pairwise`` None decides by
    size; True always computes it (on disk when it does not fit in memory); False never."""
    from influence_core.resources import memory_budget

    entries = n_test * n_train
    if pairwise is False or entries == 0:
        return "none"
    if entries <= MAX_PAIRWISE_ENTRIES and 4 * entries <= memory_budget() // 2:
        return "memory"
    return "disk" if pairwise or entries <= MAX_OUT_OF_CORE_ENTRIES else "none"


def check_query_memory(attributor: Attributor, n_queries: int, device: torch.device) -> None:
    """Refuse, before scoring, queries whose preconditioned gradients (k × p floats) do not fit the memory budget."""
    from influence_core.resources import format_bytes, memory_budget

    params = dict(attributor.context.model.named_parameters())
    need = 4 * n_queries * sum(params[n].numel() for n in attributor.param_names if n in params)
    budget = memory_budget(device)
    if need > budget:
        raise InputError(
            f"the {n_queries} held-out rows' preconditioned gradients need {format_bytes(need)} (memory budget {format_bytes(budget)}): "
            "score fewer held-out rows (a smaller test fraction), take influence over the last layer only (--params last_layer), "
            "or raise INFLUENCE_LAB_MEMORY_GB"
        )


def _scores(
    config: RunConfig, trained: Trained, plan: str, progress: ProgressFn, store: Optional[tuple[Any, str]] = None
) -> tuple[dict[str, np.ndarray], str]:
    """Self-scores and, by ``plan``, the pairwise matrix: in the returned arrays, or written to ``store`` = (path, key)."""
    attributor = fit_method(config, trained, scaled(progress, 0.0, 0.3))
    out: dict[str, np.ndarray] = {"self": attributor.self_scores(scaled(progress, 0.3, 0.6))}
    if plan == "none":
        return out, attributor.note
    device = next(trained.model.parameters()).device
    x, y, xt, yt = tensors(trained.dataset, device)
    check_query_memory(attributor, len(yt), device)
    measurement = PerSampleLoss(xt, yt)
    if plan == "memory":
        out["pairwise"] = attributor.scores(measurement, progress=scaled(progress, 0.6, 1.0))
    else:
        from influence_core import score_store
        from influence_core.resources import memory_budget

        path, key = store
        row_bytes = 4 * int(np.prod(trained.dataset.input_shape))
        layout = score_store.StoreLayout(len(yt), len(y), score_store.block_rows_for(len(yt), len(y), memory_budget(device), row_bytes))
        blocks = score_store.attributor_blocks(attributor, measurement, score_store.TensorRows(x, y), layout)
        score_store.write_score_matrix(path, layout, key, blocks, scaled(progress, 0.6, 1.0))
    return out, attributor.note


def influence_payload(config: RunConfig, plan: str, dataset: Optional[Dataset] = None) -> dict[str, Any]:
    """The disk cache's key of a run's scores (``plan``: :func:`pairwise_plan`'s answer)."""
    payload = {"config": config_payload(config), "pairwise": plan != "none"}
    if dataset is not None:
        payload["dataset"] = dataset_fingerprint(dataset)
    return payload


def threads_for_model(model: nn.Module, dataset: Dataset, train: TrainConfig):
    """One torch thread for the work on a small model, decided as its training decides it
    (:func:`training.threads_for_training`, by the size of one training step): per-sample gradients, curvature fits and
    their timings on a small model are milliseconds of small ops, and with other jobs on the machine two OpenMP threads
    wait for each other at each. Label bias on digits beside other jobs (load ~3.5): a gradient pass 8 ms idle and
    4.7-6.1 s on two threads, 10 ms on one; the whole estimate 17-19 s against 2.0 s."""
    from influence_core.training import threads_for_training

    device = next(model.parameters()).device
    n, batch = len(dataset.y_train), train.batch_size
    return threads_for_training(model, torch.from_numpy(dataset.x_train[:1]).to(device), batch if 0 < batch < n else max(n, 1))


def threads_for_run(trained: "Trained"):
    """:func:`threads_for_model` for a trained run's scoring."""
    return threads_for_model(trained.model, trained.dataset, trained.config.train)


def compute_influence(
    config: RunConfig,
    progress: ProgressFn = silent,
    use_cache: bool = True,
    pairwise: Optional[bool] = None,
    dataset: Optional[Dataset] = None,
    before_scoring: Optional[Callable[[Trained, int], None]] = None,
) -> InfluenceResult:
    """Train (or load) the model and compute self-influence and, if affordable, the pairwise matrix.
    ``before_scoring(trained, n_queries)`` is called once the model is trained, just before the scores are computed
    (not when they come from the cache): the CLI says there what they will cost (:mod:`influence_core.costs`)."""
    trained = train(config, scaled(progress, 0.0, 0.5), use_cache, dataset)
    ds = trained.dataset
    plan = pairwise_plan(len(ds.y_test), len(ds.y_train), pairwise)
    payload = influence_payload(config, plan, dataset)
    key = cache.entry_key("influence", payload)[0]
    store = (cache.cache_root() / "matrices" / f"{key}.zarr", key) if plan == "disk" else None

    def compute() -> cache.CacheEntry:
        if before_scoring is not None:
            before_scoring(trained, 0 if plan == "none" else len(ds.y_test))
        start = time.perf_counter()
        with threads_for_run(trained):
            arrays, note = _scores(config, trained, plan, scaled(progress, 0.5, 1.0), store)
        meta = {"influence_seconds": time.perf_counter() - start, "method_note": note}
        if store is not None:
            meta["pairwise_store"] = str(store[0])
        return cache.CacheEntry(arrays, meta, {})

    entry, was_cached = cache.cached("influence", payload, compute, use_cache)
    matrix = entry.arrays.get("pairwise")
    if "pairwise_store" in entry.meta:
        from influence_core.score_store import ScoreMatrix

        matrix = ScoreMatrix.open(entry.meta["pairwise_store"])
        if matrix is None:  # the store was removed or damaged since: compute it again (its finished blocks are kept)
            entry, was_cached = cache.cached("influence", payload, compute, use_cache, refresh=True)
            matrix = ScoreMatrix(entry.meta["pairwise_store"])
    metrics = dict(trained.metrics)
    metrics.update(
        influence_seconds=entry.meta["influence_seconds"], influence_from_cache=was_cached, method_note=entry.meta.get("method_note", "")
    )
    progress(1.0, "done")
    return InfluenceResult(
        config=config,
        dataset=ds,
        model=trained.model,
        checkpoints=trained.checkpoints,
        self_scores=entry.arrays["self"],
        pairwise=matrix,
        test_probs=predict_proba(trained.model, ds.x_test),
        train_probs=predict_proba(trained.model, ds.x_train),
        metrics=metrics,
        dynamics=trained.dynamics,
    )


EDITS = ("remove", "relabel")


def retrain_with_edit(
    result: InfluenceResult, train_index: int, edit: str, progress: ProgressFn = silent, use_cache: bool = True
) -> tuple[InfluenceResult, Dataset]:
    """The same run (config, seed) retrained from scratch with one training point removed or relabelled
    (to the model's likeliest other class); returns the new result and the edited data. The stored data is not
    changed. In the edited data the point's ground truth follows the edit: a relabelled point is flipped iff its
    new label differs from the clean one."""
    ds = result.dataset
    if edit not in EDITS:
        raise InputError(f"the edit must be one of {EDITS}, got {edit!r}")
    if not 0 <= train_index < len(ds.y_train):
        raise InputError(f"training point {train_index} does not exist: pick one of 0–{len(ds.y_train) - 1}")
    edited = ds.edited(np.array([train_index]), edit, result.train_probs)
    return compute_influence(result.config, progress, use_cache, dataset=edited), edited


def influence_over_epochs(config: RunConfig, progress: ProgressFn = silent, use_cache: bool = True) -> tuple[list[int], np.ndarray]:
    """Self-influence of every training point at every saved checkpoint: (epochs, (n_ckpt, n_train)).

    Shows influence concentrating on a wrong label as training goes on (ACAS Xu paper, Fig. 4).
    """
    trained = train(config, scaled(progress, 0.0, 0.3), use_cache)

    def compute() -> cache.CacheEntry:
        rows = []
        for k, ckpt in enumerate(trained.checkpoints):
            at_k = model_at(trained.model, ckpt)
            step = scaled(progress, 0.3 + 0.7 * k / len(trained.checkpoints), 0.3 + 0.7 * (k + 1) / len(trained.checkpoints))
            rows.append(_scores(config, Trained(config, trained.dataset, at_k, trained.checkpoints[: k + 1], {}), "none", step)[0]["self"])
        return cache.CacheEntry({"self": np.stack(rows)}, {"epochs": [c.epoch for c in trained.checkpoints]}, {})

    entry, _ = cache.cached("epochs", {"config": config_payload(config)}, compute, use_cache)
    return entry.meta["epochs"], entry.arrays["self"]


def epochs_are_cached(config: RunConfig) -> bool:
    """Whether :func:`influence_over_epochs` finds its result in the disk cache (then it costs nothing to speak of)."""
    return cache.load("epochs", {"config": config_payload(config)}) is not None


def decision_grid(model: nn.Module, x: np.ndarray, resolution: int = 120, margin: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities of a 2D model over a grid covering x: (xs, ys, probs (res, res, k))."""
    lo, hi = x.min(0) - margin, x.max(0) + margin
    xs, ys = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    xx, yy = np.meshgrid(xs, ys)
    probs = predict_proba(model, np.c_[xx.ravel(), yy.ravel()].astype(np.float32))
    return xs, ys, probs.reshape(resolution, resolution, -1)


# ------------------------------------------------------------------------------- memo keys


def content_key(config: RunConfig, source: Optional[str] = None) -> str:
    """The config's key *with what the user's file or folder holds now* (the disk cache's key, see
    :func:`config_payload`): a page's memo keyed on it reruns after the file is edited, where
    ``config.key()`` (path only) would show the old result. ``source``: a CSV / image folder the page reads
    outside the config (What-if builds its dataset itself)."""
    import json
    import os

    from influence_core.config import DataConfig
    from influence_core.data.registry import source_fingerprint

    payload = config_payload(config)
    if source:
        kind = "image_folder" if os.path.isdir(os.path.expanduser(source)) else "csv"
        payload["extra_source"] = [source, source_fingerprint(DataConfig(name=kind, path=source))]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:20]
