"""Influence scores: pairwise (test × train) matrices, self-influence, TracIn.

Sign convention (see ``influence_core.__init__``): score(z_tr, z_te) = -∇L(z_te)ᵀ H⁻¹ ∇L(z_tr);
positive = harmful (removing z_tr would lower the loss on z_te), negative = helpful.
Self-influence ∇L(z)ᵀ H⁻¹ ∇L(z) ≥ 0 (Cook's-distance style): large = the model bends to fit z.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from influence_core.curvature import Curvature
from influence_core.gradients import iter_per_sample_grads, per_sample_grad_sq_norms, per_sample_grads
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.training import Checkpoint, model_at


def pairwise_influence(
    model: nn.Module,
    curvature: Curvature,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    chunk_size: int = 2048,
    backend: str = "auto",
    progress: ProgressFn = silent,
) -> np.ndarray:
    """(n_test, n_train) influence scores, positive = harmful. Train gradients are streamed in chunks."""
    names = curvature.param_names
    test_grads = per_sample_grads(model, x_test, y_test, names, chunk_size, backend)
    preconditioned = curvature.inverse_hvp(test_grads)
    scores = torch.empty(len(x_test), len(x_train), dtype=preconditioned.dtype, device=preconditioned.device)
    for start, train_grads in iter_per_sample_grads(model, x_train, y_train, names, chunk_size, backend, progress):
        scores[:, start : start + len(train_grads)] = -preconditioned @ train_grads.T
    return scores.cpu().numpy()


def self_influence(
    model: nn.Module,
    curvature: Curvature,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk_size: int = 2048,
    backend: str = "auto",
    progress: ProgressFn = silent,
) -> np.ndarray:
    """∇L(z)ᵀ H⁻¹ ∇L(z) for every sample (higher = more suspicious)."""
    from influence_core.curvature import DiagonalCurvature, IdentityCurvature

    if isinstance(curvature, (DiagonalCurvature, IdentityCurvature)):
        # Σ_j g_j² / d_j without forming per-sample gradient rows where the layer allows it
        weights = 1.0 / curvature.diagonal if isinstance(curvature, DiagonalCurvature) else None
        return per_sample_grad_sq_norms(model, x, y, curvature.param_names, weights, chunk_size, backend, progress).cpu().numpy()
    out = torch.empty(len(x), device=x.device)
    for start, grads in iter_per_sample_grads(model, x, y, curvature.param_names, chunk_size, backend, progress):
        out[start : start + len(grads)] = (grads * curvature.inverse_hvp(grads)).sum(1)
    return out.cpu().numpy()


def tracin(
    model: nn.Module,
    checkpoints: Sequence[Checkpoint],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    param_names: Sequence[str],
    chunk_size: int = 2048,
    backend: str = "auto",
    progress: ProgressFn = silent,
) -> np.ndarray:
    """TracIn in the harmful-positive convention: -Σ_k η_k ∇L(z_te; θ_k)ᵀ ∇L(z_tr; θ_k)."""
    from influence_core.curvature import IdentityCurvature

    total = np.zeros((len(x_test), len(x_train)))
    for k, ckpt in enumerate(checkpoints):
        at_k = model_at(model, ckpt)
        part = pairwise_influence(at_k, IdentityCurvature(param_names), x_test, y_test, x_train, y_train,
                                  chunk_size, backend, scaled(progress, k / len(checkpoints), (k + 1) / len(checkpoints)))
        total += ckpt.lr * part
    return total


def tracin_self(
    model: nn.Module,
    checkpoints: Sequence[Checkpoint],
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Sequence[str],
    chunk_size: int = 2048,
    backend: str = "auto",
    progress: ProgressFn = silent,
) -> np.ndarray:
    """TracIn self-influence Σ_k η_k ‖∇L(z; θ_k)‖² (higher = more suspicious)."""
    from influence_core.curvature import IdentityCurvature

    total = np.zeros(len(x))
    for k, ckpt in enumerate(checkpoints):
        total += ckpt.lr * self_influence(model_at(model, ckpt), IdentityCurvature(param_names), x, y, chunk_size, backend,
                                          scaled(progress, k / len(checkpoints), (k + 1) / len(checkpoints)))
    return total


def predicted_loss_change_on_removal(scores: np.ndarray, n_train: int) -> np.ndarray:
    """First-order change of the test loss when a training point is removed: -score / n."""
    return -scores / n_train
