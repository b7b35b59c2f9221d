"""Images from a folder with one subfolder per class (torchvision ``ImageFolder`` layout).

Decoding is done with PIL here (not by torchvision) so that a bad file never ends in a raw
traceback. Policy for undecodable files: by default they are **skipped** and reported in one
:class:`SkippedImagesWarning` that names them (the app shows it; ``warnings.catch_warnings``
catches it); with ``skip_bad=False`` the first one raises an :class:`InputError` naming the file.
Hidden files and files without an image extension are ignored silently.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from influence_core.data.base import Dataset, split_indices
from influence_core.data.preprocessing import normalisation, normalise_images
from influence_core.errors import DataWarning, InputError
from influence_core.progress import ProgressFn
from influence_core.text import plural

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")

EXPECTED_LAYOUT = "expected layout: one subfolder per class with the images inside, e.g. <folder>/cat/img001.png, <folder>/cat/img002.jpg, <folder>/dog/img101.png"


# images are squashed to image_size × image_size: below 4 nothing is left to see, above 512 a few thousand
# images no longer fit in memory (the array is n × C × size² float32)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 4, 512


def check_image_size(image_size) -> int:
    """``image_size`` as an int if it is a whole number of pixels in [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE], else an InputError."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise InputError(f"image size must be a whole number of pixels from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} "
                         f"(--image-size in the command line), got {image_size!r}; 28 or 32 suit small images, 64 larger ones")
    return int(image_size)


class SkippedImagesWarning(DataWarning):
    """Some image files could not be decoded and were left out (the message names them)."""


# ------------------------------------------------------------------------------- decoding


