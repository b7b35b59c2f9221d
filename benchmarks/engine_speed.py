"""Speed of the per-sample-gradient engine on MNIST-sized inputs (random tensors, 1×28×28, 10 classes).

For an MLP (784→128→10) and the model zoo's SmallCNN, on the current device (cuda if present):
  (a) self-influence of N training samples under a diagonal curvature D (a random positive
      diagonal): s_i = Σ_j g_ij² / d_j, vectorised (vmap, layers, layers fused) vs a naive
      one-sample-at-a-time autograd loop;
  (b) the pairwise matrix G_test D⁻¹ G_trainᵀ, n_test × N: G_test D⁻¹ formed once, train
      gradients streamed in chunks, vs the naive loop (one train gradient at a time, one matvec).
The naive loop is timed on a subset and extrapolated linearly (the output says so).

    python benchmarks/engine_speed.py             # N = 60000 on CUDA, 6000 on CPU
    python benchmarks/engine_speed.py --quick     # smoke run (small N)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import time
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from influence_core import gradients
from influence_core.gradients import iter_per_sample_grads, n_params, per_sample_grad_sq_norms, per_sample_grads
from influence_core.models import MLP, SmallCNN

N_CLASSES = 10
SHAPE = (1, 28, 28)

# targets from the brief (GPU ones are for N = 60000 and scale linearly with N otherwise)
GPU_SELF_S_60K = 0.2
GPU_MATRIX_S_60K = 1.0
CPU_RATIO = {"mlp": 20.0, "cnn": 3.0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs (after the caller's warm-up), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()} (torch {torch.__version__})"


def set_tf32(enabled: Optional[bool]) -> str:
    """None keeps PyTorch's defaults (what the app runs with): cuDNN convs TF32, matmuls fp32."""
    if enabled is None:
        conv = torch.backends.cudnn.allow_tf32
        matmul = torch.backends.cuda.matmul.allow_tf32
        return f"PyTorch defaults, as the app runs (cuDNN conv TF32 {'on' if conv else 'off'}, matmul TF32 {'on' if matmul else 'off'})"
    mode = "tf32" if enabled else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
    else:  # older torch
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
    return "TF32 on (matmul + cuDNN conv)" if enabled else "TF32 off (full fp32 matmul and conv)"


# ------------------------------------------------------------------------------------------
# naive: one sample at a time


