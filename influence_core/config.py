"""One frozen, hashable config object describes a run; its hash keys the on-disk result cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from influence_core.errors import InputError

NOISE_KINDS = ("none", "flip_class", "singular_class", "uniform")
MODEL_KINDS = ("logreg", "mlp", "cnn", "resnet18")  # the zoo trained here; "file" is a model the user brings (model_files)
LR_SCHEDULES = ("constant", "cosine", "cosine_per_step")
OPTIMIZERS = ("sgd", "adam", "lbfgs")
POOLINGS = ("max", "avg")
# (section, field, default) of fields added after results were cached: left out of the hashed dict at their default
ADDED_AT_DEFAULT = (("model", "pooling", "max"),)
PARAM_SCOPES = ("all", "last_layer")


# Checks a registry adds to every config's validation: the method and curvature registries check names and options
# against what is registered (influence_core.methods / influence_core.curvatures register theirs on import, and every
# run is made through influence_core.experiments, which imports both). So this module is a leaf that every layer may
# import, and a new method's or curvature's file is still all a new name needs.
REGISTRY_CHECKS: list[Callable[["RunConfig"], None]] = []


def add_registry_check(check: Callable[["RunConfig"], None]) -> None:
    """Run ``check(config)`` in every :meth:`RunConfig.validate` (it raises :class:`InputError` saying what to change)."""
    if check not in REGISTRY_CHECKS:
        REGISTRY_CHECKS.append(check)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and which label corruption.

    ``name`` is a synthetic toy (see ``data.synthetic``), a built-in real set ("digits", "mnist",
    "chexpert", ...) or "csv" / "image_folder" with ``path``.
    """

    name: str = "moons"
    n_train: int = 300
    n_test: int = 200
    test_fraction: float = 0.2  # held-out share for csv / image folders (0 = score every row, no test split)
    path: Optional[str] = None
    label_column: Optional[str] = None
    id_column: Optional[str] = None
    classes: Optional[tuple[int, ...]] = None  # keep only these classes (e.g. (4, 9))
    image_size: Optional[int] = None
    # preprocessing that matches a model trained elsewhere (data.preprocessing): the CSV's feature columns in the model's
    # order, the images' channels (1 or 3), and a mean / std per channel or feature in place of the default scaling
    feature_columns: Optional[tuple[str, ...]] = None
    channels: Optional[int] = None
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    noise: str = "none"
    noise_fraction: float = 0.0
    noise_source: int = 1  # class whose labels are corrupted (flip_class / singular_class)
    noise_target: int = 0  # class they are flipped to (flip_class)


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"
    hidden: int = 32
    depth: int = 2  # hidden layers of the MLP
    activation: str = "relu"  # relu | sigmoid | tanh
    pretrained_weights: Optional[str] = None  # local file with ImageNet weights (ResNet18)
    file: Optional[str] = None  # kind "file": the user's trained model (weights + ``arch``, or a torch.export .pt2)
    arch: Optional[str] = None  # the weights' architecture: a zoo kind or a torchvision classifier name
    checkpoint_files: tuple[str, ...] = ()  # more weight files of the same model, as TracIn's checkpoints
    pooling: str = "max"  # the CNN's downsampling: "max", or "avg" (smooth in the weights, for exact attribution)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    lr: float = 0.1
    batch_size: int = 0  # 0 = full batch
    optimizer: str = "adam"
    weight_decay: float = 1e-3  # L2 penalty (λ/2)‖θ‖², part of the loss and so of the Hessian
    n_checkpoints: int = 10  # checkpoints kept for TracIn / influence over epochs
    checkpoint_spacing: str = "linear"  # "linear" (TracIn) or "log" (dense early: to watch influence form)
    lr_schedule: str = "constant"  # "constant", "cosine" (annealed to 0 over the epochs) or "cosine_per_step"; SGD/Adam only
    head_l1: float = 0.0  # elastic net on the head weight (mislabel ROC study): λ₁‖W_head‖₁ + (λ₂/2)‖W_head‖²
    head_l2: float = 0.0


