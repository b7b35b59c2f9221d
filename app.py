"""Influence Lab: see which training data a model leans on, and which of it is wrong."""

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # so pages can import influence_core and pages._ui

from pages._ui import shared_sidebar  # noqa: E402

st.set_page_config(page_title="Influence Lab", page_icon=":material/search:", layout="wide")

# (file, title, icon); the first is the landing page on the embedded default dataset
VIEWS = [
    ("pages/explorer.py", "2D explorer", ":material/scatter_plot:"),
    ("pages/label_bias.py", "Label bias", ":material/label:"),
    ("pages/glitch_signals.py", "Glitch signals", ":material/bug_report:"),
    ("pages/what_if.py", "What-if", ":material/swap_horiz:"),
    ("pages/region_cuts.py", "Region cuts", ":material/flight:"),
]

pages = [
    st.Page(file, title=title, icon=icon, default=(i == 0))
    for i, (file, title, icon) in enumerate(VIEWS)
    if (ROOT / file).exists()
]
navigation = st.navigation(pages)
shared_sidebar()
navigation.run()
