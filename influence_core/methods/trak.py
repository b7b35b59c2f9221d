"""TRAK (Park et al. 2023): influence in a random projection of the per-sample gradients of the correct-class
margin, with the kernel of the projected training features, averaged over an ensemble of models.

    φᵢ = Pᵀ ∇f(zᵢ) (k dims, P a seeded Gaussian p × k / √k),  Qᵢ = 1 − p(yᵢ | xᵢ),  K = (ΦᵀΦ / n + λI)⁻¹
    score(zᵢ, query) = (Pᵀ ∇f_query)ᵀ K φᵢ Qᵢ         (+ = harmful, the house convention; λ = weight decay + damping)

For two classes ∇ℓᵢ = −Qᵢ ∇fᵢ exactly, so this is the influence function with the GGN replaced by the projected
features' second moment; the mean (not TRAK's sum) keeps it on the same scale as the other methods (−score / n
≈ the change of the measured loss on removal). Ensemble members are the last ``ensemble`` checkpoints of the run.
The projection is generated block by block from the seed (never a whole p × k matrix), on the model's device; the
training features are kept, so a new query costs one projection.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from influence_core.distributed import over_rows
from influence_core.errors import InputError
from influence_core.gradients import iter_per_sample_grads
from influence_core.knobs import Knob
from influence_core.measurements import Measurement
from influence_core.methods.base import Attributor, model_chunk_rows
from influence_core.progress import ProgressFn, scaled, silent
from influence_core.tasks import CORRECT_CLASS_MARGIN, Task
from influence_core.text import plural
from influence_core.training import model_at

PROJECTION_DIM, PROJECTION_BLOCK = 512, 4096


class RandomProjection:
    """x ↦ x P with P (p × k) ~ N(0, 1/k), generated in blocks of parameter rows from (seed, block): deterministic."""

    def __init__(self, n_params: int, dim: int, seed: int, device: torch.device, block: int = PROJECTION_BLOCK):
        self.n_params, self.dim, self.seed, self.device, self.block = n_params, dim, seed, device, block

    def _block(self, index: int, rows: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return (torch.randn(rows, self.dim, generator=generator, dtype=torch.float64) / self.dim**0.5).to(self.device, dtype)

    def __call__(self, grads: torch.Tensor) -> torch.Tensor:
        """In the gradients' precision (a float64 model keeps float64 features: the kernel is ill-conditioned)."""
        out = torch.zeros(len(grads), self.dim, device=grads.device, dtype=grads.dtype)
        for index, start in enumerate(range(0, self.n_params, self.block)):
            part = grads[:, start : start + self.block]
            out += part @ self._block(index, part.shape[1], grads.dtype)
        return out


def projected_features(x, y, progress: ProgressFn, model, projection, names, backend: str, task: Task) -> torch.Tensor:
    """Per-sample gradients of ``task`` at ``model``, projected: (n, k) training features, streamed in chunks."""
    chunk = model_chunk_rows(model, names, tuple(x.shape[1:]))
    rows = [projection(g) for _, g in iter_per_sample_grads(model, x, y, names, chunk, backend, progress, task)]
    return torch.cat(rows) if rows else torch.zeros(0, projection.dim, device=x.device)


