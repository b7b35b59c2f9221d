"""Algorithm 1: each relabel's predicted effect on a test margin, and the smallest set whose effects flip it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from influence_core.data.base import Dataset
from influence_core.errors import InputError

MODES = ("relabel", "remove")
OUTPUTS = ("probability", "margin")


# ------------------------------------------------------------------------------ core math


def check_binary(dataset: Dataset) -> None:
    if dataset.n_classes != 2:
        raise InputError(
            f"flip sets need a binary task, this dataset has {dataset.n_classes} classes: pick two classes (e.g. classes 4 and 9)"
        )


def logit_margin(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """m(x) = z₁(x) − z₀(x), the decision function (class 1 iff m > 0 at threshold 0.5)."""
    model.eval()
    with torch.no_grad():
        out = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    if not out:
        return np.zeros(0)
    z = torch.cat(out)
    return (z[:, 1] - z[:, 0]).double().cpu().numpy()


def effects_from_kernel(
    kernel: np.ndarray, y_train: np.ndarray, train_probs_of_label: Optional[np.ndarray] = None, mode: str = "relabel"
) -> np.ndarray:
    """Predicted Δm of x_t for relabeling (or removing) each training point alone: (n_test, n_train).

    relabel: −(1/N)(2y_i − 1) K[t, i];  remove: the same times 1 − p(y_i | x_i).
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    n = kernel.shape[1]
    sign = 2.0 * np.asarray(y_train, dtype=np.float64) - 1.0
    scale = -sign / n
    if mode == "remove":
        if train_probs_of_label is None:
            raise ValueError("the removal variant needs p(y_i | x_i) for every training point")
        scale = scale * (1.0 - np.asarray(train_probs_of_label, dtype=np.float64))
    return kernel * scale[None, :]


@dataclass
class FlipSearch:
    """Algorithm 1 run on every test point at once.

    ``order[t]`` lists training rows by how strongly they push x_t towards the other class;
    the flip set of t is ``order[t, :k[t]]`` where ``found[t]``; ``k`` is 0 when not found.
    """

    k: np.ndarray
    found: np.ndarray
    order: np.ndarray
    predicted_after: np.ndarray  # f(x_t) + Σ of the set's effects, in the search's units (nan when not found)


def find_flip_sets(effects: np.ndarray, margins: np.ndarray, threshold: float = 0.0, max_k: Optional[int] = None) -> FlipSearch:
    """Algorithm 1: sort the per-point effects against the current prediction, accumulate until m crosses the threshold.

    Predicted class 1 (m > τ) needs m + Σ ≤ τ; predicted 0 needs m + Σ > τ. Under the additive
    first-order model this greedy order gives the smallest such set. ``max_k`` caps the size.
    """
    effects = np.atleast_2d(np.asarray(effects, dtype=np.float64))
    margins = np.atleast_1d(np.asarray(margins, dtype=np.float64))
    if effects.shape[0] != len(margins):
        raise ValueError(f"effects has {effects.shape[0]} rows but there are {len(margins)} margins")
    pred = margins > threshold
    push = np.where(pred[:, None], -effects, effects)  # > 0: moves x_t towards the other class
    order = np.argsort(-push, axis=1, kind="stable")
    cum = np.cumsum(np.take_along_axis(push, order, 1), axis=1)
    gap = np.abs(margins - threshold)[:, None]
    crossed = np.where(pred[:, None], cum >= gap, cum > gap)
    if max_k is not None:
        crossed[:, max_k:] = False
    found = crossed.any(1)
    k = np.where(found, crossed.argmax(1) + 1, 0)
    after = np.full(len(margins), np.nan)
    rows = np.flatnonzero(found)
    signed_cum = np.where(pred[:, None], -cum, cum)
    after[rows] = margins[rows] + signed_cum[rows, k[rows] - 1]
    return FlipSearch(k=k, found=found, order=order, predicted_after=after)
