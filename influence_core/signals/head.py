"""The influence matrix in closed form on the final linear layer: TracIn from training to validation rows over the run's
checkpoints, and its counterfactual rows for a relabelled training row (see the package's docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from influence_core.errors import InputError
from influence_core.progress import ProgressFn, silent
from influence_core.training import Checkpoint, model_at

# ------------------------------------------------------------------------------------------
# last-layer closed form


def _head(model: nn.Module) -> nn.Linear:
    from influence_core.models import head_module

    return head_module(model)[1]


@torch.no_grad()
def head_inputs(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(features entering ``model.head`` (n, h), softmax probabilities (n, C)) for inputs x."""
    head = _head(model)
    captured: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach().flatten(1)))
    probs = []
    try:
        model.eval()
        for start in range(0, len(x), batch_size):
            probs.append(torch.softmax(model(x[start : start + batch_size]).float(), 1))
    finally:
        handle.remove()
    if not probs:
        return torch.zeros(0, head.in_features, device=x.device), torch.zeros(0, head.out_features, device=x.device)
    return torch.cat(captured), torch.cat(probs)


@dataclass
class HeadTrace:
    """Per-checkpoint head inputs and softmax residuals of the training and validation samples."""

    lrs: list[float]
    train_features: list[torch.Tensor]  # (n, h) per checkpoint
    train_probs: list[torch.Tensor]  # (n, C)
    val_features: list[torch.Tensor]  # (m, h)
    val_residuals: list[torch.Tensor]  # (m, C): softmax − onehot(y_val)
    y_train: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    include_bias: bool

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def train_residual(self, k: int, rows: slice, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """softmax − onehot(label) of training rows at checkpoint k (labels default to the observed ones)."""
        probs = self.train_probs[k][rows]
        labels = self.y_train[rows] if labels is None else labels
        return probs - nn.functional.one_hot(labels, self.n_classes).to(probs.dtype)

    def kernel(self, k: int, rows: slice) -> torch.Tensor:
        """a_trᵀ a_val (+ 1 for the bias) at checkpoint k: (rows, m)."""
        out = self.train_features[k][rows] @ self.val_features[k].T
        return out + 1.0 if self.include_bias else out


def trace_head(
    model: nn.Module,
    checkpoints: Sequence[Checkpoint],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    include_bias: bool = True,
    dtype: Optional[torch.dtype] = None,
    progress: ProgressFn = silent,
) -> HeadTrace:
    """Forward passes at every checkpoint: what the closed-form TracIn needs (no gradients taken)."""
    if not checkpoints:
        raise InputError(
            "TracIn needs saved checkpoints: train with n_checkpoints ≥ 1 (your own model: give its earlier weight "
            "files as checkpoints, or pick a method that needs none, such as influence or IP)"
        )
    dtype = dtype or torch.float32  # ranks only: float32 is ample and twice as fast as float64 on CPU
    n_classes = _head(model).out_features
    trace = HeadTrace([], [], [], [], [], y_train, y_val, n_classes, include_bias)
    onehot_val = nn.functional.one_hot(y_val, n_classes).to(dtype)
    for k, ckpt in enumerate(checkpoints):
        at_k = model_at(model, ckpt)
        a_tr, p_tr = head_inputs(at_k, x_train)
        a_val, p_val = head_inputs(at_k, x_val)
        trace.lrs.append(float(ckpt.lr))
        trace.train_features.append(a_tr.to(dtype))
        trace.train_probs.append(p_tr.to(dtype))
        trace.val_features.append(a_val.to(dtype))
        trace.val_residuals.append(p_val.to(dtype) - onehot_val)
        progress((k + 1) / len(checkpoints), f"forward pass at checkpoint {k + 1}/{len(checkpoints)}")
    return trace


def influence_rows(trace: HeadTrace, rows: slice) -> torch.Tensor:
    """TracIn train→validation rows, harmful-positive: -Σ_k η_k (r_tr r_valᵀ) ⊙ (a_tr a_valᵀ + 1)."""
    total = None
    for k, lr in enumerate(trace.lrs):
        block = (trace.train_residual(k, rows) @ trace.val_residuals[k].T) * trace.kernel(k, rows)
        total = -lr * block if total is None else total - lr * block
    return total


def counterfactual_rows(trace: HeadTrace, rows: slice, labels: torch.Tensor, kernel: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Influence of training rows relabelled to ``labels`` (one per row) at the final checkpoint θ_T."""
    k = len(trace.lrs) - 1
    kernel = trace.kernel(k, rows) if kernel is None else kernel
    return -trace.lrs[k] * (trace.train_residual(k, rows, labels) @ trace.val_residuals[k].T) * kernel


def train_val_influence(
    model: nn.Module,
    checkpoints: Sequence[Checkpoint],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    include_bias: bool = True,
) -> np.ndarray:
    """The full (n_train, n_val) TracIn matrix on the head, harmful-positive (for small sets and tests)."""
    trace = trace_head(model, checkpoints, x_train, y_train, x_val, y_val, include_bias)
    return influence_rows(trace, slice(None)).cpu().numpy()


def tracin_self_influence(trace: HeadTrace) -> torch.Tensor:
    """SI_i = Σ_k η_k ‖r_i‖² (‖a_i‖² + 1): TracIn self-influence on the head."""
    total = torch.zeros(trace.n_train, dtype=trace.train_probs[0].dtype, device=trace.y_train.device)
    for k, lr in enumerate(trace.lrs):
        feats = (trace.train_features[k] ** 2).sum(1) + (1.0 if trace.include_bias else 0.0)
        total += lr * (trace.train_residual(k, slice(None)) ** 2).sum(1) * feats
    return total
