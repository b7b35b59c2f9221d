"""Label-noise detectors, one file per family, registered by name (see :mod:`influence_core.detectors.base`).

:func:`detect` runs the chosen detectors on a trained run and returns every ranking side by side, the default
(:data:`DEFAULT_DETECTOR`) first; a new detector file registers itself and is listed everywhere with no other edit.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from influence_core.detectors.base import REGISTRY, DetectionContext, Detector, register
from influence_core.errors import InputError
from influence_core.progress import ProgressFn, scaled, silent

for _module in pkgutil.iter_modules(__path__):  # every file registers its detectors
    importlib.import_module(f"{__name__}.{_module.name}")

# the ranking the CLI's suspicion column and the detection views lead with, chosen by benchmarks/label_noise.py
DEFAULT_DETECTOR = "combined"


def detector_names(on_request: bool = False) -> tuple[str, ...]:
    """The registered detectors that run by default (with ``on_request``: every one, the costly ones too)."""
    return tuple(n for n, cls in REGISTRY.items() if on_request or not cls.on_request)


def get(name: str) -> type[Detector]:
    if name not in REGISTRY:
        raise InputError(f"unknown detector {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def label(name: str) -> str:
    return get(name).label


@dataclass
class Detection:
    """Every chosen detector's ranking of the training rows (higher = more suspicious), side by side."""

    scores: dict[str, np.ndarray]
    default: str
    skipped: dict[str, str] = field(default_factory=dict)  # detector → why it could not run
    seconds: dict[str, float] = field(default_factory=dict)
    suggested: dict[str, np.ndarray] = field(default_factory=dict)
    components: tuple[str, ...] = ()  # what the default averaged, where it is the combined ranking
    waiting: tuple[str, ...] = ()  # skipped only because out-of-fold trainings were not asked for yet
    basis: str = ""  # why the default ranks by what it does on this run (the combined ranking's gate)

    def _keep(self, key: tuple, compute):
        """What does not follow the view's k (rank correlations, AUROC / AP against a mask), kept per set of scores (a
        detector added later makes a new one): a threshold slider redraws the side-by-side table on every move."""
        kept = self.__dict__.setdefault("_kept", {})  # not a field: a Detection pickled before it unpickles without one
        held = kept.get("scores")  # the arrays the kept values were computed from (held, so none is mistaken for another)
        if held is None or held.keys() != self.scores.keys() or any(held[n] is not s for n, s in self.scores.items()):
            kept.clear()
            kept["scores"] = dict(self.scores)
        if key not in kept:
            kept[key] = compute()
        return kept[key]

    @property
    def suspicion(self) -> np.ndarray:
        return self.scores[self.default]

    def ranks(self) -> pd.DataFrame:
        """Each detector's rank of every row (1 = most suspicious)."""
        return pd.DataFrame({n: pd.Series(s).rank(ascending=False, method="first").astype(int).to_numpy() for n, s in self.scores.items()})

    def agreement(self) -> pd.DataFrame:
        """Spearman correlation between every two detectors' rankings."""
        return self._keep(("agreement",), lambda: pd.DataFrame(self.scores).corr(method="spearman"))

    def flagged_by(self, k: int) -> pd.DataFrame:
        """Whether each detector puts each row in its top ``k``."""
        return self.ranks() <= k

    def caught(self, k: int, mask: np.ndarray, name: Optional[str] = None) -> int:
        """How many rows of ``mask`` (planted flips) detector ``name`` (default: the default ranking) has in its top ``k``."""
        return int((self.flagged_by(k)[name or self.default].to_numpy() & np.asarray(mask, bool)).sum())

    def overlap_at(self, k: int) -> pd.DataFrame:
        """Share of each detector's top ``k`` that each other detector's top ``k`` holds too."""
        flags = self.flagged_by(k)
        names = list(flags)
        return pd.DataFrame([[float((flags[a] & flags[b]).sum()) / max(k, 1) for b in names] for a in names], index=names, columns=names)

    def side_by_side(self, k: int, mask: Optional[np.ndarray] = None) -> pd.DataFrame:
        """One line per detector: what it measures, the share of the default's top ``k`` it shares, its seconds, and
        with a ground-truth ``mask`` (planted flips) its AUROC and average precision. Detectors whose rankings are
        the same (Spearman 1) are named equal."""
        from influence_core.metrics import auroc, average_precision

        overlap = self.overlap_at(k)[self.default]
        agreement = self.agreement()
        rows = []
        for name in self.scores:
            same = [o for o in self.scores if o != name and agreement.loc[name, o] > 0.9999]
            row = {
                "detector": get(name).label + (" (default)" if name == self.default else ""),
                "measures": get(name).description,
                f"shares of the default's top {k}": float(overlap[name]),
                "seconds": self.seconds.get(name, 0.0),
                "same ranking as": ", ".join(get(o).label for o in same) or "—",
            }
            if mask is not None and 0 < mask.sum() < len(mask):
                scores, truth = self.scores[name], np.asarray(mask, dtype=bool)
                row["AUROC"], row["AP"] = self._keep(
                    ("against", name, truth.tobytes()), lambda s=scores, t=truth: (auroc(s, t), average_precision(s, t))
                )
            rows.append(row)
        return pd.DataFrame(rows)


