"""Label-noise detection (issues 15 and 32): every registered detector (``influence_core.detectors``) and the default
ranking, on the noise users meet, over several seeds.

Cases (training subsets; flips drawn per seed; ``--cases`` picks):
- ``mnist_uniform10``: MNIST 1,000 rows, 10 % of all rows to a uniformly random other class;
- ``mnist_pairs30``: MNIST look-alike pairs 4↔9, 3↔8, 1↔7 (30 % of each paired class);
- ``fashion_pairs30``: Fashion-MNIST T-shirt↔shirt, pullover↔coat, sneaker↔ankle boot (30 %);
- ``mnist_oneway30``: MNIST, one-way (asymmetric) flips 7→1, 3→8, 4→9, 5→6 of 30 % of each source class;
- ``mnist_memorised``: MNIST 500 rows, uniform 10 %, trained until it fits every label (the flips too);
- ``mnist_cnn_pairs20``: the zoo CNN with its default training (Adam), 1,000 MNIST rows, pairs at 20 %;
- ``digits_csv_pairs20``: sklearn digits written as a CSV, 20 % of 1/7, 3/8, 4/9, 5/6 flipped within their pair,
  the MLP with the CLI's default training for a CSV (``scores --model mlp``): the case the issue was filed on;
- ``wine_csv_uniform10`` / ``breast_cancer_csv_uniform5``: sklearn's wine and breast-cancer tables as CSVs.

MNIST-family cases train the MLP (784-128-10) or CNN with plain SGD (lr 0.1, batch 64, 20 epochs, 10 checkpoints:
TracIn's assumption); CSV cases train as the CLI does by default. Detectors: everything registered (training loss,
AUM, forgetting events, loss over training, TracIn self-influence, out-of-fold loss and cleanlab on the same model,
cleanlab on scikit-learn's logistic regression, the combined default); ``--influence`` adds every attribution
method's self-score (the comparison of issue 15). Reported per case: AUROC, average precision (AP) and recall@k
(k = the number of flips), mean ± standard deviation over ``--seeds``; the verdict checks issue 32's target: the
default ≥ the best baseline (training loss, out-of-fold loss, AUM, both cleanlabs) minus one seed-std, on AUROC and
AP, and its mean AUROC over all cases ≥ the best baseline's mean + 0.01.

``--develop`` is how the combined ranking was chosen: on development seeds (100+, never an evaluation seed), the runs
are split by the default's gate (the model fits ≥ FITS_ITS_LABELS of its training labels, or not), and on each side
every single detector and every rank average of 2–4 detectors is scored by its mean AUROC over that side's runs.

    python benchmarks/label_noise.py --seeds 0,1,2 --json eval.json      # the evaluation (2-core CPU: ~40 min)
    python benchmarks/label_noise.py --develop --seeds 100 --json dev.json
    python benchmarks/label_noise.py --quick                              # smoke: 3 small cases, 1 seed (< 2 min)
    python benchmarks/label_noise.py --show eval.json                     # the tables of a saved run again

Nothing is read from the result cache: every run trains and scores from scratch.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from influence_core import detectors, methods
from influence_core.config import CurvatureConfig, DataConfig, ModelConfig, RunConfig, TrainConfig, default_damping, default_training
from influence_core.data import noise
from influence_core.data.registry import load_dataset, peek_own_data
from influence_core.detectors.combined import FITS_ITS_LABELS, combine, rank_average
from influence_core.device import default_device
from influence_core.errors import CurvatureError, InputError
from influence_core.experiments import fit_method, predict_proba, train
from influence_core.metrics import auroc, average_precision

MNIST_PAIRS = ((4, 9), (3, 8), (1, 7))
FASHION_PAIRS = ((0, 6), (2, 4), (7, 9))  # T-shirt/top↔shirt, pullover↔coat, sneaker↔ankle boot
DIGITS_PAIRS = ((1, 7), (3, 8), (4, 9), (5, 6))
ONE_WAY = ((7, 1), (3, 8), (4, 9), (5, 6))
# issue 32's baselines: what a user already has
BASELINES = ("loss", "oof_loss", "aum", "cleanlab", "cleanlab_logreg")
METRICS = ("auroc", "ap", "recall")


@dataclass(frozen=True)
class Case:
    label: str
    dataset: str  # a registered dataset, or csv:wine / csv:breast_cancer / csv:digits (sklearn's, written as a CSV)
    noise: str  # uniform | pairs | oneway
    fraction: float
    pairs: tuple[tuple[int, int], ...] = ()
    n_train: int = 3000
    model: str = "mlp"
    training: str = "sgd"  # sgd: the benchmark's plain SGD; memorise: long SGD; default: the CLI's for a CSV


CASES = {
    "mnist_uniform10": Case("MNIST, uniform 10 %", "mnist", "uniform", 0.1),
    "mnist_pairs30": Case("MNIST, pairs, 30 %", "mnist", "pairs", 0.3, MNIST_PAIRS),
    "fashion_pairs30": Case("Fashion-MNIST, pairs, 30 %", "fashion_mnist", "pairs", 0.3, FASHION_PAIRS),
    "mnist_oneway30": Case("MNIST, one-way 7→1 3→8 4→9 5→6, 30 %", "mnist", "oneway", 0.3, ONE_WAY),
    "mnist_memorised": Case("MNIST 500 rows, uniform 10 %, memorised", "mnist", "uniform", 0.1, n_train=500, training="memorise"),
    "mnist_cnn_pairs20": Case(
        "MNIST 1,000 rows, CNN (its default training), pairs, 20 %",
        "mnist",
        "pairs",
        0.2,
        MNIST_PAIRS,
        n_train=1000,
        model="cnn",
        training="default",
    ),
    "digits_csv_pairs20": Case(
        "digits CSV, pairs 1↔7 3↔8 4↔9 5↔6, 20 %, CLI defaults", "csv:digits", "pairs", 0.2, DIGITS_PAIRS, training="default"
    ),
    "wine_csv_uniform10": Case("wine CSV, uniform 10 %, CLI defaults", "csv:wine", "uniform", 0.1, training="default"),
    "breast_cancer_csv_uniform5": Case(
        "breast-cancer CSV, uniform 5 %, CLI defaults", "csv:breast_cancer", "uniform", 0.05, training="default"
    ),
}
QUICK_CASES = "mnist_uniform10,mnist_memorised,wine_csv_uniform10"


def sklearn_csv(name: str, folder: Path) -> Path:
    """One of scikit-learn's bundled tables written as a user's CSV (features + a ``label`` column)."""
    from sklearn import datasets

    bunch = {"digits": datasets.load_digits, "wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}[name]()
    path = folder / f"{name}.csv"
    if not path.exists():
        table = pd.DataFrame(bunch.data, columns=[f"f{i}" for i in range(bunch.data.shape[1])])
        table["label"] = bunch.target
        table.to_csv(path, index=False)
    return path


def run_config(case: Case, seed: int, args: argparse.Namespace, folder: Path) -> RunConfig:
    if case.dataset.startswith("csv:"):
        data = DataConfig(
            name="csv", path=str(sklearn_csv(case.dataset[4:], folder)), label_column="label", test_fraction=0.2, n_train=0, n_test=0
        )
    else:
        data = DataConfig(name=case.dataset, n_train=min(case.n_train, args.n_train), n_test=500)
    model = (
        ModelConfig(kind="mlp", hidden=128, depth=1) if case.model == "mlp" and case.training != "default" else ModelConfig(kind=case.model)
    )
    if case.training == "default":  # the CLI's and the app's training for this model on this many rows
        rows = peek_own_data(data).n_train(data) if data.name == "csv" else data.n_train
        training = default_training(case.model, rows)
    else:
        epochs = args.memorise_epochs if case.training == "memorise" else args.epochs
        training = TrainConfig(
            optimizer="sgd", lr=0.1 if case.model == "mlp" else 0.05, epochs=epochs, batch_size=64, weight_decay=1e-4, n_checkpoints=10
        )
    return RunConfig(
        data=data, model=model, train=training, curvature=CurvatureConfig(kind="auto", damping=default_damping(case.model)), seed=seed
    )


def noisy_dataset(case: Case, config: RunConfig):
    ds = load_dataset(config.data, config.seed)
    y, seed = ds.y_train, config.seed
    if case.noise == "uniform":
        drawn = noise.uniform_noise(y, case.fraction, ds.n_classes, seed)
    elif case.noise == "pairs":
        drawn = noise.pair_flip(y, case.pairs, case.fraction, seed)
    else:  # one way: each source class loses a share of its rows to its target, nothing comes back
        noisy = y.copy()
        for k, (source, target) in enumerate(case.pairs):
            flipped, mask = noise.flip_class(y, source, target, case.fraction, seed + k)
            noisy[mask] = flipped[mask]
        drawn = (noisy, noisy != y)
    return noise.with_noise(ds, drawn)


def recall_at_k(scores: np.ndarray, mask: np.ndarray) -> float:
    """Share of the flipped rows among the top k by score, k = the number of flipped rows."""
    k = int(mask.sum())
    return float(mask[np.argsort(-scores, kind="stable")[:k]].mean()) if k else float("nan")


def measures(scores: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    return {"auroc": auroc(scores, mask), "ap": average_precision(scores, mask), "recall": recall_at_k(scores, mask)}


def influence_scores(config: RunConfig, trained, curvatures: list[str]) -> dict[str, np.ndarray]:
    """Every attribution method's self-score (influence once per curvature): issue 15's comparison."""
    out = {}
    for name in methods.method_names():
        for curvature in curvatures if methods.get(name).uses_curvature else [None]:
            cfg = config.replace(method=name)
            if curvature is not None:
                cfg = cfg.replace(curvature=dataclasses.replace(cfg.curvature, kind=curvature))
            label = f"self:{name}" + (f"[{curvature}]" if curvature else "")
            try:
                out[label] = np.asarray(fit_method(cfg, trained).self_scores(), dtype=np.float64)
            except (InputError, CurvatureError) as err:
                print(f"    {label}: skipped ({err})", flush=True)
    return out


def run_seed(case: Case, seed: int, args: argparse.Namespace, folder: Path, key: str = "") -> dict:
    saved = Path(args.save_scores or "") / f"{key}_seed{seed}.npz"
    if args.save_scores and saved.exists():  # a resumed run: this case and seed were scored already
        print(f"  seed {seed}: scores saved in {saved}, not computed again", flush=True)
        return _load_run(saved, seed)
    config = run_config(case, seed, args, folder)
    ds = noisy_dataset(case, config)
    mask = ds.flipped
    start = time.perf_counter()
    trained = train(config, use_cache=False, dataset=ds)
    train_s = time.perf_counter() - start
    fitted = predict_proba(trained.model, ds.x_train).argmax(1) == ds.y_train
    found = detectors.detect(trained, n_folds=args.folds, use_cache=False)
    scores = dict(found.scores)
    if args.influence:
        scores.update(influence_scores(config, trained, args.curvatures))
    info = {
        "n_train": len(ds.y_train),
        "n_flipped": int(mask.sum()),
        "train_accuracy": float(fitted.mean()),
        "flips_fitted": float(fitted[mask].mean()),
        "test_accuracy": trained.metrics["test"]["accuracy"],
        "train_seconds": train_s,
        "detector_seconds": found.seconds,
    }
    print(
        f"  seed {seed}: {info['n_train']} rows, {info['n_flipped']} flipped; train acc {info['train_accuracy']:.3f} "
        f"(flips fitted {info['flips_fitted']:.0%}), test acc {info['test_accuracy']:.3f}, training {train_s:.1f} s; "
        + ", ".join(f"{d} {s:.1f} s" for d, s in found.seconds.items() if s >= 0.5),
        flush=True,
    )
    if args.save_scores:
        Path(args.save_scores).mkdir(parents=True, exist_ok=True)
        path = Path(args.save_scores) / f"{key}_seed{seed}.npz"
        np.savez(path, mask=mask, info=json.dumps(info), **{f"score_{d}": s for d, s in scores.items()})
    return {"seed": seed, "info": info, "rows": {d: measures(s, mask) for d, s in scores.items()}, "scores": scores, "mask": mask}


def rescored(folder: str, seeds: list[int], cases: list[str]) -> dict[str, list[dict]]:
    """Per-seed results from scores saved with --save-scores, the default ranking recomputed from its components by
    the very function the registry's combined detector uses (``combine``, gated on the run's training accuracy): a
    new choice measured on the saved runs without training them again."""
    default = detectors.DEFAULT_DETECTOR
    out = {}
    for key in cases:
        runs = []
        for seed in seeds:
            path = Path(folder) / f"{key}_seed{seed}.npz"
            if not path.exists():
                break
            run = _load_run(path, seed)
            run["scores"][default] = combine(run["scores"], run["info"]["train_accuracy"])
            run["rows"][default] = measures(run["scores"][default], run["mask"])
            runs.append(run)
        else:
            out[key] = runs
    return out


def _load_run(path: Path, seed: int) -> dict:
    saved = np.load(path)
    mask = saved["mask"]
    scores = {f[6:]: saved[f] for f in saved.files if f.startswith("score_")}
    rows = {d: measures(s, mask) for d, s in scores.items()}
    return {"seed": seed, "info": json.loads(str(saved["info"])), "rows": rows, "scores": scores, "mask": mask}


def summarise(per_seed: list[dict]) -> dict:
    names = [d for d in per_seed[0]["rows"] if all(d in r["rows"] for r in per_seed)]
    table = {}
    for d in names:
        values = {m: [r["rows"][d][m] for r in per_seed] for m in METRICS}
        table[d] = {m: float(np.mean(v)) for m, v in values.items()} | {f"{m}_std": float(np.std(v)) for m, v in values.items()}
    info = {k: float(np.mean([r["info"][k] for r in per_seed])) for k in per_seed[0]["info"] if k != "detector_seconds"}
    info["detector_seconds"] = {
        d: float(np.mean([r["info"]["detector_seconds"].get(d, 0.0) for r in per_seed])) for d in per_seed[0]["info"]["detector_seconds"]
    }
    return {"table": table, "info": info}


def case_verdict(table: dict, default: str) -> dict:
    """Issue 32's per-case target: the default ≥ the best baseline − one seed-std, on AUROC and on AP."""
    out = {}
    for m in ("auroc", "ap"):
        present = [b for b in BASELINES if b in table]
        best = max(present, key=lambda b: table[b][m])
        slack = table[best][f"{m}_std"]
        out[m] = {"best_baseline": best, "met": table[default][m] >= table[best][m] - slack, "gap": table[default][m] - table[best][m]}
    return out


