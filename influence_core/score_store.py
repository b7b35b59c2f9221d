"""Score matrices larger than memory: written block by block to a zarr store, read lazily, resumed after a kill.

A (k queries × n training rows) matrix is cut into blocks of training rows. Each block is scored on its own (on a
Dask worker when there is a cluster, see :mod:`influence_core.distributed`), written into the store's columns, and
then marked done in the store's ``done`` array: a run that is killed keeps every finished block, and the next run
with the same key computes only the others. :class:`ScoreMatrix` reads the store as the views read an in-memory
matrix (a test point's row, a training point's column, ``mean(0)``), and ranks and sums stream over the blocks, so
no step ever holds the whole matrix.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from influence_core.errors import InputError
from influence_core.progress import ProgressFn, silent

# bytes of one stored chunk (a few query rows × a block's columns): small enough that one test point's row reads fast
CHUNK_TARGET_BYTES = 4 * 2**20
STORE_FORMAT = 1


def _format_bytes(n: float) -> str:
    from influence_core.resources import format_bytes

    return format_bytes(n)


@dataclass(frozen=True)
class StoreLayout:
    n_queries: int
    n_train: int
    block_rows: int

    @property
    def n_blocks(self) -> int:
        return -(-self.n_train // self.block_rows) if self.n_train else 0

    @property
    def nbytes(self) -> int:
        return 4 * self.n_queries * self.n_train

    def bounds(self, block: int) -> tuple[int, int]:
        a = block * self.block_rows
        return a, min(a + self.block_rows, self.n_train)

    @property
    def query_chunk(self) -> int:
        return int(max(1, min(self.n_queries, CHUNK_TARGET_BYTES // (4 * max(self.block_rows, 1)))))


def block_rows_for(n_queries: int, n_train: int, budget_bytes: int, row_bytes: int = 0) -> int:
    """Training rows per block: a block's scores (k floats a row) and its inputs (``row_bytes`` a row) within a quarter
    of the memory budget, at most 65,536 rows, and no more than the training set."""
    per_row = 4 * max(n_queries, 1) + row_bytes
    rows = max(1, budget_bytes // (4 * per_row))
    return int(max(1, min(rows, 65_536, max(n_train, 1))))


def check_disk(path: Path, nbytes: int) -> None:
    """Refuse, before any work, a matrix the disk under ``path`` cannot hold."""
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(parent).free
    if nbytes * 1.05 > free:
        raise InputError(
            f"the score matrix needs {_format_bytes(nbytes)} on disk at {parent}, and {_format_bytes(free)} is free: point "
            "INFLUENCE_LAB_CACHE at a larger disk, or score fewer held-out rows"
        )


def _open_or_create(path: Path, layout: StoreLayout, key: str):
    """The store at ``path`` for this key and layout: reopened to resume, or created anew (another key's is replaced)."""
    import zarr

    attrs = {"format": STORE_FORMAT, "key": key, "shape": [layout.n_queries, layout.n_train], "block_rows": layout.block_rows}
    if path.exists():
        try:
            group = zarr.open_group(str(path), mode="r+")
            if {k: group.attrs.get(k) for k in attrs} == attrs and set(group.array_keys()) >= {"scores", "done"}:
                return group
        except Exception:  # noqa: BLE001 — a damaged store is started over
            pass
        shutil.rmtree(path, ignore_errors=True)
    group = zarr.open_group(str(path), mode="w")
    group.create_array(
        "scores",
        shape=(layout.n_queries, layout.n_train),
        chunks=(layout.query_chunk, layout.block_rows),
        dtype="float32",
        compressors=None,  # scores are noise-like floats: compression costs time and saves little
        fill_value=np.nan,
    )
    group.create_array("done", shape=(max(layout.n_blocks, 1),), chunks=(1,), dtype="bool", fill_value=False)
    group.attrs.update({**attrs, "complete": False})
    return group


def write_score_matrix(
    path: Path,
    layout: StoreLayout,
    key: str,
    score_blocks: Callable[[Sequence[int], Callable[[int, np.ndarray], None], ProgressFn], None],
    progress: ProgressFn = silent,
) -> "ScoreMatrix":
    """Fill the store at ``path`` with the blocks not yet done. ``score_blocks(blocks, write, progress)`` computes the
    given blocks (in any order, anywhere) and calls ``write(block, scores)`` with each (k, rows) result as it comes."""
    check_disk(path, layout.nbytes if not path.exists() else 0)
    group = _open_or_create(path, layout, key)
    scores, done = group["scores"], group["done"]
    todo = [b for b, finished in enumerate(done[: layout.n_blocks]) if not finished] if layout.n_blocks else []
    if len(todo) < layout.n_blocks:
        progress(0.0, f"resuming: {layout.n_blocks - len(todo)} of {layout.n_blocks} blocks already on disk")

    def write(block: int, values: np.ndarray) -> None:
        a, b = layout.bounds(block)
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (layout.n_queries, b - a):
            raise ValueError(f"block {block} came back with shape {values.shape}, expected {(layout.n_queries, b - a)}")
        scores[:, a:b] = values
        done[block] = True  # only after its columns are on disk: a kill in between recomputes the block

    if todo:
        score_blocks(todo, write, progress)
    group.attrs["complete"] = True
    return ScoreMatrix(path)


class ScoreMatrix:
    """A finished score store read lazily: indexing reads only the chunks it touches; sums and ranks stream."""

    def __init__(self, path: Path | str):
        import zarr

        self.path = Path(path)
        group = zarr.open_group(str(self.path), mode="r")
        if not group.attrs.get("complete"):
            raise InputError(f"the score store at {self.path} is incomplete: run the same command again to finish it")
        self._scores = group["scores"]
        self.block_rows = int(group.attrs["block_rows"])

    @classmethod
    def open(cls, path: Path | str) -> Optional["ScoreMatrix"]:
        """The finished store at ``path``, or None (missing, incomplete or damaged)."""
        try:
            return cls(path)
        except Exception:  # noqa: BLE001
            return None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._scores.shape)

    @property
    def dtype(self):
        return np.dtype("float32")

    @property
    def nbytes(self) -> int:
        return 4 * self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, tuple) and any(isinstance(k, (np.ndarray, list)) for k in key):
            # np.ix_ index arrays (column / row vectors) → orthogonal selection
            return self._scores.oindex[tuple(np.asarray(k).ravel() if not isinstance(k, slice) else k for k in key)]
        return self._scores[key]

    def column_blocks(self) -> "list[tuple[int, int]]":
        n = self.shape[1]
        return [(a, min(a + self.block_rows, n)) for a in range(0, n, self.block_rows)]

    def sum(self, axis: int) -> np.ndarray:
        """Sums over queries (axis 0: one per training row) or over training rows (axis 1: one per query), streamed."""
        out = np.zeros(self.shape[1 - axis], dtype=np.float64)
        for a, b in self.column_blocks():
            block = np.asarray(self._scores[:, a:b], dtype=np.float64)
            if axis == 0:
                out[a:b] = block.sum(0)
            else:
                out += block.sum(1)
        return out

    def mean(self, axis: int) -> np.ndarray:
        return self.sum(axis) / max(self.shape[axis], 1)

    def top_k(self, query: int, k: int, by: str = "abs") -> np.ndarray:
        """The ``k`` training rows with the largest score for one query (``by``: "abs", "harmful" = most positive,
        "helpful" = most negative), strongest first; reads that query's row only."""
        row = np.asarray(self._scores[query], dtype=np.float64)
        key = {"abs": np.abs(row), "harmful": row, "helpful": -row}[by]
        k = min(k, len(row))
        part = np.argpartition(-key, k - 1)[:k] if k else np.array([], dtype=int)
        return part[np.argsort(-key[part], kind="stable")]

    def __array__(self, dtype=None, copy=None):
        values = np.asarray(self._scores[...])
        return values.astype(dtype) if dtype is not None else values


class TensorRows:
    """Training rows held in memory, handed out by block."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def rows(self, a: int, b: int):
        return self.x[a:b], self.y[a:b]


def _score_block(block: int, attributor, measurement, source, layout: StoreLayout) -> np.ndarray:
    a, b = layout.bounds(block)
    x, y = source.rows(a, b)
    return attributor.on_training_rows(x, y).scores(measurement)


def attributor_blocks(attributor, measurement, source, layout: StoreLayout):
    """``score_blocks`` for :func:`write_score_matrix`: the fitted method scores each block of ``source``'s rows (its
    curvature, checkpoints and preconditioned queries kept), on the Dask cluster when there is one."""
    from influence_core import distributed

    def run(blocks: Sequence[int], write: Callable[[int, np.ndarray], None], progress: ProgressFn) -> None:
        shared = {"attributor": attributor, "measurement": measurement, "source": source, "layout": layout}
        distributed.map_items(
            _score_block,
            list(blocks),
            shared,
            on_result=lambda i, values: write(blocks[i], values),
            progress=progress,
            message="score blocks",
        )

    return run
