"""Kronecker eigenbases (KFAC, EK-FAC): the fused scoring path, factor-wise per layer, never a p × p matrix.

Both Kronecker-factored curvatures invert, parameter by parameter, in the eigenbasis of their factors: a weight
W (out × in) has H⁻¹ vec(W) = vec(Q_out [(Q_outᵀ W Q_in) ∘ E] Q_inᵀ), with E the inverse of the damped
eigenvalues (KFAC: 1 / (λ_out λ_inᵀ + δ); EK-FAC: the refitted ones, 1 / (e + δ)); a bias has only Q_out.
So a self-influence gᵀ H⁻¹ g is Σ_j E_j (Rg)_j², a weighted squared norm of the rotated gradient, and a Linear
layer's per-sample gradient is an outer product g aᵀ whose rotation is (g Q_out)(a Q_in)ᵀ: the gradient engine
(:func:`influence_core.gradients.per_sample_grad_sq_norms` with ``rotations``) never forms its rows.

Each backend only says what its basis is (:meth:`EigenbasisCurvature.eigenbasis`); the rest is written here once.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from influence_core.curvatures.base import Curvature
from influence_core.progress import ProgressFn, silent
from influence_core.tasks import CROSS_ENTROPY, Task


@dataclass
class EigenBlock:
    """One parameter's block of H⁻¹: Q_out (out × out), Q_in (in × in; None for a bias), inverse eigenvalues."""

    name: str
    q_out: torch.Tensor
    q_in: Optional[torch.Tensor]
    inverse_eigenvalues: torch.Tensor  # (out, in) for a weight, (out,) for a bias

    @property
    def size(self) -> int:
        return self.inverse_eigenvalues.numel()


class KroneckerEigenbasis:
    """H⁻¹ as one :class:`EigenBlock` per parameter, in the gradient rows' column order."""

    def __init__(self, blocks: Sequence[EigenBlock], param_sizes: dict[str, int]):
        self.blocks = list(blocks)
        got = [(b.name, b.size) for b in self.blocks]
        expected = list(param_sizes.items())
        if got != expected:
            raise ValueError(f"the Kronecker blocks {got} do not match the parameters {expected}")

    @property
    def rotations(self) -> dict[str, tuple[torch.Tensor, Optional[torch.Tensor]]]:
        return {b.name: (b.q_out, b.q_in) for b in self.blocks}

    @property
    def weights(self) -> torch.Tensor:
        """The inverse eigenvalues flattened in column order: gᵀ H⁻¹ g = Σ_j weights_j (Rg)_j²."""
        return torch.cat([b.inverse_eigenvalues.reshape(-1) for b in self.blocks])

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        """(k, p) rows → (k, p) rows of H⁻¹ g, one block at a time: Q_out [(Q_outᵀ G Q_in) ∘ E] Q_inᵀ."""
        out, start = torch.empty_like(grads), 0
        for b in self.blocks:
            part = grads[:, start : start + b.size].to(b.q_out.dtype)
            if b.q_in is None:
                res = ((part @ b.q_out) * b.inverse_eigenvalues) @ b.q_out.T
            else:
                m = part.reshape(len(grads), b.q_out.shape[0], b.q_in.shape[0])
                res = b.q_out @ ((b.q_out.T @ m @ b.q_in) * b.inverse_eigenvalues) @ b.q_in.T
            out[:, start : start + b.size] = res.reshape(len(grads), -1).to(grads.dtype)
            start += b.size
        return out


def laplace_eigenbasis(precision, n_train: int, names: Sequence[str], param_sizes: dict[str, int]) -> KroneckerEigenbasis:
    """laplace-torch's ``KronDecomposed`` (the summed GGN + prior, one block per parameter) as H⁻¹ of the mean."""
    blocks = []
    for name, qs, ls, delta in zip(names, precision.eigenvectors, precision.eigenvalues, precision.deltas):
        if len(qs) == 1:
            blocks.append(EigenBlock(name, qs[0], None, n_train / (ls[0] + delta)))
            continue
        l_out, l_in = ls
        if precision.damping:
            grid = torch.outer(l_out + delta.sqrt(), l_in + delta.sqrt())
        else:
            grid = torch.outer(l_out, l_in) + delta
        blocks.append(EigenBlock(name, qs[0], qs[1], n_train / grid))
    return KroneckerEigenbasis(blocks, {n: param_sizes[n] for n in names})


def curvlinops_eigenbasis(inverse, names: Sequence[str], param_sizes: dict[str, int]) -> KroneckerEigenbasis:
    """curvlinops' EK-FAC inverse (``KFACInverseLinearOperator`` over ``EKFACLinearOperator``, exact damping) as blocks."""
    operator = inverse._A
    state = operator.state_dict()
    if not state["corrected_eigenvalues"]:
        operator.compute_kronecker_factors()
        operator.compute_eigenvalue_correction()
        state = operator.state_dict()
    damping = inverse._damping
    found: dict[int, EigenBlock] = {}
    for module_name, positions in operator._mapping.items():
        q_in = state["input_covariances_eigenvectors"].get(module_name)
        q_out = state["gradient_covariances_eigenvectors"][module_name]
        eigenvalues = state["corrected_eigenvalues"][module_name]
        if not isinstance(eigenvalues, dict):
            raise ValueError("EK-FAC with weight and bias joined is not supported by the fused path")
        for attr, pos in positions.items():
            found[pos] = EigenBlock(names[pos], q_out, q_in if attr == "weight" else None, 1.0 / (eigenvalues[pos] + damping))
    blocks = [found[i] for i in range(len(names))]
    return KroneckerEigenbasis(blocks, {n: param_sizes[n] for n in names})


class EigenbasisCurvature(Curvature):
    """A curvature whose inverse is a :class:`KroneckerEigenbasis`: fused self-influence, factor-wise products."""

    @abstractmethod
    def eigenbasis(self) -> KroneckerEigenbasis:
        """The fitted inverse as one eigenbasis block per parameter."""

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return self.eigenbasis().inverse_hvp(grads)

    def __getstate__(self) -> dict:
        """Sent to a Dask worker without the library's operator (it holds the model, the data and the factors twice over):
        the eigenbasis is all that scoring needs."""
        state = dict(self.__dict__)
        for name in ("_inverse", "_precision"):
            state.pop(name, None)
        return state

    def quadratic_form(self, grads: torch.Tensor) -> torch.Tensor:
        from influence_core.gradients import rotate_rows

        basis = self.eigenbasis()
        cols, start = {}, 0
        for b in basis.blocks:
            cols[b.name], start = slice(start, start + b.size), start + b.size
        rotated = rotate_rows(grads.clone(), cols, basis.rotations)
        return rotated.square() @ basis.weights.to(rotated.dtype)

    def self_influence(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        chunk_size: int = 2048,
        backend: str = "auto",
        progress: ProgressFn = silent,
        task: Task = CROSS_ENTROPY,
    ) -> torch.Tensor:
        from influence_core.gradients import per_sample_grad_sq_norms

        basis = self.eigenbasis()
        return per_sample_grad_sq_norms(
            model, x, y, self.param_names, basis.weights, chunk_size, backend, progress, task, rotations=basis.rotations
        )