def default_context(trained, n_folds: int = 5, use_cache: bool = True) -> DetectionContext:
    return DetectionContext(trained, n_folds, use_cache)


def extra_trainings(context: DetectionContext, names: Sequence[str]) -> int:
    """Trainings of the model the detectors add (out-of-fold ones share their folds)."""
    runnable = [n for n in names if get(n).unavailable_reason(context) is None]
    return max((get(n).extra_trainings(context) for n in runnable), default=0)


def estimate_seconds(context: DetectionContext, names: Sequence[str]) -> Optional[float]:
    """Seconds the detectors will take, from how long this run's own training took on this machine (each fold
    trains on (k − 1)/k of the rows); None when that is not known (a loaded model)."""
    seconds = context.trained.metrics.get("train_seconds") or 0.0
    if not seconds:
        return None if extra_trainings(context, names) else 0.0
    return extra_trainings(context, names) * seconds * (context.n_folds - 1) / context.n_folds


def detect(
    trained,
    names: Optional[Sequence[str]] = None,
    default: str = DEFAULT_DETECTOR,
    progress: ProgressFn = silent,
    n_folds: int = 5,
    use_cache: bool = True,
    context: Optional[DetectionContext] = None,
) -> Detection:
    """Run ``names`` (default: every registered detector) on a trained run; the default always runs. A detector that
    cannot run on this model is skipped with its reason; if that is the default, the first that ran leads."""
    context = context or DetectionContext(trained, n_folds, use_cache)
    wanted = list(dict.fromkeys([default, *(names if names is not None else detector_names())]))
    for n in wanted:
        get(n)
    scores, skipped, seconds, suggested = {}, {}, {}, {}
    for i, name in enumerate(wanted):
        cls = get(name)
        reason = cls.unavailable_reason(context)
        if reason:
            skipped[name] = reason
            continue
        started = time.perf_counter()
        detector = cls(context)
        scores[name] = np.asarray(detector.scores(scaled(progress, i / len(wanted), (i + 1) / len(wanted))), dtype=np.float64)
        seconds[name] = time.perf_counter() - started
        suggestion = detector.suggested()
        if suggestion is not None:
            suggested[name] = np.asarray(suggestion)
        progress((i + 1) / len(wanted), f"detector {cls.label} done ({i + 1}/{len(wanted)})")
    if not scores:
        raise InputError("no detector can run on this model: " + "; ".join(skipped.values()))
    lead = default if default in scores else next(iter(scores))
    waiting = tuple(n for n in skipped if get(n).out_of_fold and context.trained_here and not context.allow_out_of_fold)
    lead_cls = get(lead)
    return Detection(scores, lead, skipped, seconds, suggested, lead_cls.used_components(context), waiting, lead_cls.basis(context))


__all__ = [
    "DEFAULT_DETECTOR",
    "REGISTRY",
    "Detection",
    "DetectionContext",
    "Detector",
    "detect",
    "detector_names",
    "estimate_seconds",
    "extra_trainings",
    "get",
    "label",
    "register",
]
