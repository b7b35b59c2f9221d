"""Past one process (issue 17): Dask workers against one, and a matrix larger than memory written out of core.

    python benchmarks/scale.py              # both parts (MNIST 60k CNN self-influence; a 1,000 x 1,000,000 matrix)
    python benchmarks/scale.py --quick      # smaller: 12k MNIST rows, a 200 x 100,000 matrix
    python benchmarks/scale.py --only workers

(a) **workers**: self-influence of every MNIST training image (the project's SmallCNN, its initial weights: the work
    is the same at any weights) by the configured method, in one LocalCluster of 1 worker and then of 2 (one thread
    each, so the two runs use the same arithmetic), compute time only (the cluster's start is printed apart). Target:
    2 workers ≥ 1.6× 1 worker. It also prints the largest relative difference from the one-process result (target
    ≤ 1e-6) and the one-process time with all the cores' threads, for reference.
(b) **matrix**: a (queries × rows) matrix of an MLP 784-128-10 on random MNIST-shaped inputs (generated block by
    block from a seed: the rows are never all in memory) written to a zarr store by ``score_store``, in a fresh
    child process whose peak RSS is read when it ends (target ≤ 2 GB), then the top 10 of one query read back from
    the store (target ≤ 1 s). The influence is over the last layer (inner products, 1,290 parameters): all
    101,770 parameters would take ~80× longer on a CPU (a GPU does it). A second check compares the stored blocks
    against scores computed directly for a few rows.
Each figure is printed with the machine's load average: this machine is shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from influence_core import distributed, score_store
from influence_core.config import ModelConfig
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, fit_attributor
from influence_core.models import build_model, parameter_names


def load() -> str:
    return "load %.1f / %.1f / %.1f" % os.getloadavg()


def mnist_train(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from influence_core.data.mnist import mnist_arrays

    x, y, _, _, source = mnist_arrays()
    x = torch.from_numpy(np.asarray(x[:n], dtype=np.float32).reshape(-1, 1, 28, 28))
    if x.max() > 1.5:
        x = x / 255.0
    print(f"MNIST: {len(x)} training images from {source}")
    return x, torch.from_numpy(np.array(y[:n], dtype=np.int64))  # a copy: the loaded array is read-only


def workers_part(n: int, method: str, curvature: str) -> None:
    x, y = mnist_train(n)
    model = build_model(ModelConfig(kind="cnn"), (1, 28, 28), 10, 0).eval()
    context = AttributionContext(model, x, y, parameter_names(model, "all"), 1e-3, curvature, 1e-3)
    fitted = fit_attributor(method, context)
    print(f"(a) {method} ({curvature}) self-influence, SmallCNN ({sum(p.numel() for p in model.parameters()):,} params), N = {n:,}")

    start = time.perf_counter()
    reference = fitted.self_scores()
    print(f"    one process, {torch.get_num_threads()} threads: {time.perf_counter() - start:7.2f} s   ({load()})")
    seconds = {}
    for workers in (1, 2):
        start = time.perf_counter()
        distributed.configure(distributed.ComputeSetting(workers=workers))
        for _ in range(2):  # warm every worker up on the same work (a worker's first per-sample gradients are slow)
            fitted.on_training_rows(x[:1024], y[:1024]).self_scores()
        started = time.perf_counter() - start
        start = time.perf_counter()
        values = fitted.self_scores()
        seconds[workers] = time.perf_counter() - start
        diff = float(np.abs(values - reference).max() / np.abs(reference).max())
        distributed.shutdown()
        print(
            f"    LocalCluster, {workers} worker(s) × 1 thread: {seconds[workers]:7.2f} s (cluster start {started:.1f} s), "
            f"largest relative difference from one process {diff:.1e} ({'PASS' if diff <= 1e-6 else 'MISS'} ≤ 1e-6)   ({load()})"
        )
    speedup = seconds[1] / seconds[2]
    print(f"    speed-up, 2 workers over 1: {speedup:.2f}× ({'PASS' if speedup >= 1.6 else 'MISS'} ≥ 1.6×)")


class RandomMnistRows:
    """Rows of random MNIST-shaped inputs and labels, generated per block from the seed and the block's start."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def rows(self, a: int, b: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + a)
        return torch.rand(b - a, 1, 28, 28, generator=g), torch.randint(0, 10, (b - a,), generator=g)


