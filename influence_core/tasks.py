"""The task seam: the per-sample training loss, and the measurements influence is taken on.

A **task** says what one training sample's loss is (cross-entropy for every model of the zoo); the
gradient engine, the curvatures and every method take it from here, so nothing else assumes it.

A **measurement** f(θ) says which quantity a score is about. It gives *query gradient rows* at a model:
one row per test point (its loss, or its logit margin), or one row for a whole group (the mean loss of
the misclassified held-out points, a demographic-parity gap, the loss under an attack). Scores are
``−∇f(θ)ᵀ H⁻¹ ∇ℓ(z_i; θ)``: positive = harmful (removing z_i would lower f).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from influence_core.errors import InputError


class Task:
    """Per-sample loss of a model's outputs against targets; ``summed`` is what one backward needs."""

    name = "task"

    def sample_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(batch,) losses."""
        raise NotImplementedError

    def summed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.sample_loss(outputs, targets).sum()

    def output_gradient(self, outputs: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
        """d loss_i / d outputs_i in closed form (lets the gradient engine skip the backward), or None."""
        return None


class CrossEntropyTask(Task):
    """Softmax cross-entropy on integer class labels (or class-probability targets)."""

    name = "cross_entropy"

    def sample_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, reduction="none")

    def summed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, reduction="sum")

    def output_gradient(self, outputs: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
        if outputs.dim() != 2:
            return None
        n_classes = outputs.shape[1]
        p = torch.softmax(outputs, dim=1)
        if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8) and targets.dim() == 1:
            if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= n_classes):
                return None  # ignore_index or bad labels: let autograd / cross_entropy decide
            p[torch.arange(len(targets), device=targets.device), targets.long()] -= 1
            return p
        if targets.is_floating_point() and targets.shape == outputs.shape:  # class probabilities
            return p * targets.sum(1, keepdim=True) - targets
        return None


class SampledLabelCrossEntropy(CrossEntropyTask):
    """Cross-entropy at labels drawn from the model's own predictive distribution (seeded), whatever the targets: the
    squares of its per-sample gradients sum to an unbiased estimate of the GGN's diagonal (a Fisher with sampled
    labels, as kronfluence fits), at one backward per row where the exact expectation takes one per class."""

    name = "sampled_cross_entropy"

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def _draw(self, outputs: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(outputs.detach().float(), dim=1).cpu()
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1).to(outputs.device)

    def sample_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().sample_loss(outputs, self._draw(outputs))

    def summed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().summed(outputs, self._draw(outputs))

    def output_gradient(self, outputs: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
        return super().output_gradient(outputs, self._draw(outputs)) if outputs.dim() == 2 else None


class MarginTask(Task):
    """The binary logit margin m(x) = z₁ − z₀ (targets ignored): the decision function flip sets move."""

    name = "margin"

    def sample_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.dim() != 2 or outputs.shape[1] != 2:
            raise InputError(f"the margin needs a model with two outputs, this one has {tuple(outputs.shape[1:])}")
        return outputs[:, 1] - outputs[:, 0]

    def output_gradient(self, outputs: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
        if outputs.dim() != 2 or outputs.shape[1] != 2:
            return None
        g = torch.zeros_like(outputs)
        g[:, 0], g[:, 1] = -1.0, 1.0
        return g


class CorrectClassMarginTask(Task):
    """TRAK's output function f = log p_y − log(1 − p_y) = z_y − logsumexp_{k≠y} z_k (for two classes, ±the margin)."""

    name = "correct_class_margin"

    def sample_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        own = outputs.gather(1, targets[:, None]).squeeze(1)
        others = outputs.masked_fill(F.one_hot(targets, outputs.shape[1]).bool(), float("-inf"))
        return own - torch.logsumexp(others, dim=1)

    def output_gradient(self, outputs: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
        if outputs.dim() != 2 or targets.dim() != 1 or targets.is_floating_point():
            return None
        own = F.one_hot(targets, outputs.shape[1]).bool()
        g = -torch.softmax(outputs.masked_fill(own, float("-inf")), dim=1)
        return g.masked_fill(own, 1.0)


CROSS_ENTROPY = CrossEntropyTask()
MARGIN = MarginTask()
CORRECT_CLASS_MARGIN = CorrectClassMarginTask()


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
        from influence_core.gradients import per_sample_grads

        return per_sample_grads(model, self.x, self.y, names, task=self.task)

    def query_factors(self, model: nn.Module, names: Sequence[str]):
        from influence_core.factored import FactoredRows
        from influence_core.gradients import iter_factored_grads

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