@dataclass(frozen=True)
class CurvatureConfig:
    kind: str = "exact"
    damping: float = 0.01  # added to the Hessian diagonal: H + damping·I
    params: str = "all"  # "all" or "last_layer"
    options: tuple[tuple[str, Any], ...] = ()  # the backend's knobs as (name, value) pairs, e.g. (("rank", 20),)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    curvature: CurvatureConfig = field(default_factory=CurvatureConfig)
    method: str = "influence"
    seed: int = 0
    method_options: tuple[tuple[str, Any], ...] = ()  # the method's knobs as (name, value) pairs, e.g. (("projection_dim", 256),)
    # a study's own settings (the glitch to inject, the oracle table, the trim share, ...) as (name, value) pairs
    # headed by ("study", its name): with them inside, this one hash covers every setting of a run
    study: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject configs that make no sense, saying what to change."""
        checks = [
            (self.data.noise in NOISE_KINDS, f"noise must be one of {NOISE_KINDS}, got {self.data.noise!r}"),
            (0.0 <= self.data.test_fraction < 1.0, f"test fraction must be in [0, 1), got {self.data.test_fraction}"),
            (0.0 <= self.data.noise_fraction <= 1.0, f"noise fraction must be in [0, 1], got {self.data.noise_fraction}"),
            (self.model.kind in (*MODEL_KINDS, "file"), f"model must be one of {MODEL_KINDS} or 'file', got {self.model.kind!r}"),
            ((self.model.kind == "file") == (self.model.file is not None), "a model of kind 'file' needs its file, and only it"),
            (self.model.depth >= 1 and self.model.hidden >= 1, "an MLP needs depth ≥ 1 and hidden ≥ 1"),
            (
                self.model.activation in ("relu", "sigmoid", "tanh"),
                f"activation must be relu, sigmoid or tanh, got {self.model.activation!r}",
            ),
            (self.model.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.model.pooling!r}"),
            (self.train.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.train.optimizer!r}"),
            (self.train.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}, got {self.train.lr_schedule!r}"),
            (self.train.epochs >= 1, f"epochs must be ≥ 1, got {self.train.epochs}"),
            (self.train.lr > 0, f"learning rate must be > 0, got {self.train.lr}"),
            (self.train.weight_decay >= 0, f"weight decay must be ≥ 0, got {self.train.weight_decay}"),
            (min(self.train.head_l1, self.train.head_l2) >= 0, "the head's L1 / L2 penalties must be ≥ 0"),
            (self.train.checkpoint_spacing in ("linear", "log"), "checkpoint spacing must be linear or log"),
            (self.train.batch_size >= 0, f"batch size must be ≥ 0 (0 = full batch), got {self.train.batch_size}"),
            (self.curvature.damping >= 0, f"damping must be ≥ 0, got {self.curvature.damping}"),
            (self.curvature.params in PARAM_SCOPES, f"parameter scope must be one of {PARAM_SCOPES}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        for check in REGISTRY_CHECKS:
            check(self)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for section, name, default in ADDED_AT_DEFAULT:  # absent at their default: every earlier run keeps its cache key
            if d[section][name] == default:
                del d[section][name]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=list)

    def key(self) -> str:
        """Stable content hash: equal configs give equal keys across processes and machines."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:20]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        data = dict(d.get("data", {}))
        if data.get("classes") is not None:
            data["classes"] = tuple(data["classes"])
        model = dict(d.get("model", {}))
        model["checkpoint_files"] = tuple(model.get("checkpoint_files", ()))
        curvature = dict(d.get("curvature", {}))
        curvature["options"] = tuple(tuple(pair) for pair in curvature.get("options", ()))
        return cls(
            data=DataConfig(**data),
            model=ModelConfig(**model),
            train=TrainConfig(**d.get("train", {})),
            curvature=CurvatureConfig(**curvature),
            method=d.get("method", "influence"),
            seed=int(d.get("seed", 0)),
            method_options=tuple(tuple(pair) for pair in d.get("method_options", ())),
            study=tuple((name, tuple(v) if isinstance(v, list) else v) for name, v in d.get("study", ())),
        )

    def with_study(self, settings: Any) -> "RunConfig":
        """A copy whose hashed ``study`` holds ``settings`` (a frozen dataclass of plain values, validated here)."""
        settings.validate()
        pairs = (("study", type(settings).__name__),) + tuple(sorted(dataclasses.asdict(settings).items()))
        return dataclasses.replace(self, study=pairs)

    def study_settings(self, kind: type) -> Any:
        """The study settings of class ``kind`` that :meth:`with_study` stored (InputError when it holds another study's)."""
        values = dict(self.study)
        name = values.pop("study", None)
        if name != kind.__name__:
            raise InputError(f"this run config holds {name or 'no'} study settings, not {kind.__name__}")
        return kind(**values)

    def with_knobs(self, method_options: tuple = (), curvature_options: tuple = ()) -> "RunConfig":
        """This run with a view's knob settings as (name, value) pairs; none set leaves the config, and its cache key,
        as it is (the views pass only the knobs moved away from their defaults)."""
        out = self
        if method_options:
            out = dataclasses.replace(out, method_options=tuple(sorted(method_options)))
        if curvature_options:
            out = dataclasses.replace(out, curvature=dataclasses.replace(out.curvature, options=tuple(sorted(curvature_options))))
        return out

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with top-level fields or nested ones (``data__noise="uniform"``) changed."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            if "__" in name:
                part, sub = name.split("__", 1)
                nested.setdefault(part, {})[sub] = value
            else:
                top[name] = value
        for part, subs in nested.items():
            top[part] = dataclasses.replace(top.get(part, getattr(self, part)), **subs)
        return dataclasses.replace(self, **top)


# small sets train for at least this many optimiser steps (a 429-image folder got 80 in 20 epochs of
# 128: the CNN stopped at 95 % where 600 steps reach 99 %), and no more epochs than this
MIN_TRAIN_STEPS, MAX_DEFAULT_EPOCHS = 600, 300