def print_case(key: str, result: dict, default: str) -> None:
    info, table = result["info"], result["table"]
    print(
        f"\n--- {key}: {CASES[key].label if key in CASES else key}: {info['n_train']:.0f} rows, {info['n_flipped']:.0f} flipped; "
        f"train acc {info['train_accuracy']:.3f}, flips fitted {info['flips_fitted']:.0%}, test acc {info['test_accuracy']:.3f}"
    )
    print(f"{'detector':<28} {'AUROC':>15} {'AP':>15} {'recall@k':>15}")
    for d, r in sorted(table.items(), key=lambda kv: -kv[1]["auroc"]):
        cells = "".join(f" {r[m]:7.4f} ± {r[m + '_std']:.3f}" for m in METRICS)
        tag = " (default)" if d == default else " (baseline)" if d in BASELINES else ""
        print(f"{d + tag:<28}{cells}")
    v = case_verdict(table, default)
    print(
        "target (default ≥ best baseline − 1 std): "
        + "; ".join(
            f"{m.upper()} {'met' if v[m]['met'] else 'NOT met'} ({v[m]['gap']:+.4f} vs {v[m]['best_baseline']})" for m in ("auroc", "ap")
        )
    )


def print_summary(results: dict[str, dict], default: str) -> None:
    names = [d for d in next(iter(results.values()))["table"] if all(d in r["table"] for r in results.values())]
    means = {d: float(np.mean([r["table"][d]["auroc"] for r in results.values()])) for d in names}
    print("\n=== summary: mean AUROC over the cases")
    for d in sorted(names, key=lambda d: -means[d]):
        tag = " (default)" if d == default else " (baseline)" if d in BASELINES else ""
        print(f"{d + tag:<28} {means[d]:.4f}")
    best_base = max((b for b in BASELINES if b in means), key=lambda b: means[b])
    lead = means[default] - means[best_base]
    print(f"default − best baseline ({best_base}): {lead:+.4f} (target ≥ +0.01: {'met' if lead >= 0.01 else 'NOT met'})")
    missed = [k for k, r in results.items() if not all(v["met"] for v in case_verdict(r["table"], default).values())]
    print(f"cases where the default is below the best baseline − 1 std: {', '.join(missed) if missed else 'none'}")


