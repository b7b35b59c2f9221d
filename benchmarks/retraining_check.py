"""Which influence estimate predicts retraining? The 2D explorer's check, over toys, models and methods.

    python benchmarks/retraining_check.py            # 4 toys × (logistic regression, MLP), 5 test points each
    python benchmarks/retraining_check.py --quick    # 2 toys, 2 test points

For every toy and model: train the explorer's run (``config.explorer_config``), take the test points
with the largest loss (the ones whose influences are large enough to measure), and for each
method remove its 20 strongest training points one at a time and retrain
(``retraining_check.check_by_retraining``: L-BFGS from the trained weights; exact leave-one-out for
logistic regression). Printed per method: the median over test points of Pearson and Spearman
between predicted and retrained test-loss change, the share of removals with the right sign, and
the median size ratio (retrained / predicted; 1 = right size; only for Hessian-based influence).
Every method's run shares the trained model, so each training point is retrained without once. The
MLP is the explorer's (tanh, weight decay 1e-3): smooth, so L-BFGS settles (`--activation relu` shows what kinks
do, `--weight-decay 1e-4` how lighter regularisation breaks influence on the MLP).
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch

from influence_core.config import EXPLORER_ACTIVATION, EXPLORER_WEIGHT_DECAY, explorer_config
from influence_core.device import default_device
from influence_core.experiments import compute_influence
from influence_core.retraining_check import RetrainingCheck, check_by_retraining, predicted_loss_change_on_removal, strongest_for_test_point

METHODS = {  # label → (method, curvature)
    "exact Hessian": ("influence", "exact"),
    "KFAC": ("influence", "kron"),
    "diagonal GGN": ("influence", "diag"),
    "last-layer Hessian": ("influence", "last_layer"),
    "IP (no Hessian)": ("ip", "exact"),
    "TracIn": ("tracin", "exact"),
}
LINEAR_METHODS = ("exact Hessian", "IP (no Hessian)", "TracIn")  # logistic regression: one layer, so KFAC etc. add nothing


def main() -> None:
    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # backpack (laplace's KFAC), harmless here
    warnings.filterwarnings("ignore", message=".*torch.jit.script. is deprecated")  # torch's own import-time notice
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 toys, 2 test points")
    parser.add_argument("--removals", type=int, default=20, help="strongest training points removed per test point")
    parser.add_argument(
        "--damping",
        type=float,
        default=None,
        help="damping of the Hessian-based methods (default: the explorer's, 0 for logistic regression, 1e-2 for the MLP)",
    )
    parser.add_argument(
        "--activation",
        choices=("relu", "tanh", "sigmoid"),
        default=EXPLORER_ACTIVATION,
        help=f"MLP activation (default: the explorer's, {EXPLORER_ACTIVATION})",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=EXPLORER_WEIGHT_DECAY,
        help=f"L2 weight decay (default: the explorer's, {EXPLORER_WEIGHT_DECAY:g})",
    )
    args = parser.parse_args()
    toys = ("single_flip", "moons") if args.quick else ("single_flip", "moons", "blobs", "line_to_sine")
    n_points = 2 if args.quick else 5
    device = default_device()
    print(
        f"retraining check  device={device}  torch {torch.__version__}  python {platform.python_version()}  "
        f"threads {torch.get_num_threads()}  damping {'explorer default' if args.damping is None else f'{args.damping:g}'}  MLP activation {args.activation}  weight decay {args.weight_decay:g}  {args.removals} removals × {n_points} test points"
    )
    start = time.perf_counter()
    rows = []
    for toy in toys:
        for model in ("logreg", "mlp"):
            labels = LINEAR_METHODS if model == "logreg" else tuple(METHODS)
            results = {
                lab: compute_influence(
                    explorer_config(
                        toy,
                        model=model,
                        method=METHODS[lab][0],
                        curvature=METHODS[lab][1],
                        damping=args.damping,
                        activation=args.activation,
                        weight_decay=args.weight_decay,
                    )
                )
                for lab in labels
            }
            first = results[labels[0]]
            tests = first.hardest_test_points(n_points)
            removals = {
                (lab, int(t)): strongest_for_test_point(r.pairwise, int(t), args.removals) for lab, r in results.items() for t in tests
            }
            union = np.unique(np.concatenate(list(removals.values())))
            tick = time.perf_counter()
            everything = check_by_retraining(first, union, tests)  # one retraining per training point, every test point read
            retrain_s = time.perf_counter() - tick
            row_of = {int(i): k for k, i in enumerate(union)}
            for lab, r in results.items():
                stats = []
                for col, t in enumerate(tests):
                    idx = removals[(lab, int(t))]
                    actual = everything.actual[[row_of[int(i)] for i in idx], col][:, None]
                    predicted = predicted_loss_change_on_removal(r.pairwise[int(t), idx][:, None], r.pairwise.shape[1])
                    stats.append(RetrainingCheck(idx, np.array([t]), predicted, actual, r.config.method == "influence", 0.0))
                rows.append(
                    (
                        toy,
                        model,
                        lab,
                        np.nanmedian([c.pearson for c in stats]),
                        np.nanmedian([c.spearman for c in stats]),
                        np.mean([c.sign_agreement for c in stats]),
                        np.nanmedian([c.slope for c in stats]) if stats[0].on_loss_scale else float("nan"),
                        everything.settled,
                    )
                )
            acc = first.metrics["test"]["accuracy"]
            print(
                f"  {toy} / {model if model == 'logreg' else f'mlp ({args.activation})'}: test acc {acc:.3f}, {len(union)} retrainings in {retrain_s:.1f} s; "
                f"L-BFGS left a gradient of {everything.leftover_gradient:.1e} vs a removal's push {everything.removal_push:.1e} "
                f"({'settled' if everything.settled else 'NOT settled: retrained changes are partly where it stopped'})"
            )
    print("\n| toy | model | method | Pearson | Spearman | same sign | retrained / predicted | settled |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for toy, model, lab, pr, sp, sign, slope, settled in rows:
        print(
            f"| {toy} | {model} | {lab} | {pr:.3f} | {sp:.3f} | {sign:.0%} | {'—' if np.isnan(slope) else f'{slope:.2f}'} | "
            f"{'yes' if settled else 'no'} |"
        )
    print("\nmedians over toys (MLP rows only):")
    for lab in METHODS:
        sel = [r for r in rows if r[1] == "mlp" and r[2] == lab]
        print(
            f"  {lab:20s} Pearson {np.median([r[3] for r in sel]):.3f}  Spearman {np.median([r[4] for r in sel]):.3f}  "
            f"same sign {np.mean([r[5] for r in sel]):.0%}"
        )
    print(f"\n{time.perf_counter() - start:.0f} s in all, device {device}")


if __name__ == "__main__":
    main()