def naive_grad(model: nn.Module, params: list[torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(model(xi), yi)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def naive_self_influence(model, x, y, dinv) -> torch.Tensor:
    params = list(model.parameters())
    out = torch.empty(len(x), device=x.device)
    for i in range(len(x)):
        g = naive_grad(model, params, x[i : i + 1], y[i : i + 1])
        out[i] = (g * g * dinv).sum()
    return out


def naive_test_grads(model, xt, yt, dinv) -> torch.Tensor:
    params = list(model.parameters())
    return torch.stack([naive_grad(model, params, xt[i : i + 1], yt[i : i + 1]) * dinv for i in range(len(xt))])


def naive_matrix_columns(model, gt_dinv, x, y) -> torch.Tensor:
    params = list(model.parameters())
    cols = torch.empty(gt_dinv.shape[0], len(x), device=x.device)
    for j in range(len(x)):
        cols[:, j] = gt_dinv @ naive_grad(model, params, x[j : j + 1], y[j : j + 1])
    return cols


# ------------------------------------------------------------------------------------------
# vectorised


def vectorised_self_influence(model, x, y, dinv, backend: str, chunk: int) -> torch.Tensor:
    out = torch.empty(len(x), device=x.device)
    for start, g in iter_per_sample_grads(model, x, y, chunk_size=chunk, backend=backend):
        out[start : start + len(g)] = g.square_() @ dinv
    return out


def fused_self_influence(model, x, y, dinv, chunk: int) -> torch.Tensor:
    return per_sample_grad_sq_norms(model, x, y, weights=dinv, chunk_size=chunk, backend="layers")


def vectorised_matrix(model, xt, yt, x, y, dinv, backend: str, chunk: int) -> torch.Tensor:
    gt_dinv = per_sample_grads(model, xt, yt, chunk_size=chunk, backend=backend).mul_(dinv)  # once
    out_t = torch.empty(len(x), len(xt), device=x.device)  # (train, test): each chunk fills contiguous rows
    for start, g in iter_per_sample_grads(model, x, y, chunk_size=chunk, backend=backend):
        torch.mm(g, gt_dinv.T, out=out_t[start : start + len(g)])
    return out_t.T


def with_conv_method(device: torch.device, method: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    saved = gradients.CONV_WEIGHT_GRAD_BY_DEVICE.get(device.type)
    gradients.CONV_WEIGHT_GRAD_BY_DEVICE[device.type] = method
    try:
        return fn()
    finally:
        gradients.CONV_WEIGHT_GRAD_BY_DEVICE[device.type] = saved


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# ------------------------------------------------------------------------------------------


def build(kind: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = MLP(28 * 28, N_CLASSES, hidden=128, depth=1) if kind == "mlp" else SmallCNN(1, N_CLASSES, 28)
    return model.to(device).eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=None, help="training samples N (default 60000 on CUDA, 6000 on CPU)")
    parser.add_argument("--n-test", type=int, default=1000, help="test samples for the pairwise matrix (default 1000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small N, fewer repeats")
    parser.add_argument("--models", default="mlp,cnn", help="comma list of mlp, cnn")
    parser.add_argument("--chunk-size", type=int, default=None, help="per-sample-gradient chunk (default 64 on CPU, 8192 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method, best kept (default 3; 1 for the matrix)")
    parser.add_argument("--naive-samples", type=int, default=None, help="samples the naive loop is timed on (default 200 CPU, 1000 CUDA)")
    parser.add_argument(
        "--precision",
        choices=["default", "fp32", "tf32"],
        default="default",
        help="CUDA: PyTorch defaults (cuDNN conv TF32, matmul fp32; what the app uses), strict fp32, or TF32 everywhere",
    )
    parser.add_argument("--skip-matrix", action="store_true", help="only the self-influence part")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    n_train = args.n_train or ((60000 if cuda else 6000) if not args.quick else (4096 if cuda else 512))
    n_test = args.n_test if not args.quick else min(args.n_test, 200)
    chunk = args.chunk_size or (8192 if cuda else 64)
    matrix_chunk = args.chunk_size or (8192 if cuda else 256)
    repeats = args.repeats or (1 if args.quick else 3)
    n_naive = min(n_train, args.naive_samples or ((100 if cuda else 50) if args.quick else (1000 if cuda else 200)))
    precision = set_tf32({"default": None, "fp32": False, "tf32": True}[args.precision]) if cuda else "fp32 (CPU)"

    print(f"device: {device_name(device)}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}   precision: {precision}   float32")
    print(f"N = {n_train}, test = {n_test}, chunk = {chunk} (matrix train chunk {matrix_chunk}), best of {repeats}")
    print(
        f"auto backend here: {gradients.AUTO_BACKEND_BY_DEVICE.get(device.type)}, conv weight grads: {gradients.CONV_WEIGHT_GRAD_BY_DEVICE.get(device.type)}"
    )
    print(f"naive = one-sample-at-a-time autograd loop, timed on {n_naive} samples and extrapolated linearly to N")
    print()

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train, *SHAPE, generator=g).to(device)
    y = torch.randint(0, N_CLASSES, (n_train,), generator=g).to(device)
    xt = torch.randn(n_test, *SHAPE, generator=g).to(device)
    yt = torch.randint(0, N_CLASSES, (n_test,), generator=g).to(device)

    rows: list[dict] = []
    for kind in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = build(kind, device)
        p = n_params(model)
        label = {"mlp": "MLP 784-128-10", "cnn": "SmallCNN (3 conv)"}[kind]
        dinv = (torch.rand(p, generator=torch.Generator().manual_seed(1)) + 0.5).reciprocal().to(device)
        warm = min(n_train, 2 * chunk)

        # ---- (a) self-influence
        naive_fn = lambda: naive_self_influence(model, x[:n_naive], y[:n_naive], dinv)  # noqa: E731
        naive_fn()  # warm-up
        t_naive_sub, s_naive = timed(naive_fn, device, repeats)
        t_naive = t_naive_sub * n_train / n_naive
        rows.append(
            dict(
                task="self-influence",
                model=label,
                params=p,
                n=n_train,
                method=f"naive loop (extrap. from {n_naive})",
                s=t_naive,
                ratio=1.0,
                err=None,
            )
        )
        methods = {
            "vmap": lambda xx, yy: vectorised_self_influence(model, xx, yy, dinv, "vmap", chunk),
            "layers": lambda xx, yy: vectorised_self_influence(model, xx, yy, dinv, "layers", chunk),
            "layers fused (no G rows)": lambda xx, yy: fused_self_influence(model, xx, yy, dinv, chunk),
        }
        if kind == "cnn":  # the other way of forming per-sample conv weight grads, for the device table
            other = "unfold" if gradients.CONV_WEIGHT_GRAD_BY_DEVICE.get(device.type) != "unfold" else "grouped"
            methods[f"layers, conv {other}"] = lambda xx, yy, other=other: with_conv_method(
                device, other, lambda: vectorised_self_influence(model, xx, yy, dinv, "layers", chunk)
            )
        for name, fn in methods.items():
            fn(x[:warm], y[:warm])
            t, s = timed(lambda: fn(x, y), device, repeats)
            rows.append(
                dict(
                    task="self-influence",
                    model=label,
                    params=p,
                    n=n_train,
                    method=name,
                    s=t,
                    ratio=t_naive / t,
                    err=rel_err(s[:n_naive], s_naive),
                )
            )
        print_progress(rows)

        # ---- (b) pairwise matrix
        if args.skip_matrix:
            continue
        n_naive_m = max(1, min(n_naive, 50))
        n_naive_t = max(1, min(n_test, n_naive))
        naive_test_grads(model, xt[:4], yt[:4], dinv)
        t_test_sub, gt_naive = timed(lambda: naive_test_grads(model, xt[:n_naive_t], yt[:n_naive_t], dinv), device, 1)
        gt_full = per_sample_grads(model, xt, yt, chunk_size=chunk).mul_(dinv)
        naive_matrix_columns(model, gt_full, x[:2], y[:2])
        t_cols_sub, cols_naive = timed(lambda: naive_matrix_columns(model, gt_full, x[:n_naive_m], y[:n_naive_m]), device, 1)
        gt_full = None  # free it before the matrix runs
        t_naive_m = t_test_sub * n_test / n_naive_t + t_cols_sub * n_train / n_naive_m
        rows.append(
            dict(
                task=f"matrix {n_test}x{n_train}",
                model=label,
                params=p,
                n=n_train,
                method=f"naive loop (extrap. from {n_naive_t}+{n_naive_m})",
                s=t_naive_m,
                ratio=1.0,
                err=None,
            )
        )
        for backend in ("vmap", "layers"):
            vectorised_matrix(model, xt[: min(n_test, 64)], yt[: min(n_test, 64)], x[:warm], y[:warm], dinv, backend, matrix_chunk)
            t, m = timed(
                lambda: vectorised_matrix(model, xt, yt, x, y, dinv, backend, matrix_chunk), device, 1 if not args.repeats else repeats
            )
            err = rel_err(m[:, :n_naive_m], cols_naive)
            rows.append(
                dict(task=f"matrix {n_test}x{n_train}", model=label, params=p, n=n_train, method=backend, s=t, ratio=t_naive_m / t, err=err)
            )
            del m
        if cuda:  # accuracy of the device's float32 path (TF32 or not) against a float64 reference block
            block = accuracy_block(model, xt, yt, x, y, dinv, chunk)
            print(f"  {label}: matrix block 64x256 on {device.type}, max rel. error vs float64: {block:.2e} ({precision})")
        print_progress(rows)
        model = None  # free it before the next model
        if cuda:
            torch.cuda.empty_cache()

    print()
    print_table(rows, device, n_train)
    return 0


def accuracy_block(model, xt, yt, x, y, dinv, chunk) -> float:
    ref_model = copy.deepcopy(model).double()
    gt = per_sample_grads(model, xt[:64], yt[:64], chunk_size=chunk) * dinv
    gr = per_sample_grads(model, x[:256], y[:256], chunk_size=chunk)
    gt64 = per_sample_grads(ref_model, xt[:64].double(), yt[:64], chunk_size=chunk) * dinv.double()
    gr64 = per_sample_grads(ref_model, x[:256].double(), y[:256], chunk_size=chunk)
    return rel_err((gt @ gr.T).double(), gt64 @ gr64.T)


_printed = 0


def print_progress(rows) -> None:
    global _printed
    for r in rows[_printed:]:
        err = "" if r["err"] is None else f"  (max rel. diff vs naive {r['err']:.1e})"
        print(f"  {r['task']:<22} {r['model']:<18} {r['method']:<34} {r['s']:9.3f} s  x{r['ratio']:7.1f}{err}", flush=True)
    _printed = len(rows)


def target_of(row, device: torch.device, n_train: int) -> tuple[str, bool | None]:
    if row["method"].startswith("naive"):
        return "", None
    if device.type == "cuda":
        limit = (GPU_SELF_S_60K if row["task"] == "self-influence" else GPU_MATRIX_S_60K) * n_train / 60000
        scaled = "" if n_train == 60000 else " (scaled to N)"
        return f"<= {limit:.3g} s{scaled}", row["s"] <= limit
    want = CPU_RATIO["mlp" if row["model"].startswith("MLP") else "cnn"]
    return f">= {want:g}x naive", row["ratio"] >= want


def print_table(rows, device: torch.device, n_train: int) -> None:
    print(f"device: {device_name(device)}")
    header = f"| {'task':<22} | {'model':<18} | {'params':>7} | {'N':>6} | {'method':<34} | {'seconds':>8} | {'vs naive':>8} | {'target':<24} | check |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        target, ok = target_of(r, device, n_train)
        check = "" if ok is None else ("PASS" if ok else "MISS")
        print(
            f"| {r['task']:<22} | {r['model']:<18} | {r['params']:>7} | {r['n']:>6} | {r['method']:<34} | {r['s']:>8.3f} | {r['ratio']:>7.1f}x | {target:<24} | {check:<5} |"
        )
    # headline: the best vectorised method per (task, model)
    print()
    best: dict[tuple[str, str], dict] = {}
    for r in rows:
        if r["method"].startswith("naive"):
            continue
        key = (r["task"], r["model"])
        if key not in best or r["s"] < best[key]["s"]:
            best[key] = r
    for (task, model), r in best.items():
        target, ok = target_of(r, device, n_train)
        print(
            f"{'PASS' if ok else 'MISS'}: {task}, {model}: best = {r['method']} {r['s']:.3f} s, x{r['ratio']:.1f} vs naive (target {target})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
