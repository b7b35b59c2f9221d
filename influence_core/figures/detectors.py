"""Figures of the label-noise detectors side by side (no streamlit: pages only place them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from influence_core import detectors
from influence_core.figures.common import HARMFUL, NEUTRAL, clear_of_modebar


def agreement_figure(detection: "detectors.Detection", k: int) -> go.Figure:
    """How much the detectors agree: the share of one's top ``k`` that another's top ``k`` holds (1 = the same rows)."""
    overlap = detection.overlap_at(k)
    names = [detectors.get(n).label.split(" (")[0] for n in overlap.index]
    fig = go.Figure(
        go.Heatmap(
            z=overlap.to_numpy(),
            x=names,
            y=names,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=np.vectorize(lambda v: f"{v:.0%}")(overlap.to_numpy()),
            texttemplate="%{text}",
            hovertemplate="%{y} ∩ %{x}: %{text} of the top " + str(k) + "<extra></extra>",
            colorbar=dict(title="shared", tickformat=".0%"),
        )
    )
    fig.update_layout(
        title=f"Shared rows in the detectors' top {k}",
        height=120 + 34 * len(names),
        margin=dict(l=10, r=10, t=40, b=10),
        yaxis=dict(autorange="reversed"),
        xaxis=dict(tickangle=-30),
    )
    return clear_of_modebar(fig)


def verdicts_figure(verdicts: pd.DataFrame) -> go.Figure:
    """One row's place in every detector's ranking (1 = its most suspicious row); flagging detectors in orange."""
    top = verdicts["top share"].to_numpy()
    names = [label.split(" (")[0] for label in verdicts["label"]]
    fig = go.Figure(
        go.Bar(
            x=top,
            y=names,
            orientation="h",
            marker_color=[HARMFUL if f else NEUTRAL for f in verdicts["flags"]],
            text=[f"rank {r:,}" for r in verdicts["rank"]],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{text}, top %{x:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Where each detector ranks it (orange: in its flagged top)",
        height=80 + 28 * len(names),
        margin=dict(l=10, r=70, t=40, b=30),
        xaxis=dict(title="top share of the ranking (smaller = more suspicious)", tickformat=".0%", range=[0, 1]),
        yaxis=dict(autorange="reversed"),
        showlegend=False,
    )
    return clear_of_modebar(fig)
