"""How well the ground-truth-free default threshold of the Label bias view flags mislabeled samples.

The label-bias pipeline (3-conv CNN, diagonal GGN) runs on digits 4/9 and an MNIST 4/9 subset, with 20 % of the 9s
flipped to 4 and without any flip, over several seeds and torch thread counts (the thread count changes float
summation order, hence the trained model: the old threshold broke on one thread and not on two). For every score
it prints, at ``label_bias.default_threshold``: F1, detected share and clean-flagged share on the flipped runs, the
flagged share on the clean runs; ``--compare-old`` adds the threshold at a given git revision beside it.

    python benchmarks/default_threshold.py                   # digits seeds 0-4 + MNIST 2000 seeds 0-1, 1 and 2 threads
    python benchmarks/default_threshold.py --quick           # digits seeds 0-1, 1 thread
    python benchmarks/default_threshold.py --compare-old 00bd886
"""

from __future__ import annotations

import argparse
import atexit
import io
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


def threshold_at_revision(revision: str) -> Callable[[np.ndarray], float]:
    """``default_threshold`` as the package stood at ``revision``, run against that revision's own package (extracted
    with ``git archive`` into a temporary folder, in a child process): the old ``label_bias.py`` imports helpers the
    engine rebuild moved, so it cannot run against today's package."""
    root = Path(__file__).resolve().parents[1]
    tree = Path(tempfile.mkdtemp(prefix=f"influence-lab-{revision}-"))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    archive = subprocess.run(["git", "archive", revision, "influence_core"], cwd=root, check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(tree, filter="data")
    program = "import sys, numpy as np; from influence_core.label_bias import default_threshold; print(repr(float(default_threshold(np.load(sys.argv[1])))))"

    def old_threshold(scores: np.ndarray) -> float:
        scores_file = tree / "scores.npy"
        np.save(scores_file, np.asarray(scores))
        env = {**os.environ, "PYTHONPATH": str(tree)}
        out = subprocess.run(
            [sys.executable, "-c", program, str(scores_file)], env=env, cwd=tree, check=True, capture_output=True, text=True
        )
        return float(out.stdout.strip().splitlines()[-1])

    return old_threshold


def runs(quick: bool) -> list[tuple[str, int, float, int]]:
    if quick:
        return [("digits", seed, noise, 1) for seed in (0, 1) for noise in (0.2, 0.0)]
    out = []
    for threads in (1, 2):
        out += [("digits", seed, 0.2, threads) for seed in range(5)] + [("digits", seed, 0.0, threads) for seed in range(3)]
        out += [("mnist", seed, 0.2, threads) for seed in range(2)] + [("mnist", 0, 0.0, threads)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compare-old", metavar="REVISION", help="also score default_threshold as of this git revision")
    args = parser.parse_args()
    rules = {"now": lb.default_threshold}
    if args.compare_old:
        rules[f"at {args.compare_old}"] = threshold_at_revision(args.compare_old)
    rows, start = [], time.perf_counter()
    for name, seed, noise, threads in runs(args.quick):
        torch.set_num_threads(threads)
        size = dict(n_train=2000, n_test=500) if name == "mnist" else {}
        # no cache: the config does not name the thread count, and a cached model would repeat the other count's run
        result = lb.run_label_bias(lb.preset_config(name, noise_fraction=noise, seed=seed, **size), use_cache=False)
        flipped = result.flipped
        noisy = bool(flipped.any())
        for score, values in result.scores.items():
            for rule, threshold in rules.items():
                at = detection_at_threshold(values, flipped, threshold(values))
                rows.append(
                    {
                        "run": f"{name} seed {seed} noise {noise:.0%} {threads} thr",
                        "noisy": noisy,
                        "score": score,
                        "rule": rule,
                        "flagged": at["flagged"] / len(values),
                        "clean_flagged": at["clean_flagged_share"],
                        "detected": at["detected_share"] if noisy else np.nan,
                        "f1": 2 * at["tp"] / (at["flagged"] + flipped.sum()) if noisy else np.nan,
                    }
                )
        print(f"  {name} seed {seed} noise {noise:.0%} threads {threads}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    noisy = (
        df[df.noisy]
        .groupby(["score", "rule"])
        .agg(
            runs=("f1", "size"),
            f1_mean=("f1", "mean"),
            f1_worst=("f1", "min"),
            detected=("detected", "mean"),
            clean_flagged=("clean_flagged", "mean"),
            clean_flagged_worst=("clean_flagged", "max"),
        )
    )
    clean = (
        df[~df.noisy]
        .groupby(["score", "rule"])
        .agg(clean_runs=("flagged", "size"), flagged_mean=("flagged", "mean"), flagged_worst=("flagged", "max"))
    )
    print(f"\nDefault threshold over {df.run.nunique()} runs ({time.perf_counter() - start:.0f} s):")
    print("flipped runs: F1, detected and clean-flagged shares; clean runs: share flagged (no label is wrong there)")
    print(noisy.join(clean).round(3).to_string())


if __name__ == "__main__":
    main()
