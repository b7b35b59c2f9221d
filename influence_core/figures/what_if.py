"""The What-if view's method comparisons: two methods' scores against each other, and scores against retraining."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go

from influence_core.figures.common import CLASS_COLOURS, legend_below, readable_axes
from influence_core.metrics import pearson


def method_scatter_figure(x: np.ndarray, y: np.ndarray, flipped: np.ndarray, x_title: str, y_title: str, correlation: Mapping) -> go.Figure:
    """Two methods' scores of every training row, the flipped rows marked; the title carries both correlations."""
    fig = go.Figure()
    for is_flipped, name, colour in ((False, "label as given", CLASS_COLOURS[0]), (True, "flipped", CLASS_COLOURS[1])):
        rows = np.asarray(flipped, bool) == is_flipped
        if rows.any():
            fig.add_scatter(x=x[rows], y=y[rows], mode="markers", name=name, marker=dict(color=colour, size=6, opacity=0.7))
    fig.update_layout(
        title=f"{x_title} vs {y_title}: Pearson {correlation['pearson']:.3f}, Spearman {correlation['spearman']:.3f}",
        xaxis_title=x_title,
        yaxis_title=y_title,
    )
    return readable_axes(legend_below(fig))


def removal_check_figure(actual: np.ndarray, predicted: Mapping[str, np.ndarray], on_scale: Mapping[str, bool]) -> go.Figure:
    """Each method's score of a removed row (x) against the retrained effect of removing it (y, on the scores' scale),
    with y = x and each method's Pearson in the legend. A method whose scores are not on the loss scale
    (``on_scale[name]`` False: IP, TracIn) is rescaled by least squares onto the retrained effects and says so, so
    the line still reads "right size" for the ones that claim a size."""
    actual = np.asarray(actual, float)
    fig = go.Figure()
    lo, hi = float(np.nanmin(actual)), float(np.nanmax(actual))
    for k, (name, scores) in enumerate(predicted.items()):
        scores = np.asarray(scores, float)
        scale = 1.0 if on_scale[name] else float(scores @ actual / (scores @ scores)) if scores @ scores > 0 else 0.0
        fitted = scale * scores
        lo, hi = min(lo, float(fitted.min())), max(hi, float(fitted.max()))
        fig.add_scatter(
            x=fitted,
            y=actual,
            mode="markers",
            name=f"{name}{'' if on_scale[name] else ' × fitted scale'} (Pearson {pearson(scores, actual):+.2f})",
            marker=dict(color=CLASS_COLOURS[k % len(CLASS_COLOURS)], size=8),
        )
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(color="grey", dash="dash"))
    fig.update_layout(
        title="Predicted vs retrained effect of removal",
        xaxis_title="predicted effect (score)",
        yaxis_title="retrained change (leave-one-out)",
    )
    return readable_axes(legend_below(fig))
