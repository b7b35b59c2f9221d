"""Per-sample gradients of the training loss, vectorised (no Python loop over samples).

Backends (``backend=``):
- ``vmap``: torch.func (functional_call + vmap + grad); works for any model.
- ``layers``: one batched forward + backward (as BackPACK / Opacus do). Forward hooks keep each
  selected layer's input activation ``a`` and its output; one backward of the *summed* loss gives
  each sample's own output gradient ``g`` (samples do not interact in eval mode), and the
  per-sample gradients follow in closed form: Linear ``∂W = g aᵀ`` (summed over extra dims),
  ``∂b = g``; Conv2d ``∂W = g · unfold(a)ᵀ`` (im2col, or the same sum as a grouped weight-gradient
  convolution: ``CONV_WEIGHT_GRAD_BY_DEVICE``), ``∂b = Σ_positions g``. When only the last
  layer (the ``head``, whose output is the logits) is selected, no backward is run at all: the
  head input comes from a no-grad forward and ``g = softmax(logits) − onehot(y)``.
  Only parameters of ``nn.Linear`` and ``nn.Conv2d`` (groups=1, zero padding) are supported;
  see :func:`layers_unsupported_reason`. On CPU a chunk runs in passes whose activations fit the
  caches (``PASS_BYTES_BY_DEVICE``).
- ``auto``: ``layers`` when it supports the model and the selected parameters, else ``vmap``
  (per device, see ``AUTO_BACKEND_BY_DEVICE``; ``benchmarks/engine_speed.py`` measures both).

Both backends give the same numbers (up to float rounding) in the same layout, so they are
interchangeable. Gradients are of the task's per-sample loss (``influence_core.tasks``: cross-entropy
by default, or the logit margin): the L2 penalty belongs to the total objective (and so to the
Hessian), not to one sample's loss.
Rows are samples; columns are the flattened parameters in the order of ``param_names``.

``per_sample_grad_sq_norms`` gives Σ_j w_j g_ij² per sample (e.g. self-influence under a diagonal
curvature, w = 1/diag H) without forming the gradient rows of Linear layers.

Convolutions (issue 35): a Conv2d weight's per-sample gradient is Σ_p g_p a_pᵀ over its P output
positions. Where only squared norms or inner products between two sets of rows are needed, each
layer takes the cheaper of two exact paths by a cost model per layer and device (:func:`conv_path`,
``CONV_MEMORY_COST_BY_DEVICE``): forming it (grouped convolution or unfold + bmm) where positions
are many, or the pairwise "ghost" form Σ_{p,q} (g_p·g′_q)(a_p·a′_q) (‖·‖² likewise with g′ = g)
where they are few next to the weight (Li et al. 2021; Bu et al. 2022). :func:`conv_paths` lists
the choice for every layer of a model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from influence_core.progress import ProgressFn, silent
from influence_core.resources import leaf_modules, probe_forward
from influence_core.tasks import CROSS_ENTROPY, Task

BACKENDS = ("auto", "vmap", "layers")

# What ``auto`` picks per device type when the ``layers`` backend supports the model. ``layers``
# is several times faster than ``vmap`` on CPU (benchmarks/README.md); on CUDA it does the same
# work as large batched matmuls, so it is the default there too until a GPU run says otherwise.
AUTO_BACKEND_BY_DEVICE = {"cpu": "layers", "cuda": "layers"}

# How the layers backend forms per-sample Conv2d weight gradients, per device type: "grouped" (the
# weight-gradient convolution with the batch folded into groups), "unfold" (im2col + batched matmul,
# as Opacus) or "auto": per layer, "unfold" where the layer has fewer output positions P than output
# channels (the im2col copy, P·C_in·k², is then smaller than the gradient it forms; on CPU it is 2-3x
# faster there), else "grouped" (up to 3x faster on CPU where positions are many: the first layers).
# benchmarks/conv_paths.py measures both per layer.
CONV_WEIGHT_GRAD_BY_DEVICE = {"cpu": "auto", "cuda": "grouped"}

# The per-layer cost model that picks, for each Conv2d weight, between forming its per-sample gradient
# G = Σ_p g_p a_pᵀ (d_out × d_in, d_in = C_in·kh·kw, summed over the P output positions) and the
# pairwise "ghost" form that never forms it (Li et al. 2021; Bu et al. 2022, mixed ghost clipping):
#     ⟨G, G′⟩ = Σ_{p,q} (g_p·g′_q)(a_p·a′_q)        ‖G‖² = Σ_{p,q} (g_p·g_q)(a_p·a_q)
# In multiply-adds, plus ``memory`` multiply-adds per float the step writes (per device type: on this
# project's 2-core CPU an element written costs about as much as 40 multiply-adds of a batched matmul,
# benchmarks/conv_paths.py):
#     squared norm, per sample:  formed P·d_out·d_in + memory·d_out·d_in
#                                ghost  P²·(d_out + d_in) + memory·(P·d_in + P²)
#     inner product, per pair:   formed d_out·d_in (one GEMM over formed rows)
#                                ghost  P²·(d_out + d_in) + memory·P²
# The ghost form wins where positions are few next to the weight (after pooling / striding: ResNet18's
# last two stages on 32×32 inputs, P = 4 and 1); the formed one where they are many (the SmallCNN's
# three layers, P = 784, 196, 49). ``CONV_PATH_OVERRIDE`` ("formed" / "ghost") forces one (tests).
CONV_MEMORY_COST_BY_DEVICE = {"cpu": 40.0, "cuda": 32.0}
CONV_PATH_OVERRIDE: Optional[str] = None

# Bytes of activations (every leaf module's output, for the rows of one pass) the layers backend holds
# at once, per device type: on CPU a chunk runs in passes of at most this size, as a forward + backward
# over 2,000 MNIST rows of the SmallCNN takes 1.9x as long as four passes over 500 (the activations
# no longer fit the caches). None / absent: the whole chunk in one pass (GPUs want large batches).
PASS_BYTES_BY_DEVICE: dict[str, Optional[int]] = {"cpu": 32 * 2**20}
MIN_PASS_ROWS = 32

_LAYER_TYPES = (nn.Linear, nn.Conv2d)


# --------------------------------------------------------------------------------------------
# shared helpers


def _selected_names(model: nn.Module, param_names: Optional[Sequence[str]]) -> list[str]:
    params = dict(model.named_parameters())
    names = list(param_names) if param_names is not None else list(params)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"unknown parameter name(s) {missing}; the model has {list(params)[:8]}...")
    if len(set(names)) != len(names):
        raise ValueError(f"parameter names repeat: {names}")
    return names


def _split_params(model: nn.Module, param_names: Optional[Sequence[str]]):
    params = dict(model.named_parameters())
    names = _selected_names(model, param_names)
    chosen = {n: params[n].detach() for n in names}
    frozen = {n: p.detach() for n, p in params.items() if n not in chosen}
    buffers = dict(model.named_buffers())
    return names, chosen, frozen, buffers


def n_params(model: nn.Module, param_names: Optional[Sequence[str]] = None) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if param_names is None or n in param_names)


def param_columns(model: nn.Module, param_names: Optional[Sequence[str]] = None) -> dict[str, slice]:
    """Which columns of a per-sample gradient row belong to each parameter (``param_names`` order)."""
    params = dict(model.named_parameters())
    out: dict[str, slice] = {}
    start = 0
    for name in _selected_names(model, param_names):
        out[name] = slice(start, start + params[name].numel())
        start += params[name].numel()
    return out


# --------------------------------------------------------------------------------------------
# vmap backend


def _vmap_chunk(model: nn.Module, names, chosen, frozen, buffers, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    def sample_loss(p, xi, yi):
        out = functional_call(model, ({**frozen, **p}, buffers), (xi.unsqueeze(0),))
        return task.summed(out, yi.unsqueeze(0))

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(chosen, x, y)
    return torch.cat([grads[n].reshape(len(x), -1) for n in names], dim=1)


# --------------------------------------------------------------------------------------------
# layers backend


class _LayersUnsupported(Exception):
    """The model does something the closed forms cannot see (found while running a chunk)."""


def _owners(model: nn.Module, names: Sequence[str]) -> dict[str, list[tuple[nn.Module, str]]]:
    """For each selected parameter, every (module, attribute) holding it directly (tied weights: several)."""
    params = dict(model.named_parameters())
    by_id = {id(params[n]): n for n in names}
    owners: dict[str, list[tuple[nn.Module, str]]] = {n: [] for n in names}
    for module in model.modules():
        for attr, p in module._parameters.items():
            if p is not None and id(p) in by_id:
                owners[by_id[id(p)]].append((module, attr))
    return owners


def layers_unsupported_reason(model: nn.Module, param_names: Optional[Sequence[str]] = None) -> Optional[str]:
    """Why the ``layers`` backend cannot compute these per-sample gradients, or None if it can.

    It needs every selected parameter to be the ``weight``/``bias`` of a plain ``nn.Linear`` or
    ``nn.Conv2d`` (groups=1, zero padding), and samples not to interact in eval mode (no
    BatchNorm without running statistics). Other layers may be present as long as their own
    parameters are not selected (e.g. ResNet18's BatchNorms with only ``head.*`` selected).
    """
    names = _selected_names(model, param_names)
    for name, holders in _owners(model, names).items():
        if not holders:
            return f"parameter {name!r} is not held by any module"
        for module, attr in holders:
            kind = type(module)
            if kind not in _LAYER_TYPES or attr not in ("weight", "bias"):
                return (
                    f"parameter {name!r} belongs to a {kind.__name__}; the layers backend has closed forms only for nn.Linear and nn.Conv2d"
                )
            if kind is nn.Conv2d:
                if module.groups != 1:
                    return f"parameter {name!r} belongs to a grouped Conv2d (groups={module.groups})"
                if module.padding_mode != "zeros":
                    return f"parameter {name!r} belongs to a Conv2d with padding_mode={module.padding_mode!r}"
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is None:
            return f"{type(module).__name__} without running statistics mixes samples even in eval mode"
    return None


def supports_layers_backend(model: nn.Module, param_names: Optional[Sequence[str]] = None) -> bool:
    return layers_unsupported_reason(model, param_names) is None


def resolve_backend(model: nn.Module, param_names: Optional[Sequence[str]] = None, backend: str = "auto") -> str:
    """The backend that will actually run: ``vmap`` or ``layers``.

    ``auto`` takes ``AUTO_BACKEND_BY_DEVICE`` for the model's device when ``layers`` supports the
    model, else ``vmap``; an explicit ``layers`` on an unsupported model raises ValueError.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown gradient backend {backend!r}; choose one of {BACKENDS}")
    if backend == "vmap":
        return "vmap"
    reason = layers_unsupported_reason(model, param_names)
    if backend == "layers":
        if reason is not None:
            raise ValueError(f"the 'layers' gradient backend cannot handle this model: {reason}. Use backend='vmap' or 'auto'.")
        return "layers"
    if reason is not None:
        return "vmap"
    device = next(model.parameters()).device
    return AUTO_BACKEND_BY_DEVICE.get(device.type, "vmap")


@dataclass
class _Call:
    module: nn.Module
    a: torch.Tensor  # input activation (detached; shares the version counter)
    out: torch.Tensor  # output, in the autograd graph when grads are on
    a_version: int
    out_version: int


class _Capture:
    """Forward hooks on the given modules recording (input, output) of every call in this thread."""

    def __init__(self, modules: Sequence[nn.Module]):
        self.modules = list(dict.fromkeys(modules))
        self.calls: list[_Call] = []
        self._handles: list = []
        self._thread = threading.get_ident()

    def _hook(self, module: nn.Module, inputs, output) -> None:
        if threading.get_ident() != self._thread:
            return  # another thread using the same model: not ours
        a = inputs[0].detach()
        self.calls.append(_Call(module, a, output, a._version, output._version))

    def __enter__(self) -> "_Capture":
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def check(self, batch: int) -> None:
        called = {id(c.module) for c in self.calls}
        for m in self.modules:
            if id(m) not in called:
                raise _LayersUnsupported(f"the {type(m).__name__} holding a selected parameter was not called through its forward")
        for c in self.calls:
            if c.a._version != c.a_version or c.out._version != c.out_version:
                raise _LayersUnsupported(f"the input or output of a {type(c.module).__name__} is modified in place")
            if c.a.dim() < 2 or c.a.shape[0] != batch or c.out.shape[0] != batch:
                raise _LayersUnsupported(f"a {type(c.module).__name__} does not see the batch as its first dimension")


def _explicit_padding(module: nn.Conv2d, a: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The Conv2d input padded by hand where the module's padding is a string, and the padding left."""
    padding = module.padding
    if not isinstance(padding, str):
        return a, tuple(padding)
    if padding == "valid":
        return a, (0, 0)
    # "same": ATen pads d·(k−1) in total, the odd element on the right/bottom
    total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
    left = [t // 2 for t in total]
    return F.pad(a, [left[1], total[1] - left[1], left[0], total[0] - left[0]]), (0, 0)


def _conv_weight_grads(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor, method: str) -> torch.Tensor:
    """Per-sample Conv2d weight gradients, shape (B, C_out, C_in·kh·kw).

    ``unfold``: im2col patches P (B, C_in·kh·kw, L) and one batched matmul g·Pᵀ (Opacus).
    ``grouped``: the weight-gradient convolution with the batch folded into groups (as
    torch.func does), which saves the im2col copy; faster on CPU.
    """
    batch, c_out = g.shape[0], module.out_channels
    a, padding = _explicit_padding(module, a)
    if method == "grouped":
        c_in = module.in_channels
        weight = g.new_empty(1).expand(batch * c_out, c_in, *module.kernel_size)
        gw = torch.ops.aten.convolution_backward(
            g.reshape(1, batch * c_out, *g.shape[2:]),
            a.reshape(1, batch * c_in, *a.shape[2:]),
            weight,
            None,
            list(module.stride),
            list(padding),
            list(module.dilation),
            False,
            [0, 0],
            batch,
            (False, True, False),
        )[1]
        return gw.reshape(batch, c_out, -1)
    patches = F.unfold(a, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
    g2 = g.reshape(batch, c_out, -1)
    if patches.shape[2] != g2.shape[2]:
        raise _LayersUnsupported("Conv2d output positions do not match its unfolded input")
    return torch.bmm(g2, patches.transpose(1, 2))


def _conv_method(device: torch.device, module: nn.Conv2d, positions: int) -> str:
    method = CONV_WEIGHT_GRAD_BY_DEVICE.get(device.type, "unfold")
    if method == "auto":
        return "unfold" if positions < module.out_channels else "grouped"
    return method


def _conv_sides(module: nn.Conv2d) -> tuple[int, int]:
    """(d_out, d_in) of a Conv2d weight as a matrix: C_out × C_in·kh·kw."""
    kh, kw = module.kernel_size
    return module.out_channels, module.in_channels * kh * kw


def conv_path(module: nn.Conv2d, positions: int, use: str, device: torch.device) -> str:
    """``"formed"`` or ``"ghost"``: how one Conv2d weight with ``positions`` output positions enters a squared norm
    (``use="norm"``) or inner products between two sets of rows (``use="pair"``) on ``device``, by the cost model of
    ``CONV_MEMORY_COST_BY_DEVICE`` (or ``CONV_PATH_OVERRIDE`` when set)."""
    if CONV_PATH_OVERRIDE is not None:
        return CONV_PATH_OVERRIDE
    d_out, d_in = _conv_sides(module)
    memory = CONV_MEMORY_COST_BY_DEVICE.get(torch.device(device).type, 32.0)
    p = positions
    if use == "norm":
        formed = p * d_out * d_in + memory * d_out * d_in
        ghost = p * p * (d_out + d_in) + memory * (p * d_in + p * p)
    elif use == "pair":
        formed = d_out * d_in
        ghost = p * p * (d_out + d_in) + memory * p * p
    else:
        raise ValueError(f"use must be 'norm' or 'pair', got {use!r}")
    return "ghost" if ghost < formed else "formed"


def _conv_patches(module: nn.Conv2d, a: torch.Tensor, positions: int) -> torch.Tensor:
    """The Conv2d input's im2col patches, (B, P, C_in·kh·kw): a_p for every output position p."""
    a, padding = _explicit_padding(module, a)
    patches = F.unfold(a, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
    if patches.shape[2] != positions:
        raise _LayersUnsupported("Conv2d output positions do not match its unfolded input")
    return patches.transpose(1, 2)


def _conv_ghost_sq_norms(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """‖Σ_p g_p a_pᵀ‖² per sample without forming it: Σ_{p,q} (g_p·g_q)(a_p·a_q), two (P × P) Gram matrices."""
    batch = len(g)
    gp = g.reshape(batch, module.out_channels, -1)  # (B, d_out, P)
    patches = _conv_patches(module, a, gp.shape[2])  # (B, P, d_in)
    return (torch.bmm(patches, patches.transpose(1, 2)) * torch.bmm(gp.transpose(1, 2), gp)).sum((1, 2))


def _conv_ghost_factors(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor):
    """The per-sample weight gradient kept as its P outer products g_p a_pᵀ (an ``Outer`` of rank P): two such rows
    meet in :func:`~influence_core.factored.pairwise_scores` as Σ_{p,q} (g_p·g′_q)(a_p·a′_q)."""
    from influence_core.factored import Outer

    batch = len(g)
    gp = g.reshape(batch, module.out_channels, -1)
    return Outer(gp.transpose(1, 2), _conv_patches(module, a, gp.shape[2]), gp.shape[2])


def _positions(g: torch.Tensor) -> int:
    return g[0, 0].numel() if len(g) else 0


def conv_paths(model: nn.Module, sample_shape: Sequence[int], param_names: Optional[Sequence[str]] = None) -> dict[str, dict]:
    """For each selected Conv2d weight: its output positions P, (d_out, d_in), and what the layers backend does with it
    on the model's device: ``form`` (grouped / unfold), ``norm`` and ``pair`` (formed / ghost, :func:`conv_path`)."""
    names = _selected_names(model, param_names)
    convs = {
        id(m): (m, n) for n, holders in _owners(model, names).items() for m, attr in holders if type(m) is nn.Conv2d and attr == "weight"
    }
    positions: dict[int, int] = {}

    def hook(module, inputs, output):
        positions[id(module)] = output[0, 0].numel()

    probe_forward(model, sample_shape, hook, [m for m, _ in convs.values()])
    p0 = next(model.parameters())
    out = {}
    for key, (module, name) in convs.items():
        p = positions.get(key, 0)
        out[name] = dict(
            positions=p,
            sides=_conv_sides(module),
            form=_conv_method(p0.device, module, p),
            norm=conv_path(module, p, "norm", p0.device),
            pair=conv_path(module, p, "pair", p0.device),
        )
    return out


def _write(dest: torch.Tensor, value: torch.Tensor, first: bool) -> None:
    if first:
        dest.copy_(value)
    else:
        dest.add_(value)


def _linear_2d(module: nn.Module, a: torch.Tensor) -> bool:
    return type(module) is nn.Linear and a.dim() == 2


def _layer_grads_into(out: torch.Tensor, cols: dict[str, slice], params_of: dict[int, dict[str, str]], calls, grads_out) -> None:
    """Closed-form per-sample weight/bias gradients of every recorded call, written into ``out``.

    Several calls of one module (or tied weights) add up, as autograd would.
    """
    batch = out.shape[0]
    written: set[str] = set()
    for call, g in zip(calls, grads_out):
        module, a = call.module, call.a
        which = params_of[id(module)]  # attribute ("weight"/"bias") -> selected name
        w_name, b_name = which.get("weight"), which.get("bias")
        if type(module) is nn.Linear:
            a2 = a.reshape(batch, -1, module.in_features)
            g2 = g.reshape(batch, -1, module.out_features)
            if w_name is not None:
                dest = out[:, cols[w_name]].view(batch, module.out_features, module.in_features)
                if a2.shape[1] == 1:  # the usual (B, features) input: an outer product per sample
                    if w_name in written:
                        dest.addcmul_(g2.transpose(1, 2), a2)
                    else:
                        torch.mul(g2.transpose(1, 2), a2, out=dest)
                else:  # extra dims (B, ..., features): summed over them per sample
                    _write(dest, torch.bmm(g2.transpose(1, 2), a2), w_name not in written)
            if b_name is not None:
                _write(out[:, cols[b_name]], g2.sum(1), b_name not in written)
        else:  # nn.Conv2d, groups=1
            if w_name is not None:
                dest = out[:, cols[w_name]].view(batch, module.out_channels, -1)
                _write(dest, _conv_weight_grads(module, a, g, _conv_method(out.device, module, _positions(g))), w_name not in written)
            if b_name is not None:
                _write(out[:, cols[b_name]], g.reshape(batch, module.out_channels, -1).sum(2), b_name not in written)
        written.update(n for n in (w_name, b_name) if n is not None)
    for name, cs in cols.items():  # a parameter none of whose calls reached the loss
        if name not in written:
            out[:, cs].zero_()


class _LayersEngine:
    """Runs the ``layers`` backend chunk by chunk for one model and one parameter selection."""

    def __init__(self, model: nn.Module, names: list[str], task: Task = CROSS_ENTROPY):
        self.model = model
        self.names = names
        self.task = task
        self.cols = param_columns(model, names)
        self.total = sum(s.stop - s.start for s in self.cols.values())
        owners = _owners(model, names)
        self.params_of: dict[int, dict[str, str]] = {}
        modules: list[nn.Module] = []
        for name, holders in owners.items():
            for module, attr in holders:
                self.params_of.setdefault(id(module), {})[attr] = name
                modules.append(module)
        self.modules = list(dict.fromkeys(modules))
        self.tied = any(len(h) > 1 for h in owners.values())
        # Only the last Linear (its output = the logits) selected: no backward needed at all.
        self.head_only = len(self.modules) == 1 and type(self.modules[0]) is nn.Linear
        self.selected = set(names)
        self.named = dict(model.named_parameters())
        p = self.named[names[0]]
        self.dtype, self.device = p.dtype, p.device

    # --- forward (+ backward): every call's input activation and per-sample output gradient

    def _calls(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[_Call], list[torch.Tensor]]:
        if self.head_only:
            found = self._head_calls(x, y)
            if found is not None:
                return found
            self.head_only = False  # the head output is not the logits (or odd targets): go general
        return self._general_calls(x, y)

    def _head_calls(self, x: torch.Tensor, y: torch.Tensor):
        with torch.no_grad(), _Capture(self.modules) as cap:
            logits = self.model(x)
        cap.check(len(x))
        if len(cap.calls) != 1 or cap.calls[0].out is not logits:
            return None
        g = self.task.output_gradient(logits, y)
        if g is None:
            return None
        return cap.calls, [g]

    def _general_calls(self, x: torch.Tensor, y: torch.Tensor):
        # Selected parameters as fresh leaves that require grad, all others detached: the graph
        # starts at the first selected layer and no parameter gradient is ever formed.
        params = {n: (p.detach().requires_grad_(True) if n in self.selected else p.detach()) for n, p in self.named.items()}
        with torch.enable_grad(), _Capture(self.modules) as cap:
            logits = functional_call(self.model, params, (x,))
            loss = self.task.summed(logits, y)  # a sum: each output grad is its own sample's
        cap.check(len(x))
        needs = [c for c in cap.calls if c.out.requires_grad]
        grads = torch.autograd.grad(loss, [c.out for c in needs], allow_unused=True) if needs else []
        kept = [(c, g) for c, g in zip(needs, grads) if g is not None]
        return [c for c, _ in kept], [g for _, g in kept]

    # --- outputs

    def chunk(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls, grads = self._calls(x, y)
        out = torch.empty(len(x), self.total, dtype=self.dtype, device=self.device)
        _layer_grads_into(out, self.cols, self.params_of, calls, grads)
        return out

    def factors(self, x: torch.Tensor, y: torch.Tensor):
        """The chunk's rows as :class:`~influence_core.factored.FactoredRows`: a Linear layer on (B, features) called
        once keeps its weight gradient as g aᵀ and its bias gradient as g · 1 (rank one, never formed); a Conv2d
        called once keeps its weight gradient as its P outer products g_p a_pᵀ where the cost model prefers pairing
        them (:func:`conv_path`, ``use="pair"``), else formed on its own; every other block is formed as
        :meth:`chunk` forms it."""
        from influence_core.factored import FactoredRows, Outer

        calls, grads = self._calls(x, y)
        batch = len(x)
        once = self._once(calls)
        blocks, formed_calls, formed_grads = {}, [], []
        for call, g in zip(calls, grads):
            which = self.params_of[id(call.module)]
            if once and _linear_2d(call.module, call.a):
                if "weight" in which:
                    blocks[which["weight"]] = Outer(g.unsqueeze(1), call.a.unsqueeze(1))
                if "bias" in which:
                    blocks[which["bias"]] = Outer(g.unsqueeze(1), g.new_ones(batch, 1, 1))
            elif once and type(call.module) is nn.Conv2d:
                w_name = which.get("weight")
                if w_name is not None and conv_path(call.module, _positions(g), "pair", g.device) == "ghost":
                    blocks[w_name] = _conv_ghost_factors(call.module, call.a, g)
                    if "bias" in which:
                        blocks[which["bias"]] = g.reshape(batch, call.module.out_channels, -1).sum(2)
                else:
                    blocks.update(self._conv_formed(call, g))
            else:
                formed_calls.append(call)
                formed_grads.append(g)
        rest = [n for n in self.names if n not in blocks]
        if rest:
            sub_cols, start = {}, 0
            for n in rest:
                size = self.cols[n].stop - self.cols[n].start
                sub_cols[n], start = slice(start, start + size), start + size
            rows = torch.empty(batch, start, dtype=self.dtype, device=self.device)
            _layer_grads_into(rows, sub_cols, self.params_of, formed_calls, formed_grads)
            blocks.update({n: rows[:, cs] for n, cs in sub_cols.items()})
        return FactoredRows({n: blocks[n] for n in self.names})

    def _once(self, calls) -> bool:
        """No tied weights and every module called once: each call's closed form is its parameters' whole gradient."""
        return not self.tied and len({id(c.module) for c in calls}) == len(calls)

    def _conv_formed(self, call: _Call, g: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Conv2d call's selected blocks formed, each its own (B, size) tensor (no copy into a shared row)."""
        module, which = call.module, self.params_of[id(call.module)]
        batch, blocks = len(g), {}
        if "weight" in which:
            method = _conv_method(g.device, module, _positions(g))
            blocks[which["weight"]] = _conv_weight_grads(module, call.a, g, method).reshape(batch, -1)
        if "bias" in which:
            blocks[which["bias"]] = g.reshape(batch, module.out_channels, -1).sum(2)
        return blocks

    def _block_sq(self, name: str, rows: torch.Tensor, weights: Optional[torch.Tensor], rotations: dict) -> torch.Tensor:
        """Σ_j w_j (R rows)_ij² of one parameter's formed rows (overwritten)."""
        if name in rotations:
            rows = rotate_rows(rows, {name: slice(0, rows.shape[1])}, {name: rotations[name]})
        return _weighted_sq(rows, None if weights is None else weights[self.cols[name]])

    def _conv_sq_norms(self, call: _Call, g: torch.Tensor, weights: Optional[torch.Tensor], rotations: dict) -> torch.Tensor:
        """One Conv2d call's Σ_j w_j (Rg)_ij²: the weight's plain squared norm in the ghost form where the cost model
        prefers it (:func:`conv_path`, ``use="norm"``), else each block formed on its own and reduced."""
        module, which = call.module, self.params_of[id(call.module)]
        w_name = which.get("weight")
        if (
            w_name is not None
            and weights is None
            and w_name not in rotations
            and conv_path(module, _positions(g), "norm", g.device) == "ghost"
        ):
            total = _conv_ghost_sq_norms(module, call.a, g)
            b_name = which.get("bias")
            if b_name is not None:
                total = total + self._block_sq(b_name, g.reshape(len(g), module.out_channels, -1).sum(2), None, rotations)
            return total
        total = torch.zeros(len(g), dtype=self.dtype, device=self.device)
        for name, rows in self._conv_formed(call, g).items():
            total += self._block_sq(name, rows, weights, rotations)
        return total

    def sq_norms(self, x: torch.Tensor, y: torch.Tensor, weights: Optional[torch.Tensor], rotations: Optional[dict] = None) -> torch.Tensor:
        """Σ_j w_j (Rg)_ij² per sample (R: the per-parameter ``rotations``, identity when None); Linear layers on
        (B, features) never form their gradient rows: the rotation of g aᵀ is (g Q_out)(a Q_in)ᵀ."""
        calls, grads = self._calls(x, y)
        batch = len(x)
        rotations = rotations or {}
        if not self._once(calls):
            # a module called more than once (or tied weights): contributions add before squaring
            rows = torch.empty(batch, self.total, dtype=self.dtype, device=self.device)
            _layer_grads_into(rows, self.cols, self.params_of, calls, grads)
            return _weighted_sq(rotate_rows(rows, self.cols, rotations), weights)
        total = torch.zeros(batch, dtype=self.dtype, device=self.device)
        for call, g in zip(calls, grads):
            module, which = call.module, self.params_of[id(call.module)]
            if _linear_2d(module, call.a):
                if "weight" in which:  # Σ_oi w_oi g_o² a_i² = Σ_i ((g²) W)_i a_i²
                    q_out, q_in = rotations.get(which["weight"], (None, None))
                    g2 = (g if q_out is None else g @ q_out.to(g.dtype)).square()
                    a2 = (call.a if q_in is None else call.a @ q_in.to(g.dtype)).square()
                    if weights is None:
                        total += g2.sum(1) * a2.sum(1)
                    else:
                        w = weights[self.cols[which["weight"]]].view(module.out_features, module.in_features)
                        total += ((g2 @ w) * a2).sum(1)
                if "bias" in which:
                    q_out, _ = rotations.get(which["bias"], (None, None))
                    g2 = (g if q_out is None else g @ q_out.to(g.dtype)).square()
                    total += g2.sum(1) if weights is None else g2 @ weights[self.cols[which["bias"]]]
                continue
            if type(module) is nn.Conv2d:
                total += self._conv_sq_norms(call, g, weights, rotations)
                continue
            # anything else: this module's gradient rows, materialised one module at a time
            names, rows, sub_cols = self._module_rows(call, g)
            rows = rotate_rows(rows, sub_cols, rotations)
            total += _weighted_sq(rows, None if weights is None else torch.cat([weights[self.cols[n]] for n in names]))
        return total

    def _module_rows(self, call: _Call, g: torch.Tensor):
        """One call's gradient rows over its module's selected parameters: (names, rows, their columns in rows)."""
        which = self.params_of[id(call.module)]
        names = [n for n in self.names if n in which.values()]
        sub_cols, start = {}, 0
        for n in names:
            size = self.cols[n].stop - self.cols[n].start
            sub_cols[n], start = slice(start, start + size), start + size
        rows = torch.empty(len(g), start, dtype=self.dtype, device=self.device)
        _layer_grads_into(rows, sub_cols, {id(call.module): which}, [call], [g])
        return names, rows, sub_cols

    def sq_column_sums(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ_i g_ij² over the chunk's samples, per column; a Linear layer's as (g²)ᵀ (a²), its rows never formed."""
        calls, grads = self._calls(x, y)
        if not self._once(calls):
            rows = torch.empty(len(x), self.total, dtype=self.dtype, device=self.device)
            _layer_grads_into(rows, self.cols, self.params_of, calls, grads)
            return rows.square_().sum(0)
        total = torch.zeros(self.total, dtype=self.dtype, device=self.device)
        for call, g in zip(calls, grads):
            which = self.params_of[id(call.module)]
            if _linear_2d(call.module, call.a):
                g2 = g.square()
                if "weight" in which:
                    total[self.cols[which["weight"]]] += (g2.T @ call.a.square()).reshape(-1)
                if "bias" in which:
                    total[self.cols[which["bias"]]] += g2.sum(0)
                continue
            if type(call.module) is nn.Conv2d:  # each block formed on its own, no copy into a shared row
                for name, rows in self._conv_formed(call, g).items():
                    total[self.cols[name]] += rows.square_().sum(0)
                continue
            names, rows, sub_cols = self._module_rows(call, g)
            sums = rows.square_().sum(0)
            for n in names:
                total[self.cols[n]] += sums[sub_cols[n]]
        return total


def _weighted_sq(rows: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
    """Σ_j w_j rows_ij² (rows are overwritten)."""
    rows.square_()
    return rows.sum(1) if weights is None else rows @ weights


def rotate_rows(rows: torch.Tensor, cols: dict[str, slice], rotations: dict) -> torch.Tensor:
    """Gradient rows in a Kronecker eigenbasis, in place: a weight's block (out × in) → Q_outᵀ G Q_in, a bias's
    (out) → Q_outᵀ g; ``rotations`` maps a parameter name to (Q_out, Q_in or None); others are left as they are."""
    for name, (q_out, q_in) in rotations.items():
        if name not in cols:
            continue
        block = rows[:, cols[name]]
        q_out = q_out.to(rows.dtype)
        if q_in is None:
            block.copy_(block @ q_out)
        else:
            m = block.reshape(len(rows), q_out.shape[0], q_in.shape[0])
            block.copy_((q_out.T @ m @ q_in.to(rows.dtype)).reshape(len(rows), -1))
    return rows


# --------------------------------------------------------------------------------------------
# public API


def iter_per_sample_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Optional[Sequence[str]] = None,
    chunk_size: int = 1024,
    backend: str = "auto",
    progress: ProgressFn = silent,
    task: Task = CROSS_ENTROPY,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start_row, grads)`` chunks of shape (chunk, n_params), so memory stays bounded.

    Row i is ∇_θ ℓ(model(x_i), y_i) (``task``'s loss, cross-entropy by default) over the parameters in
    ``param_names`` (all when None), flattened and concatenated in that order. The model is put in eval mode.
    """
    yield from _iter_chunks(model, x, y, param_names, chunk_size, backend, progress, "rows", None, task)


def iter_factored_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Optional[Sequence[str]] = None,
    chunk_size: int = 1024,
    backend: str = "auto",
    progress: ProgressFn = silent,
    task: Task = CROSS_ENTROPY,
):
    """Like :func:`iter_per_sample_grads`, with each chunk a :class:`~influence_core.factored.FactoredRows`: Linear
    layers' blocks as outer products (the ``layers`` backend), every other block formed."""
    yield from _iter_chunks(model, x, y, param_names, chunk_size, backend, progress, "factors", None, task)


def per_sample_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Optional[Sequence[str]] = None,
    chunk_size: int = 1024,
    backend: str = "auto",
    task: Task = CROSS_ENTROPY,
) -> torch.Tensor:
    """All per-sample gradients as one (n, n_params) tensor."""
    chunks = [g for _, g in iter_per_sample_grads(model, x, y, param_names, chunk_size, backend, task=task)]
    if not chunks:
        p = next(model.parameters())
        return torch.zeros(0, n_params(model, param_names), dtype=p.dtype, device=p.device)
    return torch.cat(chunks)


def per_sample_grad_sq_norms(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Optional[Sequence[str]] = None,
    weights: Optional[torch.Tensor] = None,
    chunk_size: int = 1024,
    backend: str = "auto",
    progress: ProgressFn = silent,
    task: Task = CROSS_ENTROPY,
    rotations: Optional[dict] = None,
) -> torch.Tensor:
    """``s_i = Σ_j w_j g_ij²`` for every sample (w = 1 when ``weights`` is None), shape (n,).

    ``rotations`` (parameter name → (Q_out, Q_in or None)) first turns each named block into a Kronecker
    eigenbasis (:func:`rotate_rows`): with w the inverse eigenvalues this is gᵀ H⁻¹ g under KFAC / EK-FAC.

    ``weights`` has one entry per gradient column (``param_names`` order); with w = 1/diag(H) this
    is the self-influence under a diagonal curvature. With the ``layers`` backend a Linear layer's
    per-sample gradient rows are never formed: Σ_oi w_oi g_o² a_i² = ((g²) W) · a².
    """
    p = next(model.parameters())
    if weights is not None:
        expected = n_params(model, param_names)
        if weights.shape != (expected,):
            raise ValueError(f"weights must have one entry per gradient column ({expected}), got shape {tuple(weights.shape)}")
        weights = weights.to(device=p.device, dtype=p.dtype)
    parts = [s for _, s in _iter_chunks(model, x, y, param_names, chunk_size, backend, progress, "norms", weights, task, rotations)]
    if not parts:
        return torch.zeros(0, dtype=p.dtype, device=p.device)
    return torch.cat(parts)


def per_sample_grad_sq_sums(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    param_names: Optional[Sequence[str]] = None,
    chunk_size: int = 1024,
    backend: str = "auto",
    progress: ProgressFn = silent,
    task: Task = CROSS_ENTROPY,
) -> torch.Tensor:
    """Σ_i g_ij² over all samples, one entry per gradient column (with labels drawn from the model,
    :class:`~influence_core.tasks.SampledLabelCrossEntropy`: the Monte-Carlo GGN diagonal, summed)."""
    total = None
    for _, part in _iter_chunks(model, x, y, param_names, chunk_size, backend, progress, "column_sums", None, task):
        total = part if total is None else total + part
    if total is None:
        p = next(model.parameters())
        return torch.zeros(n_params(model, param_names), dtype=p.dtype, device=p.device)
    return total


def pass_rows(model: nn.Module, sample_shape: tuple[int, ...]) -> Optional[int]:
    """Rows of one forward + backward of the layers backend on the model's device: as many as keep the activations
    (every leaf module's output) within ``PASS_BYTES_BY_DEVICE``, at least ``MIN_PASS_ROWS``; None: no limit."""
    p0 = next(model.parameters())
    budget = PASS_BYTES_BY_DEVICE.get(p0.device.type)
    if not budget:
        return None
    activations = 0

    def hook(module, inputs, output):
        nonlocal activations
        if isinstance(output, torch.Tensor):
            activations += output[0].numel()

    probe_forward(model, sample_shape, hook, leaf_modules(model))
    return max(MIN_PASS_ROWS, budget // max(1, activations * p0.element_size()))


def _iter_chunks(
    model, x, y, param_names, chunk_size, backend, progress, output: str, sq_weights, task: Task = CROSS_ENTROPY, rotations=None
):
    """``(start, chunk)``: ``output`` "rows" (gradient rows), "norms" (their ``sq_weights``-weighted squared norms),
    "column_sums" (Σ over the chunk's rows of their squares) or "factors" (:class:`~influence_core.factored.FactoredRows`)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    message = "gradient norms" if output == "norms" else "per-sample gradients"
    model.eval()
    chosen_backend = resolve_backend(model, param_names, backend)
    names, chosen, frozen, buffers = _split_params(model, param_names)
    engine = _LayersEngine(model, names, task) if chosen_backend == "layers" else None
    columns = param_columns(model, names)
    n = len(x)
    if engine is not None and n > MIN_PASS_ROWS:
        chunk_size = min(chunk_size, pass_rows(model, tuple(x.shape[1:])) or chunk_size)
    for start in range(0, n, chunk_size):
        xb, yb = x[start : start + chunk_size], y[start : start + chunk_size]
        result = None
        if engine is not None:
            try:
                if output == "factors":
                    result = engine.factors(xb, yb)
                elif output == "column_sums":
                    result = engine.sq_column_sums(xb, yb)
                elif output == "norms":
                    result = engine.sq_norms(xb, yb, sq_weights, rotations)
                else:
                    result = engine.chunk(xb, yb)
            except _LayersUnsupported as err:
                if backend == "layers":
                    raise ValueError(
                        f"the 'layers' gradient backend cannot handle this model: {err}. Use backend='vmap' or 'auto'."
                    ) from err
                engine = None  # auto: this model needs the general vmap path from here on
        if result is None:
            result = _vmap_chunk(model, names, chosen, frozen, buffers, xb, yb, task)
            if output == "norms":
                result = _weighted_sq(rotate_rows(result, columns, rotations or {}), sq_weights)
            elif output == "column_sums":
                result = result.square_().sum(0)
            elif output == "factors":
                from influence_core.factored import FactoredRows

                result = FactoredRows({n: result[:, cs] for n, cs in columns.items()})
        yield start, result
        progress(min(start + chunk_size, n) / max(n, 1), message)
