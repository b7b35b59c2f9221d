"""The What-if view's method comparisons: two methods' scores against each other, and scores against retraining."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go

from influence_core.figures.common import CLASS_COLOURS, legend_below, readable_axes
from influence_core.metrics import pearson


def method_scatter_figure(
    x: np.ndarray, y: np.ndarray, flipped: np.ndarray, x_title: str, y_title: str, correlation: Mapping, same_scale: bool = False
) -> go.Figure:
    """Two methods' scores of every training row, the flipped rows marked; the title carries both correlations. With
    ``same_scale`` (both predict the same quantity, e.g. a loss change) the line y = x shows where they agree in size."""
    fig = go.Figure()
    for is_flipped, name, colour in ((False, "label as given", CLASS_COLOURS[0]), (True, "flipped", CLASS_COLOURS[1])):
        rows = np.asarray(flipped, bool) == is_flipped
        if rows.any():
            fig.add_scatter(x=x[rows], y=y[rows], mode="markers", name=name, marker=dict(color=colour, size=6, opacity=0.7))
    if same_scale and len(x):
        lo, hi = float(min(np.min(x), np.min(y))), float(max(np.max(x), np.max(y)))
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(color="grey", dash="dash"))
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


def flip_set_map_figure(
    projection: tuple[np.ndarray, np.ndarray, tuple[str, str]],
    train_labels: np.ndarray,
    flipped: np.ndarray,
    predicted: np.ndarray,
    test_probs: np.ndarray,
    set_sizes: np.ndarray,
    chosen: np.ndarray,
    mode: str,
    test_point: int,
    added: np.ndarray | None = None,
) -> go.Figure:
    """The training and test points in 2D, the chosen flip set ringed in black, rows that growing the set added ringed
    in red and the picked test point as a star. Colour = class (test points: predicted class); × = a flipped label.
    ``projection`` is ``flipset.project_2d``'s (train xy, test xy, axis titles)."""
    x2, xt2, axes = projection
    in_set = np.zeros(len(train_labels), dtype=bool)
    in_set[np.asarray(chosen, int)] = True
    fig = go.Figure()
    fig.add_scatter(
        x=x2[:, 0],
        y=x2[:, 1],
        mode="markers",
        name="train (× = label flipped here)",
        marker=dict(color=[CLASS_COLOURS[c % 10] for c in train_labels], size=7, opacity=0.55, symbol=np.where(flipped, "x", "circle")),
        hoverinfo="text",
        text=[f"train #{i} label {c}" for i, c in enumerate(train_labels)],
    )
    fig.add_scatter(
        x=xt2[:, 0],
        y=xt2[:, 1],
        mode="markers",
        name="test (click to pick)",
        marker=dict(color=[CLASS_COLOURS[c % 10] for c in predicted], size=9, symbol="diamond", line=dict(width=1, color="white")),
        hoverinfo="text",
        text=[f"test #{i} p={p:.2f} k={k}" for i, (p, k) in enumerate(zip(test_probs, set_sizes))],
    )

    def ring(rows: np.ndarray, name: str, colour: str) -> None:  # training rows circled, not filled
        fig.add_scatter(
            x=x2[rows, 0], y=x2[rows, 1], mode="markers", name=name, hoverinfo="skip",
            marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(width=2.5, color=colour)),
        )  # fmt: skip

    ring(in_set, f"flip set ({mode}, {int(in_set.sum())})", "black")
    if added is not None:
        ring(added, f"added by refinement ({len(added)})", "crimson")
    fig.add_scatter(
        x=[xt2[test_point, 0]],
        y=[xt2[test_point, 1]],
        mode="markers",
        name=f"test #{test_point}",
        marker=dict(size=22, symbol="star", color="gold", line=dict(width=1.5, color="black")),
        hoverinfo="skip",
    )
    fig.update_layout(
        height=520,
        xaxis_title=axes[0],
        yaxis_title=axes[1],
        margin=dict(l=10, r=10, t=30),
        title="Colour = class (test: predicted); ringed = the flip set",
    )
    return readable_axes(legend_below(fig))


RETRAINING_COLOURS = {"not checked": "#9aa5b1", "flipped": "#2a9d8f", "did not flip": "#d62828"}


def set_size_histogram_figure(set_sizes: np.ndarray) -> go.Figure:
    """How many relabels each test point with a set needs (k = |S_t|)."""
    fig = go.Figure(go.Histogram(x=np.asarray(set_sizes), nbinsx=40, name="k"))
    fig.update_layout(title=f"k = |S_t| over {len(set_sizes)} test points with a set", xaxis_title="k", yaxis_title="count")
    return readable_axes(fig)


def set_size_vs_distance_figure(set_sizes: np.ndarray, distance: np.ndarray, retraining: np.ndarray) -> go.Figure:
    """k against the distance of the test point's probability from the threshold, coloured by what retraining said."""
    fig = go.Figure()
    retraining = np.asarray(retraining, dtype=object)
    for outcome, colour in RETRAINING_COLOURS.items():
        rows = retraining == outcome
        if rows.any():
            fig.add_scatter(
                x=np.asarray(distance)[rows], y=np.asarray(set_sizes)[rows], mode="markers", name=outcome, marker=dict(color=colour)
            )
    fig.update_layout(title="k vs distance of p from the threshold", xaxis_title="|p − τ|", yaxis_title="k")
    return readable_axes(legend_below(fig))


def trim_figure(table, n_seeds: int, flipped_known: bool) -> go.Figure | None:
    """Accuracy after trimming against the DP gap (data with groups, untrimmed included) or against the share of the
    removed rows that carry a flipped label (untrimmed left out: it removed nothing). None when there is nothing to put
    on the y axis (no groups and no known flips). ``table`` is ``TrimResult.table()``."""
    fairness = bool(table["dp_gap_mean"].notna().any())
    if not fairness and not flipped_known:
        return None
    y = "dp_gap_mean" if fairness else "flipped_share_removed"
    plot = table if fairness else table[table["key"] != "none"]
    fig = go.Figure()
    for k, (_, row) in enumerate(plot.iterrows()):
        fig.add_scatter(
            x=[row["accuracy_mean"]],
            y=[row[y]],
            mode="markers",
            name=row["method"],
            marker=dict(size=12, color=CLASS_COLOURS[k % len(CLASS_COLOURS)]),
            error_x=dict(type="data", array=[row["accuracy_std"]]) if n_seeds > 1 else None,
        )
    fig.update_layout(
        title="Accuracy vs fairness after trimming (untrimmed included)"
        if fairness
        else "Accuracy after trimming vs the share of flipped labels it removed",
        xaxis_title="held-out accuracy after trimming",
        yaxis_title="demographic-parity gap" if fairness else "flipped share of the removed rows",
        # the gap is a fraction the table shows in percent
        xaxis_tickformat=".1%",
        yaxis=dict(tickformat=".1%") if fairness else dict(range=[0, 1], tickformat=".0%"),
        margin=dict(t=80),  # room for the title above the long y-axis title
    )
    return legend_below(fig)
