"""Exact attribution: the metagradient τᵢ = ∂f(θ_T(w))/∂wᵢ of a measurement through the recorded training run
(MAGIC, Ilyas & Engstrom 2025), randomness fixed: "this run, with row i weighted a little less".

Scores are N·τᵢ, on the influence function's scale: removing row i changes f by about −score / N (to first order in
its weight; exactly so for small sets, as the tests check against replayed retrains). Reverse-mode through every
step (:mod:`influence_core.replay`), √T memory, several measurements per reverse pass. A run trained to its optimum
by L-BFGS (logistic regression) is not replayed: there the metagradient is the implicit-function derivative
−∇fᵀH⁻¹∇ℓᵢ / N, which the exact-Hessian influence function computes without damping, and the note says so.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np
import torch

from influence_core import replay
from influence_core.errors import InputError
from influence_core.knobs import Knob
from influence_core.measurements import Measurement, PerSampleLoss
from influence_core.methods.base import AttributionContext, Attributor
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.tasks import Task
from influence_core.text import plural
from influence_core.timing import estimate_text

# self-scores take one reverse pass per batch of training rows: past this many rows they are refused, with the reason
MAX_SELF_ROWS = 4096
# steps timed for the estimate said as scoring starts: a whole segment was a tenth of a training run on Label bias's
# CNN (a twelfth of its one-measurement pass), for a message
ESTIMATE_STEPS = 4


class ExactAttribution(Attributor):
    name = "metagradient"
    label = "exact attribution (metagradient through training)"
    short_label = "exact (replay)"
    predicts_loss_change = True
    exact_for_the_run = True
    replays_training = True
    # the self-score is a measured effect, −N ∂ℓᵢ(θ_T)/∂wᵢ: Adam's normalisation and a non-convex loss can make it
    # negative (weighting a row up can raise its own final loss), where a quadratic form cannot be
    self_scores_nonnegative = False
    trim_by_default = False  # a reverse pass per measurement: not one of the Hessian-free paper's cheap scores
    knobs = {
        "queries_per_pass": Knob("measurements sharing one reverse pass (at run time: as many as the memory budget allows)", None, int, 1)
    }

    @classmethod
    def unavailable_reason(cls, context: AttributionContext) -> Optional[str]:
        if context.training is not None and context.training.config.optimizer == "lbfgs":
            return None  # the implicit-function form at the optimum
        return replay.unsupported_reason(context.model, context.training)

    def fit(self, progress: ProgressFn = silent) -> "ExactAttribution":
        c = self.context
        self.implicit = None
        if c.training is not None and c.training.config.optimizer == "lbfgs":
            from influence_core.methods.influence_functions import InfluenceFunction

            names = [n for n, p in c.model.named_parameters() if p.requires_grad]
            exact = dataclasses.replace(c, curvature="exact", damping=0.0, param_names=names)
            self.implicit = InfluenceFunction(exact).fit(progress)
            self.note = (
                "trained to its optimum by L-BFGS: the metagradient there is the implicit-function derivative "
                "−∇fᵀH⁻¹∇ℓᵢ/N, computed with the exact Hessian and no damping"
            )
            return self
        start = time.perf_counter()
        self.replay = replay.Replay(c.model, c.training, c.x_train, c.y_train, c.task)
        steps = len(self.replay.steps)
        recorded = self.replay.recorded_run()  # the states training kept: no forward replay
        if recorded is None:
            progress(0.0, f"replaying the training run forwards ({steps} steps)")
            self.final_state, self.kept = self.replay.run(keep=True)
            how = f"replayed {steps} steps ({time.perf_counter() - start:.1f} s)"
        else:
            self.final_state, self.kept = recorded
            how = f"{steps} steps, from the states training kept"
        self.final_model = self.replay.final_model(self.final_state)
        final = self.replay.unflatten(self.final_state.params[0])
        drift = max(float((final[n] - c.model.get_parameter(n).detach()).abs().max()) for n in self.replay.names)
        self.note = f"{how}, checkpoints every {self.replay.segment}; largest weight difference from the trained model {drift:.1e}"
        progress(1.0, "replayed")
        return self

    @property
    def param_names(self) -> list[str]:
        return [n for n, p in self.context.model.named_parameters() if p.requires_grad]  # every weight is trained

    def queries_per_pass(self, n_queries: int) -> int:
        """Measurements per reverse pass: the knob, else as many as the memory budget allows (at least one)."""
        from influence_core.resources import format_bytes, memory_budget

        fixed = self.context.options.get("queries_per_pass")
        if fixed:
            return max(1, min(int(fixed), n_queries))
        budget = memory_budget(self.context.x_train.device)
        if self.replay.estimate_bytes(1) > budget:
            raise InputError(
                f"one reverse pass through this run needs about {format_bytes(self.replay.estimate_bytes(1))}, over the memory "
                f"budget of {format_bytes(budget)}: train for fewer steps (epochs or a larger batch), or use TRAK or an "
                "influence function"
            )
        k = n_queries
        while k > 1 and self.replay.estimate_bytes(k) > budget:
            k //= 2
        return k

    def estimate_seconds(self, n_queries: int, repeats: int = 3, steps: Optional[int] = None) -> float:
        """Wall time of scoring ``n_queries`` measurements: reverse passes × steps × one step timed here (a short
        segment, or its first ``steps``, recomputed and pulled back with as many queries as a pass takes)."""
        if self.implicit is not None:
            return 0.0
        per_pass = self.queries_per_pass(n_queries)
        passes = -(-n_queries // per_pass)
        return passes * len(self.replay.steps) * self.replay.time_step(per_pass, repeats, steps)

    def scores(self, measurement: Measurement, train_task: Optional[Task] = None, progress: ProgressFn = silent) -> np.ndarray:
        """N·∂f/∂wᵢ; with a ``train_task`` g other than the run's loss, N·∂f/∂εᵢ of the run trained with εᵢ·gᵢ added to
        row i's loss (:meth:`Replay.metagradient`): what an influence function's −∇fᵀH⁻¹∇gᵢ approximates (flip sets'
        margin kernel)."""
        perturbation = None if train_task is None or train_task is self.context.task else train_task
        if self.implicit is not None:
            return self.implicit.scores(measurement, train_task=perturbation, progress=progress)
        cotangents = measurement.query_gradients(self.final_model, self.replay.names).detach()
        k, n = len(cotangents), len(self.context.y_train)
        per_pass = self.queries_per_pass(k)
        estimate = self.estimate_seconds(k, repeats=1, steps=ESTIMATE_STEPS)
        progress(
            0.0,
            f"exact attribution: {plural(-(-k // per_pass), 'reverse pass', 'reverse passes')} through {len(self.replay.steps)} steps, "
            f"{estimate_text(estimate)}",
        )
        out = np.zeros((k, n))
        for lo in range(0, k, per_pass):
            hi = min(k, lo + per_pass)
            step = scaled(progress, lo / k, hi / k)
            out[lo:hi] = self.replay.metagradient(cotangents[lo:hi], self.kept, step, perturbation).cpu().numpy()
        return n * out

    def self_scores(self, progress: ProgressFn = silent) -> np.ndarray:
        c = self.context
        n = len(c.y_train)
        if self.implicit is not None:
            return self.implicit.self_scores(progress)
        if n > MAX_SELF_ROWS:
            raise InputError(
                f"exact self-scores take one reverse pass per training row ({n:,} here, more than {MAX_SELF_ROWS:,}): score "
                "held-out measurements with it, and take self-scores from TRAK or an influence function"
            )
        on_itself = self.scores(PerSampleLoss(c.x_train, c.y_train, c.task), progress=progress)
        return -np.diag(on_itself).copy()

    def on_training_rows(self, x: torch.Tensor, y: torch.Tensor) -> "ExactAttribution":
        raise InputError(
            "exact attribution scores the rows the run was trained on; a relabelled row was never in the run (the glitch "
            "signals' counterfactuals need TracIn, IP or an influence function)"
        )
