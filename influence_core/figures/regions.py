"""Region cut figures: surrogate | oracle advisories with the slice's training points sized by Cook's distance."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from influence_core.figures.common import marker_sizes, readable_axes
from influence_core.regions import ADVISORY_COLOURS, DISAGREE_COLOUR, Cut, RegionStudy, TableInfo

# A cut draws at most this many of its slice's training points per panel, the largest Cook's distances: SVG markers
# are most of the browser's redraw (the default focus cut's 1,658 points in both panels took 0.38 s per Plotly.newPlot
# in headless Chromium, 400 of them 0.14 s), and the smallest markers are the points the surrogate leans on least
DRAWN_POINTS = 400
DISAGREE_OPACITY = 0.45  # the advisory colour stays readable under the shade
GALLERY_POINTS = 150  # a gallery cut is a thumbnail to choose a cut by: its most influential points


def _label_with_unit(info: TableInfo, i: int) -> str:
    unit = info.input_units[i] if i < len(info.input_units) else ""
    return f"{info.input_names[i]} ({unit})" if unit else info.input_names[i]


def cut_title(study: RegionStudy, cut: Cut) -> str:
    """'psi = 0.52 · Σ Cook 1.20e+01 · 3.1% disagree' style caption of a cut. Every cut of a study writes its numbers
    alike, so a gallery's lines compare (".3g" gave "Σ Cook 1.23e+03" above "Σ Cook 852", "rho = 6e+04" above
    "rho = 852"): each fixed input to 3 significant digits of its table range, Σ Cook in scientific notation."""
    info = study.info
    fixed = []
    for i in range(len(info.input_names)):
        if i in cut.axes:
            continue
        span = float(info.box[i, 1] - info.box[i, 0])
        decimals = int(np.clip(2 - np.floor(np.log10(span)), 0, 6)) if span > 0 else 3
        fixed.append(f"{info.input_names[i]} = {cut.center_raw[i]:.{decimals}f}")
    return " · ".join(fixed + [f"Σ Cook {cut.total_influence:.2e}", f"{cut.disagreement_fraction:.1%} disagree"])


def drawn_points(cut: Cut, limit: int = DRAWN_POINTS) -> np.ndarray:
    """Indices into the cut's slice points that its figure draws: all of them, or the ``limit`` with the largest
    Cook's distance (ties by position, so a redraw keeps the same points)."""
    n = len(cut.point_cook)
    if n <= limit:
        return np.arange(n)
    return np.sort(np.lexsort((cut.point_positions, -np.asarray(cut.point_cook)))[:limit])


def cut_figure(study: RegionStudy, cut: Cut, height: int = 380, max_points: int = DRAWN_POINTS) -> go.Figure:
    """Surrogate | oracle advisories side by side; slice training points sized by Cook's distance (at most
    ``max_points`` of them, the most influential, named so in the legend).

    Disagreement cells are shaded dark on the surrogate panel. Scatter traces carry the
    training position in ``customdata[0]`` so a page can centre a new cut on a clicked point.
    """
    names = study.dataset.class_names
    k = len(names)
    colours = [ADVISORY_COLOURS[i % len(ADVISORY_COLOURS)] for i in range(k)]
    # a discrete colour scale: class i occupies [i/k, (i+1)/k]
    scale = []
    for i, c in enumerate(colours):
        scale += [[i / k, c], [(i + 1) / k, c]]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("surrogate model", "oracle network"), shared_yaxes=True, horizontal_spacing=0.04)
    xs, ys = cut.xx[0], cut.yy[:, 0]
    shown = drawn_points(cut, max_points)
    # sized against every slice point, so a point keeps its size whatever the limit
    sizes = marker_sizes(cut.point_cook, 4.0, 22.0)[shown] if len(cut.point_cook) else np.array([])
    n_slice = len(cut.point_cook)
    points_name = "training points (size = Cook's distance)"
    if len(shown) < n_slice:
        points_name = f"training points, size = Cook's distance ({len(shown):,} largest of {n_slice:,})"
    for col, labels in ((1, cut.model_labels), (2, cut.oracle_labels)):
        fig.add_trace(
            go.Heatmap(
                x=xs,
                y=ys,
                z=labels,
                zmin=-0.5,
                zmax=k - 0.5,
                colorscale=scale,
                showscale=False,
                customdata=np.asarray(names, dtype=object)[labels],
                hovertemplate="%{customdata}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=cut.point_xy[shown, 0],
                y=cut.point_xy[shown, 1],
                mode="markers",
                name=points_name,
                showlegend=col == 1,
                # class indices through the discrete scale, not one colour string per point: plotly validates
                # those one by one, which was most of a cut's render time
                marker=dict(
                    size=sizes,
                    color=np.asarray(cut.point_labels, dtype=float)[shown],
                    colorscale=scale,
                    cmin=-0.5,
                    cmax=k - 0.5,
                    line=dict(width=1, color="black"),
                ),
                customdata=np.c_[cut.point_positions[shown], np.asarray(cut.point_cook)[shown]],
                hovertemplate="train #%{customdata[0]}<br>Cook's distance %{customdata[1]:.3g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    bad = cut.disagreement
    if bad.any():
        # one shaded image over the surrogate's panel, not a marker per cell: a poor surrogate disagrees on thousands
        # of cells, each an SVG path for the browser to redraw on every move of a slider
        fig.add_trace(
            go.Heatmap(
                x=xs,
                y=ys,
                z=np.where(bad, 1.0, np.nan),
                colorscale=[[0.0, DISAGREE_COLOUR], [1.0, DISAGREE_COLOUR]],
                opacity=DISAGREE_OPACITY,
                showscale=False,
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(  # its legend entry
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name="surrogate ≠ oracle (shaded)",
                marker=dict(size=10, symbol="square", color=DISAGREE_COLOUR, opacity=DISAGREE_OPACITY),
            ),
            row=1,
            col=1,
        )
    for i, name in enumerate(names):  # legend entries for the advisory colours
        fig.add_trace(
            go.Scatter(x=[None], y=[None], mode="markers", name=name, marker=dict(size=10, symbol="square", color=colours[i])), row=1, col=2
        )
    if cut.seed_position is not None:
        centre = study.x_train_raw[cut.seed_position][list(cut.axes)]
        fig.add_trace(
            go.Scatter(
                x=[centre[0]],
                y=[centre[1]],
                mode="markers",
                name="cut centre",
                marker=dict(symbol="star", size=14, color="gold", line=dict(width=1, color="black")),
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
    a, b = cut.axes
    # the inputs in their units, written out (60,000 ft, not 60k or 6e+4); none of them is small
    fig.update_xaxes(title_text=_label_with_unit(study.info, a), exponentformat="none", separatethousands=True)
    fig.update_yaxes(exponentformat="none", separatethousands=True)
    fig.update_yaxes(title_text=_label_with_unit(study.info, b), row=1, col=1)
    # the legend sits in a bottom margin of its own: placed in plot coordinates it covered the x-axis title
    fig.update_layout(
        height=height + 60,
        margin=dict(l=10, r=10, t=30, b=90),
        legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom"),
        clickmode="event+select",
    )
    return readable_axes(fig)
