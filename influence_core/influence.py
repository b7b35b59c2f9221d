"""Influence scores as plain functions over the engine's seams: pairwise (test × train) matrices,
self-influence, TracIn. The methods of :mod:`influence_core.methods` are built on the same stream.

Sign convention (see ``influence_core.__init__``): score(z_tr, z_te) = -∇L(z_te)ᵀ H⁻¹ ∇L(z_tr);
positive = harmful (removing z_tr would lower the loss on z_te), negative = helpful.
Self-influence ∇L(z)ᵀ H⁻¹ ∇L(z) ≥ 0 (Cook's-distance style): large = the model bends to fit z.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from influence_core.curvatures import Curvature
from influence_core.measurements import PerSampleLoss
from influence_core.methods import AttributionContext, stream_scores
from influence_core.methods.base import preconditioned_queries
from influence_core.methods.inner_product import TracIn
from influence_core.progress import ProgressFn, silent
from influence_core.training import Checkpoint


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
    """(n_test, n_train) influence scores, positive = harmful. Train gradients are streamed in chunks
    (``chunk_size`` is kept for callers; the stream sizes its chunks from the memory they take)."""
    names = curvature.param_names
    queries = preconditioned_queries(curvature, PerSampleLoss(x_test, y_test), model, names)
    scores, _ = stream_scores(model, names, x_train, y_train, queries, backend=backend, progress=progress)
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
    return curvature.self_influence(model, x, y, chunk_size, backend, progress).detach().cpu().numpy()


def _tracin(model: nn.Module, checkpoints: Sequence[Checkpoint], x_train, y_train, param_names, backend) -> TracIn:
    return TracIn(AttributionContext(model, x_train, y_train, list(param_names), 0.0, checkpoints=list(checkpoints), backend=backend)).fit()


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
    return _tracin(model, checkpoints, x_train, y_train, param_names, backend).scores(PerSampleLoss(x_test, y_test), progress=progress)


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
    return _tracin(model, checkpoints, x, y, param_names, backend).self_scores(progress)


def predicted_loss_change_on_removal(scores: np.ndarray, n_train: int) -> np.ndarray:
    """First-order change of the test loss when a training point is removed: -score / n."""
    return -scores / n_train
