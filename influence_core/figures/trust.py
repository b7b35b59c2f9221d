"""The Trust view's figures: each method's LDS with its interval, its cost beside it, the per-point spread and one
held-out point's subsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from influence_core.lds import LDSResult


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
    figure.update_layout(
        title="LDS with its 95 % interval over held-out points",
        xaxis_title="LDS",
        xaxis_range=[min(0, table["lds_low"].min() - 0.05), 1],
        yaxis=dict(autorange="reversed"),
        height=60 + 36 * len(table),
        margin=dict(l=10, r=10, t=50, b=40),
    )
    if result.ceiling is not None and result.randomness == "resampled":
        figure.add_vline(x=result.ceiling, line_dash="dash", line_color="grey", annotation_text=f"seed-noise ceiling {result.ceiling:.2f}")
    return figure


def cost_figure(table: pd.DataFrame) -> go.Figure:
    """Seconds to score (log) against LDS, one labelled point per method."""
    cost = px.scatter(
        table,
        x="seconds",
        y="lds",
        text="method",
        log_x=True,
        labels={"seconds": "seconds to score (log)", "lds": "LDS"},
        title="Cost beside accuracy",
    )
    cost.update_traces(textposition="top center", marker=dict(size=11, color="#e66101"))
    cost.update_layout(height=60 + 36 * len(table), margin=dict(l=10, r=10, t=50, b=40))
    return cost


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
    return box


def subset_figure(predicted: np.ndarray, retrained: np.ndarray, title: str) -> go.Figure:
    """One held-out point: the linear datamodel's prediction against the retrained loss, a dot per subset."""
    scatter = px.scatter(
        x=predicted,
        y=retrained,
        labels={"x": "predicted by the linear datamodel (sum of kept scores)", "y": "loss after retraining"},
        title=title,
    )
    scatter.update_traces(marker=dict(size=9, color="#5e3c99"))
    return scatter
