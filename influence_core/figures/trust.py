"""The Trust view's figures: each method's LDS with its interval, its cost beside it, the per-point spread and one
held-out point's subsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from influence_core.figures.common import CLASS_COLOURS, legend_below, readable_axes
from influence_core.lds import LDSResult
from influence_core.timing import seconds_text

COLOURS = [c for c in CLASS_COLOURS if c != "#F0E442"]  # the palette without its yellow, faint as a small marker on white
# one marker shape per method besides its colour: colours alone do not separate methods for every reader
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "pentagon", "hexagon", "triangle-down"]


def lds_bars_figure(table: pd.DataFrame, result: LDSResult) -> go.Figure:
    """LDS per method with its 95 % interval, best first; the seed-noise ceiling as a line where it was measured."""
    figure = go.Figure(
        go.Bar(
            x=table["lds"],
            y=table["method"],
            orientation="h",
            marker_color="#5e3c99",
            error_x=dict(type="data", symmetric=False, array=table["lds_high"] - table["lds"], arrayminus=table["lds"] - table["lds_low"]),
        )
    )
    low = min(0, table["lds_low"].min() - 0.05)
    figure.update_layout(
        # the title at the top edge, the ceiling's label in the band under it: both in the top margin, apart
        title=dict(
            text="LDS with its 95 % interval over held-out points", x=0, xanchor="left", yref="container", y=1, yanchor="top", pad=dict(t=8)
        ),
        xaxis_title="LDS",
        xaxis_range=[low, 1],
        yaxis=dict(autorange="reversed"),
        height=80 + 36 * len(table),
        margin=dict(l=10, r=10, t=70, b=40),
    )
    if result.ceiling is not None and result.randomness == "resampled":
        figure.add_vline(x=result.ceiling, line_dash="dash", line_color="grey")
        # its label above the plot, under the title (inside, it sat on the top bar), on the side of the line with the
        # room (right of a line near 1 it left the figure)
        figure.add_annotation(
            x=result.ceiling,
            xref="x",
            y=1,
            yref="paper",
            yanchor="bottom",
            xanchor="right" if result.ceiling > (low + 1) / 2 else "left",
            showarrow=False,
            text=f"seed-noise ceiling {result.ceiling:.2f}",
        )
    return readable_axes(figure)


def cost_figure(table: pd.DataFrame, width_px: int = 320) -> go.Figure:
    """Seconds to score (log) against LDS, one point per method, named in the legend: a text label beside each point
    drew over its neighbours' (IP and TracIn often have the same LDS and cost, three influence@ curvatures near it).
    Each method has its own colour and symbol; points that coincide are drawn as nested rings, the first listed
    largest, so every method stays visible. ``width_px`` is the narrowest the figure is drawn (the two-fifths column at
    1280 px): it sets the legend's rows."""
    cost = go.Figure()
    seconds = np.asarray(table["seconds"], float)
    lds = np.asarray(table["lds"], float)
    # points within a marker of each other, on the axes' own scales (log seconds, LDS)
    log_s = np.log10(np.clip(seconds, 1e-12, None))
    x_span = max(float(np.ptp(log_s)) if len(log_s) else 0.0, 1.0)
    y_span = max(float(np.ptp(lds)) if len(lds) else 0.0, 0.2)
    near = (np.abs(log_s[:, None] - log_s[None, :]) < 0.04 * x_span) & (np.abs(lds[:, None] - lds[None, :]) < 0.04 * y_span)
    cluster = np.arange(len(table))
    for _ in range(len(table)):  # chains of near points are one cluster
        cluster = np.where(near, cluster[None, :], len(table)).min(axis=1)
    size = np.empty(len(table))
    for c in np.unique(cluster):  # first listed largest: each later one sits inside the earlier ones
        members = np.flatnonzero(cluster == c)
        size[members] = 11.0 + 7.0 * np.arange(len(members))[::-1]
    for i, method in enumerate(table["method"]):
        cost.add_trace(
            go.Scatter(
                x=[seconds[i]],
                y=[lds[i]],
                mode="markers",
                name=str(method),
                marker=dict(
                    size=size[i],
                    color=COLOURS[i % len(COLOURS)],
                    symbol=SYMBOLS[i % len(SYMBOLS)],
                    line=dict(width=1.5, color="white"),
                ),
                hovertemplate=f"{method}<br>LDS %{{y:.3f}}<br>{seconds_text(seconds[i])} to score<extra></extra>",
            )
        )
    cost.update_layout(
        title=dict(text="Cost beside accuracy", x=0, xanchor="left"),
        margin=dict(l=10, r=10, t=50),
        xaxis=dict(title="seconds to score (log)", type="log"),
        yaxis_title="LDS",
        showlegend=True,  # one method too: its name is in the legend only
    )
    legend_below(cost, width_px=width_px - 60)  # the legend spans the plot: the width less the y axis
    cost.update_layout(height=240 + cost.layout.margin.b)  # the plot keeps its height however many legend rows
    return readable_axes(cost)


def spread_figure(result: LDSResult, methods: list[str]) -> go.Figure:
    """Per held-out point: each method's correlation over the retrained subsets."""
    spread = pd.DataFrame({m: result.per_test[m] for m in methods}).melt(var_name="method", value_name="per-point correlation")
    box = px.box(
        spread.dropna(),
        x="per-point correlation",
        y="method",
        points="outliers",
        title="Per held-out point: how well each method orders the retrains",
    )
    box.update_layout(height=80 + 40 * len(methods), margin=dict(l=10, r=10, t=50, b=40))
    return readable_axes(box)


def subset_figure(predicted: np.ndarray, retrained: np.ndarray, title: str) -> go.Figure:
    """One held-out point: the linear datamodel's prediction against the retrained loss, a dot per subset."""
    scatter = px.scatter(
        x=predicted,
        y=retrained,
        labels={"x": "predicted by the linear datamodel (sum of kept scores)", "y": "loss after retraining"},
        title=title,
    )
    scatter.update_traces(marker=dict(size=9, color="#5e3c99"))
    return readable_axes(scatter)
