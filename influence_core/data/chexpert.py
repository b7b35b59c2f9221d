"""CheXpert chest X-rays (Irvin et al. 2019) as a binary task with sex as the subgroup.

Rules: binary target (default Pleural Effusion) with 1 = positive, 0 = negative; uncertain (-1)
and blank labels are dropped (or mapped, see ``uncertain``); frontal views only; one scan per
patient (the earliest study, then the lowest view number, among that patient's usable scans).
Images are decoded grayscale and resized (squashed) to ``image_size``². ids are the CSV ``Path``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from influence_core.data.base import Dataset, split_indices, stratified_subset
from influence_core.data.image_folder import decode_files, warn_skipped
from influence_core.errors import InputError
from influence_core.text import plural
from influence_core.progress import ProgressFn, scaled

OBSERVATIONS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
REQUIRED_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral"]

EXPECTED_LAYOUT = (
    "expected the official CheXpert layout: <root>/train.csv (and optionally valid.csv) with columns "
    "Path, Sex, Age, Frontal/Lateral, AP/PA and the 14 observations, and the images at the CSV paths, e.g. "
    "<root>/train/patient00001/study1/view1_frontal.jpg, where <root> is the CheXpert-v1.0-small folder "
    "(or the folder that contains it)"
)


def parse_chexpert_labels(
    df: "pandas.DataFrame",  # noqa: F821
    target: str = "Pleural Effusion",
    frontal_only: bool = True,
    one_per_patient: bool = True,
    uncertain: str = "drop",
) -> "pandas.DataFrame":  # noqa: F821
    """The usable rows of a CheXpert label table, one per scan kept.

    Returns a DataFrame (original index kept) with columns ``Path``, ``patient``, ``study``,
    ``view``, ``Sex``, ``Age``, ``label`` (0/1). ``uncertain`` = "drop" (default), "positive"
    (U-Ones) or "negative" (U-Zeros); blank labels are always dropped.
    """
    import pandas as pd

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"CheXpert label table lacks column(s) {missing}; columns found: {list(map(str, df.columns))}; {EXPECTED_LAYOUT}")
    if target not in df.columns:
        present = [c for c in OBSERVATIONS if c in df.columns]
        raise InputError(f"target {target!r} is not a column of the CheXpert labels; observation columns found: {present}")
    if uncertain not in ("drop", "positive", "negative"):
        raise InputError(f"uncertain must be 'drop', 'positive' or 'negative', got {uncertain!r}")

    parts = df["Path"].astype(str).str.extract(r"(patient\d+)/study(\d+)/view(\d+)")
    unparsable = parts[0].isna()
    if unparsable.any():
        example = df.loc[unparsable, "Path"].iloc[0]
        raise InputError(
            f"{plural(unparsable.sum(), 'Path value')} {'does' if unparsable.sum() == 1 else 'do'} not look like '.../patient00001/study1/view1_frontal.jpg' (e.g. {example!r}); {EXPECTED_LAYOUT}"
        )
    labels = pd.to_numeric(df[target], errors="coerce")
    if uncertain == "positive":
        labels = labels.replace(-1.0, 1.0)
    elif uncertain == "negative":
        labels = labels.replace(-1.0, 0.0)
    out = pd.DataFrame(
        {
            "Path": df["Path"].astype(str),
            "patient": parts[0],
            "study": parts[1].astype(int),
            "view": parts[2].astype(int),
            "Sex": df["Sex"].fillna("Unknown").astype(str),
            "Age": pd.to_numeric(df["Age"], errors="coerce"),
            "label": labels,
        },
        index=df.index,
    )
    keep = out["label"].isin([0.0, 1.0])
    if frontal_only:
        keep &= df["Frontal/Lateral"].astype(str).str.strip().str.lower().eq("frontal")
    out = out[keep].copy()
    out["label"] = out["label"].astype(np.int64)
    if one_per_patient:
        out = out.sort_values(["patient", "study", "view"], kind="stable").drop_duplicates("patient", keep="first")
    return out


def _find_csv(root: Path, name: str) -> Optional[Path]:
    """``name``.csv (or .csv.gz) in root or in a CheXpert* subfolder of root."""
    folders = [root] + sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower().startswith("chexpert"))
    for folder in folders:
        for suffix in (".csv", ".csv.gz"):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    return None


def _path_resolver(csv_file: Path, root: Path, sample: list[str]) -> Optional[Callable[[str], Path]]:
    """Pick how the CSV's Path values map to files: relative to the CSV's folder, its parent or root, with or without the first component."""
    base = csv_file.parent
    bases = list(dict.fromkeys([base.parent, base, root, root.parent]))

    def strategies():
        for b in bases:
            yield lambda p, b=b: b / p
            yield lambda p, b=b: b / Path(*Path(p).parts[1:]) if len(Path(p).parts) > 1 else b / p

    for strategy in strategies():
        if any(strategy(p).is_file() for p in sample):
            return strategy
    return None


def _read_labels(csv_file: Path) -> "pandas.DataFrame":  # noqa: F821
    import pandas as pd

    try:
        return pd.read_csv(csv_file)
    except Exception as exc:
        raise InputError(f"cannot read {csv_file} as CSV ({type(exc).__name__}: {str(exc).strip()[:120]}); {EXPECTED_LAYOUT}") from None


def load_chexpert(
    root: str | os.PathLike,
    image_size: int = 64,
    target: str = "Pleural Effusion",
    seed: int = 0,
    max_samples: Optional[int] = None,
    test_fraction: float = 0.2,
    use_valid: bool = False,
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    uncertain: str = "drop",
    progress: Optional[ProgressFn] = None,
) -> Dataset:
    """CheXpert as (n, 1, image_size, image_size) float32 in [0, 1]; labels 0 = no ``target``, 1 = ``target``.

    Test set: a seeded split of train.csv by patient (``test_fraction``), or valid.csv when
    ``use_valid`` and it exists. ``max_samples`` caps the usable scans (stratified, seeded)
    *before* decoding; ``n_train`` / ``n_test`` cap each split likewise. groups_* = Sex.
    Missing image files are skipped with a warning.
    """
    import pandas as pd

    folder = Path(root).expanduser()
    if folder.is_file():  # a file where the folder goes (its train.csv, or a CSV of one's own): say which
        inside = folder.name.lower() in ("train.csv", "valid.csv")
        raise InputError(
            f"{folder} is a file, not the CheXpert folder: "
            + (f"give the folder that holds it ({folder.parent})" if inside else f"give the folder; {EXPECTED_LAYOUT}")
        )
    if not folder.is_dir():
        raise InputError(f"CheXpert folder {folder} does not exist; {EXPECTED_LAYOUT}")
    train_csv = _find_csv(folder, "train")
    if train_csv is None:
        raise InputError(f"no train.csv found in {folder}; {EXPECTED_LAYOUT}")
    table = parse_chexpert_labels(_read_labels(train_csv), target=target, uncertain=uncertain)
    valid_csv = _find_csv(folder, "valid") if use_valid else None
    if valid_csv is not None:
        test_table = parse_chexpert_labels(_read_labels(valid_csv), target=target, uncertain=uncertain)
        test_table = test_table[~test_table["patient"].isin(set(table["patient"]))]
        if max_samples:
            table = table.iloc[stratified_subset(table["label"].to_numpy(), max_samples, seed)]
        train_table = table
    else:
        if max_samples:
            table = table.iloc[stratified_subset(table["label"].to_numpy(), max_samples, seed)]
        if table["label"].nunique() < 2 or len(table) < 4:
            raise InputError(
                f"{train_csv} has {len(table)} usable frontal scans with a definite {target!r} label and needs both classes and at least 4; check the CSV"
            )
        # one scan per patient, so a row split is a patient split
        tr, te = split_indices(len(table), test_fraction, seed, stratify=table["label"].to_numpy())
        train_table, test_table = table.iloc[tr], table.iloc[te]
    train_table = train_table.iloc[stratified_subset(train_table["label"].to_numpy(), n_train, seed)]
    test_table = test_table.iloc[stratified_subset(test_table["label"].to_numpy(), n_test, seed + 1)]
    if train_table["label"].nunique() < 2:
        raise InputError(f"the CheXpert training split has only one {target!r} class; use more samples")

    sample = pd.concat([train_table["Path"].head(20), test_table["Path"].head(5)]).tolist()
    resolve = _path_resolver(train_csv, folder, sample)
    if resolve is None:
        raise InputError(f"none of the images listed in {train_csv.name} were found (e.g. {sample[0]!r}) under {folder}; {EXPECTED_LAYOUT}")
    test_resolve = resolve
    if valid_csv is not None:
        test_resolve = _path_resolver(valid_csv, folder, test_table["Path"].head(20).tolist()) or resolve

    parts = []
    for i, (tab, res, name) in enumerate(((train_table, resolve, "train"), (test_table, test_resolve, "test"))):
        files = [res(p) for p in tab["Path"]]
        exists = np.array([f.is_file() for f in files], dtype=bool)
        missing = [(str(f), "file not found") for f, ok in zip(files, exists) if not ok]
        x, bad = decode_files(
            [f for f, ok in zip(files, exists) if ok],
            image_size,
            True,
            scaled(progress, i * 0.8, 0.8 + i * 0.2),
            f"decoding CheXpert {name} images",
        )
        bad_set = {p for p, _ in bad}
        used = exists & np.array([str(f) not in bad_set for f in files], dtype=bool)
        warn_skipped(missing + bad, folder)
        t = tab[used]
        parts.append((x, t["label"].to_numpy(), t["Path"].to_numpy(dtype=str), t["Sex"].to_numpy(dtype=str)))
    (x_tr, y_tr, id_tr, g_tr), (x_te, y_te, id_te, g_te) = parts
    if len(np.unique(y_tr)) < 2 or len(y_te) == 0:
        raise InputError(f"too few decodable CheXpert images in {folder} ({len(y_tr)} train, {len(y_te)} test); check the image files")
    return Dataset(
        name="chexpert",
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        class_names=[f"no {target}", target],
        ids_train=id_tr,
        ids_test=id_te,
        groups_train=g_tr,
        groups_test=g_te,
    )
