"""Gradient rows kept as outer products where a layer allows it, and the pairwise scores taken on them.

A Linear layer on (batch, features) inputs has the per-sample weight gradient g aᵀ (g: the loss gradient at its
output, a: its input), so two samples' gradients have the inner product (g·g′)(a·a′): d_out + d_in
multiplications per pair instead of d_out·d_in, and neither row is ever formed. A preconditioned query keeps that
form under the Kronecker curvatures (:mod:`influence_core.curvatures.eigenbasis`): in their eigenbasis it is
(ĝ âᵀ) ∘ E, and KFAC's E (the inverse damped eigenvalues 1 / (λ_out λ_inᵀ + δ)) is numerically of low rank, so the
query stays a short sum of outer products. EK-FAC's refitted E is not (rank 121 of 128 × 784 on the MNIST MLP): its
queries are formed, and scoring them is one matrix product per chunk of training rows, as for any other curvature.

A Conv2d's per-sample weight gradient is a sum of P outer products, one per output position: Σ_p g_p a_pᵀ (a_p the
im2col patch), so two samples' gradients have the inner product Σ_{p,q} (g_p·g′_q)(a_p·a′_q), P²·(d_out + d_in)
multiplications per pair instead of d_out·d_in (the "ghost" form of Li et al. 2021 and Bu et al. 2022). It is the
cheaper one where positions are few next to the weight (ResNet18's last stages); the gradient engine chooses per layer
(:func:`influence_core.gradients.conv_path`) and keeps such a block as an :class:`Outer` of rank P, else formed.

Every parameter block of a :class:`FactoredRows` is an :class:`Outer` or a plain (k, size) tensor (a Conv2d's or a
repeated layer's rows, formed); :func:`pairwise_scores` multiplies outer products pairwise where both sides have them
and multiplies the formed blocks, block by block, with no copy of the training rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch

# Largest intermediate a product holds at once (elements): the train rows are taken in slices below it.
INTERMEDIATE_ELEMENTS = 2**24


@dataclass
class Outer:
    """A block's rows as sums of outer products: row k is vec(Σ_r out[k, r] inp[k, r]ᵀ), out-major like W.view(-1)."""

    out: torch.Tensor  # (k, r, d_out)
    inp: torch.Tensor  # (k, r, d_in); a bias is a block with d_in = 1 and inp = 1
    positions: int = 1  # outer products per gradient row: 1 for a Linear layer, P for a Conv2d in the ghost form

    @property
    def rank(self) -> int:
        return self.out.shape[1]

    def dense(self) -> torch.Tensor:
        if self.rank == 1:
            return (self.out.transpose(1, 2) * self.inp).reshape(len(self.out), -1)
        return torch.einsum("kro,kri->koi", self.out, self.inp).reshape(len(self.out), -1)


@dataclass
class InBasis:
    """A weight block's rows formed in a Kronecker eigenbasis: row k is vec(Q_out M_k Q_inᵀ) with M_k = ``matrix[k]``
    (out × in, flattened). Training rows meet it rotated into the same basis (:meth:`rotate`)."""

    matrix: torch.Tensor  # (k, out · in)
    q_out: torch.Tensor
    q_in: torch.Tensor

    def dense(self) -> torch.Tensor:
        m = self.matrix.reshape(len(self.matrix), len(self.q_out), len(self.q_in)).to(self.q_out.dtype)
        return (self.q_out @ m @ self.q_in.T).reshape(len(m), -1).to(self.matrix.dtype)

    def rotate(self, block: "Block") -> torch.Tensor:
        """Training rows of this block in the basis, formed: (g Q_out)(a Q_in)ᵀ for outer products (d_out² + d_in² per
        rank-one row), Q_outᵀ G Q_in for formed rows."""
        dtype = self.matrix.dtype
        q_out, q_in = self.q_out.to(dtype), self.q_in.to(dtype)
        if isinstance(block, Outer):
            return Outer(block.out.to(dtype) @ q_out, block.inp.to(dtype) @ q_in).dense()
        rows = dense_block(block).to(dtype)
        return (q_out.T @ rows.reshape(len(rows), len(q_out), len(q_in)) @ q_in).reshape(len(rows), -1)


Block = Union[Outer, InBasis, torch.Tensor]


def dense_block(block: Block) -> torch.Tensor:
    return block if isinstance(block, torch.Tensor) else block.dense()


def _lead(block: Block) -> torch.Tensor:
    return block if isinstance(block, torch.Tensor) else block.out if isinstance(block, Outer) else block.matrix


