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

# Where a low-rank E is cut: singular values below this share of the largest are dropped, an error under float32's
# rounding of the same product (KFAC on the MNIST MLP 784-128-10: rank 9 of 128 × 784).
LOW_RANK_TOLERANCE = 1e-7


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

    def apply(self, part: torch.Tensor) -> torch.Tensor:
        """(k, size) rows of this block → H⁻¹ of them: Q_out [(Q_outᵀ G Q_in) ∘ E] Q_inᵀ."""
        part = part.to(self.q_out.dtype)
        if self.q_in is None:
            return ((part @ self.q_out) * self.inverse_eigenvalues) @ self.q_out.T
        m = part.reshape(len(part), self.q_out.shape[0], self.q_in.shape[0])
        return (self.q_out @ ((self.q_out.T @ m @ self.q_in) * self.inverse_eigenvalues) @ self.q_in.T).reshape(len(part), -1)

    def low_rank(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """E ≈ U Vᵀ (U: out × R with the singular values folded in, V: in × R), truncated where the singular values
        fall below ``LOW_RANK_TOLERANCE`` of the largest, or None when that rank saves less than half the work
        (R (out + in) > out · in / 2). Computed once."""
        if "_low_rank" not in self.__dict__:
            e = self.inverse_eigenvalues.double()
            u, sv, vh = torch.linalg.svd(e, full_matrices=False)
            rank = int((sv > LOW_RANK_TOLERANCE * sv[0]).sum()) if len(sv) else 0
            cheap = 0 < rank and rank * sum(e.shape) <= e.numel() / 2
            dtype = self.q_out.dtype
            self.__dict__["_low_rank"] = ((u[:, :rank] * sv[:rank]).to(dtype), vh[:rank].T.to(dtype)) if cheap else None
        return self.__dict__["_low_rank"]

    def precondition(self, block):
        """H⁻¹ of one block of :class:`~influence_core.factored.FactoredRows`: outer products stay outer products where
        that is exact (a bias; a weight whose E is of low rank, to ``LOW_RANK_TOLERANCE``); an outer product under a
        full-rank E is formed in the eigenbasis (:class:`~influence_core.factored.InBasis`: not rotated back, half the
        work of :meth:`apply`); formed blocks get :meth:`apply`."""
        from influence_core.factored import InBasis, Outer, dense_block

        if isinstance(block, Outer):
            dtype, q_out = block.out.dtype, self.q_out
            g = block.out.to(q_out.dtype) @ q_out  # (k, r, out) in the eigenbasis
            if self.q_in is None:
                return Outer(((g * self.inverse_eigenvalues) @ q_out.T).to(dtype), block.inp)
            a = block.inp.to(q_out.dtype) @ self.q_in
            k = len(g)
            low = self.low_rank()
            if low is not None and block.rank * low[0].shape[1] * (len(low[0]) + len(low[1])) <= self.size / 2:
                u, v = low
                out = (g.unsqueeze(2) * u.T) @ q_out.T  # (k, r, R, out): each query factor times each term of E
                inp = (a.unsqueeze(2) * v.T) @ self.q_in.T
                return Outer(out.reshape(k, -1, out.shape[-1]).to(dtype), inp.reshape(k, -1, inp.shape[-1]).to(dtype))
            m = torch.einsum("kro,kri->koi", g, a) * self.inverse_eigenvalues
            return InBasis(m.reshape(k, -1).to(dtype), q_out, self.q_in)
        formed = dense_block(block)
        return self.apply(formed).to(formed.dtype)


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
        """(k, p) rows → (k, p) rows of H⁻¹ g, one block at a time."""
        out, start = torch.empty_like(grads), 0
        for b in self.blocks:
            out[:, start : start + b.size] = b.apply(grads[:, start : start + b.size]).to(grads.dtype)
            start += b.size
        return out

    def precondition_factors(self, rows):
        from influence_core.factored import FactoredRows

        by_name = {b.name: b for b in self.blocks}
        return FactoredRows({name: by_name[name].precondition(block) for name, block in rows.blocks.items()})


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
    """curvlinops' KFAC or EK-FAC inverse (``KFACInverseLinearOperator`` over ``KFACLinearOperator`` or
    ``EKFACLinearOperator``, exact damping, weight and bias apart) as blocks: the library's own eigendecompositions and
    damped inverse eigenvalues (KFAC: 1 / (λ_G λ_Aᵀ + δ); EK-FAC: 1 / (e + δ)), computed once and shared with its product."""
    from curvlinops import EKFACLinearOperator

    operator = inverse._A
    if isinstance(operator, EKFACLinearOperator):
        if not operator.state_dict()["corrected_eigenvalues"]:
            operator.compute_kronecker_factors()
            operator.compute_eigenvalue_correction()
    elif not (operator._input_covariances or operator._gradient_covariances):
        operator.compute_kronecker_factors()
    found: dict[int, EigenBlock] = {}
    for module_name, positions in operator._mapping.items():
        q_in, q_out, inverse_eigenvalues = inverse._compute_or_get_cached_inverse(module_name)
        if not isinstance(inverse_eigenvalues, dict):
            raise ValueError("a Kronecker factorisation with weight and bias joined is not supported by the fused path")
        for attr, pos in positions.items():
            found[pos] = EigenBlock(names[pos], q_out, q_in if attr == "weight" else None, inverse_eigenvalues[pos])
    blocks = [found[i] for i in range(len(names))]
    return KroneckerEigenbasis(blocks, {n: param_sizes[n] for n in names})


class EigenbasisCurvature(Curvature):
    """A curvature whose inverse is a :class:`KroneckerEigenbasis`: fused self-influence, factor-wise products."""

    @abstractmethod
    def eigenbasis(self) -> KroneckerEigenbasis:
        """The fitted inverse as one eigenbasis block per parameter."""

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return self.eigenbasis().inverse_hvp(grads)

    def precondition_factors(self, rows):
        return self.eigenbasis().precondition_factors(rows)

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
