"""Your own tabular data: a CSV with numeric feature columns and one label column."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from influence_core.data.base import Dataset, split_indices
from influence_core.data.preprocessing import normalisation, order_features
from influence_core.errors import InputError
from influence_core.text import plural

MIN_ROWS = 4


def _columns_hint(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1)
    found = ", ".join(repr(c) for c in columns[:30]) + (f" … ({len(columns)} in all)" if len(columns) > 30 else "")
    return (f"did you mean {close[0]!r}? " if close else "") + f"columns found: {found}"


def _short_list(values: list, limit: int = 5) -> str:
    return ", ".join(str(v) for v in values[:limit]) + (f" … ({len(values)} in all)" if len(values) > limit else "")


def _label_names(values: np.ndarray) -> list[str]:
    """Printable class names: 1.0 → "1" when all labels are whole numbers."""
    out = []
    for v in values:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out


SEPARATORS = (",", ";", "\t", "|")
_SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "'|'"}


def detect_separator(file: Path) -> str:
    """The column separator, from the header line: a comma unless the header holds none and another of
    ``SEPARATORS`` (semicolon, tab, '|': what spreadsheets export in many locales) splits it."""
    try:
        with open(file, "rb") as f:
            sample = f.read(64 * 1024)
    except OSError:
        return ","  # read_csv says what is wrong with the file
    header = next((line for line in sample.decode("utf-8", errors="replace").splitlines() if line.strip()), "")
    if "," in header:
        return ","
    counts = {sep: header.count(sep) for sep in SEPARATORS[1:]}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def _read(path: str | os.PathLike, **read_csv_kwargs) -> tuple[Path, "pd.DataFrame"]:
    """The file and its table, or an :class:`InputError` that says what is wrong with the path or the text.
    The separator is detected from the header (comma, semicolon, tab or '|')."""
    import pandas as pd

    file = Path(path).expanduser()
    if not file.exists():
        raise InputError(f"CSV file {file} does not exist; check the path")
    if file.is_dir():
        raise InputError(f"{file} is a folder; give the path of a .csv file")
    sep = detect_separator(file)
    try:
        df = pd.read_csv(file, sep=sep, **read_csv_kwargs)
    except pd.errors.EmptyDataError:
        raise InputError(f"CSV file {file} is empty; it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot parse {file} as CSV ({first}); save it as UTF-8 text with one header row, "
                         f"columns separated by commas (or semicolons, tabs, '|')") from None
    df.columns = [str(c) for c in df.columns]
    return file, df


def _one_column_hint(file: Path, columns: list[str]) -> str:
    """For a table read as one column: say which separator was looked for."""
    if len(columns) != 1:
        return ""
    return (f"; {file.name} was read as a single column {columns[0]!r}: separate the columns with commas, semicolons, "
            "tabs or '|' (spaces are not read as separators)")


def _encode_labels(labels: "pd.Series") -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique label values, each row's index into them): strings are stripped, numbers kept."""
    import pandas as pd

    raw = labels.to_numpy() if pd.api.types.is_numeric_dtype(labels) else labels.astype(str).str.strip().to_numpy(dtype=object)
    return np.unique(raw, return_inverse=True)


def check_classes_have_rows(label_column: str, y: np.ndarray, n_classes: int, labels: "pd.Series") -> None:
    """Refuse a label column where most classes hold a single row: a measurement (a price, a score), not classes."""
    import pandas as pd

    counts = np.bincount(y, minlength=n_classes)
    singletons = int((counts == 1).sum())
    if n_classes > 2 and singletons > n_classes / 2:
        kind = ("holds continuous numbers" if pd.api.types.is_float_dtype(labels) and not np.all(np.mod(labels.to_numpy(), 1) == 0)
                else "looks like one value per row")
        raise InputError(
            f"label column {label_column!r} has {n_classes} classes for {len(y)} rows and {singletons} of them have only one row: "
            f"it {kind}, not classes. Name the column that holds the classes, or bin the values into a few classes first"
        )


LABEL_COLUMN_NAMES = ("label", "labels", "target", "class", "y", "diagnosis", "outcome")


def csv_columns(path: str | os.PathLike) -> list[str]:
    """The header of a CSV (reads no data rows): for pickers that let a person name the label column."""
    return list(_read(path, nrows=0)[1].columns)


def guess_label_column(columns: list[str]) -> str:
    """A column named like a label (label, target, class, …), else the last column."""
    lowered = {c.strip().lower(): c for c in columns}
    return next((lowered[n] for n in LABEL_COLUMN_NAMES if n in lowered), columns[-1])


def guess_id_column(path: str | os.PathLike, columns: list[str], label_column: str) -> Optional[str]:
    """A column that names rows rather than measuring them: the first one besides the label that holds
    text in the file's first rows (it could not be a feature) or is named like an id; None if none is."""
    import pandas as pd

    head = _read(path, nrows=200)[1]
    for c in columns:
        if c == label_column:
            continue
        named_like_id = c.strip().lower() in ("id", "identifier", "name", "filename", "file") or c.strip().lower().endswith(("_id", " id"))
        if named_like_id or not (pd.api.types.is_numeric_dtype(head[c]) or pd.api.types.is_bool_dtype(head[c])):
            return c
    return None


