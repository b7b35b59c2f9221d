"""Hessian-free: the inner product IP = −∇f(θ̂)ᵀ ∇ℓ(z_i; θ̂), TracIn over checkpoints, and IP Ensemble over
dropout copies ("Revisit, extend and enhance Hessian-free influence functions"; Pruthi et al. 2020)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Optional

import numpy as np
import torch
from torch import nn

from influence_core.curvatures.identity import IdentityCurvature
from influence_core.distributed import over_rows
from influence_core.errors import InputError
from influence_core.knobs import Knob
from influence_core.measurements import Measurement
from influence_core.methods.base import Attributor, preconditioned_queries, stream_scores
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.tasks import Task
from influence_core.training import model_at


def _ip(model: nn.Module, context, names, measurement: Measurement, train_task: Task, progress: ProgressFn) -> np.ndarray:
    queries = preconditioned_queries(IdentityCurvature(names), measurement, model, names)
    out, _ = stream_scores(model, names, context.x_train, context.y_train, queries, train_task, backend=context.backend, progress=progress)
    return out.detach().cpu().numpy().astype(np.float64)


def _ip_self(model: nn.Module, context, names, progress: ProgressFn) -> np.ndarray:
    curvature = IdentityCurvature(names)
    return (
        over_rows(
            curvature.self_influence, context.x_train, context.y_train, 0, progress, model=model, backend=context.backend, task=context.task
        )
        .detach()
        .cpu()
        .numpy()
        .astype(np.float64)
    )


class InnerProduct(Attributor):
    name = "ip"
    label = "IP (Hessian-free inner product)"
    short_label = "IP"

    def scores(self, measurement: Measurement, train_task: Optional[Task] = None, progress: ProgressFn = silent) -> np.ndarray:
        c = self.context
        return _ip(c.model, c, self.param_names, measurement, train_task or c.task, progress)

    def self_scores(self, progress: ProgressFn = silent) -> np.ndarray:
        return _ip_self(self.context.model, self.context, self.param_names, progress)


class TracIn(Attributor):
    """−Σ_k η_k ∇f(θ_k)ᵀ ∇ℓ(z_i; θ_k) over the saved checkpoints (η_k: the learning rate reaching θ_k)."""

    name = "tracin"
    label = "TracIn (checkpoints)"
    short_label = "TracIn"
    needs_checkpoints = True
    assumes_sgd = True
    head_closed_form = True  # signals.compute_signals: two small matmuls per checkpoint over the head

    def fit(self, progress: ProgressFn = silent) -> "TracIn":
        reason = self.unavailable_reason(self.context)
        if reason:
            raise InputError(reason)
        return self

    def at_final_model(self) -> "TracIn":
        final = copy.copy(self)
        final.context = dataclasses.replace(self.context, checkpoints=list(self.context.checkpoints)[-1:])
        return final

    def _each(self, fn, progress: ProgressFn):
        ckpts = self.context.checkpoints
        total = None
        for k, ckpt in enumerate(ckpts):
            part = ckpt.lr * fn(model_at(self.context.model, ckpt), scaled(progress, k / len(ckpts), (k + 1) / len(ckpts)))
            total = part if total is None else total + part
        return total

    def scores(self, measurement: Measurement, train_task: Optional[Task] = None, progress: ProgressFn = silent) -> np.ndarray:
        c = self.context
        return self._each(lambda m, p: _ip(m, c, self.param_names, measurement, train_task or c.task, p), progress)

    def self_scores(self, progress: ProgressFn = silent) -> np.ndarray:
        return self._each(lambda m, p: _ip_self(m, self.context, self.param_names, p), progress)


def dropout_model(model: nn.Module, rate: float, generator: torch.Generator) -> nn.Module:
    """A copy of ``model`` with each parameter entry zeroed with probability ``rate`` (survivors scaled by 1/(1 − rate))."""
    if not 0.0 <= rate < 1.0:
        raise InputError(f"the dropout rate must be in [0, 1), got {rate}")
    clone = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in clone.parameters():
            keep = (torch.rand(p.shape, generator=generator) >= rate).to(device=p.device, dtype=p.dtype)
            p.mul_(keep / (1.0 - rate))
    return clone


class IPEnsemble(Attributor):
    """The mean of IP over dropout-perturbed copies of the model (seeded; no retraining)."""

    name = "ip_ensemble"
    label = "IP Ensemble (dropout copies)"
    short_label = "IP Ensemble"
    knobs = {
        "ensemble_size": Knob("dropout copies averaged", 20, int, 1, 1000),
        "dropout_rate": Knob("share of weights zeroed per copy", 0.05, float, 0.0, 0.9),
    }

    def fit(self, progress: ProgressFn = silent) -> "IPEnsemble":
        size = int(self.context.options.get("ensemble_size", 20))
        rate = float(self.context.options.get("dropout_rate", 0.05))
        if size < 1:
            raise InputError(f"the ensemble size must be ≥ 1, got {size}")
        generator = torch.Generator().manual_seed(self.context.seed)
        self.members = [dropout_model(self.context.model, rate, generator) for _ in range(size)]
        return self

    def _mean(self, fn, progress: ProgressFn):
        total = None
        for m, member in enumerate(self.members):
            part = fn(member, scaled(progress, m / len(self.members), (m + 1) / len(self.members)))
            total = part if total is None else total + part
        return total / len(self.members)

    def scores(self, measurement: Measurement, train_task: Optional[Task] = None, progress: ProgressFn = silent) -> np.ndarray:
        c = self.context
        return self._mean(lambda m, p: _ip(m, c, self.param_names, measurement, train_task or c.task, p), progress)

    def self_scores(self, progress: ProgressFn = silent) -> np.ndarray:
        return self._mean(lambda m, p: _ip_self(m, self.context, self.param_names, p), progress)
