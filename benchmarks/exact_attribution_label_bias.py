"""Issue 31's cost target for a one-scalar group score: exact attribution of the held-out mean loss to every training
row of Label bias's default preset (digits 4/9, the zoo CNN, 20 % of the 9s flipped), against one training of the
same run. One thread, one process, the two timed in alternated rounds; prints the medians and their ratio.

    .venv/bin/python benchmarks/exact_attribution_label_bias.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time


def main(rounds: int) -> None:
    os.environ.setdefault("INFLUENCE_LAB_CACHE", tempfile.mkdtemp(prefix="exact_lb_"))
    import torch

    from influence_core import experiments
    from influence_core import label_bias as lb
    from influence_core.measurements import GroupMeanLoss

    torch.set_num_threads(1)
    config = lb.preset_config("digits", noise_fraction=0.2, model="cnn").replace(method="metagradient")
    trained = experiments.train(config)
    _, _, x_test, y_test = experiments.tensors(trained.dataset, torch.device("cpu"))
    heldout_mean = GroupMeanLoss(x_test, y_test, [torch.arange(len(y_test))])
    training, scoring = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        experiments.train(config, use_cache=False)
        training.append(time.perf_counter() - start)
        start = time.perf_counter()
        scores = experiments.fit_method(config, trained).scores(heldout_mean)
        scoring.append(time.perf_counter() - start)
    train_s, score_s = statistics.median(training), statistics.median(scoring)
    print(
        f"{scores.shape[1]} training rows; training {train_s:.2f} s {[round(t, 2) for t in training]}; replay and one "
        f"reverse pass {score_s:.2f} s {[round(t, 2) for t in scoring]}: {score_s / train_s:.2f}x one training (target <= 3x)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