def csv_classes(path: str | os.PathLike, label_column: str) -> tuple[list[str], int]:
    """(the class names ``load_csv`` gives this label column, in its order; the number of data rows),
    reading that column only."""
    file, df = _read(path, usecols=lambda c: str(c) == label_column)
    if label_column not in df.columns:
        raise InputError(f"label column {label_column!r} not in {file.name}; {_columns_hint(label_column, csv_columns(file))}")
    return _label_names(_encode_labels(df[label_column].dropna())[0]), len(df)


def load_csv(
    path: str | os.PathLike,
    label_column: str,
    id_column: Optional[str] = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    feature_columns: Optional[Sequence[str]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Dataset:
    """Load a CSV as a seeded, stratified train/test split.

    ``feature_columns`` sets which columns are features and their order (a model trained elsewhere expects its own);
    ``mean`` / ``std`` (one number, or one per feature) replace the training-split standardisation below.

    Every column other than the label and id column is a feature and must be numeric. Labels
    (strings or numbers) are mapped to 0..K-1 in sorted order (``class_names`` keeps the
    originals). Features are standardised with the *training* mean and std: x' = (x − μ_train) / σ_train.
    ids are the id column's values, else the 0-based data row number (header not counted).
    """
    import pandas as pd

    file, df = _read(path)
    columns = list(df.columns)
    if label_column not in columns:
        raise InputError(f"label column {label_column!r} not in {file.name}; {_columns_hint(label_column, columns)}"
                         + _one_column_hint(file, columns))
    if id_column is not None and id_column not in columns:
        raise InputError(f"id column {id_column!r} not in {file.name}; {_columns_hint(id_column, columns)}")
    if id_column == label_column:
        raise InputError("the id column and the label column must be different columns")
    if len(df) < MIN_ROWS:
        raise InputError(f"{file.name} has {plural(len(df), 'data row')}; at least {MIN_ROWS} are needed (some to train, some to test)")

    feature_cols = order_features(columns, feature_columns, (label_column, id_column), file.name)
    if not feature_cols:
        raise InputError(f"{file.name} has no feature columns besides the label{' and id' if id_column else ''} column"
                         + _one_column_hint(file, columns))
    non_numeric = [c for c in feature_cols if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))]
    if non_numeric:
        raise InputError(
            f"feature column(s) {_short_list([repr(c) for c in non_numeric], 10)} are not numeric; encode them as numbers, drop them, or name one as the id column"
        )
    features = df[feature_cols].astype(np.float64)
    bad_counts = (~np.isfinite(features.to_numpy())).sum(axis=0)
    if bad_counts.any():
        named = [f"{c!r} ({int(n)})" for c, n in zip(feature_cols, bad_counts) if n]
        raise InputError(f"missing or infinite values in feature column(s) {_short_list(named, 10)}; fill or drop those rows")

    labels = df[label_column]
    if labels.isna().any():
        rows = np.flatnonzero(labels.isna().to_numpy()).tolist()
        raise InputError(f"label column {label_column!r} is empty in {plural(len(rows), 'row')} (rows {_short_list(rows)}); fill or drop them")
    uniques, y = _encode_labels(labels)
    if len(uniques) < 2:
        raise InputError(f"label column {label_column!r} has only one class ({_label_names(uniques)[0]}); a classifier needs at least two")
    check_classes_have_rows(label_column, y, len(uniques), labels)

    if id_column is not None:
        id_values = df[id_column]
        if id_values.isna().any():
            rows = np.flatnonzero(id_values.isna().to_numpy()).tolist()
            raise InputError(f"id column {id_column!r} is empty in row(s) {_short_list(rows)}; every row needs an id")
        dup = id_values[id_values.duplicated(keep=False)]
        if len(dup):
            shown = _short_list(list(dict.fromkeys(dup.tolist())))
            raise InputError(f"id column {id_column!r} has duplicate ids ({shown}); ids must be unique")
        ids = id_values.to_numpy()
    else:
        ids = np.arange(len(df))

    x = features.to_numpy(dtype=np.float64)
    tr, te = split_indices(len(df), test_fraction, seed, stratify=y)
    given = normalisation(mean, std, len(feature_cols), "feature columns")
    if given is None:
        mean = x[tr].mean(axis=0)
        std = x[tr].std(axis=0)
        std[std == 0] = 1.0  # a constant column stays 0 after centring
    else:
        mean, std = given
    x = (x - mean) / std
    return Dataset(
        name=f"csv:{file.name}",
        x_train=x[tr],
        y_train=y[tr],
        x_test=x[te],
        y_test=y[te],
        class_names=_label_names(uniques),
        ids_train=ids[tr],
        ids_test=ids[te],
        feature_names=feature_cols,
    )
