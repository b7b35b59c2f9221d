"""Label-noise detection (issue 15): every attribution method's self-influence against the training loss and cleanlab.

Cases (training subsets, held-out rows only for the printed test accuracy):
- ``mnist_uniform10`` / ``mnist_uniform30``: MNIST, 10 % / 30 % of all rows to a uniformly random other class;
- ``mnist_pairs10`` / ``mnist_pairs30``: MNIST look-alike pairs 4↔9, 3↔8, 1↔7 (10 % / 30 % of each paired class);
- ``fashion_pairs10`` / ``fashion_pairs30``: Fashion-MNIST T-shirt↔shirt, pullover↔coat, sneaker↔ankle boot;
- ``mnist_memorised``: MNIST, 500 rows, 10 % uniform, trained long enough to fit every training label (the flips too),
  so the training loss is ~0 on every row.

Detectors: every registered method (``influence_core.methods``; influence once per curvature in ``--curvatures``),
its self-score as the suspicion (higher = more suspicious); the training loss −log p(noisy label | x) of the same model;
cleanlab's label-quality score on out-of-fold probabilities of the same model and training (``--folds`` folds).
Reported per case: AUROC, recall at the noise rate (the top k rows, k = the number of flipped rows) and the Spearman ρ
of each score with the training loss (how much it ranks rows as the loss does), the mean over ``--seeds`` (each seed
its own subset, noise draw and initialisation), and the detector that wins on AUROC.

    python benchmarks/label_noise.py                 # all cases, MLP, 1 seed, 3,000 train rows (2-core CPU: ~25 min)
    python benchmarks/label_noise.py --seeds 3       # the mean over three draws
    python benchmarks/label_noise.py --quick         # smoke run: 3 cases, 500 rows, fewer epochs (< 2 min)
    python benchmarks/label_noise.py --cases mnist_pairs10,mnist_memorised --model logreg

Nothing is read from the result cache: every run trains and scores from scratch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from scipy.stats import spearmanr

from influence_core import methods
from influence_core.baselines import cleanlab_flags, out_of_fold_probabilities
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.data import noise
from influence_core.data.registry import load_dataset
from influence_core.device import default_device
from influence_core.errors import CurvatureError, InputError
from influence_core.experiments import fit_method, predict_proba, train
from influence_core.metrics import auroc

MNIST_PAIRS = ((4, 9), (3, 8), (1, 7))
FASHION_PAIRS = ((0, 6), (2, 4), (7, 9))  # T-shirt/top↔shirt, pullover↔coat, sneaker↔ankle boot
BASELINES = ("training loss", "cleanlab (out-of-fold)")
TIE = 0.001  # AUROC differences below this are not called a win (one seed's resolution)


@dataclass(frozen=True)
class Case:
    label: str
    dataset: str
    kind: str  # uniform | pairs
    fraction: float
    pairs: tuple[tuple[int, int], ...] = ()
    n_train: Optional[int] = None  # its own size (at most --n-train); None: --n-train
    memorise: bool = False


CASES = {
    "mnist_uniform10": Case("MNIST, uniform 10 %", "mnist", "uniform", 0.1),
    "mnist_uniform30": Case("MNIST, uniform 30 %", "mnist", "uniform", 0.3),
    "mnist_pairs10": Case("MNIST, pairs 4↔9 3↔8 1↔7, 10 %", "mnist", "pairs", 0.1, MNIST_PAIRS),
    "mnist_pairs30": Case("MNIST, pairs 4↔9 3↔8 1↔7, 30 %", "mnist", "pairs", 0.3, MNIST_PAIRS),
    "fashion_pairs10": Case(
        "Fashion-MNIST, pairs tee↔shirt pullover↔coat sneaker↔boot, 10 %", "fashion_mnist", "pairs", 0.1, FASHION_PAIRS
    ),
    "fashion_pairs30": Case(
        "Fashion-MNIST, pairs tee↔shirt pullover↔coat sneaker↔boot, 30 %", "fashion_mnist", "pairs", 0.3, FASHION_PAIRS
    ),
    "mnist_memorised": Case("MNIST 500 rows, uniform 10 %, memorised", "mnist", "uniform", 0.1, n_train=500, memorise=True),
}
QUICK_CASES = "mnist_uniform10,mnist_pairs30,mnist_memorised"


def run_config(model: str, n_train: int, epochs: int, seed: int, dataset: str) -> RunConfig:
    """Plain SGD in mini-batches with 10 checkpoints (TracIn's assumption), as benchmarks/signals.py trains."""
    model_cfg = ModelConfig(kind="mlp", hidden=128, depth=1) if model == "mlp" else ModelConfig(kind=model)
    return RunConfig(
        data=DataConfig(name=dataset, n_train=n_train, n_test=500),
        model=model_cfg,
        train=TrainConfig(optimizer="sgd", lr=0.1, epochs=epochs, batch_size=64, weight_decay=1e-4, n_checkpoints=10),
        curvature=CurvatureConfig(kind="auto", damping=0.01),
        seed=seed,
    )


def noisy_dataset(case: Case, config: RunConfig):
    ds = load_dataset(config.data, config.seed)
    if case.kind == "uniform":
        drawn = noise.uniform_noise(ds.y_train, case.fraction, ds.n_classes, config.seed)
    else:
        drawn = noise.pair_flip(ds.y_train, case.pairs, case.fraction, config.seed)
    return noise.with_noise(ds, drawn)


def detector_specs(curvatures: list[str]) -> list[tuple[str, str, Optional[str]]]:
    """(label, method, curvature) for every registered method; the curvature-using ones once per curvature."""
    specs = []
    for name in methods.method_names():
        if methods.get(name).uses_curvature:
            specs += [(f"{name} [{c}]", name, c) for c in curvatures]
        else:
            specs.append((name, name, None))
    return specs


def recall_at_k(scores: np.ndarray, mask: np.ndarray) -> float:
    """Share of the flipped rows among the top k by score, k = the number of flipped rows."""
    k = int(mask.sum())
    return float(mask[np.argsort(-scores, kind="stable")[:k]].mean()) if k else float("nan")


def run_seed(case: Case, args: argparse.Namespace, seed: int) -> tuple[dict[str, dict[str, float]], dict]:
    n_train = min(case.n_train, args.n_train) if case.n_train else args.n_train
    epochs = args.memorise_epochs if case.memorise else args.epochs
    config = run_config(args.model, n_train, epochs, seed, case.dataset)
    ds = noisy_dataset(case, config)
    mask = ds.flipped
    start = time.perf_counter()
    trained = train(config, use_cache=False, dataset=ds)
    train_s = time.perf_counter() - start
    probs = predict_proba(trained.model, ds.x_train)
    fitted = probs.argmax(1) == ds.y_train
    info = {
        "n_train": len(ds.y_train),
        "n_flipped": int(mask.sum()),
        "train_accuracy": float(fitted.mean()),
        "flips_fitted": float(fitted[mask].mean()),  # flipped rows the model predicts with their wrong label
        "test_accuracy": trained.metrics["test"]["accuracy"],
        "train_seconds": train_s,
    }
    print(
        f"  seed {seed}: {info['n_train']} rows, {info['n_flipped']} flipped; train acc {info['train_accuracy']:.3f} "
        f"(flipped rows fitted to the wrong label {info['flips_fitted']:.1%}), test acc {info['test_accuracy']:.3f}, "
        f"training {train_s:.1f} s",
        flush=True,
    )
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for label, method, curvature in detector_specs(args.curvatures):
        cfg = config if curvature is None else config.replace(curvature=dataclasses.replace(config.curvature, kind=curvature))
        start = time.perf_counter()
        try:
            attributor = fit_method(cfg, trained, method=method)
            scores[label] = np.asarray(attributor.self_scores(), dtype=np.float64)
        except (InputError, CurvatureError) as err:
            print(f"    {label}: skipped ({err})", flush=True)
            continue
        seconds[label] = time.perf_counter() - start
        note = f" - {attributor.note}" if attributor.note else ""
        print(f"    {label}: {seconds[label]:.1f} s{note}", flush=True)
    p_label = probs[np.arange(len(ds.y_train)), ds.y_train]
    scores[BASELINES[0]] = -np.log(np.clip(p_label, 1e-12, None))
    seconds[BASELINES[0]] = 0.0
    start = time.perf_counter()
    oof = out_of_fold_probabilities(config, ds, n_folds=args.folds, use_cache=False)
    scores[BASELINES[1]] = cleanlab_flags(ds.y_train, oof)["score"]
    seconds[BASELINES[1]] = time.perf_counter() - start
    print(f"    {BASELINES[1]}: {seconds[BASELINES[1]]:.1f} s ({args.folds} folds trained)", flush=True)
    loss = scores[BASELINES[0]]
    rows = {
        k: {"auroc": auroc(s, mask), "recall": recall_at_k(s, mask), "rho_loss": float(spearmanr(s, loss)[0]), "seconds": seconds[k]}
        for k, s in scores.items()
    }
    return rows, info


def run_case(key: str, args: argparse.Namespace) -> dict:
    case = CASES[key]
    print(f"\n=== {key}: {case.label} ({args.model}, seeds {args.seeds})", flush=True)
    per_seed = [run_seed(case, args, seed) for seed in range(args.seeds)]
    detectors = [d for d in per_seed[0][0] if all(d in rows for rows, _ in per_seed)]
    table = {}
    for d in detectors:
        table[d] = {col: float(np.mean([rows[d][col] for rows, _ in per_seed])) for col in ("auroc", "recall", "rho_loss", "seconds")} | {
            "auroc_std": float(np.std([rows[d]["auroc"] for rows, _ in per_seed]))
        }
    info = {k: float(np.mean([i[k] for _, i in per_seed])) for k in per_seed[0][1]}
    return {"key": key, "label": case.label, "table": table, "info": info}


def verdict(result: dict) -> dict:
    table = result["table"]
    influence = {d: r for d, r in table.items() if d not in BASELINES}
    best_inf = max(influence, key=lambda d: influence[d]["auroc"])
    best = max(table, key=lambda d: table[d]["auroc"])
    loss, cl = table[BASELINES[0]]["auroc"], table[BASELINES[1]]["auroc"]
    margin = influence[best_inf]["auroc"] - max(loss, cl)
    outcome = "beats both" if margin >= TIE else "ties (within 0.001)" if margin > -TIE else "does NOT beat both"
    return {"winner": best, "best_influence": best_inf, "beats_both": margin >= TIE, "outcome": outcome}


def print_case(result: dict, n_seeds: int) -> None:
    info = result["info"]
    print(
        f"\n--- {result['key']}: {result['label']}: {info['n_train']:.0f} rows, {info['n_flipped']:.0f} flipped; "
        f"train acc {info['train_accuracy']:.3f}, flipped rows fitted {info['flips_fitted']:.1%}, test acc {info['test_accuracy']:.3f}"
    )
    std = n_seeds > 1
    print(f"{'detector':<24} {'AUROC':>7}{'   ±std' if std else ''} {'recall@k':>9} {'ρ loss':>7} {'seconds':>8}")
    for d, r in sorted(result["table"].items(), key=lambda kv: -kv[1]["auroc"]):
        spread = f" {r['auroc_std']:6.4f}" if std else ""
        print(f"{d:<24} {r['auroc']:7.4f}{spread} {r['recall']:9.3f} {r.get('rho_loss', float('nan')):7.3f} {r['seconds']:8.1f}")
    v = verdict(result)
    t = result["table"]
    print(
        f"winner: {v['winner']}; best influence {v['best_influence']} {t[v['best_influence']]['auroc']:.4f} vs training loss "
        f"{t[BASELINES[0]]['auroc']:.4f}, cleanlab {t[BASELINES[1]]['auroc']:.4f}: "
        f"{v['outcome']}"
    )


def print_summary(results: list[dict], seconds: float) -> None:
    print(f"\n=== summary: AUROC (recall at the noise rate){'' if np.isnan(seconds) else f', total {seconds:.0f} s'}")
    print(f"{'case':<16} {'best influence':<24} {'':>16} {'training loss':>16} {'cleanlab':>16}  winner on AUROC")
    for r in results:
        v, t = verdict(r), r["table"]
        cell = lambda row: f"{row['auroc']:.4f} ({row['recall']:.3f})"  # noqa: E731
        print(
            f"{r['key']:<16} {v['best_influence']:<24} {cell(t[v['best_influence']]):>16} {cell(t[BASELINES[0]]):>16} "
            f"{cell(t[BASELINES[1]]):>16}  {v['winner']}; influence {v['outcome']}"
        )


def show(path: str) -> None:
    """Print the tables of a run saved with --json again."""
    saved = json.loads(Path(path).read_text())
    a = saved["args"]
    print(
        f"saved run {path}: model {a['model']}, {a['n_train']} train rows, {a['epochs']} epochs ({a['memorise_epochs']} memorised), "
        f"cleanlab {a['folds']}-fold, seeds {a['seeds']}, influence curvatures {', '.join(a['curvatures'])}"
    )
    for r in saved["results"]:
        print_case(r, a["seeds"])
    print_summary(saved["results"], float("nan"))


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: cases {QUICK_CASES}, 500 rows, 10 epochs (memorised 150), 2 folds"
    )
    parser.add_argument("--cases", default=None, help=f"comma-separated, from {', '.join(CASES)} (default all)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds averaged per case (each: subset, noise draw, initialisation)")
    parser.add_argument("--n-train", type=int, default=None, help="training rows of the non-memorised cases (default 3000; 500 quick)")
    parser.add_argument("--epochs", type=int, default=None, help="SGD epochs of the non-memorised cases (default 30; 10 quick)")
    parser.add_argument("--memorise-epochs", type=int, default=None, help="SGD epochs of the memorised case (default 400; 150 quick)")
    parser.add_argument("--model", default="mlp", choices=["mlp", "logreg"], help="mlp: 784-128-10 ReLU; logreg: softmax regression")
    parser.add_argument("--curvatures", default="auto,last_layer,ekfac", help="curvatures of the influence method")
    parser.add_argument("--folds", type=int, default=None, help="cleanlab's out-of-fold folds (default 5; 2 quick)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--show", default=None, help="print the tables of a run saved with --json (runs nothing)")
    args = parser.parse_args(argv)
    if args.show:
        return show(args.show)
    args.n_train = args.n_train or (500 if args.quick else 3000)
    args.epochs = args.epochs or (10 if args.quick else 30)
    args.memorise_epochs = args.memorise_epochs or (150 if args.quick else 400)
    args.folds = args.folds or (2 if args.quick else 5)
    args.curvatures = [c.strip() for c in args.curvatures.split(",") if c.strip()]
    wanted = [c.strip() for c in (args.cases or (QUICK_CASES if args.quick else ",".join(CASES))).split(",") if c.strip()]
    unknown = [c for c in wanted if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    device = default_device()
    print(
        f"device: {device} (torch threads {torch.get_num_threads()}); model {args.model}, SGD lr 0.1 batch 64, "
        f"{args.epochs} epochs ({args.memorise_epochs} memorised), 10 checkpoints; {args.n_train} train rows; "
        f"cleanlab {args.folds}-fold; seeds {args.seeds}; methods {', '.join(methods.method_names())}; "
        f"influence curvatures {', '.join(args.curvatures)}"
    )
    total = time.perf_counter()
    results = []
    for key in wanted:
        results.append(run_case(key, args))
        print_case(results[-1], args.seeds)
    print_summary(results, time.perf_counter() - total)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
