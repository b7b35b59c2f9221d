"""Words the app writes about counts: one place for plurals ("1 row", "2 rows", "1,257 rows").

A leaf: imports nothing of the package (pages, pipelines and the CLI all use it)."""

from __future__ import annotations

from typing import Optional


def plural(n: int, word: str, many: Optional[str] = None) -> str:
    """``n`` and ``word``, the word in the plural unless ``n`` is 1: plural(1, "row") = "1 row", plural(1257, "row") =
    "1,257 rows"; ``many``: an irregular plural (plural(2, "retraining", "retrainings"))."""
    n = int(n)
    return f"{n:,} {word if n == 1 else many or word + 's'}"
