"""Data-glitch signals (KDD'25): detection quality vs cleanlab / IsolationForest, and their cost.

Prints, per scenario (dataset × glitch kind), one table of every influence signal and baseline:
F1 at the true glitch ratio, AUROC, AP, repair accuracy (CNCI's ncf / cleanlab's suggestion on
the mislabeled rows), CFRank's type accuracy; then the timing ratio signal-time / train-time and
the paper's targets, met or missed.

    python benchmarks/signals.py            # 6k MNIST train × 1k validation; CNN on CUDA, MLP on CPU
    python benchmarks/signals.py --quick    # CPU smoke run: 1 seed, 2k MNIST, MLP (about 2-3 min on 2 cores)

Scenarios: MNIST and sklearn digits (and sklearn breast-cancer as a CSV, a genuinely tabular set)
with a singular mislabeled class (10 % of one class); MNIST with 10 % far clustered Fashion-MNIST
anomalies; MNIST with a 10 % + 10 % mixture. Results are averaged over ``--seeds``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from influence_core.config import DataConfig
from influence_core.device import default_device
from influence_core.errors import InputError
from influence_core.signals import GlitchConfig, detect_glitches, signal_run_config

COLUMNS = ["F1", "AUROC", "AP", "repair accuracy (detected)", "repair accuracy (all)", "type accuracy"]


def breast_cancer_csv(folder: str) -> str:
    """sklearn's breast-cancer table written as a CSV (label column 'target') for the csv loader."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    path = os.path.join(folder, "breast_cancer.csv")
    frame = data.frame.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame.to_csv(path, index=False)
    return path


def run_scenario(name: str, dataset: str, kind: str, args: argparse.Namespace, csv_path: str | None = None) -> dict:
    """Average the comparison table of one scenario over the seeds; also signal / train seconds."""
    tables, timings, accs = [], [], []
    for seed in range(args.seeds):
        is_mnist = dataset == "mnist"
        run = signal_run_config(
            dataset,
            "mlp" if csv_path else args.model,
            n_train=args.n_train if is_mnist else 0,
            n_test=2 * args.n_val if is_mnist else 0,
            seed=seed,
            epochs=args.epochs,
        )
        if csv_path:
            run = run.replace(data=DataConfig(name="csv", path=csv_path, label_column="target", test_fraction=0.3, n_train=0, n_test=0))
        run = run.with_study(GlitchConfig(kind=kind, ratio=0.1, val_fraction=0.5, cleanlab_folds=args.cleanlab_folds))
        start = time.perf_counter()
        report = detect_glitches(run, use_cache=False)
        wall = time.perf_counter() - start
        m = report.metrics
        tables.append({row["method"]: row for row in report.table})
        timings.append((m["signal_seconds"], m["train_seconds"], m["baseline_seconds"], wall))
        accs.append(m["test"]["accuracy"])
        print(
            f"  [{name}] seed {seed}: n_train={m['n_train']} n_val={m['n_val']} mislabeled={m['n_mislabeled']} "
            f"anomalies={m['n_anomalous']} test acc={m['test']['accuracy']:.3f} train {m['train_seconds']:.1f}s "
            f"signals {m['signal_seconds']:.2f}s baselines {m['baseline_seconds']:.1f}s total {wall:.1f}s",
            flush=True,
        )
    methods = list(tables[0])
    averaged = {}
    for method in methods:
        averaged[method] = {}
        for col in COLUMNS:
            values = [t[method][col] for t in tables if t[method][col] is not None]
            averaged[method][col] = float(np.mean(values)) if values else None
    t = np.asarray(timings)
    return {
        "name": name,
        "table": averaged,
        "signal_s": float(t[:, 0].mean()),
        "train_s": float(t[:, 1].mean()),
        "baseline_s": float(t[:, 2].mean()),
        "test_acc": float(np.mean(accs)),
    }


