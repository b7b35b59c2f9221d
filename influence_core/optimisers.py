"""SGD and Adam steps by torch.optim's own functional kernels, and the cosine learning-rate schedule in closed form.

Why not ``torch.optim.Adam`` and ``CosineAnnealingLR`` themselves: building any ``torch.optim.Optimizer`` imports
``torch._dynamo`` (``add_param_group`` and ``step`` are wrapped for it), 1.5-1.8 s of a 2-core CPU, the largest import
of a cold view after torch itself (Region cuts' first result waited on it; benchmarks/README.md, ui_latency). The
functional ``torch.optim.adam.adam`` / ``torch.optim.sgd.sgd`` are the same update (the classes' ``step`` calls them
with the same arguments) and import nothing more; this module keeps their state as the classes do (``state[p]`` with
``step``, ``exp_avg``, ``exp_avg_sq``; ``param_groups[0]["lr"]``), so a run takes the same steps to the bit.
L-BFGS (a line search, not a kernel) stays ``torch.optim.LBFGS``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.optim.adam import adam
from torch.optim.sgd import sgd

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults


class Steps:
    """What the training loop uses of an optimiser: ``param_groups[0]["lr"]``, ``state``, ``zero_grad``, ``step``."""

    def __init__(self, params: list[torch.Tensor], lr: float, weight_decay: float):
        self.params = list(params)
        self.param_groups = [{"lr": lr, "weight_decay": weight_decay}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _with_grad(self) -> list[torch.Tensor]:
        return [p for p in self.params if p.grad is not None]


class AdamSteps(Steps):
    """``torch.optim.Adam(params, lr, weight_decay=wd, fused=...)``: coupled L2 (wd·θ added to the gradient), the fused
    kernel where torch has one for every tensor (CPU and CUDA floating point), else torch's own default."""

    def __init__(self, params: list[torch.Tensor], lr: float, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in self.params) or None

    @torch.no_grad()
    def step(self) -> None:
        params = self._with_grad()
        for p in params:
            if p not in self.state:
                # as Adam._init_group: the fused kernel keeps the step count on the parameter's device
                step = torch.zeros((), dtype=torch.float32, device=p.device) if self.fused else torch.tensor(0.0, dtype=torch.float32)
                self.state[p] = {"step": step, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        states = [self.state[p] for p in params]
        group = self.param_groups[0]
        adam(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            amsgrad=False,
            has_complex=any(torch.is_complex(p) for p in params),
            beta1=ADAM_BETAS[0],
            beta2=ADAM_BETAS[1],
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=ADAM_EPS,
            maximize=False,
            foreach=None,
            capturable=False,
            differentiable=False,
            fused=self.fused,
            grad_scale=None,
            found_inf=None,
            decoupled_weight_decay=False,
        )


class SGDSteps(Steps):
    """``torch.optim.SGD(params, lr, weight_decay=wd)``: plain steps with coupled L2, no momentum."""

    @torch.no_grad()
    def step(self) -> None:
        params = self._with_grad()
        group = self.param_groups[0]
        sgd(
            params,
            [p.grad for p in params],
            [None] * len(params),
            weight_decay=group["weight_decay"],
            momentum=0.0,
            lr=group["lr"],
            dampening=0.0,
            nesterov=False,
            maximize=False,
        )


def cosine_rate(base_lr: float, step: int, total: int) -> float:
    """The rate after ``step`` of ``total`` schedule steps, annealed from ``base_lr`` to 0 (CosineAnnealingLR's closed
    form, ``eta_min`` = 0)."""
    return base_lr * (1.0 + math.cos(math.pi * step / total)) / 2.0


class CosineSchedule:
    """Anneals ``optimiser.param_groups[0]["lr"]`` by :func:`cosine_rate` at each :meth:`step`, as
    ``CosineAnnealingLR(optimiser, T_max=total)`` does."""

    def __init__(self, optimiser: Steps, total: int):
        self.optimiser, self.total, self.count = optimiser, max(int(total), 1), 0
        self.base_lr = optimiser.param_groups[0]["lr"]

    def step(self) -> None:
        self.count += 1
        self.optimiser.param_groups[0]["lr"] = cosine_rate(self.base_lr, self.count, self.total)


def optimiser_for(name: str, params: list[torch.Tensor], lr: float, weight_decay: float) -> Steps:
    """SGD or Adam over ``params`` (``name`` as ``TrainConfig.optimizer``)."""
    return SGDSteps(params, lr, weight_decay) if name == "sgd" else AdamSteps(params, lr, weight_decay)


def schedule_for(lr_schedule: str, optimiser: Steps, total: int) -> Optional[CosineSchedule]:
    """The schedule ``TrainConfig.lr_schedule`` names over ``total`` steps of it (None: a constant rate)."""
    return CosineSchedule(optimiser, total) if lr_schedule in ("cosine", "cosine_per_step") else None