def develop(per_case: dict[str, list[dict]], max_size: int = 4) -> dict[str, list[tuple[float, tuple[str, ...]]]]:
    """On each side of the default's gate (runs whose model fits ≥ FITS_ITS_LABELS of its labels: "memorised"; the
    others: "unfitted"), every single detector and every rank average of 2..max_size of them, by mean AUROC over
    that side's runs (development seeds only)."""
    runs = [r for rs in per_case.values() for r in rs]
    singles = [d for d in runs[0]["scores"] if d != detectors.DEFAULT_DETECTOR and not d.startswith("self:")]
    out = {}
    for side, on_side in (
        ("memorised", lambda r: r["info"]["train_accuracy"] >= FITS_ITS_LABELS),
        ("unfitted", lambda r: r["info"]["train_accuracy"] < FITS_ITS_LABELS),
    ):
        chosen = [r for r in runs if on_side(r)]
        ranking = []
        for size in range(1, max_size + 1):
            for combo in itertools.combinations(singles, size):
                if all(all(c in r["scores"] for c in combo) for r in chosen) and chosen:
                    ranking.append(
                        (float(np.mean([auroc(rank_average([r["scores"][c] for c in combo]), r["mask"]) for r in chosen])), combo)
                    )
        out[f"{side} ({len(chosen)} runs)"] = sorted(ranking, reverse=True)
    return out


