"""Label bias figures: per-sample score bars, threshold sweeps, score spread, ROC/PR, clean vs noisy model."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from influence_core.figures.common import legend_below, readable_axes
from influence_core.metrics import threshold_sweep

FLIPPED_COLOUR, CLEAN_COLOUR = "#d62728", "#1f77b4"


def influence_bar_figure(scores: np.ndarray, flipped: np.ndarray, threshold: Optional[float] = None, title: str = "") -> go.Figure:
    """One bar per training sample (index order, as the paper's Fig. 3a), red = flipped, blue = clean."""
    idx = np.arange(len(scores))
    fig = go.Figure()
    for mask, name, colour in ((~flipped, "clean", CLEAN_COLOUR), (flipped, "flipped", FLIPPED_COLOUR)):
        fig.add_trace(
            go.Bar(
                x=idx[mask],
                y=scores[mask],
                name=f"{name} ({int(mask.sum())})",
                marker_color=colour,
                marker_line_width=0,
                hovertemplate="row %{x}<br>score %{y:.3g}<extra>" + name + "</extra>",
            )
        )
    if threshold is not None:
        fig.add_hline(
            y=threshold,
            line_dash="dash",
            line_color="black",
            annotation_text=f"threshold {threshold:.3g}",
            annotation_bgcolor="rgba(255, 255, 255, 0.85)",  # readable over the bars it crosses
        )
    fig.update_layout(
        height=340,
        bargap=0,
        margin=dict(l=10, r=10, t=40, b=10),
        title=dict(text=title, font=dict(size=13)),
        xaxis_title="training sample",
        yaxis_title="score (positive = harmful)",
    )
    return readable_axes(legend_below(fig))


def threshold_figure(scores: np.ndarray, flipped: np.ndarray, threshold: Optional[float] = None) -> go.Figure:
    """% of flipped and % of clean samples at or above each threshold (the paper's Fig. 3b)."""
    sweep = threshold_sweep(scores, flipped, n=300)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=sweep["threshold"], y=100 * sweep["positives_above"], name="flipped detected (%)", line_color=FLIPPED_COLOUR)
    )
    fig.add_trace(go.Scatter(x=sweep["threshold"], y=100 * sweep["negatives_above"], name="clean flagged (%)", line_color=CLEAN_COLOUR))
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color="black")
    fig.update_layout(
        height=340,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="threshold",
        yaxis=dict(title="% at or above", ticksuffix="%"),
    )
    return readable_axes(legend_below(fig, width_px=300))  # a narrow column: above the plot, its two rows hung over the curves


def score_histogram_figure(scores: np.ndarray, threshold: Optional[float] = None) -> go.Figure:
    """How the scores spread, with the threshold: for labels without ground truth, a long right
    tail of a few samples is what the threshold should cut."""
    fig = go.Figure(
        go.Histogram(
            x=scores, nbinsx=80, marker_color=CLEAN_COLOUR, marker_line_width=0, hovertemplate="score %{x}<br>%{y} samples<extra></extra>"
        )
    )
    if threshold is not None:
        above = int(np.sum(scores >= threshold))
        # the label on the side of the line with the room: right of a threshold in the long tail it left the figure
        right_half = len(scores) and threshold > (float(np.min(scores)) + float(np.max(scores))) / 2
        fig.add_vline(
            x=threshold,
            line_dash="dash",
            line_color="black",
            annotation_text=f"{above} at or above",
            annotation_position="top left" if right_half else "top right",
        )
    fig.update_layout(
        height=340,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="score (positive = harmful)",
        yaxis=dict(title="training samples", type="log", dtick=1, tickformat=",d"),  # counts: 1,000, not 10³
        bargap=0,
    )
    return readable_axes(fig)


def detection_curves_figure(scores: dict[str, np.ndarray], flipped: np.ndarray, fpr_mark: float = 0.005) -> go.Figure:
    """ROC (log FPR) and precision–recall curves of several scores against the flip mask."""
    from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

    fig = make_subplots(rows=1, cols=2, subplot_titles=("ROC", "precision–recall"))
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f"]
    if not flipped.any() or flipped.all():
        return readable_axes(fig)
    for k, (name, s) in enumerate(scores.items()):
        colour = palette[k % len(palette)]
        fprs, tprs, _ = roc_curve(flipped, s)
        prec, rec, _ = precision_recall_curve(flipped, s)
        label = f"{name} (AUROC {roc_auc_score(flipped, s):.3f})"
        fig.add_trace(go.Scatter(x=np.maximum(fprs, 1e-4), y=tprs, name=label, line_color=colour, legendgroup=name), 1, 1)
        fig.add_trace(go.Scatter(x=rec, y=prec, name=name, line_color=colour, legendgroup=name, showlegend=False), 1, 2)
    fig.add_vline(x=fpr_mark, line_dash="dot", line_color="grey", row=1, col=1)
    # rates in percent, as the page's metrics write them ("Clean flagged 0.4%" beside an axis of 0.004 read as two
    # quantities); the log axis labels its decades only (0.01%, 0.1%, …)
    fig.update_xaxes(type="log", title="false-positive rate (clean flagged)", tickformat="~%", dtick=1, row=1, col=1)
    fig.update_yaxes(title="true-positive rate (flipped detected)", tickformat=".0%", row=1, col=1)
    fig.update_xaxes(title="recall", tickformat=".0%", row=1, col=2)
    fig.update_yaxes(title="precision", tickformat=".0%", row=1, col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40))
    return readable_axes(legend_below(fig))


def model_comparison_figure(metrics: dict[str, Any]) -> go.Figure:
    """Held-out loss and accuracy of the clean and the noisy model side by side (step 1); accuracy in percent, as the
    page's metrics show it (0.936 on the bar beside 93.6 % above it read as two quantities)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("held-out loss", "held-out accuracy"))
    names = [n for n in ("clean", "noisy") if n in metrics]
    colours = {"clean": CLEAN_COLOUR, "noisy": FLIPPED_COLOUR}
    for col, key in ((1, "loss"), (2, "accuracy")):
        fig.add_trace(
            go.Bar(
                x=names,
                y=[metrics[n]["test"][key] for n in names],
                marker_color=[colours[n] for n in names],
                text=[f"{metrics[n]['test'][key]:.1%}" if key == "accuracy" else f"{metrics[n]['test'][key]:.3f}" for n in names],
                showlegend=False,
            ),
            1,
            col,
        )
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10))
    return readable_axes(fig)
