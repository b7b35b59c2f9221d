"""Plotly figures shared by the pages (no streamlit here: pages only place them)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from influence_core import SIGN_CONVENTION

HARMFUL, HELPFUL, NEUTRAL = "#d62728", "#1f77b4", "#7f7f7f"
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def marker_sizes(values: np.ndarray, smallest: float = 5.0, largest: float = 26.0) -> np.ndarray:
    """Marker sizes proportional to |value| (square-root scaled, so area tracks magnitude)."""
    mag = np.sqrt(np.abs(np.asarray(values, dtype=float)))
    top = mag.max() if len(mag) and mag.max() > 0 else 1.0
    return smallest + (largest - smallest) * mag / top


def decision_region_figure(
    xs: np.ndarray,
    ys: np.ndarray,
    probs: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    train_values: np.ndarray,
    flipped: np.ndarray,
    value_label: str,
    signed: bool = False,
    x_test: Optional[np.ndarray] = None,
    y_test: Optional[np.ndarray] = None,
    test_values: Optional[np.ndarray] = None,
    highlight: Optional[tuple[str, int]] = None,
    class_names: Sequence[str] = ("0", "1"),
    removed: Optional[np.ndarray] = None,
) -> go.Figure:
    """Decision regions of a 2D binary classifier with training points sized by an influence value.

    Unsigned values (self-influence) colour points by label; signed values (influence on or from a
    chosen point) colour them red = harmful, blue = helpful. Trace 1 = train, trace 2 = test, so
    a page can map click events back to ids.
    """
    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        x=xs, y=ys, z=probs[..., -1], zmin=0, zmax=1, colorscale="RdBu_r", opacity=0.35, showscale=True,
        colorbar=dict(title=f"P({class_names[-1]})", len=0.5, y=0.8), hoverinfo="skip",
    ))
    train_colour = (
        np.where(np.asarray(train_values) > 0, HARMFUL, HELPFUL) if signed
        else np.array([CLASS_COLOURS[int(c) % 10] for c in y_train])
    )
    fig.add_trace(go.Scatter(
        x=x_train[:, 0], y=x_train[:, 1], mode="markers", name="train (size = |" + value_label + "|)",
        marker=dict(size=np.where(flipped, np.maximum(marker_sizes(train_values), 12), marker_sizes(train_values)),
                    color=train_colour, opacity=0.85,
                    line=dict(width=np.where(flipped, 2.5, 0.5), color=np.where(flipped, "black", "white")),
                    symbol=np.where(flipped, "circle-x", "circle")),
        customdata=np.c_[np.arange(len(x_train)), y_train, flipped.astype(int), train_values],
        hovertemplate="train #%{customdata[0]}<br>label %{customdata[1]} (flipped: %{customdata[2]})<br>"
        + value_label + " %{customdata[3]:.3g}<extra></extra>",
    ))
    if x_test is not None:
        tv = np.zeros(len(x_test)) if test_values is None else test_values
        test_colour = np.where(tv > 0, HARMFUL, HELPFUL) if test_values is not None else NEUTRAL
        fig.add_trace(go.Scatter(
            x=x_test[:, 0], y=x_test[:, 1], mode="markers", name="test",
            marker=dict(size=marker_sizes(tv, 4, 18) if test_values is not None else 5, color=test_colour,
                        symbol="diamond", opacity=0.6, line=dict(width=0.5, color="white")),
            customdata=np.c_[np.arange(len(x_test)), y_test, tv],
            hovertemplate="test #%{customdata[0]}<br>label %{customdata[1]}<br>value %{customdata[2]:.3g}<extra></extra>",
        ))
    if highlight is not None:
        which, idx = highlight
        pts = x_train if which == "train" else x_test
        fig.add_trace(go.Scatter(
            x=[pts[idx, 0]], y=[pts[idx, 1]], mode="markers", name=f"selected {which} #{idx}", hoverinfo="skip",
            marker=dict(size=24, symbol="circle-open", color="black", line=dict(width=3)),
        ))
    if removed is not None:  # where a training point was before an edit removed it
        fig.add_trace(go.Scatter(
            x=[removed[0]], y=[removed[1]], mode="markers", name="removed", hoverinfo="skip",
            marker=dict(size=18, symbol="x-thin-open", color="black", line=dict(width=3)),
        ))
    fig.update_layout(
        height=560, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.08),
        xaxis=dict(title="x1", constrain="domain"), yaxis=dict(title="x2", scaleanchor="x"),
        title=dict(text=("red = harmful, blue = helpful" if signed else "colour = label, × = flipped label"), font=dict(size=13)),
        clickmode="event+select",
    )
    return fig


def epochs_figure(epochs: Sequence[int], share: np.ndarray, label: str) -> go.Figure:
    """A line of one quantity over training epochs (e.g. the flipped point's share of self-influence)."""
    fig = go.Figure(go.Scatter(x=list(epochs), y=share, mode="lines+markers", name=label))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="epoch", yaxis_title=label)
    return fig


def sign_note() -> str:
    return "Sign convention: " + SIGN_CONVENTION


def retraining_check_figure(check) -> go.Figure:
    """Predicted vs retrained loss changes of a :class:`~influence_core.retraining_check.RetrainingCheck`
    (one dot per removed training point and measured test point), with y = x where the scores are on that scale."""
    rows, cols = np.meshgrid(check.train_indices, check.test_indices, indexing="ij")
    predicted, actual = check.predicted.ravel(), check.actual.ravel()
    ok = np.isfinite(actual)
    fig = go.Figure(go.Scatter(
        x=predicted[ok], y=actual[ok], mode="markers", name="removals",
        marker=dict(size=9, color=np.where(predicted[ok] < 0, HARMFUL, HELPFUL), line=dict(width=0.5, color="white")),
        customdata=np.c_[rows.ravel()[ok], cols.ravel()[ok]],
        hovertemplate="without train #%{customdata[0]}, test #%{customdata[1]}<br>predicted %{x:.3g}<br>retrained %{y:.3g}<extra></extra>",
    ))
    if check.on_loss_scale and ok.any():
        lo, hi = float(min(predicted[ok].min(), actual[ok].min())), float(max(predicted[ok].max(), actual[ok].max()))
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x (exact)", hoverinfo="skip",
                                 line=dict(color=NEUTRAL, dash="dash")))
    fig.update_layout(
        height=380, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.2),
        xaxis_title="predicted Δ test loss (−score / N)" if check.on_loss_scale else "−score / N (no H⁻¹: not a loss change)",
        yaxis_title="Δ test loss after retraining",
        title=dict(text="red = removal lowers the loss (harmful point), blue = raises it (helpful)", font=dict(size=13)),
    )
    return fig
