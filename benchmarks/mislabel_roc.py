"""Mislabel ROC study: Cook's-distance ranking of a few flipped MNIST labels, per architecture.

Prints mean ± std AUROC, the share of flipped labels found in the top 5 % by Cook's distance and
test accuracy per (noise regime, arm), and writes the ROC figure (each run faint, mean bold,
random baseline) as HTML.

    python benchmarks/mislabel_roc.py            # MNIST 4 000 images, 5 arms incl. ResNet18, 6 runs
                                                 # (2-core CPU: ~38 min without ResNet18, which takes ~7 min a run)
    python benchmarks/mislabel_roc.py --arm ResNet18 --runs 1   # one arm
    python benchmarks/mislabel_roc.py --quick    # MNIST 1 000 images, 4 small arms, 2 runs, short training (CPU)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from influence_core.device import default_device
from influence_core.figures.mislabel_roc import roc_figure
from influence_core.mislabel_roc import default_arms, load_study_data, run_mislabel_roc
from influence_core.progress import tqdm_progress

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist", "digits"])
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--out", default="mislabel_roc.html", help="where to write the ROC figure (HTML)")
    parser.add_argument(
        "--arm", action="append", default=None, help="run only this arm (repeatable; default all), e.g. --arm MLP --arm ResNet18"
    )
    args = parser.parse_args()
    n_train = args.n_train or (1000 if args.quick else 4000)
    n_runs = args.runs or (2 if args.quick else 6)
    arms = default_arms(quick=args.quick)
    if args.arm:
        wanted = args.arm
        unknown = sorted(set(wanted) - {a.name for a in arms})
        if unknown:
            parser.error(f"unknown arm(s) {unknown}; choose from {[a.name for a in arms]}")
        arms = [a for a in arms if a.name in wanted]
    if args.quick:
        arms = [dataclasses.replace(a, epochs=max(5, a.epochs // 2), batch_size=32) for a in arms]
    print(f"device: {default_device()}  dataset: {args.dataset} ({n_train} train)  runs per arm: {n_runs}")
    data = load_study_data(args.dataset, n_train=n_train, n_test=1000 if not args.quick else 500, seed=0)
    start = time.perf_counter()
    study = run_mislabel_roc(data, arms, n_runs=n_runs, progress=tqdm_progress("mislabel ROC"), use_cache=False)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    print(f"{'regime':<18} {'arm':<34} {'flips':>5} {'AUROC mean±std':>16} {'found@top5%':>11} {'test acc':>8} {'s/run':>6}")
    for row in study.summary():
        spread = f"±{row['auroc_std']:.3f}" if row["auroc_std"] is not None else " (1 run)"
        print(
            f"{row['regime']:<18} {row['arm']:<34} {row['flipped']:>5} {row['auroc_mean']:>9.3f}{spread:<8} "
            f"{row['found_in_top5pct']:>11.0%} {row['test_accuracy']:>8.1%} {row['seconds_per_run']:>6.1f}"
        )
    roc_figure(study).write_html(args.out)
    print(f"ROC figure written to {args.out} (random baseline AUROC = 0.5)")


if __name__ == "__main__":
    main()
