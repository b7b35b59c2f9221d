"""How well the ground-truth-free default threshold of the Label bias view flags mislabeled samples.

The label-bias pipeline runs on digits 4/9 and an MNIST 4/9 subset (3-conv CNN, diagonal GGN), with 20 % of the 9s
flipped to 4 and without any flip, over several seeds and torch thread counts (the thread count changes float
summation order, hence the trained model: the old threshold broke on one thread and not on two), and on sklearn's
breast-cancer table as a user's CSV with 15 labels flipped in the file itself (logistic regression, exact Hessian:
the page's own-CSV defaults; the pipeline sees no ground truth, the benchmark knows the planted rows). For every
score it prints, at the page's default (``LabelBiasResult.threshold_choice``, ``label_bias.choose_threshold``): F1,
detected share, clean-flagged share and rows flagged on the flipped runs, the flagged share on the clean runs;
``--compare-old`` adds the threshold at a given git revision beside it.

    python benchmarks/default_threshold.py                   # digits seeds 0-4 + MNIST 2000 seeds 0-1, 1 and 2 threads, + 5 CSVs
    python benchmarks/default_threshold.py --threads 1       # the same on one thread only (about half the time)
    python benchmarks/default_threshold.py --quick           # digits seeds 0-1 + 2 CSVs, 1 thread
    python benchmarks/default_threshold.py --compare-old HEAD
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from influence_core import label_bias as lb
from influence_core.metrics import detection_at_threshold

PLANTED = "breast_cancer_15"  # the breast-cancer CSV with 15 labels flipped in the file


def thresholds_at_revision(revision: str) -> Callable[[dict[str, np.ndarray]], dict[str, float]]:
    """``default_threshold`` as the package stood at ``revision``, run against that revision's own package (extracted
    with ``git archive`` into a temporary folder, in a child process: one per run, for all its scores): an old
    ``label_bias.py`` can import helpers the engine rebuild moved, so it cannot run against today's package."""
    root = Path(__file__).resolve().parents[1]
    tree = Path(tempfile.mkdtemp(prefix=f"influence-lab-{revision}-"))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    archive = subprocess.run(["git", "archive", revision, "influence_core"], cwd=root, check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(tree, filter="data")
    program = (
        "import sys, json, numpy as np; from influence_core.label_bias import default_threshold; "
        "z = np.load(sys.argv[1]); print(json.dumps({k: float(default_threshold(z[k])) for k in z.files}))"
    )

    def old_thresholds(scores: dict[str, np.ndarray]) -> dict[str, float]:
        scores_file = tree / "scores.npz"
        np.savez(scores_file, **{k: np.asarray(v) for k, v in scores.items()})
        env = {**os.environ, "PYTHONPATH": str(tree)}
        out = subprocess.run(
            [sys.executable, "-c", program, str(scores_file)], env=env, cwd=tree, check=True, capture_output=True, text=True
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    return old_thresholds


def planted_csv(folder: Path, seed: int) -> tuple[Path, set[str]]:
    """sklearn's breast-cancer table with an id column, text labels and 15 labels flipped (rows drawn with ``seed``)."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "patient", [f"p{i:03d}" for i in range(len(frame))])
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), 15, replace=False))
    frame.loc[rows, "target"] = 1 - frame.loc[rows, "target"]
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")
    path = folder / f"breast_cancer_planted_{seed}.csv"
    frame.to_csv(path, index=False)
    return path, set(frame["patient"].iloc[rows])


def runs(quick: bool, threads: tuple[int, ...]) -> list[tuple[str, int, float, int]]:
    if quick:
        return [("digits", seed, noise, 1) for seed in (0, 1) for noise in (0.2, 0.0)] + [(PLANTED, seed, 0.0, 1) for seed in (0, 1)]
    out = []
    for n_threads in threads:
        out += [("digits", seed, 0.2, n_threads) for seed in range(5)] + [("digits", seed, 0.0, n_threads) for seed in range(3)]
        out += [("mnist", seed, 0.2, n_threads) for seed in range(2)] + [("mnist", 0, 0.0, n_threads)]
    return out + [(PLANTED, seed, 0.0, threads[0]) for seed in range(5)]


def run_one(name: str, seed: int, noise: float, folder: Path) -> tuple[lb.LabelBiasResult, np.ndarray]:
    """One pipeline run and its mask of wrong labels (the injected flips, or the rows planted in the CSV)."""
    # no cache: the config does not name the thread count, and a cached model would repeat the other count's run
    if name == PLANTED:
        path, planted = planted_csv(folder, seed)
        config = lb.preset_config("csv", path=str(path), label_column="target", id_column="patient")
        result = lb.run_label_bias(config, use_cache=False)
        return result, np.isin(result.dataset.ids_train, list(planted))
    size = dict(n_train=2000, n_test=500) if name == "mnist" else {}
    result = lb.run_label_bias(lb.preset_config(name, noise_fraction=noise, seed=seed, **size), use_cache=False)
    return result, result.flipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", default="1,2", help="torch thread counts of the digits / MNIST grid (default 1,2)")
    parser.add_argument("--compare-old", metavar="REVISION", help="also score default_threshold as of this git revision")
    args = parser.parse_args()
    old = thresholds_at_revision(args.compare_old) if args.compare_old else None
    folder = Path(tempfile.mkdtemp(prefix="influence-lab-planted-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    rows, start = [], time.perf_counter()
    for name, seed, noise, threads in runs(args.quick, tuple(int(t) for t in args.threads.split(","))):
        torch.set_num_threads(threads)
        result, wrong = run_one(name, seed, noise, folder)
        noisy = bool(wrong.any())
        thresholds = {"now": {score: result.default_threshold(score) for score in result.scores}}
        if old is not None:
            thresholds[f"at {args.compare_old}"] = old(result.scores)
        for score, values in result.scores.items():
            for rule, chosen in thresholds.items():
                # a threshold above the top score flags nothing; the page clips its slider to the top score (1 row),
                # unless every score is the same (then it says there is nothing to threshold)
                clipped = min(chosen[score], float(values.max())) if np.ptp(values) > 0 else chosen[score]
                at = detection_at_threshold(values, wrong, clipped)
                rows.append(
                    {
                        "run": f"{name} seed {seed} noise {noise:.0%} {threads} thr",
                        "noisy": noisy,
                        "score": score,
                        "rule": rule,
                        "flagged": at["flagged"] / len(values),
                        "rows_flagged": at["flagged"],
                        "caught": at["tp"],
                        "wrong": int(wrong.sum()),
                        "clean_flagged": at["clean_flagged_share"],
                        "detected": at["detected_share"] if noisy else np.nan,
                        "f1": 2 * at["tp"] / (at["flagged"] + wrong.sum()) if noisy else np.nan,
                    }
                )
        print(f"  {name} seed {seed} noise {noise:.0%} threads {threads}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    print(f"\nDefault threshold over {df.run.nunique()} runs ({time.perf_counter() - start:.0f} s):")
    print("flipped runs: F1, detected and clean-flagged shares, rows flagged; clean runs: share flagged (no label is wrong there)")
    for group, part in (("digits / MNIST", df[~df.run.str.startswith(PLANTED)]), (PLANTED, df[df.run.str.startswith(PLANTED)])):
        noisy = (
            part[part.noisy]
            .groupby(["score", "rule"])
            .agg(
                runs=("f1", "size"),
                f1_mean=("f1", "mean"),
                f1_worst=("f1", "min"),
                detected=("detected", "mean"),
                clean_flagged=("clean_flagged", "mean"),
                clean_flagged_worst=("clean_flagged", "max"),
                rows_flagged_min=("rows_flagged", "min"),
                caught=("caught", "sum"),
                wrong=("wrong", "sum"),
            )
        )
        clean = (
            part[~part.noisy]
            .groupby(["score", "rule"])
            .agg(clean_runs=("flagged", "size"), flagged_mean=("flagged", "mean"), flagged_worst=("flagged", "max"))
        )
        if len(noisy):
            print(f"\n{group}:")
            print((noisy.join(clean) if len(clean) else noisy).round(3).to_string())


if __name__ == "__main__":
    main()