# Training smooth in the rows' weights, where exact attribution (the metagradient) predicts retraining: the learning
# rate annealed to 0 (Adam's last steps, ~lr·sign(g) at a constant rate, make the run chaotic in the weights) and
# enough weight decay to keep the optimum well-conditioned; the MLP's activation smooth (tanh) as well. Measured by
# benchmarks/exact_attribution.py: a 2-layer MLP's fixed-randomness LDS at 5 % dropped rose from 0.11 to 0.88.
SMOOTH_WEIGHT_DECAY = 1e-2
SMOOTH_ACTIVATION = "tanh"


def smooth_training(train: TrainConfig) -> TrainConfig:
    """``train`` made smooth in the rows' weights (see SMOOTH_WEIGHT_DECAY); L-BFGS runs, already at an optimum, unchanged."""
    if train.optimizer == "lbfgs":
        return train
    return dataclasses.replace(train, lr_schedule="cosine", weight_decay=max(train.weight_decay, SMOOTH_WEIGHT_DECAY))


def default_training(model: str, n_train: Optional[int] = None) -> TrainConfig:
    """The training the CLI and the app use by default for each model kind on the user's own data;
    with ``n_train`` known, a small set gets more epochs (at least ``MIN_TRAIN_STEPS`` mini-batch steps)."""
    if model == "logreg":  # L-BFGS on the full batch: to the optimum, whatever the size
        return TrainConfig(optimizer="lbfgs", epochs=20, weight_decay=1e-3)
    if model == "mlp":
        train = TrainConfig(optimizer="adam", lr=0.01, epochs=200, batch_size=256, weight_decay=1e-3)
    else:
        train = TrainConfig(optimizer="adam", lr=0.005, epochs=20, batch_size=128, weight_decay=1e-4)
    if n_train and model in ("mlp", "cnn"):  # ResNet18 is left as set: hundreds of its epochs on a CPU take too long
        steps_per_epoch = -(-n_train // train.batch_size)
        epochs = min(MAX_DEFAULT_EPOCHS, max(train.epochs, -(-MIN_TRAIN_STEPS // steps_per_epoch)))
        train = dataclasses.replace(train, epochs=epochs)
    return train


def default_damping(model: str) -> float:
    """The default damping (2D explorer and CLI): none for logistic regression, whose Hessian weight decay already makes
    positive definite (damping there only biases it: leave-one-out Pearson on blobs 0.74 with 1e-2, 0.96 with none,
    benchmarks/retraining_check.py); 1e-2 for an MLP, whose Hessian may be indefinite."""
    return 0.0 if model == "logreg" else 1e-2


# The explorer's MLP: smooth and lightly regularised, so influence functions' assumptions hold (a twice-differentiable
# objective at an optimum). Measured with benchmarks/retraining_check.py on five toys, same test accuracy either way:
# exact-Hessian influence vs leave-one-out retraining, Pearson 0.87–0.97 with tanh + 1e-3; with 1e-4 it fell to
# −0.23–0.85, and ReLU's kinks stop L-BFGS short of an optimum, so its leave-one-out is not well defined.
EXPLORER_ACTIVATION, EXPLORER_WEIGHT_DECAY = "tanh", 1e-3


def explorer_data_config(dataset: str = "single_flip", n_train: int = 200, noise: str = "none", noise_fraction: float = 0.1) -> DataConfig:
    """The 2D explorer's data: ``n_train`` training and 200 test points (no torch: the page draws it while torch loads)."""
    return DataConfig(name=dataset, n_train=n_train, n_test=200, noise=noise, noise_fraction=noise_fraction if noise != "none" else 0.0)


def explorer_config(
    dataset: str = "single_flip",
    n_train: int = 200,
    noise: str = "none",
    noise_fraction: float = 0.1,
    model: str = "mlp",
    hidden: int = 16,
    depth: int = 1,
    activation: str = EXPLORER_ACTIVATION,
    weight_decay: float = EXPLORER_WEIGHT_DECAY,
    method: str = "influence",
    curvature: str = "last_layer",
    damping: Optional[float] = None,
    seed: int = 0,
    own_model: Optional[ModelConfig] = None,
) -> RunConfig:
    """The 2D explorer's run (its defaults are the landing view's): L-BFGS to the optimum for
    logistic regression, full-batch Adam for the MLP, 200 test points; damping by default from :func:`default_damping`.
    ``own_model`` (:func:`model_files.own_model_config`) takes a model the user trained on this toy data in place of
    training one (the training settings then only fill the hashed config)."""
    train = (
        TrainConfig(optimizer="lbfgs", epochs=20, weight_decay=weight_decay, checkpoint_spacing="log")
        if model == "logreg"
        else TrainConfig(optimizer="adam", lr=0.02, epochs=400, weight_decay=weight_decay, checkpoint_spacing="log")
    )
    return RunConfig(
        data=explorer_data_config(dataset, n_train, noise, noise_fraction),
        model=own_model or ModelConfig(kind=model, hidden=hidden, depth=depth, activation=activation),
        train=train,
        curvature=CurvatureConfig(kind=curvature, damping=default_damping(model) if damping is None else damping),
        method=method,
        seed=seed,
    )
