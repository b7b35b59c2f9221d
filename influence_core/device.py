"""Device is chosen once: CUDA when present, else CPU."""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=1)
def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
