"""The exact Hessian's cost, before and after forming it in blocks of Hessian columns (fbf582d), in one process.

Before: ``torch.func.hessian`` pushes all p tangents through each sample chunk at once, and the chunk was sized for
that (one sample at a time on the 14k-parameter CNN). After: ``curvatures.exact.exact_hessian`` vmaps 256 columns at a
time, with sample chunks sized for one block. Both run on the same model and rows, alternately, ``--repeats`` times;
the script prints each time, the ratio and the largest relative difference of the two matrices.

    python benchmarks/exact_hessian.py              # digits CNN (14k parameters, 12 images), MLP (9k, 300 rows)
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from sklearn.datasets import load_digits

from influence_core.config import ModelConfig
from influence_core.curvatures import CurvatureRequest
from influence_core.curvatures.dense import dense_bytes
from influence_core.curvatures.exact import _loss_of_flat_parameters, exact_chunk_size, exact_hessian
from influence_core.models import build_model, trainable_names
from influence_core.tasks import CROSS_ENTROPY


def before(model, x, y, request) -> tuple[torch.Tensor, int]:
    """The code before fbf582d: all p tangents per call, sample chunks sized for p tangents."""
    prof = request.profile
    per_sample = 20 * prof.n_selected * max(prof.activations_per_sample, 1)
    chunk = int(max(1, min(2048, min(request.budget - dense_bytes(prof.n_selected), 2**30) // per_sample)))
    flat, summed_loss = _loss_of_flat_parameters(model, request.param_names, CROSS_ENTROPY)
    model.eval()
    hessian = torch.zeros(flat.numel(), flat.numel())
    for start in range(0, len(x), chunk):
        hessian += torch.func.hessian(summed_loss)(flat, x[start : start + chunk], y[start : start + chunk])
    return hessian / len(x), chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    digits = load_digits()
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; times in seconds, one process")
    for kind, n in (("cnn", 12), ("mlp", 300)):
        x = torch.tensor(digits.images[:n] / 16.0, dtype=torch.float32)[:, None]
        y = torch.tensor(digits.target[:n])
        if kind == "mlp":
            x = x.reshape(n, -1)
        model = build_model(ModelConfig(kind=kind, hidden=64, depth=2), tuple(x.shape[1:]), 10, 0)
        request = CurvatureRequest(model, x, y, trainable_names(model), 1e-4, 1e-2)
        for _ in range(args.repeats):
            start = time.perf_counter()
            old, old_chunk = before(model, x, y, request)
            t_old = time.perf_counter() - start
            start = time.perf_counter()
            new = exact_hessian(model, x, y, request.param_names, 0.0, exact_chunk_size(request))
            t_new = time.perf_counter() - start
            diff = float((new - old).abs().max() / old.abs().max())
            print(
                f"{kind} p={request.profile.n_selected:,} n={n}: before {t_old:.1f} (sample chunk {old_chunk}), "
                f"after {t_new:.1f} (chunk {exact_chunk_size(request)}), ratio {t_old / t_new:.1f}x, "
                f"largest relative difference {diff:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
