"""On-disk result cache keyed by a config hash: arrays (.npz) + config JSON + metadata (+ tensors).

An entry stores the exact JSON it was computed from; a load whose JSON differs (a hash collision,
or an entry written by other code) is treated as a miss, so an entry made with other arguments
is never returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

# bump when the meaning of cached results changes, so old entries are not reused
CACHE_VERSION = "1"


def cache_root() -> Path:
    return Path(os.environ.get("INFLUENCE_LAB_CACHE", Path.cwd() / ".cache" / "results"))


def entry_key(kind: str, payload: dict[str, Any]) -> tuple[str, str]:
    """(hash, canonical JSON) of what a result depends on."""
    text = json.dumps({"kind": kind, "version": CACHE_VERSION, **payload}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24], text


class CacheEntry:
    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], tensors: dict[str, Any]):
        self.arrays, self.meta, self.tensors = arrays, meta, tensors


def load(kind: str, payload: dict[str, Any]) -> Optional[CacheEntry]:
    key, text = entry_key(kind, payload)
    folder = cache_root() / kind / key
    try:
        if (folder / "config.json").read_text() != text:
            return None
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads((folder / "meta.json").read_text())
        tensors = torch.load(folder / "tensors.pt", map_location="cpu", weights_only=True) if (folder / "tensors.pt").exists() else {}
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError):
        return None
    return CacheEntry(arrays, meta, tensors)


def save(kind: str, payload: dict[str, Any], entry: CacheEntry) -> None:
    """Write atomically (temp folder + rename) so a crash never leaves a half entry behind."""
    key, text = entry_key(kind, payload)
    folder = cache_root() / kind / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}-"))
    try:
        (tmp / "config.json").write_text(text)
        np.savez(tmp / "arrays.npz", **entry.arrays)
        (tmp / "meta.json").write_text(json.dumps(entry.meta, default=float))
        if entry.tensors:
            torch.save(entry.tensors, tmp / "tensors.pt")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached(kind: str, payload: dict[str, Any], compute: Callable[[], CacheEntry], use_cache: bool = True) -> tuple[CacheEntry, bool]:
    """Return (entry, was_cached): load if present, else compute and store."""
    if use_cache:
        hit = load(kind, payload)
        if hit is not None:
            return hit, True
    entry = compute()
    if use_cache:
        save(kind, payload, entry)
    return entry, False
