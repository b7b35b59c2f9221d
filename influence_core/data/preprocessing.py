"""Preprocessing that matches a model: the feature order of a CSV, the channels of images, and the normalisation.

A model the user trained elsewhere expects its inputs exactly as they were during its training: the same feature
columns in the same order, the same number of image channels and the same mean / std. These are checked here,
before any work, with a message that names what differs.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from influence_core.errors import InputError


def parse_numbers(text: Optional[str], flag: str) -> Optional[tuple[float, ...]]:
    """``"0.5,0.25"`` → ``(0.5, 0.25)``; None or empty stays None."""
    if text is None or not str(text).strip():
        return None
    try:
        return tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"{flag} takes numbers separated by commas (e.g. 0.1307 or 0.485,0.456,0.406), got {text!r}") from None


def input_settings(
    dataset: str, feature_columns: str = "", channels: Optional[int] = None, mean: str = "", std: str = ""
) -> dict:
    """The DataConfig fields that feed a model its inputs the way it was trained, from the app's text fields
    (comma-separated; empty = the default: the file's column order, grayscale, the default scaling)."""
    if dataset == "csv" and channels not in (None, 1):
        raise InputError("channels are for images; a CSV's input is its feature columns")
    if dataset != "csv" and feature_columns.strip():
        raise InputError("feature columns are for a CSV; an image folder's input is set by its image size and channels")
    columns = tuple(c.strip() for c in feature_columns.split(",") if c.strip()) or None
    return {
        "feature_columns": columns,
        "channels": None if dataset == "csv" else check_channels(channels),
        "mean": parse_numbers(mean, "the mean"),
        "std": parse_numbers(std, "the std"),
    }


def check_channels(channels: Optional[int]) -> int:
    """1 (grayscale) or 3 (RGB); None = grayscale, the loaders' default."""
    if channels is None:
        return 1
    if channels not in (1, 3):
        raise InputError(f"images have 1 channel (grayscale) or 3 (RGB), not {channels}")
    return int(channels)


def order_features(columns: Sequence[str], wanted: Optional[Sequence[str]], reserved: Sequence[str], file_name: str) -> list[str]:
    """The feature columns in the model's order: ``wanted`` when given (each must be a column, once, and not the
    label / id column), else every other column in the file's order."""
    if not wanted:
        return [c for c in columns if c not in reserved]
    wanted = list(wanted)
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputError(f"feature column(s) {', '.join(map(repr, missing))} not in {file_name}; its columns: {', '.join(map(str, columns))}")
    taken = [c for c in wanted if c in reserved]
    if taken:
        raise InputError(f"{', '.join(map(repr, taken))} is the label or id column, not a feature")
    repeated = sorted({c for c in wanted if wanted.count(c) > 1})
    if repeated:
        raise InputError(f"feature column(s) {', '.join(map(repr, repeated))} named more than once")
    return wanted


def normalisation(mean: Optional[Sequence[float]], std: Optional[Sequence[float]], width: int, what: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The given mean / std as arrays of ``width`` (one number is broadcast), or None when neither is given."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise InputError("give both a mean and a std (use mean 0 or std 1 to leave one side unchanged)")
    arrays = []
    for name, values in (("mean", mean), ("std", std)):
        values = np.asarray(values, dtype=np.float64).ravel()
        if len(values) == 1:
            values = np.repeat(values, width)
        if len(values) != width:
            raise InputError(f"the {name} has {len(values)} numbers; this data has {width} {what}: give one, or one per {what[:-1]}")
        if not np.isfinite(values).all():
            raise InputError(f"the {name} must be finite numbers")
        arrays.append(values)
    if (arrays[1] <= 0).any():
        raise InputError("every std must be above 0")
    return arrays[0], arrays[1]


def normalise_images(x: np.ndarray, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> np.ndarray:
    """(x − mean[c]) / std[c] per channel of an (n, C, H, W) batch in [0, 1]; unchanged when no mean / std is given."""
    stats = normalisation(mean, std, x.shape[1], "channels")
    if stats is None:
        return x
    m, s = (v.astype(x.dtype).reshape(1, -1, 1, 1) for v in stats)
    return (x - m) / s
