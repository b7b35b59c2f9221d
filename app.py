"""Influence Lab: see which training data a model leans on, and which of it is wrong."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so pages can import influence_core and pages._ui

from pages._ui import run_app  # noqa: E402

run_app()
