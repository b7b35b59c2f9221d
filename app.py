"""Influence Lab: see which training data a model leans on, and which of it is wrong."""

# Streamlit puts this file's folder first on sys.path, so `pages._frame` (and `influence_core`) import from here
from pages._frame import run_app

run_app()
