"""Per-sample gradients of the training loss, vectorised (no Python loop over samples).

Backends:
- ``vmap``: torch.func (functional_call + vmap + grad); works for any model.
- ``auto``: ``vmap`` for now (a faster per-layer path for Linear/Conv2d models may be chosen here).

Gradients are of the per-sample cross-entropy only: the L2 penalty belongs to the total
objective (and so to the Hessian), not to one sample's loss.
Rows are flattened in the order of ``param_names``.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from influence_core.progress import ProgressFn, silent


def _split_params(model: nn.Module, param_names: Optional[Sequence[str]]):
    params = dict(model.named_parameters())
    names = list(param_names) if param_names is not None else list(params)
    chosen = {n: params[n].detach() for n in names}
    frozen = {n: p.detach() for n, p in params.items() if n not in chosen}
    buffers = dict(model.named_buffers())
    return names, chosen, frozen, buffers


def _vmap_chunk(model: nn.Module, names, chosen, frozen, buffers, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    def sample_loss(p, xi, yi):
        out = functional_call(model, ({**frozen, **p}, buffers), (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(chosen, x, y)
    return torch.cat([grads[n].reshape(len(x), -1) for n in names], dim=1)


def iter_per_sample_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Optional[Sequence[str]] = None,
    chunk_size: int = 1024,
    backend: str = "auto",
    progress: ProgressFn = silent,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start_row, grads)`` chunks of shape (chunk, n_params), so memory stays bounded."""
    if backend not in ("auto", "vmap"):
        raise ValueError(f"unknown gradient backend {backend!r}")
    model.eval()
    names, chosen, frozen, buffers = _split_params(model, param_names)
    n = len(x)
    for start in range(0, n, chunk_size):
        xb, yb = x[start : start + chunk_size], y[start : start + chunk_size]
        yield start, _vmap_chunk(model, names, chosen, frozen, buffers, xb, yb)
        progress(min(start + chunk_size, n) / max(n, 1), "per-sample gradients")


def per_sample_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Optional[Sequence[str]] = None,
    chunk_size: int = 1024,
    backend: str = "auto",
) -> torch.Tensor:
    """All per-sample gradients as one (n, n_params) tensor."""
    chunks = [g for _, g in iter_per_sample_grads(model, x, y, param_names, chunk_size, backend)]
    if not chunks:
        n_params = sum(p.numel() for n, p in model.named_parameters() if param_names is None or n in param_names)
        return torch.zeros(0, n_params)
    return torch.cat(chunks)


def n_params(model: nn.Module, param_names: Optional[Sequence[str]] = None) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if param_names is None or n in param_names)
