"""Per-layer check of the Conv2d cost model (issue 35): formed per-sample weight gradients or the "ghost" form.

    python benchmarks/conv_paths.py                 # every distinct convolution of the SmallCNN (28×28) and ResNet18 (32×32)
    python benchmarks/conv_paths.py --queries 1000  # pairs against more queries (forming is then shared by more pairs)

For each layer it times, on this machine (one thread, median of --repeat runs, both paths interleaved):
- the squared norm of every row of a batch: formed (grouped convolution or unfold + bmm, as the engine would form it)
  then squared and summed, against Σ_{p,q} (g_p·g_q)(a_p·a_q) (two P × P Gram matrices per sample);
- the inner products of that batch with ``--queries`` query rows: formed rows times the formed queries (one GEMM),
  against Σ_{p,q} (g_p·g′_q)(a_p·a′_q) (``influence_core.factored._outer_outer`` on rank-P outer products);
- grouped against unfold for forming (what ``CONV_WEIGHT_GRAD_BY_DEVICE = "auto"`` picks per layer);
and prints the path ``influence_core.gradients.conv_path`` picks next to the one measured faster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from influence_core import gradients  # noqa: E402
from influence_core.factored import _outer_outer  # noqa: E402

# (C_in, C_out, kernel, stride, padding, input side): SmallCNN on 28×28, then ResNet18's distinct layers on 32×32
SHAPES = [
    ("SmallCNN conv1", 1, 16, 3, 1, 1, 28),
    ("SmallCNN conv2", 16, 32, 3, 1, 1, 14),
    ("SmallCNN conv3", 32, 32, 3, 1, 1, 7),
    ("ResNet18 conv1", 3, 64, 7, 2, 3, 32),
    ("ResNet18 layer1", 64, 64, 3, 1, 1, 8),
    ("ResNet18 layer2.0.conv1", 64, 128, 3, 2, 1, 8),
    ("ResNet18 layer2 conv", 128, 128, 3, 1, 1, 4),
    ("ResNet18 layer2 downsample", 64, 128, 1, 2, 0, 8),
    ("ResNet18 layer3.0.conv1", 128, 256, 3, 2, 1, 4),
    ("ResNet18 layer3 conv", 256, 256, 3, 1, 1, 2),
    ("ResNet18 layer3 downsample", 128, 256, 1, 2, 0, 4),
    ("ResNet18 layer4.0.conv1", 256, 512, 3, 2, 1, 2),
    ("ResNet18 layer4 conv", 512, 512, 3, 1, 1, 1),
]


def medians(fns: dict, repeat: int) -> dict:
    for f in fns.values():
        f()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="training rows per pass (default 64)")
    parser.add_argument("--queries", type=int, default=100, help="query rows the batch is paired with (default 100)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-slow", action="store_true", help="skip ghost pairs above 2 s (the first layers)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    b, k = args.batch, args.queries
    print(f"torch {torch.__version__}, 1 thread; batch {b}, {k} queries; milliseconds, median of {args.repeat}")
    print(
        "| layer | P | d_out × d_in | form: grouped / unfold (auto) | norm: formed / ghost | model / best | pairs: formed / ghost | model / best |"
    )
    print("|---|--:|---|---|---|---|---|---|")
    for label, c_in, c_out, kernel, stride, pad, side in SHAPES:
        conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        a, qa = torch.randn(b, c_in, side, side), torch.randn(k, c_in, side, side)
        with torch.no_grad():
            g, qg = torch.randn_like(conv(a)), torch.randn_like(conv(qa))
        positions = g.shape[2] * g.shape[3]
        method = gradients._conv_method(cpu, conv, positions)
        d_out, d_in = gradients._conv_sides(conv)
        form = medians(
            {m: (lambda m=m: gradients._conv_weight_grads(conv, a, g, m)) for m in ("grouped", "unfold")},
            args.repeat,
        )
        norm = medians(
            {
                "formed": lambda: gradients._conv_weight_grads(conv, a, g, method).reshape(b, -1).square().sum(1),
                "ghost": lambda: gradients._conv_ghost_sq_norms(conv, a, g),
            },
            args.repeat,
        )
        q_formed = gradients._conv_weight_grads(conv, qa, qg, method).reshape(k, -1)
        q_ghost = gradients._conv_ghost_factors(conv, qa, qg)
        out = torch.zeros(k, b)
        pair_fns = {"formed": lambda: out.addmm_(q_formed, gradients._conv_weight_grads(conv, a, g, method).reshape(b, -1).T)}
        slow = args.skip_slow and positions**2 * (d_out + d_in) * k * b > 2e10
        if not slow:
            pair_fns["ghost"] = lambda: _outer_outer(q_ghost, gradients._conv_ghost_factors(conv, a, g), out)
        pair = medians(pair_fns, args.repeat)
        pair.setdefault("ghost", float("inf"))

        def best(t: dict) -> str:
            return min(t, key=t.get)

        def ms(t: float) -> str:
            return "skipped" if t == float("inf") else f"{t * 1e3:.2f}"

        print(
            f"| {label} | {positions} | {d_out} × {d_in} | {ms(form['grouped'])} / {ms(form['unfold'])} ({method}) "
            f"| {ms(norm['formed'])} / {ms(norm['ghost'])} | {gradients.conv_path(conv, positions, 'norm', cpu)} / {best(norm)} "
            f"| {ms(pair['formed'])} / {ms(pair['ghost'])} | {gradients.conv_path(conv, positions, 'pair', cpu)} / {best(pair)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