class Trak(Attributor):
    name = "trak"
    label = "TRAK (random projections)"
    short_label = "TRAK"
    predicts_loss_change = True  # the influence function with a projected GGN: its scores are on the loss scale
    trim_by_default = False  # not in the Hessian-free paper's trim study
    knobs = {
        "projection_dim": Knob("k, the projected dimension", PROJECTION_DIM, int, 1, 1 << 16),
        "ensemble": Knob("models averaged: the run's last checkpoints (1: the trained model)", 1, int, 1, 100),
    }

    def fit(self, progress: ProgressFn = silent) -> "Trak":
        c = self.context
        self.dim = int(c.options.get("projection_dim", PROJECTION_DIM))
        size = int(c.options.get("ensemble", 1))
        if self.dim < 1 or size < 1:
            raise InputError(f"TRAK needs projection_dim ≥ 1 and ensemble ≥ 1, got {self.dim} and {size}")
        if size > 1 and len(c.checkpoints) < size:
            raise InputError(f"a TRAK ensemble of {size} needs {size} saved checkpoints; the run kept {len(c.checkpoints)}")
        members = [c.model] if size == 1 else [model_at(c.model, ck) for ck in list(c.checkpoints)[-size:]]
        names = self.param_names
        n_params = sum(p.numel() for n, p in c.model.named_parameters() if n in set(names))
        self.members = []
        for m, model in enumerate(members):
            step = scaled(progress, m / len(members), (m + 1) / len(members))
            projection = RandomProjection(n_params, self.dim, c.seed + 7919 * m, c.x_train.device)
            features = self._project(model, projection, c.x_train, c.y_train, CORRECT_CLASS_MARGIN, step)
            with torch.no_grad():
                probs = torch.softmax(torch.cat([model(c.x_train[i : i + 4096]) for i in range(0, len(c.x_train), 4096)]), 1)
            q = 1.0 - probs.gather(1, c.y_train[:, None]).squeeze(1).to(features.dtype)
            moment = features.T.double() @ features.double() / len(features)
            shift = c.weight_decay + c.damping
            kernel = (
                torch.linalg.pinv(moment, hermitian=True)
                if shift == 0
                else torch.linalg.inv(moment + shift * torch.eye(self.dim, dtype=torch.float64, device=moment.device))
            )
            self.members.append((model, projection, features, q, kernel.to(features.dtype)))
        self.note = f"TRAK: k = {self.dim}, {plural(len(self.members), 'model')}"
        return self

    def _project(self, model, projection, x, y, task: Task, progress: ProgressFn) -> torch.Tensor:
        # chunks of the rows on the Dask workers when there is a cluster (the model and the projection's seed sent once)
        kwargs = dict(model=model, projection=projection, names=self.param_names, backend=self.context.backend, task=task)
        return over_rows(projected_features, x, y, 0, progress, rows=None, message="TRAK features", **kwargs)

    def _member_scores(self, member, queries: torch.Tensor, train_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        _, projection, features, q, kernel = member
        features = features if train_features is None else train_features
        return (projection(queries) @ kernel) @ features.T * q[None, :]

    def scores(self, measurement: Measurement, train_task: Optional[Task] = None, progress: ProgressFn = silent) -> np.ndarray:
        if train_task is not None and train_task.name != self.context.task.name:
            raise InputError("TRAK's training features are of the correct-class margin; it scores the training loss only")
        total = None
        for model, *rest in self.members:
            part = self._member_scores((model, *rest), measurement.query_gradients(model, self.param_names))
            total = part if total is None else total + part
        return (total / len(self.members)).detach().cpu().numpy()

    def self_scores(self, progress: ProgressFn = silent) -> np.ndarray:
        """−score of each training point on its own loss (≥ 0 for two classes: Qᵢ² φᵢᵀ K φᵢ)."""
        c = self.context
        total = None
        for m, (model, projection, features, q, kernel) in enumerate(self.members):
            step = scaled(progress, m / len(self.members), (m + 1) / len(self.members))
            own = self._project(model, projection, c.x_train, c.y_train, c.task, step)
            part = -((own @ kernel) * features).sum(1) * q
            total = part if total is None else total + part
        return (total / len(self.members)).detach().cpu().numpy()

    def on_training_rows(self, x: torch.Tensor, y: torch.Tensor) -> "Trak":
        """Other training rows against the same kernel (their own features and Q)."""
        clone = super().on_training_rows(x, y)
        members = []
        for model, projection, _, _, kernel in self.members:
            features = self._project(model, projection, x, y, CORRECT_CLASS_MARGIN, silent)
            with torch.no_grad():
                q = 1.0 - torch.softmax(model(x), 1).gather(1, y[:, None]).squeeze(1).to(features.dtype)
            members.append((model, projection, features, q, kernel))
        clone.members = members
        return clone
