"""Training as a differentiable function of per-row data weights: replay a run, and take metagradients through it.

A run of :func:`influence_core.training.train_model` is fixed by its recipe (initial weights, settings, seed) and its
data; each row's loss enters every step it is in as wᵢ ℓᵢ / batch size (wᵢ = 1 as trained). :func:`replay` runs the
same steps functionally (SGD, or Adam as torch computes it, with the coupled weight decay, the learning-rate
schedule and the head's elastic net), so that the metagradient

    τᵢ = ∂ f(θ_T(w)) / ∂wᵢ  at w = 1

of a measurement f is exact reverse-mode differentiation through every step (MAGIC, Ilyas & Engstrom 2025). Memory
grows with √T, not T: the forward pass keeps the optimiser state every ⌈√T⌉ steps, and the reverse pass recomputes
one segment at a time with its gradients' graphs (REPLAY's checkpointing, one level). Each step is pulled back by
hand through the optimiser's update and by one double backward through its gradient (a Hessian-vector product and
the rows' weight cotangents together), about two training steps' work for one measurement. Several measurements
share each reverse pass as a batch of cotangents (``torch.func.vmap``).

L-BFGS runs (logistic regression to its optimum) are not replayed here: at an optimum the metagradient is the
implicit-function derivative, which the exact-Hessian influence function computes (the method says so).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from influence_core.errors import InputError
from influence_core.optimisers import ADAM_BETAS, ADAM_EPS  # the training run's own (training.py builds it so)
from influence_core.progress import ProgressFn, silent
from influence_core.tasks import CROSS_ENTROPY, Task
from influence_core.timing import estimate_text
from influence_core.training import TrainingRecipe, batch_orders, replay_segment, step_learning_rates


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


@dataclass
class _Recorded:
    """One step's gradient as the reverse pass takes it: θ and the batch's weights as leaves, the gradient with its
    graph in both (its double backward is the step's Hessian-vector product and the rows' weight cotangents at once),
    and the optimiser update's elementwise partial derivatives (Adam)."""

    leaf: torch.Tensor
    weights: torch.Tensor
    rows: Optional[torch.Tensor]
    gradient: torch.Tensor
    d_first: Optional[torch.Tensor] = None
    d_second: Optional[torch.Tensor] = None
    d_gradient: Optional[torch.Tensor] = None


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
        # steps per recomputed segment: ⌈√T⌉ (``segment=T``: one graph of the whole run, every step's state held, as
        # plain backpropagation through training would)
        self.segment = segment or replay_segment(len(self.steps))
        head = model.head.weight if isinstance(getattr(model, "head", None), nn.Linear) else None
        self.head_name = next((n for n, p in model.named_parameters() if p is head), None)
        self._stateless = self._stateless_copy()

    def _stateless_copy(self) -> Optional[tuple[nn.Module, list[tuple[nn.Module, str]]]]:
        """A copy of the model without its trained weights, and where each one goes: a step sets them as plain
        attributes, a dozen dictionary writes where functional_call swaps them in and out (a sixth of a small model's
        step). None where that would be wrong: tied weights (one value, several places) or parametrized modules."""
        import copy

        from torch.nn.utils import parametrize

        every = list(self.model.named_parameters(remove_duplicate=False))
        if len(every) != len(dict(self.model.named_parameters())) or any(parametrize.is_parametrized(m) for m in self.model.modules()):
            return None
        clone = copy.deepcopy(self.model)
        slots = []
        for name in self.names:
            owner, _, attribute = name.rpartition(".")
            module = clone.get_submodule(owner)
            del module._parameters[attribute]
            slots.append((module, attribute))
        return clone, slots

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
        self, params: torch.Tensor, rows: Optional[torch.Tensor], weights: torch.Tensor, perturbation: Optional[Task] = None
    ) -> torch.Tensor:
        """The step's loss at the flat θ ``params``; ``weights`` are the batch's rows' own."""
        cfg = self.recipe.config
        x, y = (self.x, self.y) if rows is None else (self.x[rows], self.y[rows])
        named = self.unflatten(params)
        if self._stateless is None:
            outputs = functional_call(self.model, {**named, **self.buffers}, (x,))
        else:
            clone, slots = self._stateless
            for (module, attribute), value in zip(slots, named.values()):
                module.__dict__[attribute] = value
            outputs = clone(x)
        if perturbation is None:
            loss = (weights * self.task.sample_loss(outputs, y)).sum() / len(y)
        else:  # the run's loss plus (wᵢ − 1)·gᵢ: the same run at w = 1, its derivative in wᵢ that of adding row i's gᵢ
            loss = (self.task.sample_loss(outputs, y) + (weights - 1) * perturbation.sample_loss(outputs, y)).sum() / len(y)
        if (cfg.head_l1 or cfg.head_l2) and self.head_name is not None:
            head = named[self.head_name]
            loss = loss + cfg.head_l1 * head.abs().sum() + 0.5 * cfg.head_l2 * (head**2).sum()
        return loss

    def _gradient(
        self, params: torch.Tensor, index: int, weights: torch.Tensor, perturbation: Optional[Task], graph: bool = False
    ) -> _Recorded:
        """The loss's gradient at step ``index`` (without weight decay); with ``graph``, recorded with its graph in θ and
        in the batch's weights, for the reverse pass's double backward."""
        rows, _ = self.steps[index]
        leaf = params.detach().requires_grad_()
        batch_weights = (weights if rows is None else weights[rows]).detach().requires_grad_(graph)
        with torch.enable_grad():
            loss = self._objective(leaf, rows, batch_weights, perturbation)
            (gradient,) = torch.autograd.grad(loss, leaf, create_graph=graph)
        return _Recorded(leaf, batch_weights, rows, gradient)

    def step(self, state: _State, index: int, weights: torch.Tensor, perturbation: Optional[Task] = None) -> _State:
        """One optimiser step (``index`` counts from 0), as torch's SGD / Adam take it. ``perturbation``: the weights
        weigh that per-row quantity added to the loss, not the loss (see :meth:`metagradient`)."""
        return self._update(state, self._gradient(state.params[0], index, weights, perturbation), index)

    def _update(self, state: _State, recorded: _Recorded, index: int) -> _State:
        """The optimiser's update from the recorded gradient; where the gradient has its graph, also the update's
        partial derivatives the reverse pass needs (stored on ``recorded``: cheaper than differentiating the update)."""
        lr = self.steps[index][1]
        cfg = self.recipe.config
        params = state.params[0]
        # few flat ops, fused where torch has them (a step's cost on a small model is its number of ops)
        grad = recorded.gradient.detach().add(params, alpha=cfg.weight_decay)
        if cfg.optimizer == "sgd":
            return _State([params.add(grad, alpha=-lr)], [], [])
        (b1, b2), t = ADAM_BETAS, index + 1
        first = state.first[0].mul(b1).add_(grad, alpha=1 - b1)
        second = state.second[0].mul(b2).addcmul_(grad, grad, value=1 - b2)
        step_size, root = lr / (1 - b1**t), math.sqrt(1 - b2**t)
        root_second = second.sqrt()
        denominator = (root_second / root).add_(ADAM_EPS)
        new = params.addcdiv(first, denominator, value=-step_size)
        if recorded.gradient.requires_grad:
            # θ' = θ − s·m'/(√v'/r + ε): ∂θ'/∂m' = −s/d, ∂θ'/∂v' = s·m'/(d²·2r√v') (0 where v' = 0: a weight with no
            # gradient yet, whose √ has no derivative there), ∂v'/∂g = 2(1 − β₂)g
            recorded.d_first = denominator.reciprocal().mul_(-step_size)
            positive = root_second > 0
            scale = step_size / (2 * root)
            recorded.d_second = torch.where(positive, first / (denominator * denominator * root_second), 0.0).mul_(scale)
            recorded.d_gradient = grad * (2 * (1 - b2))
        return _State([new], [first], [second])

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
                state = self.step(state, index, weights, perturbation)
        return state, kept

    def recorded_run(self) -> Optional[tuple[_State, list[_State]]]:
        """:meth:`run`'s ``(final state, kept states)`` as training itself kept them (the recipe's ``kept_states``),
        without replaying the run forwards; None where training kept none, or kept them at another spacing."""
        kept, adam = self.recipe.kept_states, self.recipe.config.optimizer == "adam"
        n_kept = -(-len(self.steps) // self.segment)
        if kept is None or kept.every != self.segment or (kept.first is not None) != adam:
            return None
        if tuple(kept.params.shape) != (n_kept + 1, sum(self.sizes)):
            return None
        p = next(self.model.parameters())
        columns = [t.to(dtype=p.dtype, device=p.device) for t in (kept.params, kept.first, kept.second) if t is not None]
        states = [_State.of([column[i] for column in columns], 1) for i in range(n_kept + 1)]
        return states[-1], states[:-1]

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

    def time_step(self, n_queries: int = 1, repeats: int = 3, steps: Optional[int] = None) -> float:
        """Seconds per training step of a reverse pass over ``n_queries`` measurements, measured here on one segment as
        the pass runs it (recomputed from the initial state, then pulled back with the queries batched), or on its first
        ``steps``; the median of ``repeats`` timings, so one interrupted timing does not set the estimate."""
        steps = min(steps or self.segment, self.segment, len(self.steps))
        state, weights = self.initial_state(), self._weights(None)
        adjoint = self._zero_adjoint(n_queries)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            self._reverse_segment(adjoint, state, 0, steps, weights, None)
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
        adjoint = self._zero_adjoint(len(cotangents), cotangents)
        n_steps, started, weights = len(self.steps), time.perf_counter(), self._weights(None)

        def reached(work_done: float, step: int) -> None:
            # after every step, not every segment: a segment of a long run's batched pass can take half a minute, and
            # the progress call is where the app's Stop takes effect
            done = work_done / n_steps
            spent = time.perf_counter() - started
            left = f", {estimate_text(spent / done * (1 - done))} left" if done > 0 else ""
            progress(done, f"replaying training backwards: step {step}/{n_steps}{left}")

        for segment in range(len(kept) - 1, -1, -1):
            first, last = segment * self.segment, min(n_steps, (segment + 1) * self.segment)
            adjoint = self._reverse_segment(adjoint, kept[segment], first, last, weights, perturbation, reached)
        return adjoint[-1]

    def _zero_adjoint(self, k: int, cotangents: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]:
        """The reverse pass's (k, ·) adjoints at the end of the run: θ's (the measurements' cotangents), Adam's moments'
        (0), the rows' weights' (0)."""
        p = next(self.model.parameters())
        theta = cotangents if cotangents is not None else torch.zeros(k, sum(self.sizes), dtype=p.dtype, device=p.device)
        moments = [torch.zeros_like(theta), torch.zeros_like(theta)] if self.recipe.config.optimizer == "adam" else []
        return (theta, *moments, torch.zeros(k, len(self.y), dtype=theta.dtype, device=theta.device))

    def _reverse_segment(
        self,
        adjoint: tuple[torch.Tensor, ...],
        start: _State,
        first: int,
        last: int,
        weights: torch.Tensor,
        perturbation: Optional[Task],
        reached: Callable[[float, int], None] = lambda _work_done, _step: None,
    ) -> tuple[torch.Tensor, ...]:
        """Steps ``last``−1 down to ``first``: recompute them from ``start`` recording each gradient's graph, then pull
        the (k, ·) adjoints (θ's, Adam's moments', then the rows' weights' running total) back through each. The update
        is differentiated by hand (a few flat ops); the gradient by one double backward, which gives the Hessian-vector
        product Hλ and each row's (1/B)∇ℓᵢ·λ together (no per-row gradient is formed)."""
        recorded, state, done_before = [], start, len(self.steps) - last
        for index in range(first, last):
            step = self._gradient(state.params[0], index, weights, perturbation, graph=True)
            state = self._update(state, step, index)
            recorded.append(step)
            # the recompute costs about a third of a step's work; the pull-back below the other two thirds
            reached(done_before + (index + 1 - first) / 3, index)
        cfg = self.recipe.config
        (b1, b2), adam = ADAM_BETAS, cfg.optimizer == "adam"

        def pull_back(*adjoint: torch.Tensor) -> tuple[torch.Tensor, ...]:  # one query's adjoints
            lam, *moments, total = adjoint
            for index in range(last - 1, first - 1, -1):
                step = recorded[index - first]
                if adam:  # back through m' = β₁m + (1−β₁)g, v' = β₂v + (1−β₂)g², θ' = θ − s·m'/d
                    lam_first = torch.addcmul(moments[0], lam, step.d_first)
                    lam_second = torch.addcmul(moments[1], lam, step.d_second)
                    lam_gradient = torch.addcmul(lam_first * (1 - b1), lam_second, step.d_gradient)
                    moments = [lam_first * b1, lam_second * b2]
                else:
                    lam_gradient = -self.steps[index][1] * lam
                hvp, lam_weights = torch.autograd.grad(step.gradient, (step.leaf, step.weights), lam_gradient, allow_unused=True)
                # g = ∇L + wd·θ: λθ gains (H + wd·I)λg
                lam = lam + cfg.weight_decay * lam_gradient if hvp is None else lam + hvp + cfg.weight_decay * lam_gradient
                if lam_weights is not None:
                    total = total + lam_weights if step.rows is None else total.index_add(0, step.rows, lam_weights)
                reached(done_before + (last - first) / 3 + (last - index) * 2 / 3, index)
            return (lam, *moments, total)

        if len(adjoint[0]) == 1:  # one measurement: no batching transform
            return tuple(t[None] for t in pull_back(*(t[0] for t in adjoint)))
        return torch.func.vmap(pull_back)(*adjoint)
