"""On-disk result cache keyed by a config hash: arrays (.npz) + config JSON + metadata (+ tensors).

An entry stores the exact JSON it was computed from; a load whose JSON differs (a hash collision,
or an entry written by other code) is treated as a miss, so an entry made with other arguments
is never returned. It also stores a manifest of the array names, meta keys and tensor keys it was
saved with: an entry that fails to load or does not match its manifest (a truncated file, a deleted
one, an emptied meta.json) is a miss too, recomputed and replaced — never a traceback on every rerun.

Saving is safe under contention (several sessions or processes finishing the same run): writers of
one key take turns through a lock file, and the old entry is renamed aside before the new one is
renamed in, so a reader sees the old entry, none, or the new one. A cache that cannot be written
warns (:class:`CacheWarning`) and the computed result is still returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

# bump when the meaning of cached results changes, so old entries are not reused
CACHE_VERSION = "1"

log = logging.getLogger(__name__)


class CacheWarning(UserWarning):
    """The result cache could not be written (the result is still returned, only not kept for the next run)."""


def cache_root() -> Path:
    return Path(os.environ.get("INFLUENCE_LAB_CACHE", Path.cwd() / ".cache" / "results"))


def entry_key(kind: str, payload: dict[str, Any]) -> tuple[str, str]:
    """(hash, canonical JSON) of what a result depends on."""
    text = json.dumps({"kind": kind, "version": CACHE_VERSION, **payload}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24], text


class CacheEntry:
    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], tensors: dict[str, Any]):
        self.arrays, self.meta, self.tensors = arrays, meta, tensors


def _manifest(entry: CacheEntry) -> dict[str, list[str]]:
    return {"arrays": sorted(entry.arrays), "meta": sorted(entry.meta), "tensors": sorted(entry.tensors)}


def load(kind: str, payload: dict[str, Any]) -> Optional[CacheEntry]:
    """The stored entry, or None if there is none or it fails to load or to match its manifest."""
    key, text = entry_key(kind, payload)
    folder = cache_root() / kind / key
    if not folder.is_dir():
        return None
    try:
        if (folder / "config.json").read_text() != text:
            return None
        manifest = json.loads((folder / "manifest.json").read_text())
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads((folder / "meta.json").read_text())
        tensors = torch.load(folder / "tensors.pt", map_location="cpu", weights_only=True) if manifest.get("tensors") else {}
        entry = CacheEntry(arrays, meta, tensors)
        if not (isinstance(meta, dict) and isinstance(tensors, dict) and _manifest(entry) == manifest):
            raise ValueError(f"contents {_manifest(entry)} differ from the manifest {manifest}")
    except Exception as exc:  # noqa: BLE001 — any damage (BadZipFile, EOFError, UnpicklingError, ...) is a miss
        log.warning("cache entry %s is damaged (%s: %s); recomputing it", folder, type(exc).__name__, exc)
        return None
    return entry


@contextmanager
def _writer_lock(lock_path: Path) -> Iterator[None]:
    """One writer of a key at a time (fcntl where there is one; elsewhere the rename retries below suffice)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover — not POSIX
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _swap_in(tmp: Path, folder: Path, key: str) -> None:
    """Put the finished ``tmp`` at ``folder``: the old entry (if any) is renamed aside, then removed."""
    for _ in range(100):
        try:
            tmp.rename(folder)
            return
        except OSError:  # an entry is there (ENOTEMPTY / EEXIST): move it aside and try again
            aside = folder.parent / f".{key}-old-{uuid.uuid4().hex}"
            try:
                folder.rename(aside)
            except FileNotFoundError:  # another writer moved it already
                continue
            shutil.rmtree(aside, ignore_errors=True)
    tmp.rename(folder)  # contention beyond reason: let the error say why


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
        (tmp / "manifest.json").write_text(json.dumps(_manifest(entry)))  # last: an entry without it is a miss
        with _writer_lock(folder.parent / f".{key}.lock"):
            _swap_in(tmp, folder, key)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached(
    kind: str, payload: dict[str, Any], compute: Callable[[], CacheEntry], use_cache: bool = True, refresh: bool = False
) -> tuple[CacheEntry, bool]:
    """Return (entry, was_cached): load if present, else compute and store (``refresh``: compute and store anew)."""
    if use_cache and not refresh:
        hit = load(kind, payload)
        if hit is not None:
            return hit, True
    entry = compute()
    if use_cache:
        try:
            save(kind, payload, entry)
        except (OSError, RuntimeError) as exc:  # a full disk (torch.save raises RuntimeError), a read-only folder: keep the result
            where = getattr(exc, "filename", None) or cache_root()
            warnings.warn(
                f"could not write the result cache at {where} ({getattr(exc, 'strerror', None) or exc}); the result is not kept "
                f"for the next run — set INFLUENCE_LAB_CACHE to a writable folder",
                CacheWarning,
                stacklevel=2,
            )
    return entry, False
