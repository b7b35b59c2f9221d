"""Training loops with saved checkpoints (and their learning rates, for TracIn).

The objective is always ``mean cross-entropy + (weight_decay / 2) · ‖θ‖²`` over *all* trainable
parameters, so the Hessian the curvature backends build is the Hessian of what was minimised.
Logistic regression is fitted to convergence with full-batch L-BFGS (influence functions assume
an optimum); neural networks with SGD or Adam in seeded mini-batches.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import nn

from influence_core.config import TrainConfig
from influence_core.optimisers import CosineSchedule, Steps, optimiser_for, schedule_for
from influence_core.progress import ProgressFn, silent


@dataclass
class Checkpoint:
    epoch: int
    lr: float  # learning rate in force while reaching this checkpoint (TracIn's η_k)
    state: dict[str, torch.Tensor]


@dataclass
class SegmentStates:
    """A run's optimiser state before every ``every``-th step, and after its last: θ (and Adam's two moments), one
    flat row per state over the trained parameters in ``named_parameters`` order. What exact attribution's reverse
    pass starts each recomputed segment from (:mod:`influence_core.replay`), kept by training itself so that the run
    need not be replayed forwards to find them."""

    every: int
    params: torch.Tensor  # (states, n_weights); the last row is the trained model
    first: Optional[torch.Tensor] = None  # Adam's first and second moments, the same shape (None for SGD)
    second: Optional[torch.Tensor] = None

    def to(self, device: torch.device) -> "SegmentStates":
        moved = [None if t is None else t.to(device) for t in (self.first, self.second)]
        return SegmentStates(self.every, self.params.to(device), *moved)


@dataclass(frozen=True)
class TrainingRecipe:
    """What fixes a training run besides its data: the initial weights, the settings and the seed. With the same
    data and per-row weights, :func:`train_model` (and :mod:`influence_core.replay`) run it again step for step.
    ``kept_states``: where training kept them, the run's own states every ⌈√T⌉ steps (a record of the run at weights
    1, not part of its recipe: the replay starts its reverse pass from them instead of replaying the run forwards)."""

    initial_state: dict[str, torch.Tensor]
    config: TrainConfig
    seed: int
    kept_states: Optional[SegmentStates] = None


@dataclass
class TrainingDynamics:
    """What every row looked like to the model while it trained, epoch by epoch: ``margins[e, i]`` is row i's
    assigned-label logit minus its largest other logit, and ``losses[e, i]`` its cross-entropy, both from the forward
    pass that trained on it in epoch e (before that step; AUM, Pleiss et al. 2020, and forgetting events, Toneva et
    al. 2019, read them there). Full-batch L-BFGS records once per outer iteration, after it.
    Recorded from logits the step computes anyway, so it costs no second pass."""

    margins: np.ndarray  # (epochs, n) float32
    losses: np.ndarray  # (epochs, n) float32

    @property
    def n_epochs(self) -> int:
        return int(self.margins.shape[0])


class _DynamicsRecorder:
    """Keeps each step's logits (detached: no copy, no kernel) and turns an epoch's into margins and losses at its
    end, in one vectorised pass: per-step work would cost a tiny model's step a fifth of its time."""

    def __init__(self, epochs: int, n: int):
        self.shape = (epochs, n)
        self.margins: Optional[torch.Tensor] = None  # on the logits' device: no host sync per step on a GPU
        self.losses: Optional[torch.Tensor] = None
        self._pending: list[tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]] = []

    def observe(self, rows: Optional[torch.Tensor], logits: torch.Tensor, labels: torch.Tensor) -> None:
        self._pending.append((rows, logits.detach(), labels))

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> None:
        if not self._pending:
            return
        whole = self._pending[0][0] is None
        logits = torch.cat([p[1] for p in self._pending]).float()
        labels = torch.cat([p[2] for p in self._pending])
        rows = None if whole else torch.cat([p[0] for p in self._pending])
        self._pending.clear()
        assigned = logits.gather(1, labels[:, None])[:, 0]
        others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
        if self.margins is None:
            self.margins = torch.zeros(self.shape, device=logits.device)
            self.losses = torch.zeros(self.shape, device=logits.device)
        idx = rows if rows is not None else slice(None)
        self.margins[epoch - 1, idx] = assigned - others
        self.losses[epoch - 1, idx] = torch.logsumexp(logits, 1) - assigned

    def result(self) -> TrainingDynamics:
        if self.margins is None:
            self.margins = self.losses = torch.zeros(self.shape)
        return TrainingDynamics(self.margins.cpu().numpy(), self.losses.cpu().numpy())


