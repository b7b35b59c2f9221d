"""Exact attribution (the metagradient through training): is it right, what does it cost, and where does it predict
retraining? Every figure is measured in this run and printed with how.

    python benchmarks/exact_attribution.py            # sklearn digits MLP, 30 subsets per drop fraction
    python benchmarks/exact_attribution.py --quick    # 10 subsets, 100 held-out points

1. Correctness: the metagradient against central finite differences of the replayed run (float64 MLP, Adam, mini-batches,
   cosine schedule), and against the exact-Hessian influence function at a gradient-descent-trained logistic
   regression's optimum (relative errors).
2. Cost on this machine, in one process: one training run (torch's fused Adam), the forward replay, and one reverse
   pass for 1 and for 64 measurements, as multiples of the training run (CPU time, median of ``--rounds``); the
   explorer's default MLP toy. ``--compare-with OLD/replay.py`` times another version beside it in the same rounds.
3. Memory: peak RSS growth of one reverse pass with a state kept every ⌈√T⌉ steps against one graph of the whole run
   (every step held), each in a fresh process, beside the estimate the method checks before it starts.
4. LDS under fixed randomness (the same run with the dropped rows' weights zeroed) at 1 %, 5 %, 10 % and 50 % dropped,
   for the zoo's default training and the smooth one (``config.smooth_training``), every method side by side; and
   LDS under resampled randomness (a new run per subset) at 50 % with the seed-noise ceiling. Each method scores the
   held-out points once per setting; every fraction's subsets are retrained against those scores.
   ``--parts accuracy`` prints each setting's test accuracy only (no LDS): a quick screen of training recipes.

    python benchmarks/exact_attribution.py --parts lds --model cnn --pooling avg --settings custom \
        --recipe sgd,0.5,150,1e-3,64,cosine --subsets 10 --n-test 100     # a CNN recipe of your own
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import subprocess
import sys
import time
from typing import Optional

import numpy as np
import torch

from influence_core.config import SMOOTH_ACTIVATION, CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig, smooth_training
from influence_core.lds import linear_datamodeling_score
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.models import build_model, parameter_names
from influence_core.replay import Replay
from influence_core.training import TrainingRecipe, train_model

METHODS = ["metagradient", "trak", "influence@ekfac", "influence@kron", "tracin", "ip"]


def _toy(n: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.4 * torch.randn(n, generator=g, dtype=dtype) > 0).long()
    return x, y


def correctness() -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(optimizer="adam", lr=0.03, epochs=12, batch_size=16, weight_decay=1e-3, lr_schedule="cosine")
    x, y = _toy(60, dtype=torch.float64)
    xt, yt = _toy(5, seed=1, dtype=torch.float64)
    model = build_model(ModelConfig(kind="mlp", hidden=8, depth=1, activation="tanh"), (2,), 2, 0).double()
    recipe = TrainingRecipe(copy.deepcopy(model.state_dict()), cfg, 0)
    train_model(model, x, y, cfg, 0)
    method = fit_attributor("metagradient", AttributionContext(model, x, y, parameter_names(model, "all"), 1e-3, training=recipe))
    tau = method.scores(PerSampleLoss(xt, yt)) / len(y)
    replay, eps, errors = method.replay, 1e-5, []
    for row in range(0, 60, 6):
        up, down = torch.ones(60, dtype=torch.float64), torch.ones(60, dtype=torch.float64)
        up[row], down[row] = 1 + eps, 1 - eps
        values = []
        for w in (up, down):
            final, _ = replay.run(w)
            values.append(torch.nn.functional.cross_entropy(replay.final_model(final)(xt), yt, reduction="none").detach().numpy())
        finite = (values[0] - values[1]) / (2 * eps)
        errors.append(np.abs(tau[:, row] - finite).max() / np.abs(finite).max())
    print(f"  metagradient vs central finite differences of the replay (10 rows × 5 test points): largest relative error {max(errors):.1e}")

    cfg = TrainConfig(optimizer="sgd", lr=1.0, epochs=600, batch_size=0, weight_decay=5e-2)
    model = build_model(ModelConfig(kind="logreg"), (2,), 2, 0).double()
    recipe = TrainingRecipe(copy.deepcopy(model.state_dict()), cfg, 0)
    train_model(model, x, y, cfg, 0)
    context = AttributionContext(model, x, y, parameter_names(model, "all"), 5e-2, "exact", 0.0, training=recipe)
    exact = fit_attributor("metagradient", context).scores(PerSampleLoss(xt, yt))
    influence = fit_attributor("influence", context).scores(PerSampleLoss(xt, yt))
    print(
        "  L2 logistic regression, 600 full-batch GD steps: metagradient vs exact-Hessian influence function, largest relative "
        f"error {np.abs(exact - influence).max() / np.abs(influence).max():.1e}"
    )


def _load_replay(path: str):
    """Another version of replay.py (e.g. ``git show REV:influence_core/replay.py > /tmp/replay_before.py``) as a module,
    to time beside this one in the same process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_compared", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cost(rounds: int = 5, compare_with: str = "") -> None:
    """Each round times one training run, then the forward replay and a reverse pass for 1 and for 64 measurements (and
    those of ``compare_with``'s replay.py), each as a multiple of the mean of the trainings before and after it; the
    median over rounds is printed with its range. Process CPU time, one thread: the ratios are of work, not of how a
    shared machine schedules its jobs."""
    import statistics

    torch.set_num_threads(1)
    versions = {"": Replay}
    if compare_with:
        versions[" (compared)"] = _load_replay(compare_with).Replay
    for name, n, cfg, hidden in (
        (
            "explorer MLP toy (200 rows, Adam, 400 full-batch steps)",
            200,
            TrainConfig(optimizer="adam", lr=0.02, epochs=400, weight_decay=1e-3),
            16,
        ),
        (
            "MLP 1 × 64, 1,000 rows, Adam, batch 64, 20 epochs",
            1000,
            TrainConfig(optimizer="adam", lr=1e-3, epochs=20, batch_size=64, weight_decay=1e-3),
            64,
        ),
    ):
        x, y = _toy(n)
        xt, yt = _toy(64, seed=2)
        model = build_model(ModelConfig(kind="mlp", hidden=hidden, depth=1, activation="tanh"), (2,), 2, 0)
        recipe = TrainingRecipe(copy.deepcopy(model.state_dict()), cfg, 0)
        warm = copy.deepcopy(model)
        train_model(warm, x, y, TrainConfig(optimizer="adam", epochs=2), 0)  # torch.optim's first step imports its compiler

        def train_once() -> float:
            fresh = copy.deepcopy(model)
            start = time.process_time()
            train_model(fresh, x, y, cfg, 0)
            return time.process_time() - start

        train_once()
        jobs = {}
        for suffix, replay_class in versions.items():
            replay = replay_class(model, recipe, x, y)
            final, kept = replay.run(keep=True)
            at = replay.final_model(final)
            jobs[f"forward replay{suffix}"] = functools.partial(replay.run, keep=True)
            for k in (1, 64):
                cotangents = PerSampleLoss(xt[:k], yt[:k]).query_gradients(at, replay.names)
                job = functools.partial(replay.metagradient, cotangents, kept)
                job()  # the first call of a process pays set-up once
                jobs[f"reverse pass for {k} measurement{'s' * (k > 1)}{suffix}"] = job
        ratios: dict[str, list[float]] = {label: [] for label in jobs}
        trainings = [train_once()]
        for _ in range(rounds):
            seconds = {}
            for label, job in jobs.items():
                start = time.process_time()
                job()
                seconds[label] = time.process_time() - start
            trainings.append(train_once())
            for label in jobs:
                ratios[label].append(seconds[label] / ((trainings[-2] + trainings[-1]) / 2))
        row = [f"  {name}: training {statistics.median(trainings):.2f} s CPU"]
        for label, values in ratios.items():
            row.append(f"{label} {statistics.median(values):.2f}× [{min(values):.2f}–{max(values):.2f}]")
        print("; ".join(row) + f" (of the training run; median [range] of {rounds} rounds)")


