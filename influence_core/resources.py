"""What a model and the machine have: a model's sizes and forward cost (:class:`ModelProfile`), the memory a
computation may allocate (:func:`memory_budget`) and bytes in words. Engine utilities: the curvatures, the methods and
the run layer read them, and nothing here knows of any of those."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch
from torch import nn

from influence_core.models import head_names


def leaf_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


def probe_forward(model: nn.Module, sample_shape: tuple[int, ...], hook, modules) -> torch.Tensor:
    """One zero input through ``model`` in eval mode and without gradients, ``hook`` (a forward hook) on ``modules``
    for that pass only; the model's mode is given back. How the engine reads a model's shapes and sizes."""
    p0 = next(model.parameters())
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            return model(torch.zeros((1, *sample_shape), dtype=p0.dtype, device=p0.device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@dataclass
class ModelProfile:
    """What the estimates need to know about a model: sizes, activations and forward cost per sample."""

    n_selected: int
    n_all: int
    n_head: int
    n_outputs: int
    activations_per_sample: int  # elements of every leaf module's output for one input
    forward_flops_per_sample: float
    factor_sides: list[tuple[int, int]] = field(default_factory=list)  # (input side, output side) per Linear/Conv2d with selected weights
    selected_module_types: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, model: nn.Module, sample_shape: tuple[int, ...], names: list[str]) -> "ModelProfile":
        params = dict(model.named_parameters())
        owner = {}
        for module_name, module in model.named_modules():
            for attr, _ in module.named_parameters(recurse=False):
                owner[f"{module_name}.{attr}" if module_name else attr] = module
        activations, flops = 0, 0.0

        def hook(module, inputs, output):
            nonlocal activations, flops
            if isinstance(output, torch.Tensor):
                activations += output.numel()
                if isinstance(module, nn.Linear):
                    flops += 2.0 * output.numel() * module.in_features
                elif isinstance(module, nn.Conv2d):
                    flops += 2.0 * output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]

        out = probe_forward(model, sample_shape, hook, leaf_modules(model))
        outputs = int(out.shape[-1]) if out.dim() > 1 else 1
        sides, types = [], set()
        for name in names:
            module = owner.get(name)
            if module is None:
                continue
            types.add(type(module).__name__)
            if name.endswith("weight") and isinstance(module, nn.Linear):
                sides.append((module.in_features + (module.bias is not None), module.out_features))
            elif name.endswith("weight") and isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                sides.append((module.in_channels * kh * kw + (module.bias is not None), module.out_channels))
        return cls(
            n_selected=sum(params[n].numel() for n in names),
            n_all=sum(p.numel() for p in params.values() if p.requires_grad),
            n_head=sum(params[n].numel() for n in head_names(model)),
            n_outputs=outputs,
            activations_per_sample=activations,
            forward_flops_per_sample=flops,
            factor_sides=sides,
            selected_module_types=types,
        )


def memory_budget(device: Optional[torch.device] = None) -> int:
    """Bytes a curvature may allocate: ``INFLUENCE_LAB_MEMORY_GB`` if set, else half the memory available
    now (RAM, or the free memory of the GPU), so the machine's other work keeps running."""
    override = os.environ.get("INFLUENCE_LAB_MEMORY_GB")
    if override:
        return int(float(override) * 2**30)
    if device is not None and torch.device(device).type == "cuda":
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(0.8 * free)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        import psutil  # noqa: F401  (not a dependency: only where /proc is missing)

        available = psutil.virtual_memory().available
    return int(0.5 * available)


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


# threadpoolctl's controller and the module count it was built at: building one scans the loaded libraries (3 ms), and
# a library loaded later (scipy's OpenBLAS, on the first import of scikit-learn's solvers) is not in an older one, so
# the one-thread limit missed it (a detector's BLAS ran on two threads after a training had built the controller)
_THREAD_POOLS: Optional[tuple[int, object]] = None


def _native_pools():
    """The BLAS and OpenMP thread pools numpy, scipy and scikit-learn use (threadpoolctl), found again after imports."""
    import sys

    global _THREAD_POOLS
    if _THREAD_POOLS is None or _THREAD_POOLS[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _THREAD_POOLS = (len(sys.modules), ThreadpoolController())
    return _THREAD_POOLS[1]


@contextmanager
def compute_threads(n: Optional[int]) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block (None: unchanged), given back after. How small models' work
    runs on one CPU thread: on a shared machine two threads wait for each other at every microsecond op. One thread
    also holds the BLAS and OpenMP pools of the scikit-learn and scipy work on the same small data (a detector's
    5-fold logistic regression on Label bias's 252 digits: 0.04 s on one thread, 0.15-1.1 s on two beside torch)."""
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        if n == 1:
            with _native_pools().limit(limits=1):
                yield
        else:
            yield
    finally:
        torch.set_num_threads(before)