def matrix_child(n_queries: int, n_rows: int, store: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", hidden=128, depth=1), (1, 28, 28), 10, 0).eval()
    source = RandomMnistRows(n_rows, seed=1)
    x0, y0 = source.rows(0, 256)
    context = AttributionContext(model, x0, y0, parameter_names(model, "last_layer"), 1e-3, "identity", 0.0)
    method = fit_attributor("ip", context)
    xq, yq = RandomMnistRows(n_queries, seed=2).rows(0, n_queries)
    measurement = PerSampleLoss(xq, yq)
    budget = 1 * 2**30  # the blocks' share: the whole run must stay under 2 GB
    layout = score_store.StoreLayout(n_queries, n_rows, score_store.block_rows_for(n_queries, n_rows, budget, 4 * 784))
    last = [time.perf_counter(), -1.0]

    def progress(share: float, message: str = "") -> None:
        if share - last[1] >= 0.1 or share >= 1.0:
            print(f"    {share:4.0%} {message}", flush=True)
            last[1] = share

    start = time.perf_counter()
    blocks = score_store.attributor_blocks(method, measurement, source, layout)
    matrix = score_store.write_score_matrix(Path(store), layout, "scale-benchmark", blocks, progress)
    seconds = time.perf_counter() - start
    a, b = layout.bounds(layout.n_blocks - 1)
    direct = method.on_training_rows(*source.rows(a, b)).scores(measurement)
    diff = float(np.abs(matrix[:, a:b] - direct).max() / np.abs(direct).max())
    print(
        f"    wrote {matrix.shape[0]:,} × {matrix.shape[1]:,} ({matrix.nbytes / 2**30:.2f} GB) in {seconds:.1f} s, blocks of "
        f"{layout.block_rows:,} rows; last block vs scored directly: {diff:.1e}   ({load()})"
    )


def matrix_part(n_queries: int, n_rows: int) -> None:
    print(f"(b) out-of-core matrix, MLP 784-128-10 (last layer, inner products), {n_queries:,} × {n_rows:,}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("INFLUENCE_LAB_CACHE")) as folder:
        store = Path(folder) / "scores.zarr"
        child = subprocess.run(
            [sys.executable, __file__, "--child-matrix", str(n_queries), str(n_rows), str(store)], stdout=sys.stdout, stderr=sys.stderr
        )
        if child.returncode != 0:
            raise SystemExit(f"the matrix run failed ({child.returncode})")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**30
        print(f"    peak RSS of the writing process: {peak:.2f} GB ({'PASS' if peak <= 2 else 'MISS'} ≤ 2 GB)")
        matrix = score_store.ScoreMatrix(store)
        times = []
        for query in (0, n_queries // 2, n_queries - 1):
            start = time.perf_counter()
            top = matrix.top_k(query, 10)
            times.append(time.perf_counter() - start)
        best = min(times)
        print(
            f"    top-10 of one query read from the store: best {best * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms of 3 queries "
            f"({'PASS' if max(times) <= 1 else 'MISS'} ≤ 1 s); e.g. rows {list(top[:3])}   ({load()})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["workers", "matrix"])
    parser.add_argument("--method", default="ip", help="method for (a) (default ip: the per-sample gradients are the work)")
    parser.add_argument("--curvature", default="auto")
    parser.add_argument("--child-matrix", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_matrix:
        matrix_child(int(args.child_matrix[0]), int(args.child_matrix[1]), args.child_matrix[2])
        return
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    if args.only in (None, "workers"):
        workers_part(12_000 if args.quick else 60_000, args.method, args.curvature)
    if args.only in (None, "matrix"):
        matrix_part(200 if args.quick else 1000, 100_000 if args.quick else 1_000_000)


if __name__ == "__main__":
    main()
