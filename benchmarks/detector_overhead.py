"""What recording the training dynamics costs (issue 32's target: ≤ 10 % of training time).

The detectors AUM, forgetting events and the loss over training read each row's margin and loss from the logits
every training step computes anyway (``influence_core.training.TrainingDynamics``). This trains the same model with
and without the recording, alternating, in one process (one torch thread: the ratio, not the seconds, is the figure
on a shared machine), and prints the median time of each and their ratio.

    python benchmarks/detector_overhead.py                 # MLP on 2,000 MNIST rows and the CNN on 1,000: ~2 min
    python benchmarks/detector_overhead.py --repeats 7
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from influence_core.config import DataConfig, ModelConfig, TrainConfig
from influence_core.data.registry import load_dataset
from influence_core.models import build_model
from influence_core.training import train_model

SETTINGS = {
    "MLP 784-128-10, 2,000 MNIST rows, SGD batch 64, 5 epochs": (ModelConfig(kind="mlp", hidden=128, depth=1), 2000, 5),
    "zoo CNN, 1,000 MNIST rows, SGD batch 64, 2 epochs": (ModelConfig(kind="cnn"), 1000, 2),
    "logistic regression, 2,000 MNIST rows, SGD batch 64, 10 epochs": (ModelConfig(kind="logreg"), 2000, 10),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; median of {args.repeats} alternating runs each\n")
    print("| setting | without recording (s) | with recording (s) | overhead |\n| --- | ---: | ---: | ---: |")
    for label, (model_cfg, n, epochs) in SETTINGS.items():
        ds = load_dataset(DataConfig(name="mnist", n_train=n, n_test=10), 0)
        x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
        cfg = TrainConfig(optimizer="sgd", lr=0.05, epochs=epochs, batch_size=64, weight_decay=1e-4, n_checkpoints=1)
        train_model(build_model(model_cfg, ds.input_shape, 10, 0), x, y, cfg, seed=0)  # warm-up: first calls load kernels
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for record in (False, True):
                model = build_model(model_cfg, ds.input_shape, 10, 0)
                start = time.perf_counter()
                train_model(model, x, y, cfg, seed=0, record_dynamics=record)
                times[record].append(time.perf_counter() - start)
        off, on = float(np.median(times[False])), float(np.median(times[True]))
        print(f"| {label} | {off:.2f} | {on:.2f} | {on / off - 1:+.1%} |", flush=True)


if __name__ == "__main__":
    main()
