"""Influence Lab: see which training data a model leans on, and which of it is wrong."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so pages can import influence_core and pages._ui

from pages._ui import shared_sidebar  # noqa: E402

st.set_page_config(page_title="Influence Lab", page_icon="🔎", layout="wide")

PAGES = [
    st.Page("pages/explorer.py", title="2D explorer", icon="🗺️", default=True),
]

navigation = st.navigation(PAGES)
shared_sidebar()
navigation.run()
