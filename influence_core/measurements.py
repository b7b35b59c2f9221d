"""The measurement seam: the quantity f(θ) a score is about.

A **measurement** gives *query gradient rows* at a model: one row per test point (its loss, or its logit
margin), or one row for a whole group (the mean loss of the misclassified held-out points, a
demographic-parity gap, the loss under an attack). Scores are ``−∇f(θ)ᵀ H⁻¹ ∇ℓ(z_i; θ)``: positive =
harmful (removing z_i would lower f). It sits above the gradient engine (it asks it for rows) and the
task seam (each per-sample measurement names its loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from influence_core.errors import InputError
from influence_core.factored import FactoredRows
from influence_core.gradients import iter_factored_grads, per_sample_grads
from influence_core.tasks import CROSS_ENTROPY, MARGIN, Task


def flat_parameters(model: nn.Module, names: Sequence[str]) -> list[torch.Tensor]:
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise InputError(f"the model has no parameters named {missing}")
    return [params[n] for n in names]


def objective_gradient(model: nn.Module, value: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """∇θ of a scalar ``value`` over ``names``, flattened in that order (zeros where it does not depend)."""
    params = flat_parameters(model, names)
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


class Measurement:
    """What influence is taken on. ``query_gradients`` gives (k, p) rows over ``names`` at ``model``."""

    name = "measurement"

    def query_gradients(self, model: nn.Module, names: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def query_factors(self, model: nn.Module, names: Sequence[str]):
        """The query rows as :class:`~influence_core.factored.FactoredRows` (Linear layers' blocks as outer products),
        or None where they are sums over many points and are best formed (:meth:`query_gradients`)."""
        return None

    def n_queries(self) -> int:
        raise NotImplementedError


@dataclass
class PerSampleLoss(Measurement):
    """The loss of each test point under ``task``: one row per point (a test × train matrix)."""

    x: torch.Tensor
    y: torch.Tensor
    task: Task = CROSS_ENTROPY
    name = "test_loss"

    def n_queries(self) -> int:
        return len(self.x)

    def query_gradients(self, model: nn.Module, names: Sequence[str]) -> torch.Tensor:
        return per_sample_grads(model, self.x, self.y, names, task=self.task)

    def query_factors(self, model: nn.Module, names: Sequence[str]):
        if len(self.x) == 0:
            return None
        return FactoredRows.cat([rows for _, rows in iter_factored_grads(model, self.x, self.y, names, task=self.task)])


def margin_measurement(x: torch.Tensor) -> PerSampleLoss:
    """The logit margin of each point (flip sets)."""
    return PerSampleLoss(x, torch.zeros(len(x), dtype=torch.long, device=x.device), MARGIN)


@dataclass
class GroupMeanLoss(Measurement):
    """The mean loss over each group of points: one row per group (label bias's group scores).
    An empty group gives a zero row."""

    x: torch.Tensor
    y: torch.Tensor
    groups: Sequence[torch.Tensor]  # index or boolean tensors into x
    task: Task = CROSS_ENTROPY
    batch_size: int = 2048
    name = "group_loss"

    def n_queries(self) -> int:
        return len(self.groups)

    def query_gradients(self, model: nn.Module, names: Sequence[str]) -> torch.Tensor:
        model.eval()
        rows = []
        for members in self.groups:
            xg, yg = self.x[members], self.y[members]
            total = None
            for start in range(0, len(xg), self.batch_size):
                with torch.enable_grad():
                    loss = self.task.summed(model(xg[start : start + self.batch_size]), yg[start : start + self.batch_size])
                    g = objective_gradient(model, loss, names)
                total = g if total is None else total + g
            if total is None:
                p = flat_parameters(model, names)
                total = torch.zeros(sum(t.numel() for t in p), dtype=p[0].dtype, device=p[0].device)
            rows.append(total / max(len(xg), 1))
        return torch.stack(rows)


@dataclass
class ScalarObjective(Measurement):
    """Any differentiable scalar f(model) (a fairness gap, the loss under an attack): one row."""

    value_fn: "object"  # Callable[[nn.Module], torch.Tensor]
    name = "objective"

    def n_queries(self) -> int:
        return 1

    def query_gradients(self, model: nn.Module, names: Sequence[str]) -> torch.Tensor:
        model.eval()
        with torch.enable_grad():
            return objective_gradient(model, self.value_fn(model), names)[None, :]


@dataclass
class Stacked(Measurement):
    """Several measurements' query rows one under the other (one streaming pass scores them all)."""

    parts: Sequence[Measurement]
    name = "stacked"

    def n_queries(self) -> int:
        return sum(m.n_queries() for m in self.parts)

    def query_gradients(self, model: nn.Module, names: Sequence[str]) -> torch.Tensor:
        return torch.cat([m.query_gradients(model, names) for m in self.parts if m.n_queries() > 0])