def decode_image(path: str | os.PathLike, image_size: int, grayscale: bool = True) -> np.ndarray:
    """Decode one image file to a float32 array (C, image_size, image_size) in [0, 1].

    Resized (squashed, no crop) with PIL's antialiased bilinear filter; EXIF rotation applied;
    16-bit / float images are scaled by their maximum. Raises :class:`InputError` naming the file.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.draft("L" if grayscale else "RGB", (image_size, image_size))  # fast JPEG downscale
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit PNG/TIFF, float TIFF
                arr = np.asarray(im, dtype=np.float32)
                top = float(arr.max()) if arr.size else 0.0
                arr = arr / (top if top > 255.0 else 255.0)
                im = Image.fromarray(np.clip(arr, 0.0, 1.0).astype(np.float32), mode="F")
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
                out = np.asarray(im, dtype=np.float32)[None]
                return np.repeat(out, 1 if grayscale else 3, axis=0)
            im = im.convert("L" if grayscale else "RGB")
            im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
        reason = str(exc).strip() or type(exc).__name__
        raise InputError(f"cannot decode image {path}: {reason} — replace or delete this file") from exc
    return arr[None] if grayscale else np.ascontiguousarray(arr.transpose(2, 0, 1))


def resize_images(x: np.ndarray, image_size: int) -> np.ndarray:
    """Resize a batch (n, C, H, W) to (n, C, image_size, image_size) with antialiased bilinear interpolation."""
    import torch
    import torch.nn.functional as F

    if x.shape[-1] == image_size and x.shape[-2] == image_size:
        return x
    if image_size < 1:
        raise InputError(f"image size must be ≥ 1, got {image_size}")
    with torch.no_grad():
        out = F.interpolate(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0).numpy()


_DECODE_CACHE: "OrderedDict[tuple, tuple[np.ndarray, list[tuple[str, str]]]]" = OrderedDict()
_DECODE_CACHE_SIZE = 4


def decode_files(
    paths: Sequence[str | os.PathLike],
    image_size: int,
    grayscale: bool = True,
    progress: Optional[ProgressFn] = None,
    message: str = "decoding images",
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode many files in parallel threads → ``(x (n_ok, C, H, W), [(bad_path, reason), ...])``.

    Rows of ``x`` follow ``paths`` with the bad files left out. The result is cached in memory,
    keyed by the files' paths, sizes and modification times, so a rerun of the app is instant.
    """
    paths = [str(p) for p in paths]
    try:
        stamps = tuple((p, st.st_size, st.st_mtime_ns) for p, st in ((p, os.stat(p)) for p in paths))
    except OSError as exc:
        raise InputError(f"cannot read image {exc.filename}: {exc.strerror}") from exc
    key = (stamps, int(image_size), bool(grayscale))
    if key in _DECODE_CACHE:
        _DECODE_CACHE.move_to_end(key)
        x, bad = _DECODE_CACHE[key]
        if progress:
            progress(1.0, message)
        return x.copy(), list(bad)

    def one(path: str) -> np.ndarray | str:
        try:
            return decode_image(path, image_size, grayscale)
        except InputError as exc:
            cause = exc.__cause__
            return (str(cause).strip() or type(cause).__name__) if cause is not None else str(exc)

    channels = 1 if grayscale else 3
    x = np.empty((len(paths), channels, image_size, image_size), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    bad: list[tuple[str, str]] = []
    workers = max(1, min(8, os.cpu_count() or 1))
    step = max(1, len(paths) // 100)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, result in enumerate(pool.map(one, paths, chunksize=16)):
            if isinstance(result, str):
                bad.append((paths[i], result))
            else:
                x[i] = result
                ok[i] = True
            if progress and (i % step == 0 or i == len(paths) - 1):
                progress((i + 1) / max(len(paths), 1), message)
    x = x[ok]
    _DECODE_CACHE[key] = (x, bad)
    while len(_DECODE_CACHE) > _DECODE_CACHE_SIZE:
        _DECODE_CACHE.popitem(last=False)
    return x.copy(), list(bad)


def warn_skipped(bad: list[tuple[str, str]], root: str | os.PathLike | None = None) -> None:
    """Emit one :class:`SkippedImagesWarning` naming the undecodable files (up to 5, then a count)."""
    if not bad:
        return
    shown = [f"{os.path.relpath(p, root) if root else p} ({reason})" for p, reason in bad[:5]]
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    warnings.warn(
        f"skipped {plural(len(bad), 'image file')} that could not be decoded: {'; '.join(shown)}{more}. Replace or delete them.",
        SkippedImagesWarning,
        stacklevel=3,
    )


# ------------------------------------------------------------------------------- the loader


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_image_folder(path: str | os.PathLike) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted subfolder names) and ``(relative_file_path, class_index)`` pairs; checks the layout."""
    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(f"image folder {root} does not exist; {EXPECTED_LAYOUT}")
    if not root.is_dir():
        raise InputError(f"{root} is a file, not a folder; {EXPECTED_LAYOUT}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if not class_dirs:
        loose = [f for f in os.listdir(root) if _is_image(f)]
        hint = f"found {plural(len(loose), 'image')} directly in the folder but no class subfolders; move them into one subfolder per class" if loose else "found no class subfolders"
        raise InputError(f"{root}: {hint}; {EXPECTED_LAYOUT}")
    if len(class_dirs) < 2:
        raise InputError(f"{root} has only one class subfolder ({class_dirs[0].name}); a classifier needs at least two; {EXPECTED_LAYOUT}")
    files: list[tuple[str, int]] = []
    empty = []
    for k, d in enumerate(class_dirs):
        found = []
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            found += [os.path.relpath(os.path.join(dirpath, f), root) for f in sorted(filenames) if _is_image(f)]
        if not found:
            empty.append(d.name)
        files += [(f.replace(os.sep, "/"), k) for f in found]
    if empty:
        raise InputError(
            f"class folder(s) {', '.join(empty)} in {root} contain no images ({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)"
        )
    return [d.name for d in class_dirs], files


def load_image_folder(
    path: str | os.PathLike,
    image_size: int = 28,
    grayscale: bool = True,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = True,
    progress: Optional[ProgressFn] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Dataset:
    """Load ``path/<class>/**/<image>`` as a seeded, stratified train/test split.

    ``mean`` / ``std`` (one number, or one per channel) normalise the [0, 1] pixels as a model trained elsewhere expects.

    x is (n, C, image_size, image_size) float32 in [0, 1] (C = 1 if grayscale else 3); class
    indices follow the sorted subfolder names; ids are file paths relative to ``path``.
    Undecodable files are skipped with a :class:`SkippedImagesWarning` (or raise with ``skip_bad=False``).
    """
    image_size = check_image_size(image_size)
    normalisation(mean, std, 1 if grayscale else 3, "channels")  # refused before any image is decoded
    root = Path(path).expanduser()
    class_names, files = list_image_folder(root)
    rel = [f for f, _ in files]
    y = np.array([k for _, k in files], dtype=np.int64)
    x, bad = decode_files([root / f for f in rel], image_size, grayscale, progress)
    if bad and not skip_bad:
        first, reason = bad[0]
        more = f" ({plural(len(bad) - 1, 'more undecodable file')} after it)" if len(bad) > 1 else ""
        raise InputError(f"cannot decode image {os.path.relpath(first, root)}: {reason}{more} — replace or delete it, or skip bad files")
    bad_set = {p for p, _ in bad}
    keep = np.array([str(root / f) not in bad_set for f in rel], dtype=bool)
    warn_skipped(bad, root)
    y, ids = y[keep], np.array(rel, dtype=object)[keep]
    left = np.bincount(y, minlength=len(class_names))
    if (left == 0).any():
        dead = [class_names[k] for k in np.flatnonzero(left == 0)]
        raise InputError(f"no decodable images left in class folder(s) {', '.join(dead)}; replace the broken files")
    if len(y) < 4:
        raise InputError(f"{root} holds only {len(y)} usable images; add at least 4 (some for training, some for testing)")
    x = normalise_images(x, mean, std)
    tr, te = split_indices(len(y), test_fraction, seed, stratify=y)
    return Dataset(
        name=f"image_folder:{root.name}",
        x_train=x[tr],
        y_train=y[tr],
        x_test=x[te],
        y_test=y[te],
        class_names=class_names,
        ids_train=ids[tr].astype(str),
        ids_test=ids[te].astype(str),
    )