def print_development(per_case: dict[str, list[dict]]) -> None:
    for side, ranking in develop(per_case).items():
        print(f"\n=== development, {side}: rank averages by mean AUROC (top 10)")
        for score, combo in ranking[:10]:
            print(f"{score:.4f}  {' + '.join(combo)}")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_CASES}, 500 rows, 10 epochs (memorised 150), 2 folds")
    parser.add_argument("--cases", default=None, help=f"comma-separated, from {', '.join(CASES)} (default all)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (each: subset, noise draw, initialisation); e.g. 0,1,2")
    parser.add_argument(
        "--n-train", type=int, default=None, help="at most this many training rows per MNIST-family case (default 1000; 500 quick)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="SGD epochs of the MNIST-family cases (default 20; 10 quick)")
    parser.add_argument("--memorise-epochs", type=int, default=None, help="SGD epochs of the memorised case (default 400; 150 quick)")
    parser.add_argument("--folds", type=int, default=None, help="out-of-fold folds (default 5; 2 quick)")
    parser.add_argument("--influence", action="store_true", help="also every attribution method's self-score (slow)")
    parser.add_argument("--curvatures", default="auto,last_layer,ekfac", help="with --influence: the influence method's curvatures")
    parser.add_argument(
        "--develop", action="store_true", help="score every rank average of 2-4 detectors (use development seeds, e.g. 100)"
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--show", default=None, help="print the tables of a run saved with --json (runs nothing)")
    parser.add_argument("--save-scores", default=None, help="folder: keep every run's scores and flip mask (one .npz per case and seed)")
    parser.add_argument(
        "--rescore", default=None, help="folder saved with --save-scores: the tables again, the default recomputed from its components"
    )
    args = parser.parse_args(argv)
    default = detectors.DEFAULT_DETECTOR
    if args.develop and any(int(s) < 100 for s in args.seeds.split(",")):
        parser.error("--develop chooses on development seeds (100 and above), never on the evaluation seeds 0-99")
    if args.rescore:
        seeds = [int(s) for s in args.seeds.split(",")]
        wanted = [c.strip() for c in (args.cases or ",".join(CASES)).split(",") if c.strip()]
        per_case = rescored(args.rescore, seeds, wanted)
        print(f"rescored {args.rescore}: seeds {seeds}; default {default}: {detectors.get(default).description}")
        results = {key: summarise(runs) for key, runs in per_case.items()}
        for key, result in results.items():
            print_case(key, result, default)
        print_summary(results, default)
        if args.develop:
            print_development(per_case)
        return None
    if args.show:
        saved = json.loads(Path(args.show).read_text())
        print(f"saved run {args.show}: {saved['settings']}")
        for key, result in saved["results"].items():
            print_case(key, result, saved.get("default", default))
        return print_summary(saved["results"], saved.get("default", default))
    args.n_train = args.n_train or (500 if args.quick else 1000)
    args.epochs = args.epochs or (10 if args.quick else 20)
    args.memorise_epochs = args.memorise_epochs or (150 if args.quick else 400)
    args.folds = args.folds or (2 if args.quick else 5)
    args.curvatures = [c.strip() for c in args.curvatures.split(",") if c.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = [c.strip() for c in (args.cases or (QUICK_CASES if args.quick else ",".join(CASES))).split(",") if c.strip()]
    unknown = [c for c in wanted if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    if args.develop and any(s < 100 for s in seeds):
        parser.error("--develop chooses on development seeds (100 and above), never on the evaluation seeds 0-99")
    settings = (
        f"device {default_device()} (torch threads {torch.get_num_threads()}); seeds {seeds}; {args.folds}-fold; MNIST-family "
        f"SGD {args.epochs} epochs ({args.memorise_epochs} memorised), at most {args.n_train} rows; detectors "
        f"{', '.join(detectors.detector_names())}; default {default}: {detectors.get(default).description}"
    )
    print(settings, flush=True)
    total = time.perf_counter()
    per_case, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in wanted:
            print(f"\n=== {key}: {CASES[key].label}", flush=True)
            per_case[key] = [run_seed(CASES[key], seed, args, Path(tmp), key) for seed in seeds]
            results[key] = summarise(per_case[key])
            print_case(key, results[key], default)
    print_summary(results, default)
    print(f"total {time.perf_counter() - total:.0f} s")
    if args.develop:
        print_development(per_case)
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "default": default, "results": results}, indent=2))


if __name__ == "__main__":
    main()