def print_table(result: dict) -> None:
    print(
        f"\n=== {result['name']}  (test accuracy {result['test_acc']:.3f}; "
        f"signals {result['signal_s']:.2f} s, training {result['train_s']:.1f} s, "
        f"ratio {result['signal_s'] / max(result['train_s'], 1e-9):.1%}; baselines {result['baseline_s']:.1f} s)"
    )
    header = f"{'method':26s}" + "".join(f"{c[:18]:>20s}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    for method, row in result["table"].items():
        cells = "".join(f"{'—' if row[c] is None else f'{row[c]:.3f}':>20s}" for c in COLUMNS)
        print(f"{method:26s}{cells}")


def check(label: str, ok: bool, detail: str) -> None:
    print(f"  [{'MET ' if ok else 'MISS'}] {label}: {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small CPU smoke run (1 seed, 2k MNIST, MLP)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds to average over (default 3; 1 with --quick)")
    parser.add_argument("--n-train", type=int, default=None, help="MNIST training rows (default 6000; 2000 with --quick)")
    parser.add_argument("--n-val", type=int, default=None, help="MNIST validation rows (default 1000; 500 with --quick)")
    parser.add_argument("--model", default=None, help="mlp | cnn | logreg (default cnn on CUDA, mlp on CPU)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default per model)")
    parser.add_argument("--cleanlab-folds", type=int, default=3)
    parser.add_argument("--scenarios", default="mnist_singular,digits_singular,breast_cancer_singular,mnist_far,mnist_mixture")
    args = parser.parse_args()
    device = default_device()
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.n_train = args.n_train or (2000 if args.quick else 6000)
    args.n_val = args.n_val or (500 if args.quick else 1000)
    args.model = args.model or ("cnn" if device.type == "cuda" else "mlp")
    if args.quick and args.epochs is None:
        args.epochs = 15

    import torch

    print(
        f"device: {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)")
    )
    print(
        f"model {args.model}, SGD without momentum, 10 checkpoints; TracIn over head.weight + head.bias; "
        f"seeds {args.seeds}; MNIST {args.n_train} train × {args.n_val} validation; cleanlab {args.cleanlab_folds}-fold"
    )
    print(
        "F1 at the true glitch ratio; repair accuracy (detected) = share of flagged mislabeled rows whose suggested label is "
        "the true class, (all) = over every mislabeled row (the paper's §6.1.2)"
    )

    scenarios = {
        "mnist_singular": ("MNIST, singular mislabeled class 10%", "mnist", "singular_class"),
        "digits_singular": ("sklearn digits, singular mislabeled class 10%", "digits", "singular_class"),
        "breast_cancer_singular": ("sklearn breast cancer (CSV), singular mislabeled class 10%", "csv", "singular_class"),
        "mnist_far": ("MNIST + 10% far clustered Fashion-MNIST anomalies", "mnist", "far_clustered"),
        "mnist_mixture": ("MNIST, 10% uniform mislabels + 10% Fashion-MNIST anomalies", "mnist", "mixture"),
    }
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in scenarios]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; choose from {', '.join(scenarios)}")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in wanted:
            label, dataset, kind = scenarios[key]
            csv_path = breast_cancer_csv(tmp) if dataset == "csv" else None
            try:
                results[key] = run_scenario(label, dataset, kind, args, csv_path)
            except InputError as err:
                print(f"  [{label}] skipped: {err}")
                continue
            print_table(results[key])

    print("\n=== targets")
    for key in ("mnist_singular", "digits_singular", "breast_cancer_singular"):
        if key not in results:
            continue
        t = results[key]["table"]
        cnci, si, cl = t["CNCI"]["F1"], t["SI"]["F1"], t["cleanlab"]["F1"] if "cleanlab" in t else None
        name = results[key]["name"].split(",")[0]
        check(
            f"{name}: CNCI F1 ≥ SI F1 (clear margin)",
            cnci >= si + 0.05,
            f"CNCI {cnci:.3f} vs SI {si:.3f} ({(cnci - si) / max(si, 1e-9):+.0%})",
        )
        if cl is not None:
            own = t["cleanlab (own threshold)"]["F1"]
            check(
                f"{name}: CNCI F1 ≥ cleanlab F1",
                cnci >= max(cl, own),
                f"CNCI {cnci:.3f} vs cleanlab ranking {cl:.3f} / own threshold {own:.3f}",
            )
        rep = t["CNCI"]["repair accuracy (all)"]
        if rep is not None:
            check(
                f"{name}: CNCI repair accuracy ≥ 85%",
                rep >= 0.85,
                f"{rep:.1%} over all mislabeled rows ({t['CNCI']['repair accuracy (detected)'] or 0:.1%} over the detected ones)",
            )
    if "mnist_far" in results:
        t = results["mnist_far"]["table"]
        pcid = t["PCID"]["F1"]
        check(
            "MNIST far clustered: PCID F1 > SI and AAI",
            pcid > max(t["SI"]["F1"], t["AAI"]["F1"]),
            f"PCID {pcid:.3f}, SI {t['SI']['F1']:.3f}, AAI {t['AAI']['F1']:.3f}, IsolationForest {t['IsolationForest']['F1']:.3f}",
        )
    if "mnist_mixture" in results:
        t = results["mnist_mixture"]["table"]
        check(
            "MNIST mixture: CFRank F1 ≥ CNCI and PCID",
            t["CFRank"]["F1"] >= max(t["CNCI"]["F1"], t["PCID"]["F1"]),
            f"CFRank {t['CFRank']['F1']:.3f} (type accuracy {t['CFRank']['type accuracy'] or 0:.1%}), CNCI {t['CNCI']['F1']:.3f}, PCID {t['PCID']['F1']:.3f}",
        )
    mnist = [r for k, r in results.items() if k.startswith("mnist")]
    if mnist:
        sig, tr = np.mean([r["signal_s"] for r in mnist]), np.mean([r["train_s"] for r in mnist])
        check(
            f"signal time ≤ 10% of training time (MNIST {args.n_train} × {args.n_val})",
            sig <= 0.1 * tr,
            f"signals {sig:.2f} s / training {tr:.1f} s = {sig / max(tr, 1e-9):.1%} on {device}",
        )


if __name__ == "__main__":
    main()