@dataclass
class TrainResult:
    model: nn.Module
    checkpoints: list[Checkpoint] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    dynamics: Optional[TrainingDynamics] = None
    kept_states: Optional[SegmentStates] = None


def l2_penalty(model: nn.Module, weight_decay: float) -> torch.Tensor:
    return 0.5 * weight_decay * sum((p**2).sum() for p in model.parameters() if p.requires_grad)


def objective(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    head_l1: float = 0.0,
    head_l2: float = 0.0,
    sample_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Mean cross-entropy plus the L2 penalty (and the head's elastic net when asked): the function training minimises.
    With ``sample_weights`` the cross-entropy is Σ wᵢ ℓᵢ / batch size: a row of weight 0 contributes nothing and the
    rest are weighted as before (all ones is the mean)."""
    return objective_of_logits(model, model(x), y, weight_decay, head_l1, head_l2, sample_weights)


def objective_of_logits(
    model: nn.Module,
    logits: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    head_l1: float = 0.0,
    head_l2: float = 0.0,
    sample_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """:func:`objective` from logits already computed (the training loop reads them for the dynamics too)."""
    if sample_weights is None:
        loss = nn.functional.cross_entropy(logits, y)
    else:
        loss = (sample_weights * nn.functional.cross_entropy(logits, y, reduction="none")).sum() / len(y)
    if weight_decay:
        loss = loss + l2_penalty(model, weight_decay)
    if head_l1 or head_l2:
        w = model.head.weight
        loss = loss + head_l1 * w.abs().sum() + 0.5 * head_l2 * (w**2).sum()
    return loss


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def checkpoint_epochs(epochs: int, n_checkpoints: int, spacing: str = "linear") -> set[int]:
    """Epochs at which checkpoints are saved; the last epoch always is."""
    n = max(1, min(n_checkpoints, epochs))
    if spacing == "log":
        return {int(round(e)) for e in np.geomspace(1, epochs, n)} | {epochs}
    return {int(round(e)) for e in np.linspace(epochs / n, epochs, n)}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
    """Mean loss and accuracy of a model on (x, y)."""
    model.eval()
    losses, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        out = model(x[start : start + batch_size])
        losses += nn.functional.cross_entropy(out, y[start : start + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[start : start + batch_size]).sum().item()
    n = max(len(x), 1)
    return {"loss": losses / n, "accuracy": correct / n}


def fit_lbfgs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    max_iter: int = 500,
    tol: float = 1e-10,
    sample_weights: Optional[torch.Tensor] = None,
) -> nn.Module:
    """Full-batch L-BFGS to (near) the optimum of a convex model; also used for fast warm-started retraining."""
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol * 1e-2,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective(model, x, y, weight_decay, sample_weights=sample_weights)
        loss.backward()
        return loss

    model.train()
    opt.step(closure)
    return model


def lbfgs_ready() -> None:
    """Import what ``torch.optim.LBFGS`` imports when first built (torch._dynamo, 1.5 s once per process), so that a
    timing of :func:`fit_lbfgs` measures the fit, not that import."""
    import torch._dynamo  # noqa: F401


def polished_convex(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float, max_iter: int = 2000) -> nn.Module:
    """A float64 copy of a convex model (logistic regression) taken to its optimum by full-batch L-BFGS: influence
    functions assume an optimum, and float32 training stops where the gradient is still larger than one removal's push."""
    polished = copy.deepcopy(model).double()
    fit_lbfgs(polished, x.double(), y, weight_decay, max_iter=max_iter, tol=1e-12)
    return polished.eval()


def step_learning_rates(cfg: TrainConfig, n: int) -> list[list[float]]:
    """The learning rate of every optimiser step, epoch by epoch, as :func:`train_model` runs them (its schedule
    stepped the same way, over no parameters): what a replay of the run needs."""
    opt = Steps([], cfg.lr, 0.0)
    batch = cfg.batch_size if 0 < cfg.batch_size < n else n
    steps = -(-n // batch)
    schedule, per_step = _schedule(cfg, opt, steps)
    rates = []
    for _ in range(cfg.epochs):
        epoch = []
        for _ in range(steps):
            epoch.append(opt.param_groups[0]["lr"])
            if per_step:
                schedule.step()
        rates.append(epoch)
        if schedule is not None and not per_step:
            schedule.step()
    return rates


def _schedule(cfg: TrainConfig, opt: Steps, steps: int) -> tuple[Optional[CosineSchedule], bool]:
    per_step = cfg.lr_schedule == "cosine_per_step"
    return schedule_for(cfg.lr_schedule, opt, cfg.epochs * steps if per_step else cfg.epochs), per_step


def batch_orders(n: int, batch: int, epochs: int, seed: int, device=None):
    """The rows of every mini-batch, epoch by epoch (None: the full batch), from the run's seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device) if batch < n else None
        yield [order[start : start + batch] if order is not None else None for start in range(0, n, batch)]


def replay_segment(n_steps: int) -> int:
    """Steps between the states a replay's reverse pass starts from: ⌈√T⌉ keeps √T states and one √T-step graph in
    memory (REPLAY's checkpointing, one level)."""
    return max(1, math.ceil(math.sqrt(n_steps)))


# training keeps those states only while they are small (a large model's run would write gigabytes into the cache for
# a method that may never be asked; exact attribution then replays the run forwards to find them)
MAX_KEPT_STATE_BYTES = 64 * 2**20


class _SegmentStateKeeper:
    """Copies θ, and Adam's moments from the optimiser's own state, before every ``every``-th step and after the last
    (between steps: the run itself is untouched)."""

    def __init__(self, params: list[torch.Tensor], opt: Steps, every: int, adam: bool):
        self.params, self.opt, self.every, self.adam = params, opt, every, adam
        self.rows: list[list[torch.Tensor]] = []

    @staticmethod
    def fits(params: list[torch.Tensor], n_steps: int, adam: bool) -> bool:
        states = -(-n_steps // replay_segment(n_steps)) + 1
        return states * sum(p.numel() * p.element_size() for p in params) * (3 if adam else 1) <= MAX_KEPT_STATE_BYTES

    @torch.no_grad()
    def keep(self) -> None:
        row = [torch.cat([p.detach().reshape(-1) for p in self.params])]
        for key in ("exp_avg", "exp_avg_sq") if self.adam else ():
            row.append(torch.cat([self._moment(p, key).reshape(-1) for p in self.params]))
        self.rows.append(row)

    def _moment(self, p: torch.Tensor, key: str) -> torch.Tensor:
        state = self.opt.state.get(p)  # empty before Adam's first step: the moments start at 0
        return state[key] if state else torch.zeros_like(p)

    def result(self) -> SegmentStates:
        return SegmentStates(self.every, *(torch.stack(column) for column in zip(*self.rows)))


def _optimiser(cfg: TrainConfig, params: list[torch.Tensor]) -> Steps:
    """SGD or Adam over ``params``, with the objective's L2 term as the optimiser's (coupled) weight decay: it adds
    wd·θ to each gradient, exactly the gradient of (wd/2)‖θ‖², without the penalty's dozens of small nodes in every
    backward. Adam takes its fused kernel where torch has one for these tensors. Together: 1.5x faster steps on the
    Region cuts surrogate (4 × 64 ReLU, batch 1,024; same weights to 1e-7 after 50 steps). torch.optim's functional
    kernels (:mod:`influence_core.optimisers`): its classes import torch._dynamo, seconds of a cold view."""
    return optimiser_for(cfg.optimizer, params, cfg.lr, cfg.weight_decay)


# A CPU training step below this many floating-point operations (forward and backward, one mini-batch) runs on one
# torch thread. Its ops take microseconds, and on two threads each op waits for the other: with another job on the
# second core the Label bias CNN on 252 digits took 23-116 s on two threads and 4.3 s on one, the Region cuts surrogate
# 113 s against 4.2 s (benchmarks/README.md, ui_latency). Idle, one thread costs these models little; the same
# training then also sums in the same order on any core count, so a retrain reproduces the cold view's model.
ONE_THREAD_STEP_FLOPS = 4e8


def step_flops(model: nn.Module, x: torch.Tensor, batch: int) -> float:
    """Floating-point operations of one training step: 3 × the forward pass (forward, and a backward of about twice
    it) of ``batch`` rows, counted on the model's Linear and Conv2d layers (``resources.ModelProfile``)."""
    from influence_core.resources import ModelProfile

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return 3.0 * batch * ModelProfile.of(model, tuple(x.shape[1:]), names).forward_flops_per_sample


def threads_for_training(model: nn.Module, x: torch.Tensor, batch: int):
    """One torch thread for a small model's training on the CPU (``ONE_THREAD_STEP_FLOPS``), given back after; large
    steps and any GPU keep torch's own setting."""
    from influence_core.resources import compute_threads

    small = x.device.type == "cpu" and step_flops(model, x, batch) <= ONE_THREAD_STEP_FLOPS
    return compute_threads(1 if small else None)


def train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    seed: int,
    progress: ProgressFn = silent,
    sample_weights: Optional[torch.Tensor] = None,
    record_dynamics: bool = True,
    keep_segment_states: bool = False,
) -> TrainResult:
    """Train ``model`` in place on (x, y) and return it with checkpoints and a loss history.

    ``sample_weights`` (one per row, default all 1) weight each row's loss; every random choice (initial weights,
    batch order) depends on the seed alone, so zeroing a set of rows replays the same run without them: the same
    batches, in which those rows contribute nothing (the single-model counterfactual of exact attribution). A small
    model trains on one CPU thread (:func:`threads_for_training`). ``keep_segment_states``: also keep the states exact
    attribution's reverse pass starts from (:class:`SegmentStates`; SGD and Adam runs, up to ``MAX_KEPT_STATE_BYTES``)."""
    batch = cfg.batch_size if 0 < cfg.batch_size < len(x) else len(x)
    with threads_for_training(model, x, batch):
        return _train_model(model, x, y, cfg, seed, progress, sample_weights, record_dynamics, keep_segment_states)


def _train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    seed: int,
    progress: ProgressFn,
    sample_weights: Optional[torch.Tensor],
    record_dynamics: bool,
    keep_segment_states: bool,
) -> TrainResult:
    torch.manual_seed(seed)
    result = TrainResult(model=model)
    recorder = _DynamicsRecorder(cfg.epochs, len(x)) if record_dynamics else None
    if cfg.optimizer == "lbfgs":
        # L-BFGS in "epochs" of a bounded number of iterations, so checkpoints exist along the way
        keep = checkpoint_epochs(cfg.epochs, cfg.n_checkpoints, cfg.checkpoint_spacing)
        for epoch in range(1, cfg.epochs + 1):
            fit_lbfgs(model, x, y, cfg.weight_decay, max_iter=20, sample_weights=sample_weights)
            if recorder is not None:
                with torch.no_grad():
                    recorder.observe(None, model(x), y)
                recorder.end_epoch(epoch)
            if epoch in keep:
                result.checkpoints.append(Checkpoint(epoch, cfg.lr, _snapshot(model)))
                result.history.append({"epoch": epoch, **evaluate(model, x, y)})
            progress(epoch / cfg.epochs, f"training (L-BFGS) step {epoch}/{cfg.epochs}")
        result.dynamics = recorder.result() if recorder is not None else None
        return result

    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimiser(cfg, params)
    n = len(x)
    batch = cfg.batch_size if 0 < cfg.batch_size < n else n
    keep = checkpoint_epochs(cfg.epochs, cfg.n_checkpoints, cfg.checkpoint_spacing)
    steps = -(-n // batch)
    schedule, per_step = _schedule(cfg, opt, steps)
    adam, n_steps = cfg.optimizer == "adam", cfg.epochs * steps
    keeper = None
    if keep_segment_states and _SegmentStateKeeper.fits(params, n_steps, adam):
        keeper = _SegmentStateKeeper(params, opt, replay_segment(n_steps), adam)
    index = 0
    for epoch, batches in enumerate(batch_orders(n, batch, cfg.epochs, seed, x.device), start=1):
        epoch_lr = opt.param_groups[0]["lr"]  # the rate this epoch's steps used (TracIn weights by it)
        model.train()
        for rows in batches:
            if keeper is not None and index % keeper.every == 0:
                keeper.keep()
            index += 1
            idx = rows if rows is not None else slice(None)
            opt.zero_grad()
            weights = sample_weights[idx] if sample_weights is not None else None
            logits = model(x[idx])
            if recorder is not None:
                recorder.observe(rows, logits, y[idx])
            loss = objective_of_logits(model, logits, y[idx], 0.0, cfg.head_l1, cfg.head_l2, weights)  # L2: in the optimiser
            loss.backward()
            opt.step()
            if per_step:
                schedule.step()
        if recorder is not None:
            recorder.end_epoch(epoch)
        if epoch in keep:
            result.checkpoints.append(Checkpoint(epoch, epoch_lr, _snapshot(model)))
            result.history.append({"epoch": epoch, **evaluate(model, x, y)})
        if schedule is not None and not per_step:
            schedule.step()
        progress(epoch / cfg.epochs, f"training epoch {epoch}/{cfg.epochs}")
    model.eval()
    result.dynamics = recorder.result() if recorder is not None else None
    if keeper is not None:
        keeper.keep()  # the trained model: the measurement's gradient is taken there
        result.kept_states = keeper.result()
    return result


def model_at(model: nn.Module, checkpoint: Checkpoint) -> nn.Module:
    """A copy of ``model`` with a checkpoint's weights loaded (the original is untouched)."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(checkpoint.state)
    return clone.eval()