PEAK = """
import copy, json, resource, sys, torch
from influence_core.config import ModelConfig, TrainConfig
from influence_core.models import build_model
from influence_core.replay import Replay
from influence_core.measurements import PerSampleLoss
from influence_core.training import TrainingRecipe, train_model
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
x = torch.randn(512, 64, generator=g); y = torch.randint(0, 4, (512,), generator=g)
cfg = TrainConfig(optimizer="adam", lr=1e-3, epochs=int(sys.argv[2]), batch_size=128, weight_decay=1e-3)
model = build_model(ModelConfig(kind="mlp", hidden=256, depth=2, activation="tanh"), (64,), 4, 0)
recipe = TrainingRecipe(copy.deepcopy(model.state_dict()), cfg, 0)
train_model(model, x, y, cfg, 0)
replay = Replay(model, recipe, x, y, segment=None if sys.argv[1] == "sqrt" else 10**9)
final, kept = replay.run(keep=True)
cot = PerSampleLoss(x[:8], y[:8]).query_gradients(replay.final_model(final), replay.names)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
replay.metagradient(cot, kept)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"grew": after - before, "estimate": replay.estimate_bytes(8), "steps": len(replay.steps), "kept": len(kept)}))
"""


def memory() -> None:
    for epochs in (10, 40):
        figures = {}
        for mode in ("sqrt", "every step"):
            out = subprocess.run([sys.executable, "-c", PEAK, mode, str(epochs)], capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                print(f"  memory run failed: {out.stderr[-500:]}")
                return
            figures[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        sqrt, full = figures["sqrt"], figures["every step"]
        print(
            f"  MLP 2 × 256 (84k weights), Adam, {sqrt['steps']} steps, 8 measurements: peak growth {sqrt['grew'] / 2**20:.0f} MiB with "
            f"{sqrt['kept']} kept states (estimate {sqrt['estimate'] / 2**20:.0f} MiB) vs {full['grew'] / 2**20:.0f} MiB for one graph of every step"
        )


def lds_figures(
    quick: bool,
    seed: int,
    settings: set[str],
    dataset: str = "digits",
    n_train: int = 600,
    n_test: int = 0,
    model: str = "mlp",
    subsets: int = 0,
    methods: list[str] = METHODS,
    pooling: str = "max",
    recipe: Optional[TrainConfig] = None,
    activation: str = SMOOTH_ACTIVATION,
    fractions: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5),
    resampled_fraction: float = 0.5,
    accuracy_only: bool = False,
) -> None:
    """``recipe``: the "custom" setting's training (see ``--recipe``), with ``activation``; ``pooling``: the CNN's.
    ``fractions``: the dropped shares under fixed randomness; ``resampled_fraction``: the kept share under resampled
    randomness (0: not measured). ``accuracy_only``: each setting's test accuracy, no LDS."""
    subsets = subsets or (10 if quick else 30)
    data = DataConfig(name=dataset, n_train=n_train, n_test=n_test or (100 if quick else 200))
    shape = dict(kind="cnn", pooling=pooling) if model == "cnn" else dict(kind="mlp", hidden=128 if dataset == "mnist" else 64, depth=1)
    described = f"the zoo CNN ({pooling} pooling)" if model == "cnn" else f"MLP 1 × {shape.get('hidden')}"
    default = TrainConfig(optimizer="adam", lr=1e-3, epochs=30, batch_size=64, weight_decay=1e-3, n_checkpoints=10)
    runs = {
        "default": RunConfig(
            data=data,
            model=ModelConfig(**shape, activation="relu"),
            train=default,
            curvature=CurvatureConfig(kind="auto", damping=1e-2),
            seed=seed,
        ),
        "smooth": RunConfig(
            data=data,
            model=ModelConfig(**shape, activation=SMOOTH_ACTIVATION),
            train=smooth_training(default),
            curvature=CurvatureConfig(kind="auto", damping=1e-2),
            seed=seed,
        ),
        "sgd": RunConfig(
            data=data,
            model=ModelConfig(**shape, activation=SMOOTH_ACTIVATION),
            train=TrainConfig(
                optimizer="sgd",
                # the CNN on 8×8 digits: 30 epochs at 0.3 with weight decay 1e-2 reached 46 % held-out, 60 at 0.5 with
                # 1e-3 95.5 % (chosen on held-out accuracy alone, before any LDS)
                lr=0.5 if model == "cnn" else 0.3,
                epochs=60 if model == "cnn" else 30,
                batch_size=64,
                weight_decay=1e-3 if model == "cnn" else 1e-2,
                lr_schedule="cosine",
                n_checkpoints=10,
            ),
            curvature=CurvatureConfig(kind="auto", damping=1e-2),
            seed=seed,
        ),
    }
    if recipe is not None:
        runs["custom"] = RunConfig(
            data=data,
            model=ModelConfig(**shape, activation=activation),
            train=recipe,
            curvature=CurvatureConfig(kind="auto", damping=1e-2),
            seed=seed,
        )
    titles = {
        "default": "zoo default (ReLU, Adam, constant rate)",
        "smooth": "smooth (tanh, Adam, cosine to 0, weight decay 1e-2: config.smooth_training)",
        "sgd": "smooth SGD (tanh, plain SGD at {lr}, cosine to 0, weight decay {wd:g}, {epochs} epochs)",
        "custom": "custom ({activation}, {optimizer} at {lr}, {schedule} schedule, weight decay {wd:g}, {epochs} epochs, batch {batch})",
    }
    for name, config in runs.items():
        if name not in settings:
            continue
        t = config.train
        title = titles[name].format(
            lr=t.lr,
            wd=t.weight_decay,
            epochs=t.epochs,
            optimizer=t.optimizer,
            schedule=t.lr_schedule,
            batch=t.batch_size,
            activation=config.model.activation,
        )
        from influence_core.experiments import train

        start = time.perf_counter()
        trained = train(config)
        train_seconds = time.perf_counter() - start
        accuracy, fit = trained.metrics["test"]["accuracy"], trained.metrics["train"]["accuracy"]
        # the same training rows and run (the split draws training rows apart from held-out ones): every held-out row
        # of the dataset, for an accuracy the LDS's few held-out points measure only to a few points
        every = train(config.replace(data__n_test=0))
        print(
            f"\n  {dataset} {described}, {n_train} train / {data.n_test} held-out, {title}: test accuracy {accuracy:.1%} "
            f"({every.metrics['test']['accuracy']:.1%} on all {len(every.dataset.y_test)} held-out rows; training rows "
            f"{fit:.1%}; "
            + ("from the cache)" if trained.metrics["from_cache"] else f"trained in {train_seconds:.1f} s)")
            + ("" if accuracy_only else f"; {subsets} subsets per fraction")
        )
        if accuracy_only:
            continue
        header = f"  {'method':<18}" + "".join(f"{f'fixed {d:.0%}':>12}" for d in fractions)
        header += f"{f'resampled {resampled_fraction:.0%}':>15}" if resampled_fraction else ""
        print(header + f"{'seconds':>9}")
        rows: dict[str, list[str]] = {m: [] for m in methods}
        scored = None  # each method scores once; every fraction reuses its scores
        for drop in fractions:
            scored = linear_datamodeling_score(config, methods, subsets, 1 - drop, seed, randomness="fixed", scored=scored)
            for m in methods:
                rows[m].append(f"{scored.lds[m]:>12.3f}")
        resampled = None
        if resampled_fraction:
            resampled = linear_datamodeling_score(
                config, methods, subsets, resampled_fraction, seed, randomness="resampled", ceiling=True, scored=scored
            )
            scored = scored or resampled
        for m in methods:
            tail = f"{resampled.lds[m]:>15.3f}" if resampled else ""
            print(f"  {m:<18}" + "".join(rows[m]) + tail + f"{scored.seconds[m]:>9.1f}")
        if resampled:
            print(f"  {'seed-noise ceiling':<18}{'':>{12 * len(fractions)}}{resampled.ceiling:>15.3f}")


def _recipe(text: str) -> TrainConfig:
    """OPTIMIZER,LR,EPOCHS,WEIGHT_DECAY[,BATCH[,SCHEDULE]] (batch 64 and a cosine schedule unless given)."""
    optimizer, lr, epochs, weight_decay, *rest = text.split(",")
    return TrainConfig(
        optimizer=optimizer,
        lr=float(lr),
        epochs=int(epochs),
        batch_size=int(rest[0]) if rest else 64,
        weight_decay=float(weight_decay),
        lr_schedule=rest[1] if len(rest) > 1 else "cosine",
        n_checkpoints=10,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="correctness,cost,memory,lds")
    parser.add_argument("--rounds", type=int, default=5, help="the cost part's timing rounds")
    parser.add_argument("--compare-with", default="", help="another replay.py to time beside this one in the cost part")
    parser.add_argument("--settings", default="default,smooth,sgd", help="the training settings the LDS table compares")
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist"], help="the LDS part's data")
    parser.add_argument("--n-train", type=int, default=600, help="the LDS part's training rows (the issue's MNIST setting: 5000)")
    parser.add_argument("--n-test", type=int, default=0, help="held-out measurements (default 200; 100 with --quick)")
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"], help="the LDS part's model")
    parser.add_argument("--subsets", type=int, default=0, help="subsets per drop fraction (default 30; 10 with --quick)")
    parser.add_argument("--methods", default=",".join(METHODS), help="the LDS part's methods")
    parser.add_argument("--pooling", default="max", choices=["max", "avg"], help="the CNN's pooling (LDS part)")
    parser.add_argument(
        "--recipe",
        default="",
        help="the 'custom' setting's training as OPTIMIZER,LR,EPOCHS,WEIGHT_DECAY[,BATCH[,SCHEDULE]] (batch 64 and "
        "cosine unless given), e.g. adam,1e-2,60,1e-3 or sgd,0.5,150,1e-3,64,cosine_per_step",
    )
    parser.add_argument("--activation", default=SMOOTH_ACTIVATION, choices=["tanh", "sigmoid", "relu"], help="the 'custom' setting's")
    parser.add_argument("--fractions", default="0.01,0.05,0.1,0.5", help="dropped shares under fixed randomness (LDS part)")
    parser.add_argument(
        "--resampled", type=float, default=0.5, help="the kept share of the resampled-randomness LDS with its ceiling (0: not measured)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    if "correctness" in parts:
        print("1. correctness")
        correctness()
    if "cost" in parts:
        print("2. cost, as multiples of one training run of the same model in this process")
        cost(args.rounds, args.compare_with)
    if "memory" in parts:
        print("3. memory of a reverse pass")
        memory()
    for part in ("accuracy", "lds"):
        if part not in parts:
            continue
        print("4. linear datamodeling score" if part == "lds" else "test accuracy of each setting")
        lds_figures(
            args.quick,
            args.seed,
            set(args.settings.split(",")),
            args.dataset,
            args.n_train,
            args.n_test,
            args.model,
            args.subsets,
            [m.strip() for m in args.methods.split(",") if m.strip()],
            args.pooling,
            _recipe(args.recipe) if args.recipe else None,
            args.activation,
            tuple(float(f) for f in args.fractions.split(",")),
            args.resampled,
            accuracy_only=part == "accuracy",
        )


if __name__ == "__main__":
    main()
