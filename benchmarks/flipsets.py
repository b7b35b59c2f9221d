"""Flip sets and Hessian-free influence: every target of issue 5, with device and times.

    python benchmarks/flipsets.py            # full run (MNIST 4-vs-9 included; minutes on a GPU)
    python benchmarks/flipsets.py --quick    # smoke run on CPU (small verification counts, 2 seeds)
    python benchmarks/flipsets.py --only trim --balance class   # section 4 only, trimming per training label

Sections:
  1. Flip sets (Algorithm 1, L2 logistic regression, exact Hessian): share of test points with a
     set, share confirmed by retraining (one-shot), the removal variant, iterative refinement.
  2. Mean k under 0/10/20/30% uniform label noise (common test points), two-group comparison,
     bias explanation with a synthetic sensitive attribute.
  3. IF vs IP on blobs (logistic regression, Pearson) and moons (MLP, AUROC for flipped points).
  4. Trim 5% by each method and retrain several seeds: held-out accuracy (and DP gap).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from influence_core import flipset as fs
from influence_core import hessian_free as hf
from influence_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from influence_core.device import default_device
from influence_core.experiments import load_data

RESULTS: list[tuple[str, str, bool]] = []


# tabular sets reported beside the paper's only tabular row (Table 1, the loan data, bag-of-words logistic regression):
# Algorithm 1 found a set for 61 % of test points, and retraining flipped 49 %
PAPER_FIGURES = {"breast_cancer": ("the paper's loan data (Table 1)", 0.61, 0.49)}


def target(name: str, value: str, ok: bool) -> None:
    RESULTS.append((name, value, ok))
    print(f"  [{'MET ' if ok else 'MISS'}] {name}: {value}")


def logreg(weight_decay: float = 1e-2, seed: int = 0) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="csv"),
        model=ModelConfig(kind="logreg"),
        train=TrainConfig(optimizer="lbfgs", epochs=20, weight_decay=weight_decay, n_checkpoints=5),
        seed=seed,
    )


def datasets(quick: bool) -> dict[str, object]:
    out = {
        "breast_cancer": fs.breast_cancer_dataset(seed=0),
        "digits 3 vs 8": load_data(RunConfig(data=DataConfig(name="digits", classes=(3, 8)))),
    }
    if not quick:
        try:
            out["MNIST 4 vs 9"] = load_data(RunConfig(data=DataConfig(name="mnist", classes=(4, 9), n_train=2000, n_test=400)))
        except Exception as err:  # noqa: BLE001 — report and go on
            print(f"  (MNIST skipped: {err})")
    return out


def section_flipsets(quick: bool, n_verify: int) -> None:
    print("\n== 1. Flip sets: Algorithm 1 (relabel) and the removal variant, verified by retraining ==")

    for name, ds in datasets(quick).items():
        start = time.perf_counter()
        r = fs.compute_flip_sets(logreg(), ds, use_cache=False)
        t_sets = time.perf_counter() - start
        found = np.flatnonzero(r.relabel.found)
        pick = np.random.default_rng(0).permutation(found)[:n_verify]
        y_before = r.dataset.y_train.copy()
        start = time.perf_counter()
        v = fs.verify_flip_sets(r, pick, use_cache=False)
        t_verify = time.perf_counter() - start
        assert np.array_equal(y_before, r.dataset.y_train), "verification mutated the stored labels"
        found_rm = np.flatnonzero(r.remove.found)
        v_rm = fs.verify_flip_sets(r, found_rm[:n_verify], "remove", use_cache=False)
        ks = r.relabel.k[found]
        print(
            f"  {name}: n_train={len(ds.y_train)} n_test={len(ds.y_test)} test acc={r.metrics['test']['accuracy']:.3f}  "
            f"sets {t_sets:.2f} s, {len(pick)} retrainings {t_verify:.2f} s"
        )
        print(
            f"    relabel: found {r.relabel.found.mean():.0%}, confirmed {v.success_rate:.0%} of {len(pick)} checked; "
            f"k median {np.median(ks) if len(ks) else float('nan'):.0f}, mean {ks.mean() if len(ks) else float('nan'):.1f}, "
            f"k/N median {np.median(ks) / len(ds.y_train) if len(ks) else float('nan'):.1%}"
        )
        print(f"    remove : found {r.remove.found.mean():.0%}, confirmed {v_rm.success_rate:.0%} of {len(v_rm.flipped)} checked")
        singles = np.random.default_rng(1).choice(len(ds.y_train), 5, replace=False)
        per_point = fs.effects_from_kernel(r.kernel, r.dataset.y_train)
        slopes, corrs = [], []
        for i in singles:  # one relabelled point: the first-order model should be near exact
            actual = fs.retrained_margins(r, np.array([i]), "relabel") - r.margins
            slopes.append(np.polyfit(per_point[:, i], actual, 1)[0])
            corrs.append(np.corrcoef(per_point[:, i], actual)[0, 1])
        print(
            f"    single relabels (5 training points, all test points): retrained vs predicted Δm Pearson "
            f"{min(corrs):.3f}–{max(corrs):.3f}, slope {min(slopes):.2f}–{max(slopes):.2f}"
        )
        if len(v.test_indices):
            # How additive the first-order model is: retrained Δm over the set's predicted Δm (margin units; 1 = exact).
            predicted = np.array([per_point[t, r.flip_set(int(t))].sum() for t in v.test_indices])
            actual = v.retrained_margin - r.margins[v.test_indices]
            ratio = actual / predicted
            print(
                f"    retrained Δm / predicted Δm of the checked sets: median {np.median(ratio):.2f} "
                f"(10–90 %: {np.quantile(ratio, 0.1):.2f}–{np.quantile(ratio, 0.9):.2f})"
            )
        dist = r.confidence_distance()[found]
        if len(found) > 2:
            print(f"    k vs |p − τ|: Spearman {float(__import__('scipy.stats').stats.spearmanr(ks, dist)[0]):.2f}")
        fails = v.test_indices[~v.flipped]
        if len(fails):
            start = time.perf_counter()
            refined = [fs.refine_flip_set(r, int(t), use_cache=False) for t in fails]
            confirmed = int(v.flipped.sum()) + sum(x.flipped for x in refined)
            grow = np.mean([len(x.indices) / max(x.one_shot_k, 1) for x in refined])
            print(
                f"    iterative refinement (≤ 4 retrain + re-run rounds) of the {len(fails)} unconfirmed sets: {sum(x.flipped for x in refined)} "
                f"flipped, sets grew ×{grow:.2f} on average → {confirmed / len(pick):.0%} confirmed in all ({time.perf_counter() - start:.1f} s)"
            )
        if name in PAPER_FIGURES:  # tabular data: beside the paper's own tabular row, not against a fixed target
            what, paper_found, paper_flipped = PAPER_FIGURES[name]
            print(
                f"    beside {what}: found {r.relabel.found.mean():.0%} (paper {paper_found:.0%}); flipped by retraining "
                f"{v.success_rate:.0%} of the checked found sets = {r.relabel.found.mean() * v.success_rate:.0%} of all test points "
                f"(paper {paper_flipped:.0%}; its table does not say of which)"
            )
            continue
        target(f"{name}: flip set found for ≥ 60% of test points", f"{r.relabel.found.mean():.0%}", r.relabel.found.mean() >= 0.6)
        target(
            f"{name}: retraining confirms ≥ 75% of the found sets (one-shot Algorithm 1)",
            f"{v.success_rate:.0%} of {len(pick)}",
            v.success_rate >= 0.75,
        )


def section_weight_decay(n_verify: int) -> None:
    print("\n== 1b. Sensitivity to the L2 strength λ (breast cancer, one-shot Algorithm 1) ==")
    ds = fs.breast_cancer_dataset(seed=0)
    for lam in (1e-2, 1e-1, 1.0):
        r = fs.compute_flip_sets(logreg(lam), ds, use_cache=False)
        pick = np.random.default_rng(0).permutation(np.flatnonzero(r.relabel.found))[:n_verify]
        v = fs.verify_flip_sets(r, pick, use_cache=False)
        print(
            f"  λ = {lam:g}: test acc {r.metrics['test']['accuracy']:.3f}, found {r.relabel.found.mean():.0%}, "
            f"confirmed {v.success_rate:.0%} of {len(pick)}, median k {np.median(r.relabel.k[r.relabel.found]):.0f}"
        )


def section_noise(quick: bool) -> None:
    print("\n== 2. Mean k vs label noise; two groups; bias explanation ==")
    for name, ds in list(datasets(True).items()):
        start = time.perf_counter()
        sweep = fs.noise_sweep(logreg(), ds, (0.0, 0.1, 0.2, 0.3), use_cache=False)
        print(f"  {name} ({time.perf_counter() - start:.1f} s): common test points {len(sweep.common)}")
        for f, a, s, k, ka in zip(sweep.fractions, sweep.accuracy, sweep.found_share, sweep.mean_k, sweep.mean_k_all):
            print(f"    noise {f:.0%}: test acc {a:.3f}, found {s:.0%}, mean k (common) {k:.1f}, mean k (all found) {ka:.1f}")
        falls = all(b < a for a, b in zip(sweep.mean_k, sweep.mean_k[1:]))
        target(f"mean k falls as noise rises ({name})", " → ".join(f"{k:.1f}" for k in sweep.mean_k), falls)
    ds = fs.breast_cancer_dataset(seed=0)
    groups = fs.two_group_comparison(logreg(), ds, 0.1, use_cache=False)
    print("  two-group comparison (breast cancer halves; group 3 = group 2 with 10% flips): mean k over found")
    for g, k in groups.items():
        print(f"    {g}: found {np.mean(k > 0):.0%}, mean k {k[k > 0].mean() if (k > 0).any() else float('nan'):.1f}")
    bias = fs.bias_explanation(logreg(), ds, use_cache=False)
    print(f"  bias explanation (90% of group 1's training positives relabelled negative; test acc {bias.test_accuracy:.3f}):")
    biased = fs.inject_group_bias(ds, 0.4, 0.9, seed=0).biased
    for g, n, m, share in zip(bias.groups, bias.n_misclassified, bias.n_with_set, bias.mean_share_biased):
        print(f"    group {g}: {n} misclassified positives, {m} with a flip set, mean share of the set from the biased subset {share:.0%}")
    print(f"    (the biased subset is {biased.mean():.0%} of the training set: a share above that means the sets concentrate on it)")


def section_synthetic() -> None:
    print("\n== 3. IF vs IP on the paper's toy sets ==")
    for name in ("blobs", "moons"):
        start = time.perf_counter()
        c = hf.synthetic_check(name, 0, use_cache=False)
        aucs = ", ".join(f"{hf.method_title(m)} {a:.3f}" for m, a in c.auroc.items())
        print(
            f"  {name} ({time.perf_counter() - start:.1f} s): IF vs IP Pearson {c.pearson:.3f}, Spearman {c.spearman:.3f}; "
            f"AUROC flipped: {aucs}; val acc {c.result.metrics['validation']['accuracy']:.3f}"
        )
        if name == "blobs":
            target("IP vs exact IF on blobs (logistic regression): Pearson ≥ 0.95", f"{c.pearson:.3f}", c.pearson >= 0.95)
        else:
            target("moons MLP: IP ranks flipped points above clean ones (AUROC > 0.5)", f"AUROC {c.auroc['ip']:.3f}", c.auroc["ip"] > 0.5)
    for impact in ("fairness", "robustness"):
        ds = fs.inject_group_bias(hf.synthetic_flip_dataset("blobs", 0), 0.4, 0.9, seed=0).dataset
        r = hf.hessian_free_scores(
            hf.impact_study(hf.synthetic_config("blobs"), impact=impact, methods=("influence", "ip")), ds, use_cache=False
        )
        print(f"  blobs + biased group, impact={impact}: IF vs IP Pearson {r.correlation()['pearson']:.3f}")


def section_trim(quick: bool, balance: str = "none", n_seeds: int = 50) -> None:
    seeds = (0, 1, 2) if quick else tuple(range(n_seeds))
    how = {
        "none": "globally (paper protocol)",
        "class": "within each training label",
        "auto": "globally or per label, whichever lowers the validation-half impact after retraining",
    }[balance]
    print(
        f"\n== 4. Trim 5% most harmful ({how}) and retrain; per seed a new validation/held-out split of the test set; seeds {seeds[0]}–{seeds[-1]} =="
    )
    bc = fs.breast_cancer_dataset(test_fraction=0.4, seed=0)
    moons_cfg = hf.synthetic_config("moons")
    cases = [
        ("breast cancer (clean)", logreg(), bc, False),
        ("breast cancer, 20% noise", logreg(), fs.add_label_noise(bc, 0.2, 0), True),
        (
            "digits 3 vs 8, 20% noise",
            logreg(),
            fs.add_label_noise(load_data(RunConfig(data=DataConfig(name="digits", classes=(3, 8)))), 0.2, 0),
            True,
        ),
        ("moons MLP, 20 flipped", moons_cfg.replace(train__n_checkpoints=5), hf.synthetic_flip_dataset("moons", 0), True),
    ]
    not_lower, raised_noisy = [], []
    for name, cfg, ds, noisy in cases:
        start = time.perf_counter()
        tr = hf.trim_and_retrain(hf.impact_study(cfg, trim_seeds=seeds, trim_balance=balance), ds, use_cache=False)
        table = tr.table()
        print(f"  {name} ({time.perf_counter() - start:.1f} s)")
        print("    " + table.drop(columns=["key"]).to_string(index=False, float_format=lambda v: f"{v:.3f}").replace("\n", "\n    "))
        change, spread = tr.accuracy_change("ip_ensemble")  # mean of the paired differences = difference of the means
        print(f"    IP Ensemble − untrimmed, paired over {len(seeds)} seeds: {change:+.4f} ± {spread:.4f} (standard error)")
        not_lower.append(change >= -1e-9)
        if noisy:
            raised_noisy.append(change > 1e-9)
    target(
        f"trimming 5% by IP Ensemble (balance={balance}) does not lower mean test accuracy",
        f"{sum(not_lower)}/{len(not_lower)} datasets",
        all(not_lower),
    )
    target("... and raises it on the noisy sets", f"{sum(raised_noisy)}/{len(raised_noisy)} noisy datasets", all(raised_noisy))
    if not quick:
        try:
            mnist = load_data(RunConfig(data=DataConfig(name="mnist", classes=(4, 9), n_train=2000, n_test=1000)))
            tr = hf.trim_and_retrain(
                hf.impact_study(logreg(), trim_seeds=seeds[:5], trim_balance=balance), fs.add_label_noise(mnist, 0.2, 0), use_cache=False
            )
            print("  MNIST 4 vs 9, 2000 train, 20% noise")
            print(
                "    " + tr.table().drop(columns=["key"]).to_string(index=False, float_format=lambda v: f"{v:.3f}").replace("\n", "\n    ")
            )
        except Exception as err:  # noqa: BLE001
            print(f"  (MNIST skipped: {err})")
    ds = fs.inject_group_bias(bc, 0.4, 0.9, seed=0).dataset
    tr = hf.trim_and_retrain(hf.impact_study(logreg(), impact="fairness", trim_seeds=seeds, trim_balance=balance), ds, use_cache=False)
    print("  breast cancer with a labeling bias against group 1, trimmed by fairness (DP) influence:")
    print("    " + tr.table().drop(columns=["key"]).to_string(index=False, float_format=lambda v: f"{v:.3f}").replace("\n", "\n    "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run (CPU friendly)")
    parser.add_argument("--n-verify", type=int, default=None, help="flip sets checked by retraining per dataset")
    parser.add_argument(
        "--only",
        choices=("flipsets", "weight_decay", "noise", "synthetic", "trim"),
        action="append",
        help="run only these sections (repeatable); default all",
    )
    parser.add_argument(
        "--balance",
        choices=hf.TRIM_BALANCE,
        default="none",
        help="section 4: remove the top 5%% globally (none, the paper's protocol), within each training "
        "label (class), or whichever of the two lowers the validation-half impact (auto)",
    )
    parser.add_argument(
        "--trim-seeds",
        type=int,
        default=50,
        help="section 4: seeds (validation / held-out splits) per dataset; 10 left clean breast cancer's "
        "paired change at −0.0009 ± 0.0024, too wide to tell a loss from none (default 50)",
    )
    args = parser.parse_args()
    run = set(args.only or ("flipsets", "weight_decay", "noise", "synthetic", "trim"))
    n_verify = args.n_verify or (30 if args.quick else 200)
    device = default_device()
    print(
        f"flip sets / Hessian-free benchmark  device={device}"
        f"{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}  torch {torch.__version__}  "
        f"python {platform.python_version()}  threads {torch.get_num_threads()}  {'quick' if args.quick else 'full'}"
    )
    start = time.perf_counter()
    if "flipsets" in run:
        section_flipsets(args.quick, n_verify)
    if "weight_decay" in run:
        section_weight_decay(n_verify)
    if "noise" in run:
        section_noise(args.quick)
    if "synthetic" in run:
        section_synthetic()
    if "trim" in run:
        section_trim(args.quick, args.balance, args.trim_seeds)
    print(f"\n== targets ({time.perf_counter() - start:.0f} s in all, device {device}) ==")
    for name, value, ok in RESULTS:
        print(f"  [{'MET ' if ok else 'MISS'}] {name}: {value}")


if __name__ == "__main__":
    main()
