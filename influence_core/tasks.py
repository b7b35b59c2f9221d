"""The task seam: the per-sample training loss.

A **task** says what one training sample's loss is (cross-entropy for every model of the zoo); the
gradient engine, the curvatures and every method take it from here, so nothing else assumes it. What a
score is *about* (a test point's loss, a group's mean loss) is a measurement: :mod:`influence_core.measurements`.
"""

from __future__ import annotations

from typing import Optional

import torch
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