@dataclass
class FactoredRows:
    """k gradient rows over the selected parameters, one block per parameter in column order."""

    blocks: dict[str, Block]

    @property
    def n_rows(self) -> int:
        return len(_lead(next(iter(self.blocks.values()))))

    def __len__(self) -> int:
        return self.n_rows

    @property
    def dtype(self) -> torch.dtype:
        return _lead(next(iter(self.blocks.values()))).dtype

    @property
    def device(self) -> torch.device:
        return _lead(next(iter(self.blocks.values()))).device

    def dense(self) -> torch.Tensor:
        """The (k, p) rows, formed."""
        return torch.cat([dense_block(b) for b in self.blocks.values()], dim=1)

    def train_row_floats(self) -> int:
        """Floats one training row scored against these rows holds: positions · (d_out + d_in) where both sides are
        outer products (a training row has ``positions`` of them: 1 for a Linear layer), the block's size where it is
        formed (sizes a chunk of training rows)."""
        total = 0
        for b in self.blocks.values():
            total += b.positions * (b.out.shape[2] + b.inp.shape[2]) if isinstance(b, Outer) else _lead(b).shape[1]
        return total

    @staticmethod
    def cat(parts: list["FactoredRows"]) -> "FactoredRows":
        """Rows of several chunks stacked (each block keeps its form when every chunk has it, else it is formed)."""
        if len(parts) == 1:
            return parts[0]
        blocks: dict[str, Block] = {}
        for name in parts[0].blocks:
            items = [p.blocks[name] for p in parts]
            if all(isinstance(b, Outer) for b in items) and len({b.rank for b in items}) == 1:
                blocks[name] = Outer(torch.cat([b.out for b in items]), torch.cat([b.inp for b in items]), items[0].positions)
            else:
                blocks[name] = torch.cat([dense_block(b) for b in items])
        return FactoredRows(blocks)


def _train_slices(n: int, per_row: int):
    step = max(1, INTERMEDIATE_ELEMENTS // max(per_row, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _outer_outer(q: Outer, t: Outer, out: torch.Tensor) -> None:
    """Σ_{r, s} (q.out_r · t.out_s)(q.inp_r · t.inp_s) for every (query, train) pair, added to ``out``: two GEMMs per
    slice of training rows over all (r, s), then the elementwise product summed over r and s."""
    k, n = out.shape
    r, s = q.rank, t.rank
    qo = q.out.reshape(-1, q.out.shape[2])  # (k·r, d_out)
    qi = q.inp.reshape(-1, q.inp.shape[2])
    for cols in _train_slices(n, 2 * k * r * s):
        m = cols.stop - cols.start
        go = qo @ t.out[cols].reshape(m * s, -1).T  # (k·r, m·s)
        gi = qi @ t.inp[cols].reshape(m * s, -1).T
        prod = go.mul_(gi)
        out[:, cols] += prod if r == 1 and s == 1 else prod.view(k, r, m, s).sum((1, 3))


def pairwise_scores(queries: FactoredRows, train: FactoredRows) -> torch.Tensor:
    """(k, n) inner products of every query row with every training row: outer products pairwise where both sides
    have them, every other block formed (in the query's eigenbasis for :class:`InBasis`) and multiplied block by block
    into the result (the training blocks are not copied into one row); the queries' formed part is built once and
    kept for the next chunk."""
    dtype = queries.dtype
    out = torch.zeros(queries.n_rows, train.n_rows, dtype=dtype, device=queries.device)
    formed = []
    for name, q in queries.blocks.items():
        t = train.blocks[name]
        if isinstance(q, Outer) and isinstance(t, Outer):
            _outer_outer(q, Outer(t.out.to(dtype), t.inp.to(dtype)), out)
        else:
            formed.append(name)
    if formed:
        memo = queries.__dict__.setdefault("_formed", {})
        key = tuple(formed)
        if key not in memo:  # each block contiguous: a GEMM on a column slice of one wide matrix runs ~15 % slower
            memo.clear()
            memo[key] = [(_lead(q) if isinstance(q, InBasis) else dense_block(q)).contiguous() for q in map(queries.blocks.get, formed)]
        for name, q_block in zip(formed, memo[key]):
            q, t = queries.blocks[name], train.blocks[name]
            block = q.rotate(t) if isinstance(q, InBasis) else dense_block(t)
            out.addmm_(q_block, block.to(dtype).T)
    return out
