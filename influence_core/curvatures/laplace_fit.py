"""Fitting GGN curvatures with laplace-torch (or BackPACK directly, for the zoo's plain chains of layers), shared by
the diagonal, Kronecker and last-layer backends.

laplace-torch accumulates the GGN as a *sum* over samples and adds a prior precision; the prior is set to
N·(λ + damping) and the result divided by N, which gives exactly the mean-objective curvature plus damping.
For the cross-entropy of a linear model the GGN equals the Hessian, so ``last_layer`` equals ``exact`` on
logistic regression.
"""

from __future__ import annotations

import copy
import warnings
from typing import Iterator, Optional

from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from influence_core.errors import CurvatureError, InputError
from influence_core.tasks import CrossEntropyTask


def prior_precision(request, kind: str) -> float:
    if not isinstance(request.task, CrossEntropyTask):
        raise InputError(f"the {kind} curvature (laplace-torch) is a GGN of the cross-entropy; this task is {request.task.name}")
    prior = request.n_train * (request.weight_decay + request.damping)
    if prior <= 0:
        raise CurvatureError(f"the {kind} curvature needs weight decay or damping > 0 to be invertible: set the damping above 0")
    return prior


def fit_laplace(model, x, y, subset: str, structure: str, prior: float, batch_size: int, backend_kwargs: Optional[dict] = None):
    from laplace import Laplace
    from laplace.curvature import BackPackGGN

    from influence_core.models import head_module

    kwargs = {"last_layer_name": head_module(model)[0]} if subset == "last_layer" else {}
    if structure == "full":
        # laplace-torch 0.3's default (curvlinops) full GGN multiplies by a CPU identity and fails on
        # CUDA; the BackPACK backend builds the same GGN from Jacobians on the model's device
        kwargs["backend"] = BackPackGGN
    if backend_kwargs:
        kwargs["backend_kwargs"] = backend_kwargs
    la = Laplace(model, "classification", subset_of_weights=subset, hessian_structure=structure, prior_precision=prior, **kwargs)
    la.fit(DataLoader(TensorDataset(x, y), batch_size=batch_size), progress_bar=False)
    return la


def backpack_batches(seq: nn.Sequential, x, y, batch_size: int, extension) -> Iterator[int]:
    """One backward of each mini-batch's summed cross-entropy through ``seq`` (extended in place) under a BackPACK
    ``extension``; yields each batch's first row once the parameters hold that batch's quantities."""
    from backpack import backpack, extend

    seq = extend(seq)
    seq.eval()
    loss_fn = extend(nn.CrossEntropyLoss(reduction="sum"))
    for start in range(0, len(x), max(1, batch_size)):
        loss = loss_fn(seq(x[start : start + batch_size]), y[start : start + batch_size])
        with backpack(extension), warnings.catch_warnings():
            # torch warns that the hooks BackPACK sets fire with no input requiring a gradient: the inputs are data
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        yield start


def as_sequential(model: nn.Module) -> Optional[nn.Sequential]:
    """A deep-copied ``nn.Sequential`` computing the same function with parameters in the same order
    (BackPACK extends only sequences of known layers), or None when the model is not a plain chain."""
    from influence_core.models import MLP, LogisticRegression, SmallCNN

    if isinstance(model, SmallCNN):
        seq = nn.Sequential(*copy.deepcopy(list(model.body)), copy.deepcopy(model.head))
    elif isinstance(model, MLP):
        seq = nn.Sequential(nn.Flatten(), *copy.deepcopy(list(model.body)), copy.deepcopy(model.head))
    elif isinstance(model, LogisticRegression):
        seq = nn.Sequential(nn.Flatten(), copy.deepcopy(model.head))
    else:
        return None
    original = [p.shape for p in model.parameters()]
    return seq if [p.shape for p in seq.parameters()] == original else None


def subset_reason(request, kind: str) -> Optional[str]:
    """Why laplace-torch cannot take these parameters (neither all of them nor the head's), or None."""
    try:
        subset_for(request, kind)
    except InputError as err:
        return str(err)
    return None


def subset_for(request, kind: str) -> str:
    """laplace-torch's ``subset_of_weights`` for the requested parameters: all of them or the head's."""
    from influence_core.models import head_names, trainable_names

    names = list(request.param_names)
    if names == head_names(request.model):
        return "last_layer"
    if names == trainable_names(request.model):
        return "all"
    raise InputError(f"the {kind} curvature works over all parameters or the last layer only")
