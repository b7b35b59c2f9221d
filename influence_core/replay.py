"""Training as a differentiable function of per-row data weights: replay a run, and take metagradients through it.

A run of :func:`influence_core.training.train_model` is fixed by its recipe (initial weights, settings, seed) and its
data; each row's loss enters every step it is in as wᵢ ℓᵢ / batch size (wᵢ = 1 as trained). :func:`replay` runs the
same steps functionally (SGD, or Adam as torch computes it, with the coupled weight decay, the learning-rate
schedule and the head's elastic net), so that the metagradient

    τᵢ = ∂ f(θ_T(w)) / ∂wᵢ  at w = 1

of a measurement f is exact reverse-mode differentiation through every step (MAGIC, Ilyas & Engstrom 2025). Memory
grows with √T, not T: the forward pass keeps the optimiser state every ⌈√T⌉ steps, and the reverse pass recomputes
one segment at a time with its graph (REPLAY's checkpointing, one level). Several measurements share each reverse
pass as a batch of cotangents (``is_grads_batched``).

L-BFGS runs (logistic regression to its optimum) are not replayed here: at an optimum the metagradient is the
implicit-function derivative, which the exact-Hessian influence function computes (the method says so).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from influence_core.errors import InputError
from influence_core.progress import ProgressFn, silent
from influence_core.tasks import CROSS_ENTROPY, Task
from influence_core.training import TrainingRecipe, batch_orders, step_learning_rates

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as training.py builds it


def unsupported_reason(model: nn.Module, recipe: Optional[TrainingRecipe]) -> Optional[str]:
    """Why a run cannot be replayed, or None."""
    if recipe is None:
        return (
            "exact attribution replays the training run: it needs a model trained here (its initial weights, settings and "
            "seed), not a model file"
        )
    if recipe.config.optimizer not in ("sgd", "adam"):
        return f"the {recipe.config.optimizer} optimiser is not replayed (SGD and Adam are)"
    if any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)) for m in model.modules()):
        return "models with batch norm or dropout are not replayed yet (their statistics and masks are state outside the weights)"
    return None


@dataclass
class _State:
    """θ and the optimiser's moments (Adam), each one flat vector over ``names`` (few, large ops: the step's cost on
    small models is the number of tensor operations, not their size)."""

    params: list[torch.Tensor]
    first: list[torch.Tensor]
    second: list[torch.Tensor]

    def tensors(self) -> list[torch.Tensor]:
        return [*self.params, *self.first, *self.second]

    @classmethod
    def of(cls, tensors: Sequence[torch.Tensor], n: int) -> "_State":
        tensors = list(tensors)
        return cls(tensors[:n], tensors[n : 2 * n], tensors[2 * n :])

    def detached(self) -> "_State":
        return _State.of([t.detach().clone() for t in self.tensors()], len(self.params))


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """√v whose derivative at v = 0 is 0 rather than ∞·0 = NaN (a weight that has had no gradient yet)."""
    positive = v > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))), torch.zeros_like(v))


class Replay:
    """A recorded run as a function of the rows' weights: its steps (batches and rates) and its update rule."""

    def __init__(
        self,
        model: nn.Module,
        recipe: TrainingRecipe,
        x: torch.Tensor,
        y: torch.Tensor,
        task: Task = CROSS_ENTROPY,
        segment: Optional[int] = None,
    ):
        reason = unsupported_reason(model, recipe)
        if reason:
            raise InputError(reason)
        self.model, self.recipe, self.x, self.y, self.task = model, recipe, x, y, task
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.shapes = [model.get_parameter(n).shape for n in self.names]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.buffers = dict(model.named_buffers())
        cfg, n = recipe.config, len(y)
        batch = cfg.batch_size if 0 < cfg.batch_size < n else n
        rates = step_learning_rates(cfg, n)
        self.steps: list[tuple[Optional[torch.Tensor], float]] = [
            (rows, lr)
            for batches, epoch_rates in zip(batch_orders(n, batch, cfg.epochs, recipe.seed, x.device), rates)
            for rows, lr in zip(batches, epoch_rates)
        ]
        # steps per recomputed segment: ⌈√T⌉ keeps √T states and one √T-step graph (``segment=T``: one graph of the
        # whole run, every step's state held, as plain backpropagation through training would)
        self.segment = segment or max(1, math.ceil(math.sqrt(len(self.steps))))
        head = model.head.weight if isinstance(getattr(model, "head", None), nn.Linear) else None
        self.head_name = next((n for n, p in model.named_parameters() if p is head), None)

    # ---- the run

    def initial_state(self) -> _State:
        dtype, device = next(self.model.parameters()).dtype, next(self.model.parameters()).device
        params = [torch.cat([self.recipe.initial_state[n].to(device=device, dtype=dtype).reshape(-1) for n in self.names])]
        zeros = [torch.zeros_like(p) for p in params] if self.recipe.config.optimizer == "adam" else []
        return _State(params, zeros, [z.clone() for z in zeros])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The flat θ as the model's named parameters (views)."""
        return {n: t.view(shape) for n, t, shape in zip(self.names, torch.split(flat, self.sizes), self.shapes)}

    def _objective(
        self, params: list[torch.Tensor], rows: Optional[torch.Tensor], weights: torch.Tensor, perturbation: Optional[Task] = None
    ) -> torch.Tensor:
        cfg = self.recipe.config
        x, y, w = (self.x, self.y, weights) if rows is None else (self.x[rows], self.y[rows], weights[rows])
        named = self.unflatten(params[0])
        outputs = functional_call(self.model, {**named, **self.buffers}, (x,))
        if perturbation is None:
            loss = (w * self.task.sample_loss(outputs, y)).sum() / len(y)
        else:  # the run's loss plus (wᵢ − 1)·gᵢ: the same run at w = 1, its derivative in wᵢ that of adding row i's gᵢ
            loss = (self.task.sample_loss(outputs, y) + (w - 1) * perturbation.sample_loss(outputs, y)).sum() / len(y)
        if (cfg.head_l1 or cfg.head_l2) and self.head_name is not None:
            head = named[self.head_name]
            loss = loss + cfg.head_l1 * head.abs().sum() + 0.5 * cfg.head_l2 * (head**2).sum()
        return loss

    def step(self, state: _State, index: int, weights: torch.Tensor, recorded: bool = True, perturbation: Optional[Task] = None) -> _State:
        """One optimiser step (``index`` counts from 0), as torch's SGD / Adam take it; a pure function of the state and
        the weights (torch.func.grad inside), so torch.func can differentiate and batch through it. ``recorded=False``
        takes the gradient with plain autograd instead (the forward replay: the same numbers, a third of the overhead).
        ``perturbation``: the weights weigh that per-row quantity added to the loss, not the loss (see :meth:`metagradient`)."""
        rows, lr = self.steps[index]
        cfg = self.recipe.config
        params = state.params
        if recorded:
            grads = torch.func.grad(lambda p: self._objective(list(p), rows, weights, perturbation))(tuple(params))
        else:
            with torch.enable_grad():
                leaf = [params[0].detach().requires_grad_()]
                grads = torch.autograd.grad(self._objective(leaf, rows, weights, perturbation), leaf)
        grads = [g + cfg.weight_decay * p for g, p in zip(grads, params)]
        if cfg.optimizer == "sgd":
            return _State([p - lr * g for p, g in zip(params, grads)], [], [])
        (b1, b2), t = ADAM_BETAS, index + 1
        first = [b1 * m + (1 - b1) * g for m, g in zip(state.first, grads)]
        second = [b2 * v + (1 - b2) * g * g for v, g in zip(state.second, grads)]
        step_size, root = lr / (1 - b1**t), math.sqrt(1 - b2**t)
        new = [p - step_size * m / (_safe_sqrt(v) / root + ADAM_EPS) for p, m, v in zip(params, first, second)]
        return _State(new, first, second)

    def segment_fn(self, first: int, last: int, perturbation: Optional[Task] = None):
        """Steps ``first``..``last``−1 as a function (state tensors, weights) → state tensors."""
        n = 1  # one flat θ

        def run(tensors: tuple[torch.Tensor, ...], weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
            state = _State.of(tensors, n)
            for index in range(first, last):
                state = self.step(state, index, weights, perturbation=perturbation)
            return tuple(state.tensors())

        return run

    def run(
        self, weights: Optional[torch.Tensor] = None, keep: bool = False, perturbation: Optional[Task] = None
    ) -> tuple[_State, list[_State]]:
        """The run's final state under ``weights`` (default all 1; of ``perturbation``'s term where given, see
        :meth:`metagradient`), and with ``keep`` the state every segment."""
        weights = self._weights(weights)
        state, kept = self.initial_state(), []
        with torch.no_grad():
            for index in range(len(self.steps)):
                if keep and index % self.segment == 0:
                    kept.append(state.detached())
                state = self.step(state, index, weights, recorded=False, perturbation=perturbation)
        return state, kept

    def final_model(self, state: _State) -> nn.Module:
        """A copy of the model at a state's weights (the measurement's gradients are taken there)."""
        import copy

        clone = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, value in self.unflatten(state.params[0]).items():
                clone.get_parameter(name).copy_(value)
        return clone.eval()

    def _weights(self, weights: Optional[torch.Tensor]) -> torch.Tensor:
        p = next(self.model.parameters())
        if weights is None:
            return torch.ones(len(self.y), dtype=p.dtype, device=p.device)
        return weights.to(dtype=p.dtype, device=p.device)

    # ---- cost

    def state_bytes(self) -> int:
        p = next(self.model.parameters())
        n_params = sum(self.model.get_parameter(n).numel() for n in self.names)
        return n_params * p.element_size() * (3 if self.recipe.config.optimizer == "adam" else 1)

    def estimate_bytes(self, n_queries: int) -> int:
        """Peak memory of one reverse pass over ``n_queries`` measurements: the kept states, one segment's graph (its
        steps' activations and gradients, about 8 states a step) and the batched cotangents (4 states each)."""
        p = next(self.model.parameters())
        batch = max(len(r) if r is not None else len(self.y) for r, _ in self.steps[:1]) if self.steps else 0
        outputs = 0
        for module in self.model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                outputs += getattr(module, "out_features", 0) or module.out_channels * 64
        activations = batch * max(outputs, 1) * p.element_size() * 4
        kept = math.ceil(len(self.steps) / self.segment)
        return int(self.state_bytes() * (kept + 8 * self.segment + 4 * n_queries) + self.segment * activations * (1 + n_queries))

    def time_step(self, n_queries: int = 1, repeats: int = 3) -> float:
        """Seconds per training step of a reverse pass over ``n_queries`` measurements, measured here on one segment as
        the pass runs it (recomputed from a kept state, its pullback batched over the queries); the median of
        ``repeats`` timings, so one interrupted timing does not set the estimate."""
        steps = min(self.segment, len(self.steps))
        state = tuple(self.initial_state().tensors())
        cotangents = tuple(torch.zeros(n_queries, *t.shape, dtype=t.dtype, device=t.device) for t in state)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            _, pullback = torch.func.vjp(self.segment_fn(0, steps), state, self._weights(None))
            if n_queries == 1:
                pullback(tuple(c[0] for c in cotangents))
            else:
                torch.func.vmap(pullback)(cotangents)
            timings.append((time.perf_counter() - start) / max(steps, 1))
        return float(np.median(timings))

    # ---- the metagradient

    def metagradient(
        self, cotangents: torch.Tensor, kept: list[_State], progress: ProgressFn = silent, perturbation: Optional[Task] = None
    ) -> torch.Tensor:
        """(k, n) τ = ∂(cᵀθ_T)/∂w for each of the k cotangent rows c (flattened over ``names``): one reverse pass.
        With a ``perturbation`` task g, wᵢ weighs gᵢ added to row i's loss wherever the run took it (the run itself is
        unchanged at w = 1, so the kept states serve): ∂(cᵀθ_T)/∂εᵢ of training on ℓᵢ + εᵢgᵢ. For a binary model with g
        the logit margin this is exact relabelling, as ℓ(x, 1 − y) − ℓ(x, y) = (2y − 1)·m(x)."""
        k = len(cotangents)
        lam = [cotangents]
        if self.recipe.config.optimizer == "adam":
            lam += [torch.zeros_like(t) for t in lam] * 2
        total = torch.zeros(k, len(self.y), dtype=cotangents.dtype, device=cotangents.device)
        n_steps, started, weights = len(self.steps), time.perf_counter(), self._weights(None)
        for segment in range(len(kept) - 1, -1, -1):
            first, last = segment * self.segment, min(n_steps, (segment + 1) * self.segment)
            # recompute this segment from its kept state, recording it once; pull every query's cotangent back at once
            _, pullback = torch.func.vjp(self.segment_fn(first, last, perturbation), tuple(kept[segment].tensors()), weights)
            if k == 1:  # one measurement: no batching transform around the pullback
                lam_state, lam_weights = pullback(tuple(t[0] for t in lam))
                lam_state, lam_weights = tuple(t[None] for t in lam_state), lam_weights[None]
            else:
                lam_state, lam_weights = torch.func.vmap(pullback)(tuple(lam))
            lam = list(lam_state)
            total += lam_weights
            done = (n_steps - first) / n_steps
            spent = time.perf_counter() - started
            progress(done, f"replaying training backwards: step {first}/{n_steps}, about {spent / done * (1 - done):.0f} s left")
        return total
